/* Unit tests for lastgood.c: record names, the save/load round trip, key checks, rewrite only on
 * change, and a directory others can read refused (in a temporary directory, not /var/lib); and
 * answers.c's stamps, whose records are lastgood's with the stamp in the key. */
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

#include "answers.h"
#include "lastgood.h"

static char top[64], dir[96];

static int setup(void **state)
{
	(void)state;
	snprintf(top, sizeof(top), "/tmp/udunit-lastgood-XXXXXX");
	if (!mkdtemp(top))
		return -1;
	snprintf(dir, sizeof(dir), "%s/last-good", top);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", top);
	return system(cmd) == 0 ? 0 : -1;
}

static void names_differ_by_socket_and_reference(void **state)
{
	(void)state;
	char a[32], b[32], c[32], d[32];
	ud_lastgood_name("/run/docker.sock", "app:1", a, sizeof(a));
	ud_lastgood_name("/run/docker.sock", "app:2", b, sizeof(b));
	ud_lastgood_name("/run/other.sock", "app:1", c, sizeof(c));
	/* the separator matters: "ab" + "c" is not "a" + "bc" */
	ud_lastgood_name("/run/docker.sock", "app:1", d, sizeof(d));
	assert_string_equal(a, d);
	assert_string_not_equal(a, b);
	assert_string_not_equal(a, c);
	assert_int_equal(strlen(a), 21);
}

static void round_trip_and_key_check(void **state)
{
	(void)state;
	const char body[] = "{\"Id\":\"sha256:00\"}";
	char *got = NULL;
	size_t len = 0;
	time_t when = 0;
	ud_error e = {0};
	assert_int_equal(ud_lastgood_load(dir, "/s", "app:1", NULL, &got, &len, &when, &e), -1);
	assert_int_equal(e.status, UD_EXIT_DAEMON);
	ud_lastgood_save(dir, "/s", "app:1", NULL, body, sizeof(body) - 1);
	struct stat st;
	assert_int_equal(stat(dir, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	assert_int_equal(ud_lastgood_load(dir, "/s", "app:1", NULL, &got, &len, &when, &e), 0);
	assert_int_equal(len, sizeof(body) - 1);
	assert_memory_equal(got, body, len);
	assert_int_equal(got[len], '\0');
	assert_true(when > 0);
	free(got);
	/* another key never reads this record, even under its file name */
	char name[32], path[160], other[160];
	ud_lastgood_name("/s", "app:1", name, sizeof(name));
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	ud_lastgood_name("/s", "app:2", name, sizeof(name));
	snprintf(other, sizeof(other), "%s/%s", dir, name);
	assert_int_equal(link(path, other), 0);
	assert_int_equal(ud_lastgood_load(dir, "/s", "app:2", NULL, &got, &len, &when, &e), -1);
}

static void unchanged_answer_is_not_rewritten(void **state)
{
	(void)state;
	const char body[] = "{}";
	char name[32], path[160];
	ud_lastgood_save(dir, "/s", "same", NULL, body, 2);
	ud_lastgood_name("/s", "same", name, sizeof(name));
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	struct stat a, b;
	assert_int_equal(stat(path, &a), 0);
	ud_lastgood_save(dir, "/s", "same", NULL, body, 2);
	assert_int_equal(stat(path, &b), 0);
	assert_int_equal(a.st_ino, b.st_ino);
	ud_lastgood_save(dir, "/s", "same", NULL, "{ }", 3);
	assert_int_equal(stat(path, &b), 0);
	assert_int_not_equal(a.st_ino, b.st_ino);
}

static void a_directory_others_can_read_is_refused(void **state)
{
	(void)state;
	char *got = NULL;
	size_t len;
	time_t when;
	ud_error e = {0};
	ud_lastgood_save(dir, "/s", "open", NULL, "{}", 2);
	assert_int_equal(chmod(dir, 0755), 0);
	assert_int_equal(ud_lastgood_load(dir, "/s", "open", NULL, &got, &len, &when, &e), -1);
	assert_int_equal(chmod(dir, 0700), 0);
	assert_int_equal(ud_lastgood_load(dir, "/s", "open", NULL, &got, &len, &when, &e), 0);
	free(got);
}

static void a_stamped_record_is_read_only_under_its_stamp(void **state)
{
	(void)state;
	char *got = NULL;
	size_t len;
	time_t when;
	ud_error e = {0};
	ud_lastgood_save(dir, "/s", "app:1", "1 2.3 store 4 5 6.7 89ab", "{}", 2);
	assert_int_equal(
		ud_lastgood_load(dir, "/s", "app:1", "1 2.3 store 4 5 6.7 89ab", &got, &len, &when, &e),
		0);
	free(got);
	assert_int_equal(ud_lastgood_load(dir, "/s", "app:1", "1 2.3 store 4 5 6.7 89ac", &got,
					  &len, &when, &e),
			 -1);
	/* a prefix of the stamp, or none, is another key */
	assert_int_equal(ud_lastgood_load(dir, "/s", "app:1", "1 2.3", &got, &len, &when, &e), -1);
	assert_int_equal(ud_lastgood_load(dir, "/s", "app:1", NULL, &got, &len, &when, &e), -1);
	/* a stamp that could end the key line early is never written */
	ud_lastgood_save(dir, "/s", "app:2", "x\n{}", "{}", 2);
	assert_int_equal(ud_lastgood_load(dir, "/s", "app:2", "x", &got, &len, &when, &e), -1);
	assert_int_equal(ud_lastgood_load(dir, "/s", "app:2", NULL, &got, &len, &when, &e), -1);
}

static void stamps_change_with_every_byte_and_the_file(void **state)
{
	(void)state;
	char a[UD_ANSWERS_STAMP_MAX], b[UD_ANSWERS_STAMP_MAX];
	const char *key = "/var/run/docker.sock 17 1796294771.477304042";
	const char store[] = "{\"Repositories\":{\"app\":{\"app:1\":\"sha256:aa\"}}}";
	ud_answers_stamp_of(key, store, sizeof(store) - 1, 5, 100, 7, a, sizeof(a));
	/* the socket's path is in the record's key already: its inode and ctime are enough here */
	assert_int_equal(strncmp(a, "17 1796294771.477304042 store 5 46 100.000000007 ", 49), 0);
	assert_null(strchr(a, '\n'));
	ud_answers_stamp_of(key, store, sizeof(store) - 1, 5, 100, 7, b, sizeof(b));
	assert_string_equal(a, b);
	char moved[sizeof(store)];
	memcpy(moved, store, sizeof(store));
	moved[sizeof(store) - 6] = 'b'; /* app:1 now names sha256:ab: same size, same file */
	ud_answers_stamp_of(key, moved, sizeof(moved) - 1, 5, 100, 7, b, sizeof(b));
	assert_string_not_equal(a, b);
	ud_answers_stamp_of(key, store, sizeof(store) - 1, 6, 100, 7, b, sizeof(b));
	assert_string_not_equal(a, b);
	ud_answers_stamp_of(key, store, sizeof(store) - 1, 5, 100, 8, b, sizeof(b));
	assert_string_not_equal(a, b);
	ud_answers_stamp_of("/var/run/docker.sock 18 1796294771.477304042", store,
			    sizeof(store) - 1, 5, 100, 7, b, sizeof(b));
	assert_string_not_equal(a, b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(names_differ_by_socket_and_reference),
		cmocka_unit_test_setup_teardown(round_trip_and_key_check, setup, teardown),
		cmocka_unit_test_setup_teardown(unchanged_answer_is_not_rewritten, setup, teardown),
		cmocka_unit_test_setup_teardown(a_directory_others_can_read_is_refused, setup,
						teardown),
		cmocka_unit_test_setup_teardown(a_stamped_record_is_read_only_under_its_stamp, setup,
						teardown),
		cmocka_unit_test(stamps_change_with_every_byte_and_the_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
