/* The small-file writers (smallw.c) on their own, given names that layer.c would never hand
 * them: their own defences, not the caller's checks, keep the files beneath the root. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "error.h"
#include "smallw.h"

static char root_path[64], outside[80];
static int rootfd = -1;

static int setup(void **state)
{
	(void)state;
	snprintf(root_path, sizeof(root_path), "ud-test-smallw.XXXXXX");
	if (!mkdtemp(root_path))
		return -1;
	snprintf(outside, sizeof(outside), "%s.outside", root_path);
	rootfd = open(root_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return rootfd < 0 || mkdir(outside, 0700) < 0 ? -1 : 0;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[256];
	close(rootfd);
	snprintf(cmd, sizeof(cmd), "rm -rf -- '%s' '%s'", root_path, outside);
	return system(cmd);
}

static struct ud_smallw_file file(const char *name, const char *text)
{
	struct ud_smallw_file f = {.name = name, .len = strlen(text), .mode = 0644};
	f.data = malloc(f.len + 1);
	assert_non_null(f.data);
	memcpy(f.data, text, f.len);
	f.times[0].tv_sec = f.times[1].tv_sec = 1700000000;
	return f;
}

static char *read_file(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, buf, len - 1) : -1;
	if (fd >= 0)
		close(fd);
	buf[n > 0 ? n : 0] = '\0';
	return n >= 0 ? buf : NULL;
}

/* A symlink in the root pointing out of it: a name through it is refused, nothing is written
 * where it points, and the failure names the member. */
static void test_never_through_a_symlink(void **state)
{
	(void)state;
	char target[160], p[200];
	snprintf(target, sizeof(target), "../%s", outside);
	assert_int_equal(symlinkat(target, rootfd, "esc"), 0);
	ud_smallw *w;
	ud_error e = {0};
	assert_int_equal(ud_smallw_start(&w, rootfd, &e), 0);
	struct ud_smallw_file f = file("esc/owned", "escaped\n");
	assert_int_equal(ud_smallw_add(w, &f, &e), 0);
	assert_int_equal(ud_smallw_wait(w, &e), -1);
	ud_smallw_stop(w);
	assert_int_equal(e.status, UD_EXIT_STORAGE);
	assert_non_null(strstr(e.msg, "member 'esc/owned': creating it"));
	snprintf(p, sizeof(p), "%s/owned", outside);
	assert_int_equal(access(p, F_OK), -1);
}

/* A name already there as a hard link to a file outside the root: the link goes, the file it
 * shared an inode with keeps its bytes. */
static void test_never_writes_into_a_file_it_did_not_create(void **state)
{
	(void)state;
	char p[200], buf[64];
	snprintf(p, sizeof(p), "%s/host-file", outside);
	FILE *fp = fopen(p, "w");
	assert_non_null(fp);
	fputs("host\n", fp);
	fclose(fp);
	assert_int_equal(linkat(AT_FDCWD, p, rootfd, "hl", 0), 0);
	ud_smallw *w;
	ud_error e = {0};
	assert_int_equal(ud_smallw_start(&w, rootfd, &e), 0);
	struct ud_smallw_file f = file("hl", "from the layer\n");
	assert_int_equal(ud_smallw_add(w, &f, &e), 0);
	assert_int_equal(ud_smallw_wait(w, &e), 0);
	ud_smallw_stop(w);
	assert_string_equal(read_file(p, buf, sizeof(buf)), "host\n");
	char q[200];
	snprintf(q, sizeof(q), "%s/hl", root_path);
	assert_string_equal(read_file(q, buf, sizeof(buf)), "from the layer\n");
	struct stat st;
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_nlink, 1);
}

/* After a failure nothing more is queued: the caller learns it at the next file. */
static void test_a_failure_stops_the_queue(void **state)
{
	(void)state;
	ud_smallw *w;
	ud_error e = {0};
	assert_int_equal(ud_smallw_start(&w, rootfd, &e), 0);
	struct ud_smallw_file f = file("missing-dir/f", "x\n");
	assert_int_equal(ud_smallw_add(w, &f, &e), 0);
	int r = 0;
	for (int i = 0; i < 1000 && r == 0; i++) {
		char name[32];
		snprintf(name, sizeof(name), "f%d", i);
		struct ud_smallw_file g = file(name, "y\n");
		g.name = name;
		r = ud_smallw_add(w, &g, &e);
		if (r == 0 && i % 100 == 99)
			usleep(1000);
	}
	assert_int_equal(r, -1);
	assert_non_null(strstr(e.msg, "member 'missing-dir/f'"));
	assert_int_equal(ud_smallw_wait(w, &e), -1);
	ud_smallw_stop(w);
	assert_true(ud_smallw_pending(NULL, "x") == false);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_never_through_a_symlink, setup, teardown),
		cmocka_unit_test_setup_teardown(test_never_writes_into_a_file_it_did_not_create,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_a_failure_stops_the_queue, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
