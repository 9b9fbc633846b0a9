/* Unit tests for sockets.c (the --send-to listener checks, $UWSGI_DOCKER_FD, the hand-off
 * message) and pin.c (which files --pin accepts). Run as root, like the helper. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "handoff.h"
#include "pin.h"
#include "sockets.h"
#include "util.h"

static char dir[64];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/udunit-sockets-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* A listener at dir/name, bound as root and listening as uid (its SO_PEERCRED), in a child. */
static pid_t listener(const char *name, int type, uid_t uid, char *path, size_t len)
{
	snprintf(path, len, "%s/%s", dir, name);
	int ready[2];
	assert_int_equal(pipe(ready), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct sockaddr_un sa = {.sun_family = AF_UNIX};
		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
		int s = socket(AF_UNIX, type, 0);
		if (s < 0 || bind(s, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
		    (uid && setresuid(uid, uid, uid) < 0) || listen(s, 4) < 0)
			_exit(1);
		if (write(ready[1], "x", 1) != 1)
			_exit(1);
		pause();
		_exit(0);
	}
	close(ready[1]);
	char c;
	assert_int_equal(read(ready[0], &c, 1), 1);
	close(ready[0]);
	return pid;
}

static void stop(pid_t pid, const char *path)
{
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	unlink(path);
}

static void test_connect(void **state)
{
	(void)state;
	char path[128];
	ud_error e = {0};
	pid_t pid = listener("seq", SOCK_SEQPACKET, 0, path, sizeof(path));
	int s = ud_sockets_connect(path, (uid_t)-1, &e);
	assert_true(s >= 0);
	int type = 0;
	socklen_t tl = sizeof(type);
	assert_int_equal(getsockopt(s, SOL_SOCKET, SO_TYPE, &type, &tl), 0);
	assert_int_equal(type, SOCK_SEQPACKET);
	assert_true(fcntl(s, F_GETFD) & FD_CLOEXEC);
	close(s);
	stop(pid, path);
	/* A stream listener: the fallback. */
	pid = listener("stream", SOCK_STREAM, 0, path, sizeof(path));
	s = ud_sockets_connect(path, (uid_t)-1, &e);
	assert_true(s >= 0);
	close(s);
	stop(pid, path);
	assert_int_equal(ud_sockets_connect(path, (uid_t)-1, &e), -1);
	assert_int_equal(e.status, UD_EXIT_HANDOFF);
	assert_non_null(strstr(e.msg, "connecting to --send-to"));
	char longp[200];
	memset(longp, 'a', sizeof(longp) - 1);
	longp[0] = '/';
	longp[sizeof(longp) - 1] = '\0';
	assert_int_equal(ud_sockets_connect(longp, (uid_t)-1, &e), -1);
	assert_int_equal(e.errnum, ENAMETOOLONG);
}

static void test_connect_refusals(void **state)
{
	(void)state;
	char path[128];
	ud_error e = {0};
	/* A listener that is not root's: refused unless named. */
	pid_t pid = listener("nobody", SOCK_SEQPACKET, 65534, path, sizeof(path));
	assert_int_equal(ud_sockets_connect(path, (uid_t)-1, &e), -1);
	assert_non_null(strstr(e.msg, "the listener runs as uid 65534, not root (see --send-to-uid)"));
	int s = ud_sockets_connect(path, 65534, &e);
	assert_true(s >= 0);
	close(s);
	/* A directory others may write, where the socket could be swapped. */
	assert_int_equal(chmod(dir, 0777), 0);
	assert_int_equal(ud_sockets_connect(path, (uid_t)-1, &e), -1);
	assert_non_null(strstr(e.msg, "refusing a socket in"));
	assert_int_equal(chmod(dir, 0700), 0);
	stop(pid, path);
}

static void test_inherited(void **state)
{
	(void)state;
	ud_error e = {0};
	unsetenv(UD_FD_ENV);
	assert_int_equal(ud_sockets_inherited(&e), -1);
	static const char *const bad[] = {"", "abc", "3x", "-1", "99999999999", "1000000"};
	for (size_t i = 0; i < UD_ARRAY_SIZE(bad); i++) {
		setenv(UD_FD_ENV, bad[i], 1);
		e.status = 0;
		assert_int_equal(ud_sockets_inherited(&e), -1);
		assert_int_equal(e.status, UD_EXIT_HANDOFF);
		assert_non_null(strstr(e.msg, "is not an open socket inherited from uWSGI"));
	}
	char num[16];
	int fd = open("/dev/null", O_RDONLY);
	snprintf(num, sizeof(num), "%d", fd);
	setenv(UD_FD_ENV, num, 1);
	assert_int_equal(ud_sockets_inherited(&e), -1); /* not a socket */
	close(fd);
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
	snprintf(num, sizeof(num), "%d", sv[0]);
	setenv(UD_FD_ENV, num, 1);
	assert_int_equal(ud_sockets_inherited(&e), sv[0]);
	assert_true(fcntl(sv[0], F_GETFD) & FD_CLOEXEC);
	close(sv[0]);
	close(sv[1]);
	unsetenv(UD_FD_ENV);
}

static void test_hand_off(void **state)
{
	(void)state;
	static char *env[] = {"A=1", "B=2"};
	struct ud_image img;
	memset(&img, 0, sizeof(img));
	img.ref = "busybox";
	img.id = "sha256:abc";
	img.workdir = "/srv";
	img.n_layers = 3;
	img.env = env;
	img.n_env = 2;
	struct ud_ns_fds ns = {.n = 1, .types = {CLONE_NEWNS}, .host_mnt = -1};
	ns.fds[0] = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
	assert_true(ns.fds[0] >= 0);
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	ud_error e = {0};
	struct ud_handoff_user user = {.has = true, .uid = 65534, .gid = 0};
	assert_int_equal(ud_sockets_hand_off(sv[0], &img, &ns, &user, &e), 0);
	struct ud_handoff h;
	ud_handoff_init(&h);
	assert_int_equal(ud_handoff_recv(sv[1], &h, 2000, &e), 0);
	assert_string_equal(h.image, "busybox");
	assert_string_equal(h.id, "sha256:abc");
	assert_string_equal(h.workdir, "/srv");
	assert_int_equal(h.layers, 3);
	assert_int_equal(h.n_env, 2);
	assert_string_equal(h.env[1], "B=2");
	assert_true(h.has_user && h.uid == 65534 && h.gid == 0 && !h.user_error);
	assert_int_equal(h.n_fds, 1);
	assert_int_equal(h.types[0], CLONE_NEWNS);
	ud_handoff_free(&h);
	close(ns.fds[0]);
	close(sv[0]);
	close(sv[1]);
}

static void test_pin_open(void **state)
{
	(void)state;
	char path[160], link[160];
	bool created = false;
	ud_error e = {0};
	snprintf(path, sizeof(path), "%s/pin", dir);
	int fd = ud_pin_open(path, &created, &e);
	assert_true(fd >= 0 && created);
	close(fd);
	/* An existing empty file of root's: reused. */
	fd = ud_pin_open(path, &created, &e);
	assert_true(fd >= 0 && !created);
	close(fd);
	/* Not empty: refused. */
	FILE *f = fopen(path, "w");
	fputs("root:x:0:0::/root:/bin/sh\n", f);
	fclose(f);
	assert_int_equal(ud_pin_open(path, &created, &e), -1);
	assert_non_null(strstr(e.msg, "refusing an existing file"));
	/* A symlink, as the file or on the way to it. */
	snprintf(link, sizeof(link), "%s/link", dir);
	assert_int_equal(symlink(path, link), 0);
	assert_int_equal(ud_pin_open(link, &created, &e), -1);
	assert_int_equal(e.errnum, ELOOP);
	snprintf(link, sizeof(link), "%s/dirlink", dir);
	assert_int_equal(symlink(dir, link), 0);
	snprintf(link, sizeof(link), "%s/dirlink/new", dir);
	assert_int_equal(ud_pin_open(link, &created, &e), -1);
	assert_non_null(strstr(e.msg, "is reached through a symlink: refused"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_connect),
		cmocka_unit_test(test_connect_refusals),
		cmocka_unit_test(test_inherited),
		cmocka_unit_test(test_hand_off),
		cmocka_unit_test(test_pin_open),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
