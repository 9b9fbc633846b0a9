/* sha256 on its own thread (hasher.c): the digest of data submitted in blocks of every size
 * equals the one-shot digest, a lent buffer is not lent again before the next one, and a stop
 * at any point ends the thread. */
#include <openssl/evp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "error.h"
#include "hasher.h"

static void one_shot(const unsigned char *data, size_t len, char hex[65])
{
	unsigned char md[32];
	EVP_Digest(data, len, md, NULL, EVP_sha256(), NULL);
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

static void test_digest_matches(void **state)
{
	(void)state;
	static unsigned char data[3 << 20];
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (unsigned char)(i * 131 + i / 4093);
	static const size_t sizes[] = {0, 1, 511, 65536, 4096, 12345, 65535};
	char want[65], got[65];
	one_shot(data, sizeof(data), want);
	ud_hasher *h = NULL;
	ud_error e = {0};
	assert_int_equal(ud_hasher_start(&h, &e), 0);
	void *prev = NULL;
	size_t off = 0;
	for (unsigned k = 0; off < sizeof(data); k++) {
		size_t cap;
		char *b = ud_hasher_buffer(h, &cap);
		assert_true(cap >= 65536);
		assert_ptr_not_equal(b, prev); /* the one handed back last is still the caller's */
		size_t n = sizes[k % (sizeof(sizes) / sizeof(sizes[0]))];
		if (n > sizeof(data) - off)
			n = sizeof(data) - off;
		memcpy(b, data + off, n);
		if (n) { /* an empty read submits nothing: the same buffer comes back */
			ud_hasher_submit(h, n);
			prev = b;
		}
		off += n;
	}
	ud_hasher_final(h, got);
	assert_string_equal(got, want);
	ud_hasher_stop(h);
}

static void test_empty_stream(void **state)
{
	(void)state;
	char want[65], got[65];
	one_shot((const unsigned char *)"", 0, want);
	ud_hasher *h = NULL;
	assert_int_equal(ud_hasher_start(&h, NULL), 0);
	ud_hasher_final(h, got);
	assert_string_equal(got, want);
	ud_hasher_stop(h);
}

static void test_stop_mid_stream(void **state)
{
	(void)state;
	/* A failed unpack stops the hasher with blocks still queued, or right after its start. */
	ud_hasher *h = NULL;
	assert_int_equal(ud_hasher_start(&h, NULL), 0);
	for (int i = 0; i < 20; i++) {
		size_t cap;
		char *b = ud_hasher_buffer(h, &cap);
		memset(b, i, cap);
		ud_hasher_submit(h, cap);
	}
	ud_hasher_stop(h);
	assert_int_equal(ud_hasher_start(&h, NULL), 0);
	ud_hasher_stop(h);
	ud_hasher_stop(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_digest_matches),
		cmocka_unit_test(test_empty_stream),
		cmocka_unit_test(test_stop_mid_stream),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
