/* The export's reader thread (prefetch.c) over sources made here: bytes in order through a ring
 * far smaller than the stream, a failure delivered after the bytes before it, and a stop that
 * ends the thread at any point (reading, blocked in the source, waiting for space). */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "error.h"
#include "prefetch.h"

static unsigned char pattern(uint64_t i)
{
	return (unsigned char)(i * 7 + i / 251);
}

/* A source of `total` pattern bytes in chunks of odd sizes, then `fail` (if set) or the end;
 * or, with `block`, one that waits in its read until interrupted. */
struct fake {
	uint64_t total, given;
	const char *fail;
	bool block, endless;
	unsigned char chunk[100000];
	unsigned calls;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool interrupted;
};

static long fake_read(void *ctx, const void **buf, ud_error *e)
{
	struct fake *f = ctx;
	static const size_t sizes[] = {1, 7, 4096, 100000, 3, 65536, 511};
	if (f->block) {
		pthread_mutex_lock(&f->mu);
		while (!f->interrupted)
			pthread_cond_wait(&f->cv, &f->mu);
		pthread_mutex_unlock(&f->mu);
		return ud_fail(e, UD_EXIT_DAEMON, 0, "interrupted");
	}
	size_t n = sizes[f->calls++ % (sizeof(sizes) / sizeof(sizes[0]))];
	if (!f->endless && n > f->total - f->given)
		n = (size_t)(f->total - f->given);
	if (n == 0)
		return f->fail ? ud_fail(e, UD_EXIT_DAEMON, 0, "%s", f->fail) : 0;
	for (size_t i = 0; i < n; i++)
		f->chunk[i] = pattern(f->given + i);
	f->given += n;
	*buf = f->chunk;
	return (long)n;
}

static void fake_interrupt(void *ctx)
{
	struct fake *f = ctx;
	pthread_mutex_lock(&f->mu);
	f->interrupted = true;
	pthread_cond_signal(&f->cv);
	pthread_mutex_unlock(&f->mu);
}

static struct fake *fake_new(uint64_t total)
{
	struct fake *f = test_calloc(1, sizeof(*f));
	f->total = total;
	pthread_mutex_init(&f->mu, NULL);
	pthread_cond_init(&f->cv, NULL);
	return f;
}

static void fake_free(struct fake *f)
{
	pthread_cond_destroy(&f->cv);
	pthread_mutex_destroy(&f->mu);
	test_free(f);
}

static ud_prefetch *start(struct fake *f, size_t ring)
{
	const struct ud_prefetch_source src = {fake_read, fake_interrupt, f};
	ud_prefetch *p = NULL;
	ud_error e = {0};
	assert_int_equal(ud_prefetch_start(&src, ring, &p, &e), 0);
	assert_non_null(p);
	return p;
}

/* Reads to the end (or failure), checking every byte; returns the last read's result. */
static long drain(ud_prefetch *p, uint64_t *got, ud_error *e)
{
	const void *buf;
	long n;
	while ((n = ud_prefetch_read(p, &buf, e)) > 0) {
		const unsigned char *b = buf;
		for (long i = 0; i < n; i++) {
			unsigned long long at = *got + (uint64_t)i;
			if (b[i] != pattern(at))
				fail_msg("byte %llu differs", at);
		}
		*got += (uint64_t)n;
	}
	return n;
}

static void test_bytes_in_order(void **state)
{
	(void)state;
	/* 5 MB through rings of 64 KB and of 1000 bytes (not a divisor of any chunk size): the
	 * ring wraps and fills again and again. */
	static const size_t rings[] = {64 * 1024, 1000};
	for (size_t r = 0; r < 2; r++) {
		struct fake *f = fake_new(5 << 20);
		ud_prefetch *p = start(f, rings[r]);
		uint64_t got = 0;
		ud_error e = {0};
		assert_int_equal(drain(p, &got, &e), 0);
		assert_int_equal(got, 5 << 20);
		const void *buf;
		assert_int_equal(ud_prefetch_read(p, &buf, &e), 0); /* the end stays the end */
		ud_prefetch_stop(p);
		fake_free(f);
	}
}

static void test_empty_source(void **state)
{
	(void)state;
	struct fake *f = fake_new(0);
	ud_prefetch *p = start(f, 4096);
	const void *buf;
	ud_error e = {0};
	assert_int_equal(ud_prefetch_read(p, &buf, &e), 0);
	ud_prefetch_stop(p);
	fake_free(f);
}

static void test_failure_after_the_bytes_before_it(void **state)
{
	(void)state;
	struct fake *f = fake_new(300000);
	f->fail = "daemon at unix:///x: GET /images/y/get: stalled (timed out)";
	ud_prefetch *p = start(f, 8192);
	uint64_t got = 0;
	ud_error e = {0};
	assert_int_equal(drain(p, &got, &e), -1);
	assert_int_equal(got, 300000);
	assert_int_equal(e.status, UD_EXIT_DAEMON);
	assert_string_equal(e.msg, f->fail);
	ud_prefetch_stop(p);
	fake_free(f);
}

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void test_stop_interrupts_a_waiting_source(void **state)
{
	(void)state;
	/* The daemon stalls and the consumer gives up first (a hostile member, say): the stop
	 * must not wait for the source's own timeout. */
	struct fake *f = fake_new(0);
	f->block = true;
	ud_prefetch *p = start(f, 4096);
	double t0 = now();
	ud_prefetch_stop(p);
	assert_true(f->interrupted);
	assert_true(now() - t0 < 2.0);
	fake_free(f);
}

static void test_stop_while_the_ring_is_full(void **state)
{
	(void)state;
	/* An endless source, a consumer that read one block and stopped: the thread waits for
	 * space, and the stop alone (no interrupt callback) must end it. */
	struct fake *f = fake_new(0);
	f->endless = true;
	const struct ud_prefetch_source src = {fake_read, NULL, f};
	ud_prefetch *p = NULL;
	ud_error e = {0};
	assert_int_equal(ud_prefetch_start(&src, 4096, &p, &e), 0);
	const void *buf;
	assert_true(ud_prefetch_read(p, &buf, &e) > 0);
	struct timespec pause = {0, 20 * 1000 * 1000};
	nanosleep(&pause, NULL); /* lets the thread fill the ring and wait */
	ud_prefetch_stop(p);
	fake_free(f);
}

static void test_stop_before_any_read(void **state)
{
	(void)state;
	struct fake *f = fake_new(1 << 20);
	ud_prefetch_stop(start(f, 4096));
	ud_prefetch_stop(NULL);
	fake_free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bytes_in_order),
		cmocka_unit_test(test_empty_source),
		cmocka_unit_test(test_failure_after_the_bytes_before_it),
		cmocka_unit_test(test_stop_interrupts_a_waiting_source),
		cmocka_unit_test(test_stop_while_the_ring_is_full),
		cmocka_unit_test(test_stop_before_any_read),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
