/* The small-file writers: see smallw.h. The mutex guards the queue and the first failure; the
 * set of queued names is the reading thread's alone. */
#include "smallw.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "thread.h"
#include "util.h"

#define WRITERS 2
/* In flight at most: enough for the writers never to wait on the reader within a directory of
 * small files, little memory beside the export's ring. */
#define QUEUE_FILES 256
#define QUEUE_BYTES ((size_t)8 * 1024 * 1024)
/* Names remembered between two waits; at the limit the reader waits, which empties the set. */
#define SET_SLOTS 8192
#define SET_LIMIT (SET_SLOTS / 2)

struct job {
	char *name; /* the set's copy */
	void *data;
	size_t len;
	uid_t uid;
	gid_t gid;
	mode_t mode;
	struct timespec times[2];
};

struct ud_smallw {
	int rootfd;
	pthread_t threads[WRITERS];
	int n_threads;
	pthread_mutex_t mu;
	pthread_cond_t work, room, idle;
	struct job q[QUEUE_FILES];
	size_t head, count, bytes;
	int busy;
	bool stop;
	int err; /* the first failure: errno, and what it was */
	char err_name[256];
	const char *err_op;
	char *set[SET_SLOTS];
	size_t set_n;
};

/* ---------------------------------------------------------------- the names queued */

static size_t hash(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ULL;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
	return (size_t)h & (SET_SLOTS - 1);
}

/* The slot of s[0..n), or the empty one where it would go. */
static size_t slot(char *const *set, const char *s, size_t n)
{
	size_t i = hash(s, n);
	while (set[i] && (strncmp(set[i], s, n) != 0 || set[i][n] != '\0'))
		i = (i + 1) & (SET_SLOTS - 1);
	return i;
}

static void set_clear(struct ud_smallw *w)
{
	for (size_t i = 0; i < SET_SLOTS && w->set_n; i++)
		if (w->set[i]) {
			free(w->set[i]);
			w->set[i] = NULL;
			w->set_n--;
		}
}

bool ud_smallw_pending(const ud_smallw *w, const char *path)
{
	if (!w || !w->set_n)
		return false;
	for (const char *p = path;; p++)
		if (*p == '/' || *p == '\0') {
			size_t n = (size_t)(p - path);
			if (n && w->set[slot(w->set, path, n)])
				return true;
			if (!*p)
				return false;
		}
}

/* ---------------------------------------------------------------- one file */

static void failed(struct ud_smallw *w, const struct job *j, const char *op, int err)
{
	pthread_mutex_lock(&w->mu);
	if (!w->err) {
		w->err = err ? err : EIO;
		w->err_op = op;
		snprintf(w->err_name, sizeof(w->err_name), "%s", j->name);
	}
	pthread_mutex_unlock(&w->mu);
}

/* A file of that name is there already (named twice in the tar): it goes, as libarchive's
 * writer replaces it; a directory only if empty. Its directory is reached without symlinks. */
static int unlink_existing(int rootfd, const char *name)
{
	const char *slash = strrchr(name, '/');
	char dir[4096];
	snprintf(dir, sizeof(dir), "%.*s", slash ? (int)(slash - name) : 1, slash ? name : ".");
	ud_autoclose int d = ud_openat2(rootfd, dir, O_PATH | O_DIRECTORY | O_CLOEXEC,
					RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS);
	const char *base = slash ? slash + 1 : name;
	if (d < 0)
		return -1;
	if (unlinkat(d, base, 0) == 0)
		return 0;
	return errno == EISDIR ? unlinkat(d, base, AT_REMOVEDIR) : -1;
}

static int create(int rootfd, const char *name)
{
	struct open_how how = {.flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
			       .mode = 0600,
			       .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS};
	for (int tries = 0; tries < 64; tries++) {
		int fd = (int)syscall(SYS_openat2, rootfd, name, &how, sizeof(how));
		if (fd >= 0 || (errno != EAGAIN && errno != EEXIST))
			return fd;
		if (errno == EEXIST && (tries > 0 || unlink_existing(rootfd, name) < 0))
			return -1;
	}
	return -1;
}

/* The metadata as libarchive's writer sets it: failures to set it are its warnings, not
 * errors; set-id bits stay only on a file whose owner is the tar's. */
static void write_file(struct ud_smallw *w, const struct job *j)
{
	ud_autoclose int fd = create(w->rootfd, j->name);
	if (fd < 0) {
		failed(w, j, "creating it", errno);
		return;
	}
	for (size_t off = 0; off < j->len;) {
		ssize_t n = write(fd, (const char *)j->data + off, j->len - off);
		if (n <= 0) {
			failed(w, j, "writing it", n < 0 ? errno : EIO);
			return;
		}
		off += (size_t)n;
	}
	mode_t mode = j->mode & 07777;
	if (fchown(fd, j->uid, j->gid) < 0)
		mode &= ~(mode_t)(S_ISUID | S_ISGID);
	(void)fchmod(fd, mode);
	(void)futimens(fd, j->times);
	if (close(ud_steal_fd(&fd)) < 0)
		failed(w, j, "closing it", errno);
}

/* ---------------------------------------------------------------- the threads */

static void *run(void *arg)
{
	struct ud_smallw *w = arg;
	pthread_mutex_lock(&w->mu);
	for (;;) {
		while (!w->stop && !w->count)
			pthread_cond_wait(&w->work, &w->mu);
		if (!w->count)
			break;
		struct job j = w->q[w->head];
		w->head = (w->head + 1) % QUEUE_FILES;
		w->count--;
		w->busy++;
		bool skip = w->err != 0; /* after a failure the layer is thrown away anyway */
		pthread_mutex_unlock(&w->mu);
		if (!skip)
			write_file(w, &j);
		free(j.data);
		pthread_mutex_lock(&w->mu);
		w->bytes -= j.len;
		w->busy--;
		pthread_cond_signal(&w->room);
		if (!w->count && !w->busy)
			pthread_cond_broadcast(&w->idle);
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

int ud_smallw_start(ud_smallw **out, int rootfd, ud_error *e)
{
	*out = NULL;
	struct ud_smallw *w = calloc(1, sizeof(*w));
	if (!w)
		return ud_oom(e);
	w->rootfd = rootfd;
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->work, NULL);
	pthread_cond_init(&w->room, NULL);
	pthread_cond_init(&w->idle, NULL);
	for (; w->n_threads < WRITERS; w->n_threads++) {
		int err = ud_thread_start(&w->threads[w->n_threads], run, w);
		if (err) {
			ud_smallw_stop(w);
			return ud_fail(e, UD_EXIT_REFUSED, err, "cannot start the file writers");
		}
	}
	*out = w;
	return 0;
}

static int failure(struct ud_smallw *w, ud_error *e)
{
	return ud_fail(e, UD_EXIT_STORAGE, w->err, "member '%s': %s", w->err_name, w->err_op);
}

int ud_smallw_add(ud_smallw *w, const struct ud_smallw_file *f, ud_error *e)
{
	if (w->set_n >= SET_LIMIT && ud_smallw_wait(w, e) < 0) {
		free(f->data);
		return -1;
	}
	size_t len = strlen(f->name);
	size_t i = slot(w->set, f->name, len);
	char *name = w->set[i] ? NULL : strdup(f->name);
	if (!w->set[i] && !name) {
		free(f->data);
		return ud_oom(e);
	}
	/* Named twice since the last wait: the caller waits before it comes here again. */
	if (name) {
		w->set[i] = name;
		w->set_n++;
	}
	struct job j = {
		w->set[i], f->data, f->len, f->uid, f->gid, f->mode, {f->times[0], f->times[1]}};
	pthread_mutex_lock(&w->mu);
	while (!w->err && (w->count == QUEUE_FILES || (w->count && w->bytes + j.len > QUEUE_BYTES)))
		pthread_cond_wait(&w->room, &w->mu);
	if (w->err) {
		int r = failure(w, e);
		pthread_mutex_unlock(&w->mu);
		free(j.data);
		return r;
	}
	w->q[(w->head + w->count) % QUEUE_FILES] = j;
	w->count++;
	w->bytes += j.len;
	pthread_cond_signal(&w->work);
	pthread_mutex_unlock(&w->mu);
	return 0;
}

int ud_smallw_wait(ud_smallw *w, ud_error *e)
{
	if (!w)
		return 0;
	pthread_mutex_lock(&w->mu);
	while (w->count || w->busy)
		pthread_cond_wait(&w->idle, &w->mu);
	int r = w->err ? failure(w, e) : 0;
	pthread_mutex_unlock(&w->mu);
	set_clear(w);
	return r;
}

void ud_smallw_stop(ud_smallw *w)
{
	if (!w)
		return;
	ud_smallw_wait(w, NULL);
	pthread_mutex_lock(&w->mu);
	w->stop = true;
	pthread_cond_broadcast(&w->work);
	pthread_mutex_unlock(&w->mu);
	for (int i = 0; i < w->n_threads; i++)
		pthread_join(w->threads[i], NULL);
	pthread_cond_destroy(&w->idle);
	pthread_cond_destroy(&w->room);
	pthread_cond_destroy(&w->work);
	pthread_mutex_destroy(&w->mu);
	free(w);
}
