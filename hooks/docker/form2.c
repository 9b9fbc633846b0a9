/* Form 2, exec-as-root = uwsgi-docker-rootfs IMAGE: uWSGI runs the helper as a hook, with the
 * socket the plugin gave it in UWSGI_DOCKER_FD; in before_privileges_drop the plugin binds the
 * sockets on the host, then the whole instance enters. A re-exec from inside the image cannot
 * find the uwsgi binary, so a full reload ends the instance instead (an Emperor respawns it). */
#include "plugin.h"

#include "util.h"

/* uWSGI runs exec-as-root hooks with no time limit. A helper that hangs would hold the
 * instance forever; past the plugin's deadline the instance ends instead, and with it (the
 * PID namespace's init sees its lifeline close) whatever the hook left running. */
static struct sigaction hook_old_alarm;

static void hook_deadline(int sig)
{
	(void)sig;
	static const char msg[] = LOG_PREFIX "the exec-as-root helper did not hand over a "
					     "namespace in time: stopping\n";
	ssize_t w = write(2, msg, sizeof(msg) - 1);
	(void)w;
	_exit(1);
}

static void arm_hook_deadline(void)
{
	struct sigaction sa = {.sa_handler = hook_deadline};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, &hook_old_alarm);
	alarm((unsigned)ud_helper_deadline_s());
}

static void disarm_hook_deadline(void)
{
	alarm(0);
	sigaction(SIGALRM, &hook_old_alarm, NULL);
}

/* Without a master the process that serves is the first one, and it cannot be moved into a PID
 * namespace: it would see the host's processes. */
static void require_master(void)
{
	if (uwsgi.master_process)
		return;
	ud_dief(0,
		"the docker plugin needs master = true (the processes that serve from image '%s' "
		"live in a PID namespace, and only the master's children can be put there)",
		ud.image ? ud.image : "(exec-as-root)");
}

/* The hook's /bin/sh -c inherits one end (not CLOEXEC), named in UWSGI_DOCKER_FD. */
static void open_handoff_socket(void)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		ud_dief(errno, "socketpair");
	ud.sock = sv[0];
	ud.peer = dup(sv[1]);
	close(sv[1]);
	if (ud.peer < 0)
		ud_dief(errno, "dup");
	char num[16];
	snprintf(num, sizeof(num), "%d", ud.peer);
	setenv(UD_FD_ENV, num, 1);
}

void ud_form2_jail(void)
{
	ud_error e = {0};
	ud.form = UD_FORM_INSTANCE;
	require_master();
	/* Every process the master forks from now on (the hook and its helper, the workers) is
	 * in the instance's own PID namespace. */
	if (ud_pidns_create(&ud.pidns, &e) < 0)
		ud_die(&e);
	open_handoff_socket();
	if (!uwsgi.exit_on_reload)
		uwsgi_log(LOG_PREFIX "the whole instance enters the image: a full reload will "
				     "end it (exit-on-reload), for the Emperor to respawn\n");
	uwsgi.exit_on_reload = 1;
	arm_hook_deadline();
}

/* The hook already ran and exited: its message is waiting, or it never sent one (killed by a
 * signal, which uWSGI counts as success). */
static void receive(void)
{
	ud_error e = {0};
	close(ud.peer);
	ud.peer = -1;
	unsetenv(UD_FD_ENV);
	if (ud_handoff_recv(ud.sock, &ud.h, 2000, &e) < 0) {
		if (e.errnum == ETIMEDOUT)
			ud_fail(&e, UD_EXIT_HANDOFF, 0,
				"the exec-as-root helper sent no namespace (was it killed?)");
		ud_die(&e);
	}
	close(ud.sock);
	ud.sock = -1;
	ud_refuse_own_namespace(&ud.h);
	if (ud_image_user_check(&ud.h, 1, &e) < 0)
		ud_die(&e);
}

void ud_form2_enter(void)
{
	disarm_hook_deadline();
	receive();
	/* Sockets are bound now, on the host, where nginx looks for them; uWSGI skips bound ones
	 * later. */
	uwsgi_bind_sockets();
	ud_chown_sockets();
	/* systemd's notification socket is a host path too. */
	ud_notify_connect();
	/* The whole instance is inside, and Python starts after the privileges drop: the C
	 * environment is all it needs. */
	ud_enter_image(&ud.h, ud.h.workdir);
	char nsbuf[64];
	uwsgi_log(LOG_PREFIX "entered image %s (%s), %u layers, namespaces %s,pid\n", ud.h.image,
		  ud.h.id, ud.h.layers, ud_ns_list(&ud.h, nsbuf, sizeof(nsbuf)));
	/* uWSGI runs as-root hooks again on later uwsgi_as_root() calls (no uid): the helper is
	 * not inside the image, and we are in already. */
	uwsgi.exec_as_root = NULL;
}
