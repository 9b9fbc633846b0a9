/* The layer cache's pure parts: member names, whiteouts, cache paths, name lengths, sizes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cache_trust.h"
#include "export.h"

static void test_member_names(void **state)
{
	(void)state;
	static const char *const ok[] = {"a", "a/b", "./a", "a/./b", "a..b", "..a", "a/..b/c", ".wh.x"};
	static const char *const bad[] = {"",	  "/etc/passwd", "..",	"../x",
					  "a/..", "a/../b",	 "a/b/../../../c"};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		assert_true(ud_layer_member_name_safe(ok[i]));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_false(ud_layer_member_name_safe(bad[i]));
	assert_false(ud_layer_member_name_safe(NULL));
}

static void test_whiteouts(void **state)
{
	(void)state;
	size_t off = 0;
	assert_int_equal(ud_layer_whiteout_kind("etc/.wh.passwd", &off), 1);
	assert_string_equal(&"etc/.wh.passwd"[off], "passwd");
	assert_int_equal(ud_layer_whiteout_kind(".wh.top", &off), 1);
	assert_int_equal(off, 4);
	assert_int_equal(ud_layer_whiteout_kind("var/cache/.wh..wh..opq", NULL), 2);
	assert_int_equal(ud_layer_whiteout_kind(".wh..wh..opq", NULL), 2);
	assert_int_equal(ud_layer_whiteout_kind("etc/passwd", NULL), 0);
	assert_int_equal(ud_layer_whiteout_kind("etc/.wh.", NULL), 0);
	assert_int_equal(ud_layer_whiteout_kind("a.wh.b", NULL), 0);
}

static void test_cache_paths(void **state)
{
	(void)state;
	char buf[256];
	const char *d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
	assert_int_equal(ud_cache_layer_path("/var/cache/x", d, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "/var/cache/x/sha256/"
				 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
	assert_null(strchr(buf + 1, ':'));
	assert_int_equal(ud_cache_layer_path("/c", "sha256:abc", buf, sizeof(buf)), -1);
	assert_int_equal(ud_cache_layer_path("/c", "sha512:0123", buf, sizeof(buf)), -1);
	assert_int_equal(
		ud_cache_layer_path("/c",
				    "sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
				    buf, sizeof(buf)),
		-1);
	assert_int_equal(ud_cache_layer_path("/c", "sha256:../../../../etc/passwd/0123456789abcdef0123456789abcdef0123456", buf, sizeof(buf)), -1);
	assert_int_equal(ud_cache_layer_path("/c", d, buf, 10), -1);
}

static void test_name_fits(void **state)
{
	(void)state;
	char buf[5000];
	assert_true(ud_layer_name_fits("a/b/c"));
	memset(buf, 'n', 255);
	buf[255] = '\0';
	assert_true(ud_layer_name_fits(buf));
	buf[255] = 'n';
	buf[256] = '\0';
	assert_false(ud_layer_name_fits(buf)); /* one component of 256 */
	for (size_t i = 0; i < 4095; i++)
		buf[i] = i % 100 == 99 ? '/' : 'x';
	buf[4095] = '\0';
	assert_true(ud_layer_name_fits(buf)); /* 4095 bytes: fits with its NUL */
	buf[4095] = 'x';
	buf[4096] = '\0';
	assert_false(ud_layer_name_fits(buf));
	assert_true(ud_layer_name_fits("a//b///c"));
}

static void test_sizes(void **state)
{
	(void)state;
	uint64_t v = 0;
	assert_int_equal(ud_layer_parse_size("123", &v), 0);
	assert_int_equal(v, 123);
	assert_int_equal(ud_layer_parse_size("16G", &v), 0);
	assert_true(v == 16ULL << 30);
	assert_int_equal(ud_layer_parse_size("2k", &v), 0);
	assert_int_equal(v, 2048);
	assert_int_equal(ud_layer_parse_size("512MiB", &v), 0);
	assert_true(v == 512ULL << 20);
	assert_int_equal(ud_layer_parse_size("1TB", &v), 0);
	assert_true(v == 1ULL << 40);
	static const char *const bad[] = {"", "0", "-1", "1X", "1GG", "G", "1 G", "99999999999P",
					  "18446744073709551616", " 1"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(ud_layer_parse_size(bad[i], &v), -1);
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
	assert_false(ud_cache_trust_record_alive("mnt-1-00000000000000000000000000000000-7", &valid));
	assert_true(valid);
	/* The previous format: the inode alone (this one is nobody's). */
	assert_false(ud_cache_trust_record_alive("mnt-1", &valid));
	assert_true(valid);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_member_names),
		cmocka_unit_test(test_whiteouts),
		cmocka_unit_test(test_cache_paths),
		cmocka_unit_test(test_name_fits),
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_record_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
