/* The layer cache's pure parts (cache.c, cache_trust.c): layer paths, digests, use record names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "cache.h"
#include "cache_trust.h"
#include "nslive.h"

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
	/* Alive: inode 1 with id 7, inode 2 whose id the kernel did not tell. */
	struct ud_ns_key keys[] = {{1, 7}, {2, 0}};
	struct ud_nslive live = {keys, 2};
	static const char *const junk[] = {"mnt-", "mnt-x", "prune.lock", "mnt-12-abc-3",
					   "mnt-12-0123456789abcdef0123456789abcdef-"};
	for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
		assert_false(ud_cache_trust_record_alive(junk[i], &live, &valid));
		assert_false(valid);
	}
	/* Another boot's record is dead whatever its inode. */
	assert_false(ud_cache_trust_record_alive("mnt-1-00000000000000000000000000000000-7", &live,
						 &valid));
	assert_true(valid);
	/* The previous format: the inode alone. */
	assert_false(ud_cache_trust_record_alive("mnt-3", &live, &valid));
	assert_true(valid);
	assert_true(ud_cache_trust_record_alive("mnt-1", &live, &valid));
	assert_true(valid);
	/* This boot: inode and id must both match; an unknown id on either side matches any. */
	char name[128];
	struct stat st;
	assert_int_equal(stat("/proc/self/ns/mnt", &st), 0);
	int fd = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(ud_cache_trust_record_name(fd, name, sizeof(name), NULL), 0);
	close(fd);
	char boot[64];
	unsigned long ino;
	assert_int_equal(sscanf(name, "mnt-%lu-%32[0-9a-f]-", &ino, boot), 2);
	char rec[128];
	snprintf(rec, sizeof(rec), "mnt-1-%s-7", boot);
	assert_true(ud_cache_trust_record_alive(rec, &live, &valid));
	snprintf(rec, sizeof(rec), "mnt-1-%s-8", boot);
	assert_false(ud_cache_trust_record_alive(rec, &live, &valid));
	snprintf(rec, sizeof(rec), "mnt-1-%s-0", boot);
	assert_true(ud_cache_trust_record_alive(rec, &live, &valid));
	snprintf(rec, sizeof(rec), "mnt-2-%s-9", boot);
	assert_true(ud_cache_trust_record_alive(rec, &live, &valid));
	snprintf(rec, sizeof(rec), "mnt-4-%s-7", boot);
	assert_false(ud_cache_trust_record_alive(rec, &live, &valid));
}

/* The live set of a real system holds our own namespace and one pinned by an fd we hold. */
static void test_nslive_scan(void **state)
{
	(void)state;
	struct ud_nslive live;
	ud_error e = {0};
	assert_int_equal(ud_nslive_scan(&live, &e), 0);
	struct stat st;
	assert_int_equal(stat("/proc/self/ns/mnt", &st), 0);
	int fd = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_true(ud_nslive_has(&live, (unsigned long)st.st_ino, ud_nslive_id(fd)));
	close(fd);
	assert_false(ud_nslive_has(&live, 1, 0));
	ud_nslive_free(&live);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cache_paths),
		cmocka_unit_test(test_digest_hex),
		cmocka_unit_test(test_record_names),
		cmocka_unit_test(test_nslive_scan),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
