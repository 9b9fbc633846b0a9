/* The layer cache's pure parts: member names, whiteouts, cache paths. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "export.h"

static void test_member_names(void **state)
{
	(void)state;
	static const char *const ok[] = {"a", "a/b", "./a", "a/./b", "a..b", "..a", "a/..b/c", ".wh.x"};
	static const char *const bad[] = {"",	  "/etc/passwd", "..",	"../x",
					  "a/..", "a/../b",	 "a/b/../../../c"};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		assert_true(ud_member_name_safe(ok[i]));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_false(ud_member_name_safe(bad[i]));
	assert_false(ud_member_name_safe(NULL));
}

static void test_whiteouts(void **state)
{
	(void)state;
	size_t off = 0;
	assert_int_equal(ud_whiteout_kind("etc/.wh.passwd", &off), 1);
	assert_string_equal(&"etc/.wh.passwd"[off], "passwd");
	assert_int_equal(ud_whiteout_kind(".wh.top", &off), 1);
	assert_int_equal(off, 4);
	assert_int_equal(ud_whiteout_kind("var/cache/.wh..wh..opq", NULL), 2);
	assert_int_equal(ud_whiteout_kind(".wh..wh..opq", NULL), 2);
	assert_int_equal(ud_whiteout_kind("etc/passwd", NULL), 0);
	assert_int_equal(ud_whiteout_kind("etc/.wh.", NULL), 0);
	assert_int_equal(ud_whiteout_kind("a.wh.b", NULL), 0);
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_member_names),
		cmocka_unit_test(test_whiteouts),
		cmocka_unit_test(test_cache_paths),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
