/* Form 1: a full reload never makes things worse. The master hands the generation it serves to
 * the master it re-executes into; if that one cannot resolve the image (the tag is gone, the
 * daemon is down, the helper fails), it serves what it was handed instead of dying.
 *
 * What crosses the exec: the namespace itself, sent over a socketpair to ourselves in the
 * hand-off protocol (so the new master checks it exactly as it checks the helper's answer), and
 * the workers' PID namespace with its init's lifeline: the /proc mounted in that mount namespace
 * belongs to that PID namespace, so the two only go together. Nothing of the image's reaches the
 * environment: the variable names our fds, the image's Env travels inside the socket.
 *
 * uWSGI's re-exec (uwsgi_reload()) calls the plugins' master_cleanup hooks, then closes every fd
 * that is not registered as safe, then execs; after the exec, uwsgi_setup_inherited_sockets()
 * closes unknown fds again, after the jail callback. Both are why the fds are registered. */
#include "plugin.h"

#include <sys/socket.h>

#include "util.h"

#define STASH_ENV "UWSGI_DOCKER_STASH"

static struct {
	int sock, gen_fd, life_fd;
	pid_t init_pid;
} stash = {.sock = -1, .gen_fd = -1, .life_fd = -1};

static int keep_across_exec(int fd)
{
	uwsgi_add_safe_fd(fd);
	return fcntl(fd, F_SETFD, 0);
}

/* master_cleanup, in the master that is about to re-execute itself. */
void ud_stash_save(void)
{
	if (ud.form != UD_FORM_WORKERS || !uwsgi_instance_is_reloading || ud.h.n_fds < 1 ||
	    ud.pidns.gen_fd < 0)
		return;
	int sv[2];
	ud_error e = {0};
	char buf[1400];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return;
	if (ud_handoff_send(sv[1], &ud.h, &e) < 0) {
		uwsgi_log(LOG_PREFIX "cannot keep image %s for the next generation: %s\n", ud.image,
			  ud_error_text(&e, buf, sizeof(buf)));
		close(sv[0]);
		close(sv[1]);
		return;
	}
	close(sv[1]);
	if (keep_across_exec(sv[0]) < 0 || keep_across_exec(ud.pidns.gen_fd) < 0 ||
	    keep_across_exec(ud.pidns.life_fd) < 0)
		return;
	char val[96];
	snprintf(val, sizeof(val), "%d,%d,%d,%d", sv[0], ud.pidns.gen_fd, ud.pidns.life_fd,
		 (int)ud.pidns.init_pid);
	setenv(STASH_ENV, val, 1);
}

static int is_fd(int fd)
{
	return fd > 2 && fcntl(fd, F_GETFD) >= 0;
}

/* The jail of the new master: take what the previous one left, before uWSGI closes it. */
void ud_stash_take(void)
{
	const char *v = getenv(STASH_ENV);
	int s, g, l, p;
	if (!v)
		return;
	int ok = sscanf(v, "%d,%d,%d,%d", &s, &g, &l, &p) == 4 && is_fd(s) && is_fd(g) && is_fd(l);
	unsetenv(STASH_ENV);
	if (!ok)
		return;
	stash.sock = s;
	stash.gen_fd = g;
	stash.life_fd = l;
	stash.init_pid = p;
	int fds[] = {s, g, l};
	for (size_t i = 0; i < UD_ARRAY_SIZE(fds); i++) {
		fcntl(fds[i], F_SETFD, FD_CLOEXEC);
		uwsgi_add_safe_fd(fds[i]);
	}
}

/* The new generation resolved: what the previous one left goes, and with its lifeline the
 * previous PID namespace's init (nothing else lives there any more). */
void ud_stash_drop(void)
{
	ud_closep(&stash.sock);
	ud_closep(&stash.gen_fd);
	ud_closep(&stash.life_fd);
}

/* The new generation could not resolve: serve the previous one's namespace, in its PID
 * namespace, and say why in one line. 0, or -1 when there is nothing usable (a first start). */
int ud_stash_fall_back(const ud_error *why)
{
	ud_error e = {0};
	char buf[1400];
	struct ud_handoff h;
	ud_handoff_init(&h);
	if (stash.sock < 0 || ud_handoff_recv(stash.sock, &h, 1000, &e) < 0 ||
	    ud_handoff_check_foreign(&h, &e) < 0) {
		ud_handoff_free(&h);
		ud_stash_drop();
		return -1;
	}
	ud_closep(&stash.sock);
	ud_handoff_free(&ud.h);
	ud.h = h;
	/* The new PID namespace's init ends with its lifeline; the old one's takes its place. */
	ud_closep(&ud.pidns.gen_fd);
	ud_closep(&ud.pidns.life_fd);
	ud.pidns.gen_fd = stash.gen_fd;
	ud.pidns.life_fd = stash.life_fd;
	ud.pidns.init_pid = stash.init_pid;
	stash.gen_fd = stash.life_fd = -1;
	uwsgi_log(LOG_PREFIX "%s: the workers keep serving image %s (%s) from before the reload\n",
		  ud_error_text(why, buf, sizeof(buf)), ud.image, ud.h.id);
	return 0;
}
