/* The prefault thread: see prefault.h. The mutex guards the file's fd, size and the two
 * positions; readahead(2) runs outside it. */
#include "prefault.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "thread.h"

/* 128 KiB: readahead(2) does at most max(read_ahead_kb, max_sectors_kb) per call anyway. */
#define STEP ((uint64_t)128 * 1024)

struct ud_prefault {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t work; /* a file, progress, or stop */
	pthread_cond_t idle; /* the thread let the file go */
	int fd;		     /* -1: none */
	uint64_t size, done, writer;
	bool busy, stop, waiting;
};

/* How far the thread may go now; 0: nothing to do. */
static uint64_t next_step(struct ud_prefault *p)
{
	if (p->fd < 0)
		return 0;
	uint64_t limit = p->writer + UD_PREFAULT_AHEAD;
	if (limit > p->size)
		limit = p->size;
	if (p->done >= limit)
		return 0;
	return limit - p->done < STEP ? limit - p->done : STEP;
}

static void *run(void *arg)
{
	struct ud_prefault *p = arg;
	pthread_mutex_lock(&p->mu);
	for (;;) {
		uint64_t n = 0;
		while (!p->stop && !(n = next_step(p))) {
			p->busy = false;
			pthread_cond_signal(&p->idle);
			p->waiting = true;
			pthread_cond_wait(&p->work, &p->mu);
			p->waiting = false;
		}
		if (p->stop)
			break;
		p->busy = true;
		int fd = p->fd;
		uint64_t at = p->done;
		pthread_mutex_unlock(&p->mu);
		/* Failure is only a lost head start: the write allocates the pages itself. */
		bool ok = readahead(fd, (off64_t)at, n) == 0;
		pthread_mutex_lock(&p->mu);
		p->done = ok ? at + n : p->size;
	}
	p->busy = false;
	pthread_cond_signal(&p->idle);
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

static void destroy(struct ud_prefault *p)
{
	pthread_cond_destroy(&p->idle);
	pthread_cond_destroy(&p->work);
	pthread_mutex_destroy(&p->mu);
	free(p);
}

int ud_prefault_start(ud_prefault **out, ud_error *e)
{
	*out = NULL;
	struct ud_prefault *p = calloc(1, sizeof(*p));
	if (!p)
		return ud_oom(e);
	p->fd = -1;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->work, NULL);
	pthread_cond_init(&p->idle, NULL);
	int err = ud_thread_start(&p->thread, run, p);
	if (err) {
		destroy(p);
		return ud_fail(e, UD_EXIT_REFUSED, err, "cannot start the prefault thread");
	}
	*out = p;
	return 0;
}

void ud_prefault_file(ud_prefault *p, int fd, uint64_t size)
{
	pthread_mutex_lock(&p->mu);
	p->fd = fd;
	p->size = size;
	p->done = p->writer = 0;
	p->busy = true;
	pthread_cond_signal(&p->work);
	pthread_mutex_unlock(&p->mu);
}

void ud_prefault_progress(ud_prefault *p, uint64_t pos)
{
	pthread_mutex_lock(&p->mu);
	p->writer = pos;
	if (p->waiting)
		pthread_cond_signal(&p->work);
	pthread_mutex_unlock(&p->mu);
}

void ud_prefault_end(ud_prefault *p)
{
	pthread_mutex_lock(&p->mu);
	p->size = 0; /* no further step: the one in flight, if any, finishes */
	while (p->busy)
		pthread_cond_wait(&p->idle, &p->mu);
	p->fd = -1;
	pthread_mutex_unlock(&p->mu);
}

void ud_prefault_stop(ud_prefault *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->stop = true;
	pthread_cond_signal(&p->work);
	pthread_mutex_unlock(&p->mu);
	pthread_join(p->thread, NULL);
	destroy(p);
}
