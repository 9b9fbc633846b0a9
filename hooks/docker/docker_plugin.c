/* The uWSGI "docker" plugin: runs an instance's workers (or the whole instance) inside the mount
 * namespace that uwsgi-docker-rootfs prepares from a Docker image.
 *
 * Form 1, docker-image = IMAGE (with master = true): the master stays on the host. In the jail
 * callback (root, config parsed, on every start and every re-exec reload) it runs the helper
 * once and keeps the namespace fds; master-as-root and lazy-apps make every worker call
 * before_privileges_drop right after fork, as root, where it setns()es in, then drops privileges
 * and loads the app from the image. A full reload re-executes the master on the host, which
 * resolves the image again.
 *
 * Form 2, exec-as-root = uwsgi-docker-rootfs IMAGE: uWSGI runs the helper as a hook; we gave it a
 * socket in UWSGI_DOCKER_FD. In before_privileges_drop we bind the sockets on the host, then the
 * whole instance enters. A re-exec from inside the image cannot find the uwsgi binary, so a full
 * reload ends the instance instead (an Emperor respawns it). docker-image without master = true
 * behaves like form 2, with the helper run by the plugin itself. */
#include "plugin.h"

#include <pwd.h>
#include <sys/prctl.h>

#include "appenv.h"
#include "caps.h"
#include "util.h"

struct ud_plugin ud = {.env = -1, .sock = -1, .peer = -1, .pidns = UD_PIDNS_INIT};

static struct uwsgi_option docker_options[] = {
	{"docker-image", required_argument, 0,
	 "serve the app from this Docker image (workers enter it, the master stays on the host)",
	 uwsgi_opt_set_str, &ud.image, 0},
	{"docker-image-rwpath", required_argument, 0, "keep the image's writable layer in this directory",
	 uwsgi_opt_set_str, &ud.rwpath, 0},
	{"docker-bind", required_argument, 0, "bind host SRC[:DST] into the image (read-write)",
	 uwsgi_opt_add_string_list, &ud.binds, 0},
	{"docker-ro-bind", required_argument, 0, "bind host SRC[:DST] into the image, read-only",
	 uwsgi_opt_add_string_list, &ud.ro_binds, 0},
	{"docker-tmpfs", required_argument, 0, "mount a fresh tmpfs at DST inside the image",
	 uwsgi_opt_add_string_list, &ud.tmpfs, 0},
	{"docker-unshare", required_argument, 0, "also unshare ipc, uts, net or cgroup (comma-separated)",
	 uwsgi_opt_set_str, &ud.unshare, 0},
	{"docker-hostname", required_argument, 0, "hostname inside (needs docker-unshare = uts)",
	 uwsgi_opt_set_str, &ud.hostname, 0},
	{"docker-read-only", optional_argument, 0, "no writable layer: the image root is read-only",
	 uwsgi_opt_true, &ud.read_only, 0},
	{"docker-host", required_argument, 0, "Docker daemon socket (unix:///PATH or /PATH)",
	 uwsgi_opt_set_str, &ud.host, 0},
	{"docker-helper", required_argument, 0, "path of uwsgi-docker-rootfs when it is not on PATH",
	 uwsgi_opt_set_str, &ud.helper, 0},
	{"docker-env", optional_argument, 0, "apply the image's Env to the app (default true)",
	 uwsgi_opt_true, &ud.env, 0},
	{"docker-allow-root", optional_argument, 0, "allow app code to run as root inside the image",
	 uwsgi_opt_true, &ud.allow_root, 0},
	{"docker-no-confine", optional_argument, 0,
	 "no Docker-style confinement (masked /proc paths, capabilities, Landlock): debugging only",
	 uwsgi_opt_true, &ud.no_confine, 0},
	{"docker-timeout", required_argument, 0, "timeout of each Docker API request, in seconds",
	 uwsgi_opt_set_str, &ud.timeout, 0},
	{"docker-mount-api", required_argument, 0, "auto, fd, string or legacy (see the helper)",
	 uwsgi_opt_set_str, &ud.mount_api, 0},
	{"docker-layers", required_argument, 0, "where the layers come from: auto, direct or export",
	 uwsgi_opt_set_str, &ud.layers, 0},
	{"docker-cache-dir", required_argument, 0, "the layer cache for exported images",
	 uwsgi_opt_set_str, &ud.cache_dir, 0},
	UWSGI_END_OF_OPTIONS};

static void fatal(const ud_error *e)
{
	char buf[1400];
	uwsgi_log(LOG_PREFIX "%s\n", ud_error_text(e, buf, sizeof(buf)));
	exit(1);
}

static void fatal_errno(const char *what)
{
	uwsgi_log(LOG_PREFIX "%s: %s\n", what, strerror(errno));
	exit(1);
}

static char *ns_list(const struct ud_handoff *h, char *buf, size_t len)
{
	buf[0] = '\0';
	for (int i = 0; i < h->n_fds; i++) {
		if (buf[0])
			strncat(buf, ",", len - strlen(buf) - 1);
		strncat(buf, ud_ns_name(h->types[i]), len - strlen(buf) - 1);
	}
	return buf;
}

static int wants_env(void)
{
	return ud.env != 0;
}

static int exec_as_root_runs_helper(void)
{
	struct uwsgi_string_list *usl;
	uwsgi_foreach(usl, uwsgi.exec_as_root) if (strstr(usl->value, HELPER_NAME)) return 1;
	return 0;
}

static void refuse_root(void)
{
	if (ud.allow_root)
		return;
	/* uid = 0 and uid = root set uidname too: resolve it as uWSGI will. */
	uid_t uid = uwsgi.uid;
	if (!uid && uwsgi.uidname) {
		struct passwd *pw = getpwnam(uwsgi.uidname);
		char *end;
		unsigned long n = strtoul(uwsgi.uidname, &end, 10);
		uid = pw ? pw->pw_uid : (!*end ? (uid_t)n : (uid_t)-1);
	}
	if (uid != 0)
		return;
	uwsgi_log(LOG_PREFIX "refusing to run app code as root inside image '%s': set uid "
			     "(and gid), or docker-allow-root = true\n",
		  ud.image ? ud.image : "(exec-as-root)");
	exit(1);
}


/* The helper is ours to trust only as far as what it hands back is a namespace of its own: a
 * "helper" that returned our mount namespace would have the workers run on the host's files. */
static void refuse_own_namespace(const struct ud_handoff *h)
{
	ud_error e = {0};
	if (ud_handoff_check_foreign(h, &e) < 0)
		fatal(&e);
}

/* ---------------------------------------------------------------- fork hooks (form 1)
 *
 * Only workers go into the PID namespace: gateways (the http router), daemons and cron tasks
 * forked by the master stay in the host's, and none of them may be visible to the workers (a
 * same-uid router on the host's filesystem would be a way out through /proc/<pid>/root).
 * uWSGI announces a worker's fork only to request plugins (uwsgi.p[], pre_uwsgi_fork and
 * post_uwsgi_fork in uwsgi_respawn_worker); this plugin is a generic one. So it takes one unused
 * request-plugin slot: a copy of uWSGI's "unconfigured" plugin (requests with that modifier are
 * still refused the same way) with the two fork hooks added. */
extern struct uwsgi_plugin unconfigured_plugin;
static struct uwsgi_plugin fork_hooks;

static void pre_worker_fork(void)
{
	ud_error e = {0};
	if (ud.pidns.gen_fd >= 0 && ud_pidns_enter(&ud.pidns, &e) < 0)
		fatal(&e);
}

static void post_worker_fork(int child)
{
	ud_error e = {0};
	if (!child && ud.pidns.gen_fd >= 0 && ud_pidns_leave(&ud.pidns, &e) < 0)
		fatal(&e);
}

static void install_fork_hooks(void)
{
	for (int i = 0; i < 256; i++)
		if (uwsgi.p[i] == &fork_hooks)
			return;
	for (int i = 255; i >= 0; i--) {
		if (uwsgi.p[i] != &unconfigured_plugin)
			continue;
		fork_hooks = unconfigured_plugin;
		fork_hooks.name = "docker-worker-pidns";
		fork_hooks.pre_uwsgi_fork = pre_worker_fork;
		fork_hooks.post_uwsgi_fork = post_worker_fork;
		uwsgi.p[i] = &fork_hooks;
		return;
	}
	uwsgi_log(LOG_PREFIX "no free request-plugin slot for the workers' fork hooks\n");
	exit(1);
}

static void keep_fd(int fd)
{
	/* uwsgi_setup_inherited_sockets() closes unknown fds after a re-exec reload. */
	if (fd >= 0)
		uwsgi_add_safe_fd(fd);
}

/* ---------------------------------------------------------------- form 1: the master stays */

static void jail_form1(void)
{
	ud_error e = {0};
	ud.form = 1;
	refuse_root();
	/* Mules and spoolers never pass through uWSGI's privileges drop under master-as-root: they
	 * would run app code as root, on the host. */
	if (uwsgi.mules_cnt || uwsgi.farms_cnt || uwsgi.spoolers) {
		uwsgi_log(LOG_PREFIX "docker-image cannot serve mules, farms or spoolers (under "
				     "master-as-root they would run as root on the host): use "
				     "exec-as-root = uwsgi-docker-rootfs %s\n",
			  ud.image);
		exit(1);
	}
	/* The helper runs in the workers' PID namespace: the /proc it mounts belongs to it. */
	if (ud_pidns_create(&ud.pidns, &e) < 0)
		fatal(&e);
	int r = ud_run_helper(&ud.h, &e);
	ud_error le = {0};
	if (ud_pidns_leave(&ud.pidns, &le) < 0)
		fatal(&le);
	if (r < 0)
		fatal(&e);
	refuse_own_namespace(&ud.h);
	for (int i = 0; i < ud.h.n_fds; i++)
		keep_fd(ud.h.fds[i]);
	keep_fd(ud.pidns.host_fd);
	keep_fd(ud.pidns.gen_fd);
	keep_fd(ud.pidns.life_fd);
	install_fork_hooks();
	if (!uwsgi.master_as_root || !uwsgi.lazy_apps)
		uwsgi_log(LOG_PREFIX "enabling master-as-root and lazy-apps: the master stays "
				     "on the host, each worker enters the image\n");
	uwsgi.master_as_root = 1;
	uwsgi.lazy_apps = 1;
	char nsbuf[64];
	uwsgi_log(LOG_PREFIX "image %s (%s), %u layers, namespaces %s,pid ready for the "
			     "workers\n",
		  ud.h.image, ud.h.id, ud.h.layers, ns_list(&ud.h, nsbuf, sizeof(nsbuf)));
}

/* ---------------------------------------------------------------- form 2: all of it enters */

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

static void add_helper_hook(void)
{
	/* docker-image without a master: the helper runs as an exec-as-root hook, like form 2
	 * written by hand. */
	char **hargv = ud_helper_argv();
	char *cmd = uwsgi_str("exec");
	for (char **a = hargv; *a; a++) {
		if (strchr(*a, '\'')) {
			uwsgi_log(LOG_PREFIX "option value with a quote: %s\n", *a);
			exit(1);
		}
		char *q = uwsgi_concat3(" '", *a, "'");
		char *n = uwsgi_concat2(cmd, q);
		free(cmd);
		free(q);
		cmd = n;
	}
	free(hargv);
	uwsgi_string_new_list(&uwsgi.exec_as_root, cmd);
}

static void jail_form2(void)
{
	ud_error e = {0};
	ud.form = 2;
	refuse_root();
	/* Without a master the process that serves is the first one, and it cannot be moved
	 * into a PID namespace: it would see the host's processes. */
	if (!uwsgi.master_process) {
		uwsgi_log(LOG_PREFIX "the docker plugin needs master = true (the processes that "
				     "serve from image '%s' live in a PID namespace, and only the "
				     "master's children can be put there)\n",
			  ud.image ? ud.image : "(exec-as-root)");
		exit(1);
	}
	/* Every process the master forks from now on (the hook and its helper, the workers) is
	 * in the instance's own PID namespace. */
	if (ud_pidns_create(&ud.pidns, &e) < 0)
		fatal(&e);
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		fatal_errno("socketpair()");
	ud.sock = sv[0];
	/* The hook's /bin/sh -c must inherit this end. */
	ud.peer = dup(sv[1]);
	close(sv[1]);
	if (ud.peer < 0)
		fatal_errno("dup()");
	char num[16];
	snprintf(num, sizeof(num), "%d", ud.peer);
	setenv(UD_FD_ENV, num, 1);
	if (ud.image)
		add_helper_hook();
	if (!uwsgi.exit_on_reload)
		uwsgi_log(LOG_PREFIX "the whole instance enters the image: a full reload will "
				     "end it (exit-on-reload), for the Emperor to respawn\n");
	uwsgi.exit_on_reload = 1;
	arm_hook_deadline();
}

static void docker_jail(int (*start)(void *), char **argv)
{
	(void)start;
	(void)argv;
	if (ud.image && uwsgi.master_process)
		jail_form1();
	else if (ud.image || exec_as_root_runs_helper())
		jail_form2();
}

/* Unix sockets bound as root (form 1: by the master; form 2: by us before entering) go to the
 * uid/gid that nginx and the workers expect, unless chown-socket says otherwise. In form 1 the
 * master never resolved uid/gid names (master-as-root), so resolve them here, on the host. */
static void chown_sockets(void)
{
	if (uwsgi.chown_socket)
		return;
	uid_t uid = uwsgi.uid;
	gid_t gid = uwsgi.gid;
	if (!uid && uwsgi.uidname) {
		struct passwd *pw = getpwnam(uwsgi.uidname);
		if (pw) {
			uid = pw->pw_uid;
			if (!uwsgi.gid && !uwsgi.gidname)
				gid = pw->pw_gid;
		}
	}
	if (!gid && uwsgi.gidname) {
		struct group *gr = getgrnam(uwsgi.gidname);
		if (gr)
			gid = gr->gr_gid;
	}
	if (!uid && !gid)
		return;
	struct uwsgi_socket *s;
	for (s = uwsgi.sockets; s; s = s->next)
		if (s->family == AF_UNIX && s->name && s->name[0] != '@' && s->bound)
			if (chown(s->name, uid, gid) < 0)
				uwsgi_error_realpath(s->name);
}

/* ---------------------------------------------------------------- entering */

/* This process (a form 1 worker, or the form 2 master) goes into the image: groups looked up on
 * the host first, then the namespaces, then the rest inside. */
static void enter_image(const char *chdir_to)
{
	ud_error e = {0};
	struct ud_creds cr;
	if (ud_creds_resolve(&cr, &e) < 0 || ud_handoff_enter(&ud.h, &e) < 0 ||
	    ud_creds_apply(&cr, &e) < 0 || ud_chdir_image(chdir_to, &e) < 0)
		fatal(&e);
	ud_creds_free(&cr);
	if (wants_env() && ud_appenv_apply(ud.h.env, ud.h.n_env, &e) < 0)
		fatal(&e);
	/* The root is nosuid, but binds are not: nothing executed from here on gains privileges. */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		fatal_errno("prctl(PR_SET_NO_NEW_PRIVS)");
	/* What docker run gives a root process (uWSGI's setuid and setgid stay possible), and
	 * Landlock's scoping: no abstract unix socket and no signal outside this process's domain
	 * (the network namespace is the host's unless docker-unshare = net). */
	if (!ud.no_confine && (ud_caps_docker_default(&e) < 0 || ud_landlock_scope(&e) < 0))
		fatal(&e);
	ud.entered = 1;
}

static void enter_form2(void)
{
	ud_error e = {0};
	disarm_hook_deadline();
	close(ud.peer);
	ud.peer = -1;
	unsetenv(UD_FD_ENV);
	/* The hook already ran and exited: its message is waiting, or it never sent one (killed by
	 * a signal, which uWSGI counts as success). */
	if (ud_handoff_recv(ud.sock, &ud.h, 2000, &e) < 0) {
		if (e.errnum == ETIMEDOUT)
			ud_fail(&e, UD_EXIT_HANDOFF, 0,
				"the exec-as-root helper sent no namespace (was it killed?)");
		fatal(&e);
	}
	close(ud.sock);
	ud.sock = -1;
	refuse_own_namespace(&ud.h);
	/* Sockets are bound now, on the host, where nginx looks for them; uWSGI skips bound ones
	 * later. */
	uwsgi_bind_sockets();
	chown_sockets();
	/* The whole instance is inside, and Python starts after the privileges drop: the C
	 * environment is all it needs. */
	enter_image(ud.h.workdir);
	char nsbuf[64];
	uwsgi_log(LOG_PREFIX "entered image %s (%s), %u layers, namespaces %s,pid\n", ud.h.image,
		  ud.h.id, ud.h.layers, ns_list(&ud.h, nsbuf, sizeof(nsbuf)));
	/* uWSGI runs as-root hooks again on later uwsgi_as_root() calls (no uid): the helper is
	 * not inside the image, and we are in already. */
	uwsgi.exec_as_root = NULL;
}

static void docker_before_privileges_drop(void)
{
	if (ud.entered || !ud.form)
		return;
	if (ud.form == 2) {
		enter_form2();
		return;
	}
	/* Form 1: a worker, right after fork, as root. The master keeps its copies. Gateways
	 * (http, fastrouter...) come here too under master-as-root: they stay on the host. */
	if (uwsgi.mywid <= 0)
		return;
	if (ud.h.n_fds < 1) {
		ud_error e = {0};
		ud_fail(&e, UD_EXIT_HANDOFF, 0, "no namespace to enter for image '%s'", ud.image);
		fatal(&e);
	}
	ud_pidns_close(&ud.pidns);
	/* The master's chdir option names a path for the app: inside the image. */
	enter_image(uwsgi.chdir ? uwsgi.chdir : ud.h.workdir);
}

/* A worker, after the language plugins' own post_fork: Python copied the environment into
 * os.environ in the master, at its start; the app must see this worker's, the image's. */
static void docker_post_fork(void)
{
	ud_error e = {0};
	if (ud.form == 1 && ud.entered && wants_env() && ud_appenv_refresh_runtimes(&e) < 0)
		fatal(&e);
}

static void docker_post_init(void)
{
	if (ud.form == 1)
		chown_sockets();
}

struct uwsgi_plugin docker_plugin = {
	.name = "docker",
	.options = docker_options,
	.jail = docker_jail,
	.before_privileges_drop = docker_before_privileges_drop,
	.post_fork = docker_post_fork,
	.post_init = docker_post_init,
};
