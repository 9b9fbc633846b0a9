/* Unit tests for rootmemo.c: the DockerRootDir memory's containment test, its keys and its file
 * (in a temporary directory, not /run). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "rootmemo.h"

static char dir[64], file[128];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/udunit-rootmemo-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	/* A subdirectory, so that remember's mkdir is exercised. */
	snprintf(file, sizeof(file), "%s/memo/docker-roots", dir);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static const char *memo_dir(void)
{
	static char d[96];
	snprintf(d, sizeof(d), "%s/memo", dir);
	return d;
}

static void test_under(void **state)
{
	(void)state;
	assert_true(ud_rootmemo_under("/var/lib/docker/overlay2", "/var/lib/docker"));
	assert_true(ud_rootmemo_under("/var/lib/docker/overlay2", "/var/lib/docker//"));
	assert_false(ud_rootmemo_under("/var/lib/dockerx/overlay2", "/var/lib/docker"));
	assert_false(ud_rootmemo_under("/var/lib/docker", "/var/lib/docker"));
	assert_false(ud_rootmemo_under("var/lib/docker/x", "var/lib/docker"));
	assert_false(ud_rootmemo_under("/x", ""));
}

static void test_key(void **state)
{
	(void)state;
	char key[400];
	ud_rootmemo_key(dir, key, sizeof(key));
	assert_int_equal(strncmp(key, dir, strlen(dir)), 0);
	assert_int_equal(key[strlen(dir)], ' ');
	ud_rootmemo_key("/nonexistent/docker.sock", key, sizeof(key));
	assert_string_equal(key, "");
	char spaced[128];
	snprintf(spaced, sizeof(spaced), "%s/a b", dir);
	FILE *f = fopen(spaced, "w");
	assert_non_null(f);
	fclose(f);
	ud_rootmemo_key(spaced, key, sizeof(key)); /* would not stand in a line */
	assert_string_equal(key, "");
}

static void test_remember_and_vouch(void **state)
{
	(void)state;
	assert_false(ud_rootmemo_vouches(file, "/d.sock 1 2.0", "/var/lib/docker/overlay2"));
	ud_rootmemo_remember(memo_dir(), file, "/d.sock 1 2.0", "/var/lib/docker");
	assert_true(ud_rootmemo_vouches(file, "/d.sock 1 2.0", "/var/lib/docker/overlay2"));
	assert_false(ud_rootmemo_vouches(file, "/d.sock 1 2.0", "/srv/elsewhere/overlay2"));
	/* Another daemon's, or the same path after a restart (new inode): not vouched for. */
	assert_false(ud_rootmemo_vouches(file, "/d.sock 9 2.0", "/var/lib/docker/overlay2"));
	assert_false(ud_rootmemo_vouches(file, "/d.sock", "/var/lib/docker/overlay2"));
	assert_false(ud_rootmemo_vouches(file, "", "/var/lib/docker/overlay2"));
	/* The daemon moved its root: the new line replaces the old. */
	ud_rootmemo_remember(memo_dir(), file, "/d.sock 1 2.0", "/srv/docker");
	assert_true(ud_rootmemo_vouches(file, "/d.sock 1 2.0", "/srv/docker/overlay2"));
	assert_false(ud_rootmemo_vouches(file, "/d.sock 1 2.0", "/var/lib/docker/overlay2"));
}

static void test_bounded_newest_first(void **state)
{
	(void)state;
	char key[64];
	for (int i = 0; i < UD_ROOTMEMO_MAX + 5; i++) {
		snprintf(key, sizeof(key), "/s%d.sock 1 1.0", i);
		ud_rootmemo_remember(memo_dir(), file, key, "/var/lib/docker");
	}
	FILE *in = fopen(file, "r");
	assert_non_null(in);
	char line[256];
	int n = 0;
	while (fgets(line, sizeof(line), in))
		if (n++ == 0)
			assert_string_equal(line, "/s20.sock 1 1.0 /var/lib/docker\n");
	fclose(in);
	assert_int_equal(n, UD_ROOTMEMO_MAX);
	assert_true(ud_rootmemo_vouches(file, "/s5.sock 1 1.0", "/var/lib/docker/o"));
	assert_false(ud_rootmemo_vouches(file, "/s4.sock 1 1.0", "/var/lib/docker/o"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_under),
		cmocka_unit_test(test_key),
		cmocka_unit_test(test_remember_and_vouch),
		cmocka_unit_test(test_bounded_newest_first),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
