/* The reader thread and its ring: see prefetch.h. A mutex guards only the counters; the bytes
 * are copied outside it, since the producer writes only the ring's free part and the consumer
 * reads only the part it was handed. */
#include "prefetch.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "thread.h"

/* The most one read hands out: a block stays out of the producer's reach until the consumer's
 * next read, so a smaller one gives its space back sooner. */
#define MAX_BLOCK ((size_t)256 * 1024)

struct ud_prefetch {
	struct ud_prefetch_source src;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t data;  /* the producer added bytes, or ended */
	pthread_cond_t space; /* the consumer gave space back, or asks the producer to stop */
	char *ring;
	size_t cap;
	uint64_t head, tail; /* bytes produced, bytes given back; their ring offset is % cap */
	size_t held;	     /* the block the consumer holds, from tail on, given back next read */
	bool ended, failed, stop;
	ud_error err; /* the source's, when failed */
};

static size_t min3(size_t a, size_t b, size_t c)
{
	size_t m = a < b ? a : b;
	return m < c ? m : c;
}

/* Copies n bytes into the ring as space frees up; false once told to stop. */
static bool put(struct ud_prefetch *p, const char *data, size_t n)
{
	while (n) {
		pthread_mutex_lock(&p->mu);
		while (!p->stop && p->head - p->tail == p->cap)
			pthread_cond_wait(&p->space, &p->mu);
		bool stop = p->stop;
		size_t at = (size_t)(p->head % p->cap);
		size_t room = p->cap - (size_t)(p->head - p->tail);
		pthread_mutex_unlock(&p->mu);
		if (stop)
			return false;
		size_t k = min3(n, room, p->cap - at);
		memcpy(p->ring + at, data, k);
		pthread_mutex_lock(&p->mu);
		p->head += k;
		pthread_cond_signal(&p->data);
		pthread_mutex_unlock(&p->mu);
		data += k;
		n -= k;
	}
	return true;
}

static void *run(void *arg)
{
	struct ud_prefetch *p = arg;
	ud_error e = {0};
	long n;
	do {
		const void *buf;
		n = p->src.read(p->src.ctx, &buf, &e);
		if (n > 0 && !put(p, buf, (size_t)n))
			return NULL; /* stopped: nobody reads any more */
	} while (n > 0);
	pthread_mutex_lock(&p->mu);
	p->ended = true;
	if (n < 0) {
		p->failed = true;
		p->err = e;
	}
	pthread_cond_signal(&p->data);
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

static void destroy(struct ud_prefetch *p)
{
	pthread_cond_destroy(&p->space);
	pthread_cond_destroy(&p->data);
	pthread_mutex_destroy(&p->mu);
	free(p->ring);
	free(p);
}

int ud_prefetch_start(const struct ud_prefetch_source *src, size_t ring_bytes, ud_prefetch **out,
		      ud_error *e)
{
	*out = NULL;
	struct ud_prefetch *p = calloc(1, sizeof(*p));
	if (!p || !ring_bytes || !(p->ring = malloc(ring_bytes))) {
		free(p);
		return ud_oom(e);
	}
	p->src = *src;
	p->cap = ring_bytes;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->data, NULL);
	pthread_cond_init(&p->space, NULL);
	int err = ud_thread_start(&p->thread, run, p);
	if (err) {
		destroy(p);
		return ud_fail(e, UD_EXIT_REFUSED, err, "cannot start the export's reader thread");
	}
	*out = p;
	return 0;
}

long ud_prefetch_read(ud_prefetch *p, const void **buf, ud_error *e)
{
	pthread_mutex_lock(&p->mu);
	if (p->held) {
		p->tail += p->held;
		p->held = 0;
		pthread_cond_signal(&p->space);
	}
	while (p->head == p->tail && !p->ended)
		pthread_cond_wait(&p->data, &p->mu);
	long r = 0;
	if (p->head != p->tail) {
		size_t at = (size_t)(p->tail % p->cap);
		p->held = min3((size_t)(p->head - p->tail), p->cap - at, MAX_BLOCK);
		*buf = p->ring + at;
		r = (long)p->held;
	} else if (p->failed) {
		/* Only now: every byte the source gave before failing has been read. */
		if (e)
			*e = p->err;
		r = -1;
	}
	pthread_mutex_unlock(&p->mu);
	return r;
}

void ud_prefetch_stop(ud_prefetch *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->stop = true;
	bool ended = p->ended;
	pthread_cond_signal(&p->space);
	pthread_mutex_unlock(&p->mu);
	/* A source waiting for a stalled daemon would otherwise hold the join until --timeout. */
	if (!ended && p->src.interrupt)
		p->src.interrupt(p->src.ctx);
	pthread_join(p->thread, NULL);
	destroy(p);
}
