/* One layer tar into a directory (layer.c): the pure name checks, and whole tars, written here by
 * hand in ustar format, unpacked into a temporary directory with no daemon and no cache. */
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cmocka.h>

#include "error.h"
#include "layer.h"

/* ---------------------------------------------------------------- pure parts */

static void test_member_names(void **state)
{
	(void)state;
	static const char *const ok[] = {"a",	 "a/b", "./a",	   "a/./b",
					 "a..b", "..a", "a/..b/c", ".wh.x"};
	static const char *const bad[] = {"",	    "/etc/passwd",   "..", "../x", "a/..",
					  "a/../b", "a/b/../../../c"};
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
	/* Whiteouts for "." and "..": still whiteouts by name; the unpacker refuses them. */
	assert_int_equal(ud_layer_whiteout_kind("dir/.wh..", &off), 1);
	assert_string_equal(&"dir/.wh.."[off], ".");
	assert_int_equal(ud_layer_whiteout_kind("dir/.wh...", &off), 1);
	assert_string_equal(&"dir/.wh..."[off], "..");
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
	static const char *const bad[] = {
		"",  "0", "-1", "1X", "1GG", "G", "1 G", "99999999999P", "18446744073709551616",
		" 1"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(ud_layer_parse_size(bad[i], &v), -1);
}

/* ---------------------------------------------------------------- tars by hand */

struct tar {
	int fd; /* a memfd */
};

struct meta {
	unsigned mode, uid, gid, mtime;
};

static void tar_member_len(struct tar *t, const char *name, char type, const char *data, size_t len,
			   const char *link, const struct meta *m)
{
	unsigned char h[512] = {0};
	assert_true(strlen(name) < 100);
	memcpy(h, name, strlen(name));
	snprintf((char *)h + 100, 8, "%07o", m ? m->mode : type == '5' ? 0755 : 0644);
	snprintf((char *)h + 108, 8, "%07o", m ? m->uid : 0);
	snprintf((char *)h + 116, 8, "%07o", m ? m->gid : 0);
	snprintf((char *)h + 124, 12, "%011o", (unsigned)len);
	snprintf((char *)h + 136, 12, "%011o", m ? m->mtime : 1700000000);
	h[156] = (unsigned char)type;
	if (link)
		memcpy(h + 157, link, strlen(link));
	memcpy(h + 257, "ustar", 6);
	memcpy(h + 263, "00", 2);
	memset(h + 148, ' ', 8);
	unsigned sum = 0;
	for (size_t i = 0; i < sizeof(h); i++)
		sum += h[i];
	snprintf((char *)h + 148, 8, "%06o", sum);
	assert_int_equal(write(t->fd, h, sizeof(h)), (ssize_t)sizeof(h));
	if (len) {
		char pad[512] = {0};
		assert_int_equal(write(t->fd, data, len), (ssize_t)len);
		size_t rest = (512 - len % 512) % 512;
		assert_int_equal(write(t->fd, pad, rest), (ssize_t)rest);
	}
}

static void tar_member(struct tar *t, const char *name, char type, const char *data,
		       const char *link)
{
	tar_member_len(t, name, type, data, data ? strlen(data) : 0, link, NULL);
}

static void tar_open(struct tar *t)
{
	t->fd = memfd_create("layer.tar", MFD_CLOEXEC);
	assert_true(t->fd >= 0);
}

/* The end marker, and back to the start for reading. */
static void tar_close(struct tar *t)
{
	char end[1024] = {0};
	assert_int_equal(write(t->fd, end, sizeof(end)), (ssize_t)sizeof(end));
	assert_int_equal(lseek(t->fd, 0, SEEK_SET), 0);
}

static char dir_path[64];

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st, (void)flag, (void)f;
	return remove(p);
}

/* A fresh layer directory under the current one (not /tmp: tests of others watch it). */
static int setup_dir(void **state)
{
	(void)state;
	snprintf(dir_path, sizeof(dir_path), "ud-test-layer.XXXXXX");
	return mkdtemp(dir_path) ? 0 : -1;
}

static int teardown_dir(void **state)
{
	(void)state;
	return nftw(dir_path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Unpacks t into dir_path: the result of ud_layer_unpack_fd, its error in *e. */
static int unpack(struct tar *t, char hex[65], ud_error *e)
{
	int root = open(dir_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(root >= 0);
	*e = (ud_error){0};
	int r = ud_layer_unpack_fd(t->fd, root, "test", hex, e);
	close(root);
	close(t->fd);
	return r;
}

static bool exists_at(const char *rel, struct stat *st)
{
	char p[256];
	snprintf(p, sizeof(p), "%s/%s", dir_path, rel);
	return lstat(p, st) == 0;
}

static void test_unpack_local_tar(void **state)
{
	(void)state;
	struct tar t;
	tar_open(&t);
	tar_member(&t, "./", '5', NULL, NULL);
	tar_member(&t, "./etc/", '5', NULL, NULL);
	tar_member(&t, "./etc/hostname", '0', "layer\n", NULL);
	tar_member(&t, "./etc/.wh.passwd", '0', NULL, NULL);
	tar_member(&t, "var/cache/.wh..wh..opq", '0', NULL, NULL);
	tar_member(&t, "etc/link", '1', NULL, "etc/hostname");
	tar_close(&t);
	char hex[65] = "";
	ud_error e;
	assert_int_equal(unpack(&t, hex, &e), 1);
	assert_int_equal(strlen(hex), 64);
	struct stat st;
	assert_true(exists_at("etc/hostname", &st) && S_ISREG(st.st_mode) && st.st_size == 6);
	assert_true(exists_at("etc/link", &st) && st.st_nlink == 2);
	/* A whiteout becomes what overlayfs reads: a 0/0 character device, no ".wh." file. */
	assert_true(exists_at("etc/passwd", &st) && S_ISCHR(st.st_mode) &&
		    st.st_rdev == makedev(0, 0));
	assert_false(exists_at("etc/.wh.passwd", &st));
	/* An opaque marker: the directory (created, its parents too) carries the xattr. */
	char p[256], v[8] = "";
	snprintf(p, sizeof(p), "%s/var/cache", dir_path);
	assert_int_equal(lgetxattr(p, "trusted.overlay.opaque", v, sizeof(v)), 1);
	assert_int_equal(v[0], 'y');
	assert_false(exists_at("var/cache/.wh..wh..opq", &st));
}

/* The same bytes give the same digest: the diffID check depends on it. */
static void test_unpack_digest(void **state)
{
	(void)state;
	struct tar t;
	tar_open(&t);
	tar_close(&t);
	char hex[65] = "";
	ud_error e;
	assert_int_equal(unpack(&t, hex, &e), 1);
	/* sha256 of 1024 zero bytes */
	assert_string_equal(hex,
			    "5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef");
}

static void refused(const char *name, char type, const char *link, const char *why)
{
	struct tar t;
	tar_open(&t);
	tar_member(&t, "dir/", '5', NULL, NULL);
	tar_member(&t, name, type, type == '0' ? "x\n" : NULL, link);
	tar_close(&t);
	char hex[65];
	ud_error e;
	assert_int_equal(unpack(&t, hex, &e), -1);
	assert_int_equal(e.status, UD_EXIT_STORAGE);
	if (!strstr(e.msg, why))
		fail_msg("%s: '%s' lacks '%s'", name, e.msg, why);
}

static void test_unpack_hostile_members(void **state)
{
	(void)state;
	refused("../escape", '0', NULL, "hostile member '../escape'");
	refused("dir/../../escape", '0', NULL, "hostile member");
	refused("/etc/escape", '0', NULL, "hostile member '/etc/escape'");
	refused("dir/hl", '1', "../../etc/passwd", "hostile hard link");
	struct stat st;
	assert_false(exists_at("../escape", &st));
	assert_false(exists_at("hl", &st));
}

/* "dir/.wh.." and "dir/.wh..." would hide "dir/." and "dir/..": nothing a layer may say. */
static void test_unpack_whiteout_of_dot_refused(void **state)
{
	(void)state;
	refused("dir/.wh..", '0', NULL, "hostile member 'dir/.wh..'");
	refused("dir/.wh...", '0', NULL, "hostile member 'dir/.wh...'");
	refused(".wh...", '0', NULL, "hostile member '.wh...'");
	refused("./.wh..", '0', NULL, "hostile member './.wh..'");
}

/* ---------------------------------------------------------------- small files (smallw.c) */

static void content_is(const char *rel, const char *want, size_t len)
{
	char p[256], got[300 * 1024];
	snprintf(p, sizeof(p), "%s/%s", dir_path, rel);
	int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	assert_true(fd >= 0);
	ssize_t n = read(fd, got, sizeof(got));
	close(fd);
	if (n != (ssize_t)len || memcmp(got, want, len))
		fail_msg("%s: %zd bytes, not the %zu written", rel, n, len);
}

/* The small files' writers set what libarchive's writer sets: owner, mode with its set-id bits,
 * times; and the directories keep the tar's times although files went in after them. */
static void test_small_files_carry_their_metadata(void **state)
{
	(void)state;
	struct tar t;
	tar_open(&t);
	const struct meta d = {0750, 0, 0, 1600000000}, f = {04755, 1234, 5678, 1500000000},
			  g = {0640, 99, 98, 1400000000};
	tar_member_len(&t, "bin/", '5', NULL, 0, NULL, &d);
	tar_member_len(&t, "bin/tool", '0', "#!/bin/sh\n", 10, NULL, &f);
	tar_member_len(&t, "bin/empty", '0', NULL, 0, NULL, &g);
	tar_close(&t);
	char hex[65];
	ud_error e;
	assert_int_equal(unpack(&t, hex, &e), 1);
	struct stat st;
	assert_true(exists_at("bin/tool", &st) && S_ISREG(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 04755);
	assert_int_equal(st.st_uid, 1234);
	assert_int_equal(st.st_gid, 5678);
	assert_int_equal(st.st_mtime, 1500000000);
	content_is("bin/tool", "#!/bin/sh\n", 10);
	assert_true(exists_at("bin/empty", &st) && st.st_size == 0);
	assert_int_equal(st.st_mode & 07777, 0640);
	assert_int_equal(st.st_uid, 99);
	assert_int_equal(st.st_mtime, 1400000000);
	assert_true(exists_at("bin", &st) && S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0750);
	assert_int_equal(st.st_mtime, 1600000000);
}

/* What the tar says last wins, as one writer would have it: a file named twice, a file that a
 * directory replaces, a hard link to a file just queued. */
static void test_small_files_keep_the_tars_order(void **state)
{
	(void)state;
	struct tar t;
	tar_open(&t);
	tar_member(&t, "a/", '5', NULL, NULL);
	tar_member(&t, "a/twice", '0', "first\n", NULL);
	tar_member(&t, "a/twice", '0', "second\n", NULL);
	tar_member(&t, "a/x", '0', "a file\n", NULL);
	tar_member(&t, "a/x/", '5', NULL, NULL);
	tar_member(&t, "a/x/y", '0', "in the directory\n", NULL);
	tar_member(&t, "a/target", '0', "linked\n", NULL);
	tar_member(&t, "a/link", '1', NULL, "a/target");
	tar_close(&t);
	char hex[65];
	ud_error e;
	if (unpack(&t, hex, &e) != 1)
		fail_msg("%s", e.msg);
	struct stat st;
	content_is("a/twice", "second\n", 7);
	assert_true(exists_at("a/x", &st) && S_ISDIR(st.st_mode));
	content_is("a/x/y", "in the directory\n", 17);
	assert_true(exists_at("a/link", &st) && st.st_nlink == 2);
	content_is("a/link", "linked\n", 7);
	/* A file, then a name below it: refused, as libarchive's writer alone refuses it. */
	tar_open(&t);
	tar_member(&t, "p", '0', "a file, then a parent\n", NULL);
	tar_member(&t, "p/q", '0', "below it\n", NULL);
	tar_close(&t);
	assert_int_equal(unpack(&t, hex, &e), -1);
	assert_non_null(strstr(e.msg, "member 'p/q' refused"));
}

/* More files than the queue holds and than the set of queued names remembers, more bytes than
 * may be in flight: every one made, with its own bytes. */
static void test_small_files_past_the_queues_limits(void **state)
{
	(void)state;
	static char big[255 * 1024];
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (char)(i * 7 + 3);
	struct tar t;
	tar_open(&t);
	tar_member(&t, "d/", '5', NULL, NULL);
	char name[64], data[64];
	for (int i = 0; i < 5000; i++) {
		snprintf(name, sizeof(name), "d/f%04d", i);
		snprintf(data, sizeof(data), "file %d\n", i);
		tar_member(&t, name, '0', data, NULL);
	}
	for (int i = 0; i < 40; i++) {
		snprintf(name, sizeof(name), "d/big%02d", i);
		big[0] = (char)i;
		tar_member_len(&t, name, '0', big, sizeof(big), NULL, NULL);
	}
	tar_close(&t);
	char hex[65];
	ud_error e;
	assert_int_equal(unpack(&t, hex, &e), 1);
	for (int i = 0; i < 5000; i += 499) {
		snprintf(name, sizeof(name), "d/f%04d", i);
		snprintf(data, sizeof(data), "file %d\n", i);
		content_is(name, data, strlen(data));
	}
	snprintf(name, sizeof(name), "d/f%04d", 4999);
	content_is(name, "file 4999\n", 10);
	big[0] = 39;
	content_is("d/big39", big, sizeof(big));
}

/* A symlink placed by one member, a small file through it by the next: never written outside. */
static void test_small_file_through_a_symlink_refused(void **state)
{
	(void)state;
	char outside[128];
	snprintf(outside, sizeof(outside), "%s-outside", dir_path);
	assert_int_equal(mkdir(outside, 0700), 0);
	char target[160];
	snprintf(target, sizeof(target), "../%s", outside);
	struct tar t;
	tar_open(&t);
	tar_member(&t, "d/", '5', NULL, NULL);
	tar_member(&t, "d/ok", '0', "queued first\n", NULL);
	tar_member(&t, "esc", '2', NULL, target);
	tar_member(&t, "esc/owned", '0', "escaped\n", NULL);
	tar_close(&t);
	char hex[65];
	ud_error e;
	int r = unpack(&t, hex, &e);
	char p[200];
	snprintf(p, sizeof(p), "%s/owned", outside);
	struct stat st;
	bool escaped = lstat(p, &st) == 0;
	unlink(p);
	rmdir(outside);
	assert_false(escaped);
	assert_int_equal(r, -1);
	assert_int_equal(e.status, UD_EXIT_STORAGE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_member_names),
		cmocka_unit_test(test_whiteouts),
		cmocka_unit_test(test_name_fits),
		cmocka_unit_test(test_sizes),
		cmocka_unit_test_setup_teardown(test_small_files_carry_their_metadata, setup_dir,
						teardown_dir),
		cmocka_unit_test_setup_teardown(test_small_files_keep_the_tars_order, setup_dir,
						teardown_dir),
		cmocka_unit_test_setup_teardown(test_small_files_past_the_queues_limits, setup_dir,
						teardown_dir),
		cmocka_unit_test_setup_teardown(test_small_file_through_a_symlink_refused,
						setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_unpack_local_tar, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_unpack_digest, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_unpack_hostile_members, setup_dir,
						teardown_dir),
		cmocka_unit_test_setup_teardown(test_unpack_whiteout_of_dot_refused, setup_dir,
						teardown_dir),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
