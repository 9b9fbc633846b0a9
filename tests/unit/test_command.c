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
	assert_int_equal(ud_command_environ(&img, NULL, NULL, &e), 0);
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
	assert_int_equal(ud_command_environ(&img, NULL, NULL, &e), 0);
	assert_string_equal(getenv("PATH"), &UD_COMMAND_DEFAULT_PATH[5]);
	assert_string_equal(getenv("TERM"), "xterm");
	assert_string_equal(getenv("HOSTNAME"), "host");
	assert_int_equal(env_count(), 3);
	/* --hostname stands in for the caller's HOSTNAME. */
	assert_int_equal(ud_command_environ(&img, "inner", NULL, &e), 0);
	assert_string_equal(getenv("HOSTNAME"), "inner");
}

static void test_image_wins(void **state)
{
	(void)state;
	static char *env[] = {"TERM=dumb", "HOSTNAME=img"};
	struct ud_image img = image(env, 2);
	setenv("TERM", "xterm", 1);
	ud_error e = {0};
	assert_int_equal(ud_command_environ(&img, "inner", NULL, &e), 0);
	assert_string_equal(getenv("TERM"), "dumb");
	assert_string_equal(getenv("HOSTNAME"), "img");
}

/* HOME from the user's passwd entry unless the image's Env (or --env) sets it. */
static void test_home(void **state)
{
	(void)state;
	static char *none[] = {"A=1"};
	static char *own[] = {"HOME=/image-home"};
	ud_error e;
	struct ud_image img = image(none, 1);
	assert_int_equal(ud_command_environ(&img, NULL, "/home/app", &e), 0);
	assert_string_equal(getenv("HOME"), "/home/app");
	img = image(own, 1);
	assert_int_equal(ud_command_environ(&img, NULL, "/home/app", &e), 0);
	assert_string_equal(getenv("HOME"), "/image-home");
	img = image(none, 1);
	assert_int_equal(ud_command_environ(&img, NULL, NULL, &e), 0);
	assert_null(getenv("HOME"));
}

static char **strv(const char *const *v, size_t n)
{
	char **out = calloc(n + 1, sizeof(char *));
	for (size_t i = 0; i < n; i++)
		out[i] = strdup(v[i]);
	return out;
}

/* --env over the image's Env: a KEY replaced in place (only that KEY: PATHX is not PATH),
 * others appended in order, the array NULL-terminated. */
static void test_env_set(void **state)
{
	(void)state;
	static const char *const env[] = {"PATH=/bin", "PATHX=1", "EMPTY="};
	struct ud_image img;
	memset(&img, 0, sizeof(img));
	img.env = strv(env, 3);
	img.n_env = 3;
	char *kv[] = {"NEW=a=b", "PATH=/opt/bin", "EMPTY=now", "NEW=second", "Z="};
	ud_error e;
	assert_int_equal(ud_command_env_set(&img, kv, 5, &e), 0);
	static const char *const want[] = {"PATH=/opt/bin", "PATHX=1", "EMPTY=now", "NEW=second",
					   "Z="};
	assert_int_equal(img.n_env, 5);
	for (size_t i = 0; i < 5; i++)
		assert_string_equal(img.env[i], want[i]);
	assert_null(img.env[5]);
	assert_int_equal(ud_command_env_set(&img, NULL, 0, &e), 0);
	assert_int_equal(img.n_env, 5);
	for (size_t i = 0; i < img.n_env; i++)
		free(img.env[i]);
	free(img.env);
	/* an image without Env at all */
	memset(&img, 0, sizeof(img));
	assert_int_equal(ud_command_env_set(&img, kv, 1, &e), 0);
	assert_int_equal(img.n_env, 1);
	assert_string_equal(img.env[0], "NEW=a=b");
	assert_null(img.env[1]);
	free(img.env[0]);
	free(img.env);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_image_env_only),
		cmocka_unit_test(test_default_path_term_hostname),
		cmocka_unit_test(test_image_wins),
		cmocka_unit_test(test_home),
		cmocka_unit_test(test_env_set),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
