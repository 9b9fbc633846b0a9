/* The hasher thread: see hasher.h. One block in flight: `data` is set while the thread may read
 * it, NULL once hashed; the mutex guards that pointer, the caller's memory is read outside it. */
#include "hasher.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "cr.h"
#include "thread.h"

struct ud_hasher {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t work; /* a block was handed, or stop */
	pthread_cond_t done; /* the block was hashed */
	const void *data;    /* the block to hash; NULL when there is none */
	size_t len;
	bool stop;
	EVP_MD_CTX *md;
};

static void *run(void *arg)
{
	struct ud_hasher *h = arg;
	pthread_mutex_lock(&h->mu);
	for (;;) {
		while (!h->data && !h->stop)
			pthread_cond_wait(&h->work, &h->mu);
		if (!h->data)
			break; /* stopped, nothing left */
		const void *data = h->data;
		size_t len = h->len;
		pthread_mutex_unlock(&h->mu);
		ud_cr.EVP_DigestUpdate(h->md, data, len);
		pthread_mutex_lock(&h->mu);
		h->data = NULL;
		pthread_cond_signal(&h->done);
	}
	pthread_mutex_unlock(&h->mu);
	return NULL;
}

static void destroy(struct ud_hasher *h)
{
	pthread_cond_destroy(&h->done);
	pthread_cond_destroy(&h->work);
	pthread_mutex_destroy(&h->mu);
	ud_cr.EVP_MD_CTX_free(h->md);
	free(h);
}

int ud_hasher_start(ud_hasher **out, ud_error *e)
{
	*out = NULL;
	if (ud_cr_load(e) < 0)
		return -1;
	struct ud_hasher *h = calloc(1, sizeof(*h));
	if (!h)
		return ud_oom(e);
	pthread_mutex_init(&h->mu, NULL);
	pthread_cond_init(&h->work, NULL);
	pthread_cond_init(&h->done, NULL);
	if (!(h->md = ud_cr.EVP_MD_CTX_new()) || !ud_cr.EVP_DigestInit_ex(h->md, ud_cr.EVP_sha256(), NULL)) {
		destroy(h);
		return ud_oom(e);
	}
	int err = ud_thread_start(&h->thread, run, h);
	if (err) {
		destroy(h);
		return ud_fail(e, UD_EXIT_REFUSED, err, "cannot start the hashing thread");
	}
	*out = h;
	return 0;
}

void ud_hasher_wait(ud_hasher *h)
{
	pthread_mutex_lock(&h->mu);
	while (h->data)
		pthread_cond_wait(&h->done, &h->mu);
	pthread_mutex_unlock(&h->mu);
}

void ud_hasher_update(ud_hasher *h, const void *data, size_t len)
{
	if (!len)
		return;
	pthread_mutex_lock(&h->mu);
	while (h->data)
		pthread_cond_wait(&h->done, &h->mu);
	h->data = data;
	h->len = len;
	pthread_cond_signal(&h->work);
	pthread_mutex_unlock(&h->mu);
}

void ud_hasher_final(ud_hasher *h, char hex[65])
{
	ud_hasher_wait(h); /* the thread is idle from here on: the context is ours */
	unsigned char digest[32];
	ud_cr.EVP_DigestFinal_ex(h->md, digest, NULL);
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", digest[i]);
}

void ud_hasher_stop(ud_hasher *h)
{
	if (!h)
		return;
	pthread_mutex_lock(&h->mu);
	h->stop = true;
	pthread_cond_signal(&h->work);
	pthread_mutex_unlock(&h->mu);
	/* After the block in flight, if any: never a wait on input. */
	pthread_join(h->thread, NULL);
	destroy(h);
}
