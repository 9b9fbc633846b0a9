/* Unit tests for tmpfsopt.c: docker run's --tmpfs DST[:OPTS] (split by libmount's option-string
 * functions, checked here) and --shm-size. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tmpfsopt.h"

#define DEFAULT_ATTRS (MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC)

static void ok(const char *arg, const char *dst, const char *data, unsigned attrs)
{
	struct ud_op op;
	ud_error e;
	if (ud_tmpfs_parse(arg, "tmpfs", &op, &e) < 0)
		fail_msg("'%s' refused: %s", arg, e.msg);
	assert_int_equal(op.type, UD_OP_TMPFS);
	assert_string_equal(op.dst, dst);
	assert_string_equal(op.data, data);
	if (op.attrs != attrs)
		fail_msg("'%s': attrs 0x%x, expected 0x%x", arg, op.attrs, attrs);
	assert_int_equal(op.readonly, (attrs & MOUNT_ATTR_RDONLY) != 0);
	free(op.dst);
	free(op.data);
}

static void refused(const char *arg, const char *word)
{
	struct ud_op op;
	ud_error e;
	if (ud_tmpfs_parse(arg, "tmpfs", &op, &e) == 0)
		fail_msg("'%s' accepted: %s", arg, op.data);
	assert_int_equal(e.status, UD_EXIT_USAGE);
	assert_null(op.dst);
	assert_null(op.data);
	if (!strstr(e.msg, word) || strncmp(e.msg, "--tmpfs '", 9))
		fail_msg("'%s': message '%s' lacks '%s'", arg, e.msg, word);
}

static void test_defaults(void **state)
{
	(void)state;
	ok("/scratch", "/scratch", "mode=1777", DEFAULT_ATTRS);
	ok("/scratch:", "/scratch", "mode=1777", DEFAULT_ATTRS);
	/* the target is never a path with the options in it */
	ok("/scratch:size=1m", "/scratch", "mode=1777,size=1m", DEFAULT_ATTRS);
}

static void test_options(void **state)
{
	(void)state;
	/* values in a fixed order whatever the order given; the last of an option wins */
	ok("/t:size=64k,mode=0750", "/t", "mode=0750,size=64k", DEFAULT_ATTRS);
	ok("/t:mode=700,size=1m,size=2G", "/t", "mode=700,size=2G", DEFAULT_ATTRS);
	ok("/t:nr_inodes=1k,uid=1000,gid=0,size=50%", "/t",
	   "mode=1777,size=50%,nr_inodes=1k,uid=1000,gid=0", DEFAULT_ATTRS);
	ok("/t:size=0", "/t", "mode=1777,size=0", DEFAULT_ATTRS);
	ok("/t:size=15E", "/t", "mode=1777,size=15E", DEFAULT_ATTRS);
	refused("/t:size=16E", "size=16E"); /* 2^64 bytes */
	/* flags: exec lifts noexec, ro and rw, atime modes replace each other */
	ok("/t:exec", "/t", "mode=1777", MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
	ok("/t:exec,noexec", "/t", "mode=1777", DEFAULT_ATTRS);
	ok("/t:ro", "/t", "mode=1777", DEFAULT_ATTRS | MOUNT_ATTR_RDONLY);
	ok("/t:ro,rw", "/t", "mode=1777", DEFAULT_ATTRS);
	ok("/t:noatime", "/t", "mode=1777", DEFAULT_ATTRS | MOUNT_ATTR_NOATIME);
	ok("/t:noatime,strictatime", "/t", "mode=1777", DEFAULT_ATTRS | MOUNT_ATTR_STRICTATIME);
	ok("/t:strictatime,relatime", "/t", "mode=1777", DEFAULT_ATTRS);
	ok("/t:nodiratime,nosymfollow,nosuid,nodev", "/t", "mode=1777",
	   DEFAULT_ATTRS | MOUNT_ATTR_NODIRATIME | MOUNT_ATTR_NOSYMFOLLOW);
	/* docker run's own example; libmount drops empty entries and "defaults" */
	ok("/run:rw,noexec,nosuid,size=65536k", "/run", "mode=1777,size=65536k", DEFAULT_ATTRS);
	ok("/t:,size=1m,,defaults", "/t", "mode=1777,size=1m", DEFAULT_ATTRS);
}

static void test_refused(void **state)
{
	(void)state;
	refused("/t:dev", "refusing 'dev'");
	refused("/t:suid", "refusing 'suid'");
	refused("/t:bind", "not an option for a tmpfs: 'bind'");
	refused("/t:rbind", "'rbind'");
	refused("/t:shared", "'shared'");
	refused("/t:remount", "'remount'");
	refused("/t:user", "not an option for a tmpfs: 'user'");
	refused("/t:x-foo=1", "'x-foo'");
	refused("/t:noauto", "'noauto'");
	refused("/t:tmpcopyup", "unknown tmpfs option 'tmpcopyup'");
	refused("/t:foo=bar", "unknown tmpfs option 'foo'");
	refused("/t:huge=always", "'huge'");
	refused("/t:size", "bad value in 'size'");
	refused("/t:size=", "bad value in 'size='");
	refused("/t:size=1x", "'size=1x'");
	refused("/t:size=1mb", "'size=1mb'");
	refused("/t:size=0x10", "'size=0x10'");
	refused("/t:size=-1", "'size=-1'");
	refused("/t:size=1.5m", "'size=1.5m'");
	refused("/t:size=101%", "'size=101%'");
	refused("/t:nr_inodes=50%", "'nr_inodes=50%'");
	refused("/t:size=99999999999999999999k", "'size=");
	refused("/t:size=17179869184G", "'size=");
	refused("/t:size=\"1m\"", "'size=");
	refused("/t:mode=9", "'mode=9'");
	refused("/t:mode=77777", "'mode=77777'");
	refused("/t:mode=rwx", "'mode=rwx'");
	refused("/t:uid=-1", "'uid=-1'");
	refused("/t:gid=2147483648", "'gid=2147483648'");
	refused("/t:ro=1", "'ro'");
}

static void size_ok(const char *s, unsigned long long want)
{
	unsigned long long got = 0;
	ud_error e;
	if (ud_ram_size_parse(s, "shm-size", &got, &e) < 0)
		fail_msg("'%s' refused: %s", s, e.msg);
	if (got != want)
		fail_msg("'%s': %llu, expected %llu", s, got, want);
}

static void size_refused(const char *s)
{
	unsigned long long got = 0;
	ud_error e;
	if (ud_ram_size_parse(s, "shm-size", &got, &e) == 0)
		fail_msg("'%s' accepted: %llu", s, got);
	assert_int_equal(e.status, UD_EXIT_USAGE);
	assert_non_null(strstr(e.msg, "--shm-size '"));
}

static void test_ram_size(void **state)
{
	(void)state;
	size_ok("1", 1);
	size_ok("1048576", 1048576);
	size_ok("64m", 64ULL << 20);
	size_ok("64M", 64ULL << 20);
	size_ok("64mb", 64ULL << 20);
	size_ok("64MiB", 64ULL << 20);
	size_ok("1536k", 1536ULL << 10);
	size_ok("2g", 2ULL << 30);
	size_ok("1.5m", 3ULL << 19);
	size_ok("1t", 1ULL << 40);
	size_ok("1p", 1ULL << 50);
	size_ok("10b", 10);
	size_ok("10B", 10);
	size_refused("");
	size_refused("0");
	size_refused("0.5");
	size_refused("-1");
	size_refused("m");
	size_refused("1x");
	size_refused("1.2.3m");
	size_refused("1e3");
	size_refused("inf");
	size_refused("0x10");
	size_refused(" 1m");
	size_refused("1m ");
	size_refused("1mm");
	size_refused("1bib");
	size_refused("99999999p");
}

static void test_flag_names(void **state)
{
	(void)state;
	const char *names[8];
	size_t n = ud_tmpfs_flag_names(DEFAULT_ATTRS, names);
	assert_int_equal(n, 3);
	assert_string_equal(names[0], "nosuid");
	assert_string_equal(names[1], "nodev");
	assert_string_equal(names[2], "noexec");
	n = ud_tmpfs_flag_names(MOUNT_ATTR_RDONLY | MOUNT_ATTR_STRICTATIME | MOUNT_ATTR_NOSYMFOLLOW,
				names);
	assert_int_equal(n, 3);
	assert_string_equal(names[0], "ro");
	assert_string_equal(names[1], "strictatime");
	assert_string_equal(names[2], "nosymfollow");
	assert_int_equal(ud_tmpfs_flag_names(MOUNT_ATTR_RELATIME, names), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),   cmocka_unit_test(test_options),
		cmocka_unit_test(test_refused),	   cmocka_unit_test(test_ram_size),
		cmocka_unit_test(test_flag_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
