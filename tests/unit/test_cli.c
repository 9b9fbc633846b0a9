/* Unit tests for cli.c: the option table drives parsing, --help and the error messages; usage
 * errors keep their words and status 64. */
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli.h"
#include "error.h"
#include "util.h"

/* Parses a NULL-terminated argument list (argv[0] is added). */
static int parse(struct ud_cli *c, ud_error *e, ...)
{
	static char *argv[64];
	int argc = 0;
	argv[argc++] = "uwsgi-docker-rootfs";
	va_list ap;
	va_start(ap, e);
	for (char *a; (a = va_arg(ap, char *)) != NULL;)
		argv[argc++] = a;
	va_end(ap);
	argv[argc] = NULL;
	memset(e, 0, sizeof(*e));
	return ud_cli_parse(argc, argv, c, e);
}

/* Parses, expects a usage error whose message contains want. */
#define USAGE_ERROR(want, ...)                                                               \
	do {                                                                                 \
		struct ud_cli c_;                                                            \
		ud_error e_;                                                                 \
		assert_int_equal(parse(&c_, &e_, __VA_ARGS__, NULL), -1);                    \
		assert_int_equal(e_.status, UD_EXIT_USAGE);                                  \
		if (!strstr(e_.msg, want))                                                   \
			fail_msg("'%s' lacks '%s'", e_.msg, want);                           \
		ud_cli_free(&c_);                                                            \
	} while (0)

static void test_defaults_and_command(void **state)
{
	(void)state;
	struct ud_cli c;
	ud_error e;
	assert_int_equal(parse(&c, &e, "busybox", "--", "sh", "-c", "echo hi", NULL), UD_CLI_RUN);
	assert_string_equal(c.o.image, "busybox");
	assert_string_equal(c.command[0], "sh");
	assert_string_equal(c.command[1], "-c");
	assert_null(c.command[3]);
	assert_int_equal(c.o.timeout_ms, 10000);
	assert_int_equal(c.send_to_uid, (uid_t)-1);
	assert_string_equal(c.cache_dir, UD_DEFAULT_CACHE);
	assert_int_equal(c.o.mount_api, UD_API_AUTO);
	assert_int_equal(c.layers, UD_LAYERS_AUTO);
	assert_int_equal(c.o.rw, UD_RW_TMPFS);
	assert_int_equal(c.pull, UD_PULL_MISSING);
	assert_null(c.docker_config);
	ud_cli_free(&c);
}

static void test_every_choice_parses(void **state)
{
	(void)state;
	struct ud_cli c;
	ud_error e;
	for (const struct ud_name *n = ud_plan_mount_apis; n->name; n++) {
		assert_int_equal(parse(&c, &e, "--mount-api", n->name, "--print", "img", NULL), 0);
		assert_int_equal(c.o.mount_api, n->value);
		ud_cli_free(&c);
	}
	for (const struct ud_name *n = ud_export_layers_modes; n->name; n++) {
		assert_int_equal(parse(&c, &e, "--layers", n->name, "--print", "img", NULL), 0);
		assert_int_equal(c.layers, n->value);
		ud_cli_free(&c);
	}
	for (const struct ud_name *n = ud_pull_policies; n->name; n++) {
		assert_int_equal(parse(&c, &e, "--pull", n->name, "--docker-config", "/cfg", "--print",
				       "img", NULL), 0);
		assert_int_equal(c.pull, n->value);
		assert_string_equal(c.docker_config, "/cfg");
		ud_cli_free(&c);
	}
	for (const struct ud_name *n = ud_ns_names(); n->name; n++) {
		if (!(n->value & UD_CLI_UNSHAREABLE))
			continue;
		assert_int_equal(parse(&c, &e, "--unshare", n->name, "--print", "img", NULL), 0);
		assert_int_equal(c.o.unshare_flags, n->value);
		ud_cli_free(&c);
	}
	assert_int_equal(parse(&c, &e, "--unshare", "net,ipc", "--unshare=uts", "--print", "img",
			       NULL),
			 0);
	assert_int_equal(c.o.unshare_flags, CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS);
	ud_cli_free(&c);
}

static void test_values_and_flags(void **state)
{
	(void)state;
	struct ud_cli c;
	ud_error e;
	assert_int_equal(parse(&c, &e, "-H", "unix:///d.sock", "-t", "0.0001", "--no-proc",
			       "--no-dev", "--no-sys", "--no-confine", "--rw-path", "/srv/rw",
			       "--hostname", "h", "--unshare", "uts", "--send-to", "/run/s",
			       "--send-to-uid", "33", "--cache-dir", "/var/cache/x", "img", NULL),
			 0);
	assert_string_equal(c.o.docker_host, "unix:///d.sock");
	assert_int_equal(c.o.timeout_ms, 1);
	assert_true(c.o.no_proc && c.o.no_dev && c.o.no_sys && c.o.no_confine);
	assert_int_equal(c.o.rw, UD_RW_PATH);
	assert_string_equal(c.o.rw_path, "/srv/rw");
	assert_string_equal(c.o.hostname, "h");
	assert_string_equal(c.send_to, "/run/s");
	assert_int_equal(c.send_to_uid, 33);
	assert_string_equal(c.cache_dir, "/var/cache/x");
	ud_cli_free(&c);
	assert_int_equal(parse(&c, &e, "--read-only", "--pin", "/run/p", "img", NULL), 0);
	assert_int_equal(c.o.rw, UD_RW_NONE);
	assert_string_equal(c.pin, "/run/p");
	ud_cli_free(&c);
	assert_int_equal(parse(&c, &e, "--cache-prune", NULL), 0);
	assert_true(c.prune);
	ud_cli_free(&c);
	assert_int_equal(parse(&c, &e, "--gc", NULL), 0);
	assert_true(c.prune);
	ud_cli_free(&c);
	assert_int_equal(parse(&c, &e, "--print", "img", NULL), 0);
	assert_int_equal(c.gc_interval, 3600);
	ud_cli_free(&c);
	assert_int_equal(parse(&c, &e, "--gc-interval", "never", "--print", "img", NULL), 0);
	assert_int_equal(c.gc_interval, -1);
	ud_cli_free(&c);
	assert_int_equal(parse(&c, &e, "--gc-interval", "0", "--print", "img", NULL), 0);
	assert_int_equal(c.gc_interval, 0);
	ud_cli_free(&c);
}

static void test_binds_in_order(void **state)
{
	(void)state;
	struct ud_cli c;
	ud_error e;
	assert_int_equal(parse(&c, &e, "--bind", "/a:/b", "--tmpfs", "/t", "--ro-bind", "/c",
			       "--print", "img", NULL),
			 0);
	assert_int_equal(c.o.n_binds, 3);
	assert_int_equal(c.o.binds[0].type, UD_OP_BIND);
	assert_false(c.o.binds[0].readonly);
	assert_string_equal(c.o.binds[0].dst, "/b");
	assert_int_equal(c.o.binds[1].type, UD_OP_TMPFS);
	assert_string_equal(c.o.binds[1].dst, "/t");
	assert_true(c.o.binds[2].readonly);
	assert_string_equal(c.o.binds[2].dst, "/c");
	ud_cli_free(&c);
	assert_null(c.o.binds);
}

static void test_help_and_version(void **state)
{
	(void)state;
	struct ud_cli c;
	ud_error e;
	assert_int_equal(parse(&c, &e, "--help", "--bogus", NULL), UD_CLI_HELP);
	ud_cli_free(&c);
	assert_int_equal(parse(&c, &e, "-V", NULL), UD_CLI_VERSION);
	ud_cli_free(&c);
	/* Options are read in order: an error before --help wins. */
	assert_int_equal(parse(&c, &e, "--bogus", "--help", NULL), -1);
	ud_cli_free(&c);
	assert_non_null(strstr(ud_cli_version(), "(Docker API "));
}

static void test_usage_from_the_tables(void **state)
{
	(void)state;
	char buf[4096];
	size_t n = ud_cli_usage(buf, sizeof(buf));
	assert_true(n < sizeof(buf)); /* main.c's buffer */
	assert_int_equal(strlen(buf), n);
	assert_non_null(strstr(buf, "      --mount-api MODE     How to mount the overlay: auto, fd, "
				    "string or legacy\n"));
	assert_non_null(strstr(buf, "      --layers MODE        Where the layers come from: auto, "
				    "direct or export\n"));
	assert_non_null(strstr(buf, "      --unshare NS[,NS...] Also unshare these namespaces, among "
				    "ipc, uts, net and cgroup\n"));
	assert_non_null(strstr(buf, "      --cache-max-bytes SIZE\n                           Most"));
	assert_non_null(strstr(buf, "(its listener\n                           must be root"));
	assert_non_null(strstr(buf, "  -h, --help               Print a usage summary and exit\n"));
	/* Truncated, still terminated, full length reported. */
	char small[16];
	assert_int_equal(ud_cli_usage(small, sizeof(small)), n);
	assert_int_equal(strlen(small), sizeof(small) - 1);
}

static void test_names(void **state)
{
	(void)state;
	char buf[64];
	ud_cli_names(ud_export_layers_modes, 0, " or ", buf, sizeof(buf));
	assert_string_equal(buf, "auto, direct or export");
	ud_cli_names(ud_ns_names(), UD_CLI_UNSHAREABLE, ", ", buf, sizeof(buf));
	assert_string_equal(buf, "ipc, uts, net, cgroup");
	ud_cli_names(ud_ns_names(), CLONE_NEWNET, " and ", buf, sizeof(buf));
	assert_string_equal(buf, "net");
}

static void test_usage_errors(void **state)
{
	(void)state;
	unsetenv(UD_FD_ENV);
	USAGE_ERROR("--mount-api 'x': expected auto, fd, string or legacy", "--mount-api", "x", "i");
	USAGE_ERROR("--layers 'x': expected auto, direct or export", "--layers", "x", "i");
	USAGE_ERROR("--pull 'x': expected missing, always or never", "--pull", "x", "i");
	USAGE_ERROR("--unshare: unknown namespace 'mnt' (ipc, uts, net, cgroup)", "--unshare",
		    "ipc,mnt", "i");
	USAGE_ERROR("--unshare pid is not offered", "--unshare", "pid", "i");
	USAGE_ERROR("unknown option '--bogus' (see --help)", "--bogus");
	USAGE_ERROR("option '--timeout' needs an argument (see --help)", "--timeout");
	USAGE_ERROR("option '-H' needs an argument", "-H");
	USAGE_ERROR("--timeout '0': expected seconds", "-t", "0", "i");
	USAGE_ERROR("--send-to-uid '-1': expected a numeric uid", "--send-to-uid", "-1", "i");
	USAGE_ERROR("--cache-dir 'a': expected an absolute path", "--cache-dir", "a", "i");
	USAGE_ERROR("--rw-path and --read-only exclude each other", "--read-only", "--rw-path", "/x",
		    "i");
	USAGE_ERROR("--gc takes no IMAGE", "--cache-prune", "i");
	USAGE_ERROR("--gc takes no IMAGE", "--gc", "i");
	USAGE_ERROR("--gc-interval 'x': expected seconds or never", "--gc-interval", "x", "i");
	USAGE_ERROR("--gc-interval '-1': expected seconds or never", "--gc-interval", "-1", "i");
	USAGE_ERROR("no IMAGE given", "--print");
	USAGE_ERROR("unexpected 'sh' after IMAGE", "i", "sh");
	USAGE_ERROR("no COMMAND after '--'", "i", "--");
	USAGE_ERROR("choose one of -- COMMAND, --print, --pin and --send-to", "--print", "--pin",
		    "/p", "i");
	USAGE_ERROR("--send-to-uid goes with --send-to", "--send-to-uid", "3", "--print", "i");
	USAGE_ERROR("cannot be combined with --unshare", "--pin", "/p", "--unshare", "net", "i");
	USAGE_ERROR("nothing to do", "i");
	USAGE_ERROR("--user: user 'a b' has whitespace", "--user", "a b", "--print", "i");
	USAGE_ERROR("--user: user 'a:b:c': expected USER[:GROUP]", "-u", "a:b:c", "--print", "i");
	USAGE_ERROR("--user: user ':0': expected USER[:GROUP]", "--user", ":0", "--print", "i");
	USAGE_ERROR("out of range", "--user", "4294967296", "--print", "i");
	USAGE_ERROR("--env 'A': expected KEY=VALUE", "--env", "A", "--print", "i");
	USAGE_ERROR("--env '=x': expected KEY=VALUE", "-e", "=x", "--print", "i");
	/* Run from uWSGI: the inherited socket is the mode. */
	struct ud_cli c;
	ud_error e;
	setenv(UD_FD_ENV, "3", 1);
	assert_int_equal(parse(&c, &e, "i", NULL), UD_CLI_RUN);
	ud_cli_free(&c);
	unsetenv(UD_FD_ENV);
}

/* --user is kept as given (resolved inside the image later); --env entries in order. */
static void test_user_and_env(void **state)
{
	(void)state;
	struct ud_cli c;
	ud_error e;
	assert_int_equal(parse(&c, &e, "--print", "i", NULL), UD_CLI_RUN);
	assert_null(c.o.user);
	assert_int_equal(c.o.n_env, 0);
	ud_cli_free(&c);
	assert_int_equal(parse(&c, &e, "-u", "app:staff", "-e", "A=1", "--env", "B=x=y", "-e",
			       "A=", "--print", "i", NULL),
			 UD_CLI_RUN);
	assert_string_equal(c.o.user, "app:staff");
	assert_int_equal(c.o.n_env, 3);
	assert_string_equal(c.o.env[0], "A=1");
	assert_string_equal(c.o.env[1], "B=x=y");
	assert_string_equal(c.o.env[2], "A=");
	ud_cli_free(&c);
	assert_null(c.o.env);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults_and_command),
		cmocka_unit_test(test_every_choice_parses),
		cmocka_unit_test(test_values_and_flags),
		cmocka_unit_test(test_binds_in_order),
		cmocka_unit_test(test_help_and_version),
		cmocka_unit_test(test_usage_from_the_tables),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_usage_errors),
		cmocka_unit_test(test_user_and_env),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
