/* The hasher thread: see hasher.h. NBUF buffers lent round robin; the counters say which are
 * filled and which hashed, and a mutex guards only them: the thread reads a buffer only
 * between its submission and its hashed count, when the caller does not write it. */
#include "hasher.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "thread.h"

#define NBUF 8
#define BUF_SIZE ((size_t)64 * 1024)

struct ud_hasher {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t work; /* a buffer was submitted, or stop */
	pthread_cond_t done; /* a buffer was hashed */
	uint64_t submitted, hashed;
	bool stop;
	EVP_MD_CTX *md;
	size_t len[NBUF];
	char buf[NBUF][BUF_SIZE];
};

static void *run(void *arg)
{
	struct ud_hasher *h = arg;
	pthread_mutex_lock(&h->mu);
	for (;;) {
		while (h->hashed == h->submitted && !h->stop)
			pthread_cond_wait(&h->work, &h->mu);
		if (h->hashed == h->submitted)
			break; /* stopped, nothing left */
		size_t i = (size_t)(h->hashed % NBUF);
		pthread_mutex_unlock(&h->mu);
		EVP_DigestUpdate(h->md, h->buf[i], h->len[i]);
		pthread_mutex_lock(&h->mu);
		h->hashed++;
		pthread_cond_signal(&h->done);
	}
	pthread_mutex_unlock(&h->mu);
	return NULL;
}

int ud_hasher_start(ud_hasher **out, ud_error *e)
{
	*out = NULL;
	struct ud_hasher *h = calloc(1, sizeof(*h));
	if (!h || !(h->md = EVP_MD_CTX_new()) || !EVP_DigestInit_ex(h->md, EVP_sha256(), NULL)) {
		if (h)
			EVP_MD_CTX_free(h->md);
		free(h);
		return ud_oom(e);
	}
	pthread_mutex_init(&h->mu, NULL);
	pthread_cond_init(&h->work, NULL);
	pthread_cond_init(&h->done, NULL);
	int err = ud_thread_start(&h->thread, run, h);
	if (err) {
		pthread_cond_destroy(&h->done);
		pthread_cond_destroy(&h->work);
		pthread_mutex_destroy(&h->mu);
		EVP_MD_CTX_free(h->md);
		free(h);
		return ud_fail(e, UD_EXIT_REFUSED, err, "cannot start the hashing thread");
	}
	*out = h;
	return 0;
}

void *ud_hasher_buffer(ud_hasher *h, size_t *size)
{
	pthread_mutex_lock(&h->mu);
	while (h->submitted - h->hashed == NBUF)
		pthread_cond_wait(&h->done, &h->mu);
	size_t i = (size_t)(h->submitted % NBUF);
	pthread_mutex_unlock(&h->mu);
	*size = BUF_SIZE;
	return h->buf[i];
}

void ud_hasher_submit(ud_hasher *h, size_t len)
{
	pthread_mutex_lock(&h->mu);
	h->len[h->submitted % NBUF] = len;
	h->submitted++;
	pthread_cond_signal(&h->work);
	pthread_mutex_unlock(&h->mu);
}

void ud_hasher_final(ud_hasher *h, char hex[65])
{
	pthread_mutex_lock(&h->mu);
	while (h->hashed != h->submitted)
		pthread_cond_wait(&h->done, &h->mu);
	pthread_mutex_unlock(&h->mu);
	unsigned char digest[32];
	EVP_DigestFinal_ex(h->md, digest, NULL);
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
	/* Whatever was submitted is hashed first: at most NBUF blocks, never a wait on input. */
	pthread_join(h->thread, NULL);
	pthread_cond_destroy(&h->done);
	pthread_cond_destroy(&h->work);
	pthread_mutex_destroy(&h->mu);
	EVP_MD_CTX_free(h->md);
	free(h);
}
