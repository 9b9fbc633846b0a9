/* Unit tests for command.c: the environment -- COMMAND starts with. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "command.h"

extern char **environ;

static size_t env_count(void)
{
	size_t n = 0;
	while (environ && environ[n])
		n++;
	return n;
}

static struct ud_image image(char **env, size_t n)
{
	struct ud_image img;
	memset(&img, 0, sizeof(img));
	img.ref = "busybox";
	img.env = env;
	img.n_env = n;
	return img;
}

static void test_image_env_only(void **state)
{
	(void)state;
	static char *env[] = {"A=1", "NOEQUALS", "PATH=/opt/bin", "B=x=y"};
	struct ud_image img = image(env, 4);
	setenv("SECRET", "host", 1);
	unsetenv("TERM");
	unsetenv("HOSTNAME");
	ud_error e = {0};
	assert_int_equal(ud_command_environ(&img, NULL, &e), 0);
	assert_null(getenv("SECRET"));
	assert_string_equal(getenv("A"), "1");
	assert_string_equal(getenv("B"), "x=y");
	assert_string_equal(getenv("PATH"), "/opt/bin");
	assert_int_equal(env_count(), 3);
}

static void test_default_path_term_hostname(void **state)
{
	(void)state;
	struct ud_image img = image(NULL, 0);
	setenv("TERM", "xterm", 1);
	setenv("HOSTNAME", "host", 1);
	ud_error e = {0};
	assert_int_equal(ud_command_environ(&img, NULL, &e), 0);
	assert_string_equal(getenv("PATH"), &UD_COMMAND_DEFAULT_PATH[5]);
	assert_string_equal(getenv("TERM"), "xterm");
	assert_string_equal(getenv("HOSTNAME"), "host");
	assert_int_equal(env_count(), 3);
	/* --hostname stands in for the caller's HOSTNAME. */
	assert_int_equal(ud_command_environ(&img, "inner", &e), 0);
	assert_string_equal(getenv("HOSTNAME"), "inner");
}

static void test_image_wins(void **state)
{
	(void)state;
	static char *env[] = {"TERM=dumb", "HOSTNAME=img"};
	struct ud_image img = image(env, 2);
	setenv("TERM", "xterm", 1);
	ud_error e = {0};
	assert_int_equal(ud_command_environ(&img, "inner", &e), 0);
	assert_string_equal(getenv("TERM"), "dumb");
	assert_string_equal(getenv("HOSTNAME"), "img");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_image_env_only),
		cmocka_unit_test(test_default_path_term_hostname),
		cmocka_unit_test(test_image_wins),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
