/* The layer cache's pure parts (cache.c, cache_trust.c): layer paths, digests, use record names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cache.h"
#include "cache_trust.h"

static void test_cache_paths(void **state)
{
	(void)state;
	char buf[256];
	const char *d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
	assert_int_equal(ud_cache_layer_path("/var/cache/x", d, buf, sizeof(buf)), 0);
	assert_string_equal(buf,
			    "/var/cache/x/sha256/"
			    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
	assert_null(strchr(buf + 1, ':'));
	assert_int_equal(ud_cache_layer_path("/c", "sha256:abc", buf, sizeof(buf)), -1);
	assert_int_equal(ud_cache_layer_path("/c", "sha512:0123", buf, sizeof(buf)), -1);
	assert_int_equal(
		ud_cache_layer_path(
			"/c",
			"sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
			buf, sizeof(buf)),
		-1);
	assert_int_equal(
		ud_cache_layer_path(
			"/c",
			"sha256:../../../../etc/passwd/0123456789abcdef0123456789abcdef0123456",
			buf, sizeof(buf)),
		-1);
	assert_int_equal(ud_cache_layer_path("/c", d, buf, 10), -1);
}

static void test_digest_hex(void **state)
{
	(void)state;
	const char *d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
	assert_ptr_equal(ud_cache_digest_hex(d), d + 7);
	assert_null(ud_cache_digest_hex("sha256:0123"));
	assert_true(ud_cache_is_hex(d + 7));
	assert_false(ud_cache_is_hex(
		"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0"));
	assert_true(ud_cache_is_hex(
		"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.tar"));
	assert_false(ud_cache_is_hex(
		"0123456789abcdeF0123456789abcdef0123456789abcdef0123456789abcdef"));
}

static void test_record_names(void **state)
{
	(void)state;
	bool valid = true;
	static const char *const junk[] = {"mnt-", "mnt-x", "prune.lock", "mnt-12-abc-3",
					   "mnt-12-0123456789abcdef0123456789abcdef-"};
	for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
		assert_false(ud_cache_trust_record_alive(junk[i], &valid));
		assert_false(valid);
	}
	/* Another boot's record is dead whatever its inode. */
	assert_false(
		ud_cache_trust_record_alive("mnt-1-00000000000000000000000000000000-7", &valid));
	assert_true(valid);
	/* The previous format: the inode alone (this one is nobody's). */
	assert_false(ud_cache_trust_record_alive("mnt-1", &valid));
	assert_true(valid);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cache_paths),
		cmocka_unit_test(test_digest_hex),
		cmocka_unit_test(test_record_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
