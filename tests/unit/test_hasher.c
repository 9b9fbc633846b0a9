/* sha256 on its own thread (hasher.c): the digest of data handed in blocks of every size equals
 * the one-shot digest, a block's memory is the caller's again after ud_hasher_wait(), and a stop
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

static void fill(unsigned char *b, size_t n, size_t from)
{
	for (size_t i = 0; i < n; i++)
		b[i] = (unsigned char)((from + i) * 131 + (from + i) / 4093);
}

static void test_digest_matches(void **state)
{
	(void)state;
	/* Every block goes through one reused buffer, overwritten right after each wait: the
	 * digest is right only if the thread had hashed the block by then. */
	static unsigned char all[3 << 20], block[100000];
	static const size_t sizes[] = {0, 1, 511, 65536, 4096, 12345, 100000, 65535};
	fill(all, sizeof(all), 0);
	char want[65], got[65];
	one_shot(all, sizeof(all), want);
	ud_hasher *h = NULL;
	ud_error e = {0};
	assert_int_equal(ud_hasher_start(&h, &e), 0);
	size_t off = 0;
	for (unsigned k = 0; off < sizeof(all); k++) {
		size_t n = sizes[k % (sizeof(sizes) / sizeof(sizes[0]))];
		if (n > sizeof(all) - off)
			n = sizeof(all) - off;
		ud_hasher_wait(h);
		fill(block, n, off);
		ud_hasher_update(h, block, n);
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
	/* A failed unpack stops the hasher with a block in flight, or right after its start. */
	static unsigned char block[1 << 20];
	ud_hasher *h = NULL;
	assert_int_equal(ud_hasher_start(&h, NULL), 0);
	for (int i = 0; i < 20; i++)
		ud_hasher_update(h, block, sizeof(block));
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
