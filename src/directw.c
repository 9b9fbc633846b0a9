/* The O_DIRECT writer: see directw.h. The unpacking thread fills one buffer while this thread
 * writes the other; the mutex guards the hand-over and the first failure. */
#include "directw.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "thread.h"

/* 2 MiB: few enough requests for the device to stream, little memory beside the export's ring. */
#define BUF ((size_t)2 * 1024 * 1024)

struct ud_directw {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t work; /* a buffer to write, or stop */
	pthread_cond_t done; /* the buffer was written */
	void *buf[2];
	/* The unpacking thread's: the buffer being filled, where it goes, where the thread stops. */
	int cur;
	size_t fill;
	uint64_t base, end;
	bool active;
	/* Under mu. */
	int fd;
	const void *job;
	size_t job_len;
	uint64_t job_off;
	bool stop;
	int err; /* the first failure in this file: errno */
};

/* A refusal of O_DIRECT itself comes as EINVAL at the first write: then ordinary writes. */
static int write_all(int fd, const char *p, size_t n, uint64_t off)
{
	while (n) {
		ssize_t w = pwrite(fd, p, n, (off_t)off);
		if (w < 0 && errno == EINVAL && (fcntl(fd, F_GETFL) & O_DIRECT)) {
			if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_DIRECT) < 0)
				return errno;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return w < 0 ? errno : EIO;
		p += w;
		n -= (size_t)w;
		off += (uint64_t)w;
	}
	return 0;
}

static void *run(void *arg)
{
	struct ud_directw *w = arg;
	pthread_mutex_lock(&w->mu);
	for (;;) {
		while (!w->job && !w->stop)
			pthread_cond_wait(&w->work, &w->mu);
		if (!w->job)
			break;
		int fd = w->fd, skip = w->err;
		const char *job = w->job;
		size_t len = w->job_len;
		uint64_t off = w->job_off;
		pthread_mutex_unlock(&w->mu);
		int err = skip ? 0 : write_all(fd, job, len, off);
		pthread_mutex_lock(&w->mu);
		if (err && !w->err)
			w->err = err;
		w->job = NULL;
		pthread_cond_signal(&w->done);
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

int ud_directw_start(ud_directw **out, ud_error *e)
{
	*out = NULL;
	struct ud_directw *w = calloc(1, sizeof(*w));
	if (!w)
		return ud_oom(e);
	w->fd = -1;
	if (posix_memalign(&w->buf[0], UD_DIRECTW_ALIGN, BUF) ||
	    posix_memalign(&w->buf[1], UD_DIRECTW_ALIGN, BUF)) {
		free(w->buf[0]);
		free(w);
		return ud_oom(e);
	}
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->work, NULL);
	pthread_cond_init(&w->done, NULL);
	int err = ud_thread_start(&w->thread, run, w);
	if (err) {
		pthread_cond_destroy(&w->done);
		pthread_cond_destroy(&w->work);
		pthread_mutex_destroy(&w->mu);
		free(w->buf[0]);
		free(w->buf[1]);
		free(w);
		return ud_fail(e, UD_EXIT_REFUSED, err, "cannot start the writing thread");
	}
	*out = w;
	return 0;
}

static void wait_idle(struct ud_directw *w)
{
	pthread_mutex_lock(&w->mu);
	while (w->job)
		pthread_cond_wait(&w->done, &w->mu);
	pthread_mutex_unlock(&w->mu);
}

/* The filled buffer to the thread (after the one before), the other one to fill. */
static void hand_over(struct ud_directw *w)
{
	if (!w->fill)
		return;
	pthread_mutex_lock(&w->mu);
	while (w->job)
		pthread_cond_wait(&w->done, &w->mu);
	w->job = w->buf[w->cur];
	w->job_len = w->fill;
	w->job_off = w->base;
	pthread_cond_signal(&w->work);
	pthread_mutex_unlock(&w->mu);
	w->cur ^= 1;
	w->base += w->fill;
	w->fill = 0;
}

void ud_directw_file(ud_directw *w, int fd, uint64_t size)
{
	wait_idle(w);
	pthread_mutex_lock(&w->mu);
	w->fd = fd;
	w->err = 0;
	pthread_mutex_unlock(&w->mu);
	w->fill = 0;
	w->base = 0;
	/* The last block, whole or not, is the caller's: libarchive's writer then ends exactly at
	 * the size it expects, and closes the file as after its own writes. */
	w->end = size ? (size - 1) / UD_DIRECTW_ALIGN * UD_DIRECTW_ALIGN : 0;
	w->active = w->end > 0;
}

size_t ud_directw_put(ud_directw *w, const void *buf, size_t n, uint64_t off)
{
	if (!w->active)
		return 0;
	if (off != w->base + w->fill) {
		w->active = false; /* a gap: the rest, holes and all, is libarchive's */
		hand_over(w);
		return 0;
	}
	uint64_t room = w->end - off;
	size_t take = n < room ? n : (size_t)room;
	for (size_t done = 0; done < take;) {
		size_t k = BUF - w->fill < take - done ? BUF - w->fill : take - done;
		memcpy((char *)w->buf[w->cur] + w->fill, (const char *)buf + done, k);
		w->fill += k;
		done += k;
		if (w->fill == BUF || w->base + w->fill == w->end)
			hand_over(w);
	}
	if (w->base + w->fill == w->end)
		w->active = false;
	return take;
}

int ud_directw_end(ud_directw *w, ud_error *e)
{
	hand_over(w);
	wait_idle(w);
	w->active = false;
	pthread_mutex_lock(&w->mu);
	int err = w->err;
	w->fd = -1;
	w->err = 0;
	pthread_mutex_unlock(&w->mu);
	return err ? ud_fail(e, UD_EXIT_STORAGE, err, "writing it") : 0;
}

void ud_directw_stop(ud_directw *w)
{
	if (!w)
		return;
	pthread_mutex_lock(&w->mu);
	w->stop = true;
	pthread_cond_signal(&w->work);
	pthread_mutex_unlock(&w->mu);
	pthread_join(w->thread, NULL); /* after the buffer in flight, if any */
	pthread_cond_destroy(&w->done);
	pthread_cond_destroy(&w->work);
	pthread_mutex_destroy(&w->mu);
	free(w->buf[0]);
	free(w->buf[1]);
	free(w);
}
