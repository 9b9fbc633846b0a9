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
#include <uwsgi.h>

#include <grp.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "error.h"
#include "handoff.h"

extern struct uwsgi_server uwsgi;

#define LOG_PREFIX "[docker] "
#define HELPER_NAME "uwsgi-docker-rootfs"

static struct {
	/* options */
	char *image;
	char *rwpath;
	struct uwsgi_string_list *binds, *ro_binds, *tmpfs;
	char *unshare;
	char *hostname;
	int read_only;
	char *host;
	char *helper;
	int env; /* -1: default (on) */
	int allow_root;
	char *timeout;
	char *mount_api;
	char *layers;
	char *cache_dir;

	/* state */
	int form;     /* 0: unused, 1: master keeps the namespace, 2: the whole instance enters */
	int sock;     /* form 2: our end of the hand-off socket, -1 */
	int peer;     /* form 2: the end the hook inherits, -1 */
	int entered;
	struct ud_handoff h;
} ud = {.env = -1, .sock = -1, .peer = -1};

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

static int helper_timeout_ms(void)
{
	double t = ud.timeout ? atof(ud.timeout) : 10.0;
	if (!(t > 0))
		t = 10.0;
	/* A safety net only: the helper bounds each request and any stall of an export by this
	 * timeout itself. Resolving takes up to three requests; exporting a large image may take
	 * minutes of steady progress. */
	return (int)(t * 1000) * 3 + (ud.layers && !strcmp(ud.layers, "direct") ? 30000 : 600000);
}

/* argv for the helper (form 1 and docker-image without master). */
static char **helper_argv(void)
{
	size_t n = 32;
	struct uwsgi_string_list *usl;
	uwsgi_foreach(usl, ud.binds) n += 2;
	uwsgi_foreach(usl, ud.ro_binds) n += 2;
	uwsgi_foreach(usl, ud.tmpfs) n += 2;
	char **argv = uwsgi_calloc(sizeof(char *) * n);
	size_t i = 0;
#define ARG(s) argv[i++] = (s)
#define OPT(flag, val)                                                                             \
	do {                                                                                       \
		if (val) {                                                                         \
			ARG(flag);                                                                 \
			ARG(val);                                                                  \
		}                                                                                  \
	} while (0)
	ARG(ud.helper ? ud.helper : HELPER_NAME);
	OPT("--docker-host", ud.host);
	OPT("--timeout", ud.timeout);
	OPT("--rw-path", ud.rwpath);
	if (ud.read_only)
		ARG("--read-only");
	OPT("--mount-api", ud.mount_api);
	OPT("--layers", ud.layers);
	OPT("--cache-dir", ud.cache_dir);
	uwsgi_foreach(usl, ud.binds) OPT("--bind", usl->value);
	uwsgi_foreach(usl, ud.ro_binds) OPT("--ro-bind", usl->value);
	uwsgi_foreach(usl, ud.tmpfs) OPT("--tmpfs", usl->value);
	OPT("--unshare", ud.unshare);
	OPT("--hostname", ud.hostname);
	ARG(ud.image);
#undef OPT
#undef ARG
	return argv;
}

/* The environment the master started with. The helper always runs with it, and in form 1 the
 * master's own environment returns to it once the language plugin has copied the image's Env
 * (Python copies the environment into os.environ once, in the master, at its start): from then
 * on the host side (re-exec on reload, daemons, hooks) never sees the image's values, and a key
 * a newer image dropped is gone after the reload by construction. */
static char **host_env;

static void snapshot_host_env(void)
{
	if (host_env)
		return;
	size_t n = 0;
	while (environ[n])
		n++;
	host_env = uwsgi_calloc(sizeof(char *) * (n + 1));
	for (size_t i = 0; i < n; i++)
		host_env[i] = uwsgi_str(environ[i]);
}

static void restore_host_env(void)
{
	clearenv();
	for (char **kv = host_env; kv && *kv; kv++)
		putenv(*kv);
}

/* Keys that would steer root code on the host while the image's Env sits in the form 1 master's
 * environment (from the jail callback until post_init): the dynamic linker and libc (glibc's
 * own list of variables unsafe for privileged programs), uWSGI's option parsing, the Docker
 * client, and Python's startup (paths, startup files, warnings filters that import modules). A
 * Python image's PYTHONPATH would otherwise make the master, root on the host, import
 * sitecustomize from a host path the image names (the layer cache's paths are predictable).
 * Workers get them after they entered the image. */
static int steers_the_host(const char *kv)
{
	static const char *const unsafe[] = {
		"LD_",	      "UWSGI_",	     "DOCKER_",	 "GCONV_PATH=", "GETCONF_DIR=",
		"GLIBC_TUNABLES=", "HOSTALIASES=", "LOCALDOMAIN=", "LOCPATH=", "MALLOC_",
		"NIS_PATH=",   "NLSPATH=",    "RESOLV_HOST_CONF=", "RES_OPTIONS=", "TMPDIR=",
		"TZDIR="};
	static const char *const python_safe[] = {
		"PYTHONUNBUFFERED=", "PYTHONDONTWRITEBYTECODE=", "PYTHONIOENCODING=",
		"PYTHONHASHSEED=",   "PYTHONFAULTHANDLER=",	 "PYTHONUTF8=",
		"PYTHONOPTIMIZE=",   "PYTHONNOUSERSITE="};
	for (size_t i = 0; i < sizeof(unsafe) / sizeof(unsafe[0]); i++)
		if (!strncmp(kv, unsafe[i], strlen(unsafe[i])))
			return 1;
	if (strncmp(kv, "PYTHON", 6) != 0)
		return 0;
	for (size_t i = 0; i < sizeof(python_safe) / sizeof(python_safe[0]); i++)
		if (!strncmp(kv, python_safe[i], strlen(python_safe[i])))
			return 0;
	return 1;
}

/* Sets the image's Env in this process; with master_side, only the keys that cannot steer the
 * host (the others are logged once). */
static void apply_env(const struct ud_handoff *h, int master_side)
{
	char held[512] = "";
	for (size_t i = 0; i < h->n_env; i++) {
		const char *kv = h->env[i];
		char *eq = strchr(kv, '=');
		if (!eq || eq == kv)
			continue;
		char *k = uwsgi_concat2n((char *)kv, (int)(eq - kv), "", 0);
		if (master_side && steers_the_host(kv)) {
			if (strlen(held) + strlen(k) + 3 < sizeof(held))
				strcat(strcat(held, held[0] ? ", " : ""), k);
		} else {
			setenv(k, eq + 1, 1);
		}
		free(k);
	}
	if (held[0])
		uwsgi_log(LOG_PREFIX "image Env kept out of the master (set in each worker only, "
				     "not in os.environ): %s\n",
			  held);
}

/* The helper's stderr (one line on failure), without its program-name prefix and newline. */
static void read_helper_message(int fd, char *buf, size_t len)
{
	ssize_t n = read(fd, buf, len - 1);
	buf[n > 0 ? n : 0] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	static const char prefix[] = HELPER_NAME ": ";
	if (!strncmp(buf, prefix, sizeof(prefix) - 1))
		memmove(buf, buf + sizeof(prefix) - 1, strlen(buf) - (sizeof(prefix) - 1) + 1);
}

/* Runs the helper with one end of a socketpair and receives the namespace. Bounded in time: the
 * helper's own requests time out, and we kill it if it outlives that. Its stderr comes back to us
 * so that a failure makes one log line, ours. */
static int run_helper(struct ud_handoff *h, ud_error *e)
{
	const char *helper = ud.helper ? ud.helper : HELPER_NAME;
	int sv[2], errp[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return ud_fail(e, UD_EXIT_HANDOFF, errno, "socketpair");
	if (pipe2(errp, O_CLOEXEC | O_NONBLOCK) < 0) {
		int err = errno;
		close(sv[0]);
		close(sv[1]);
		return ud_fail(e, UD_EXIT_HANDOFF, err, "pipe");
	}
	/* Only stdio and the hand-off socket (as fd 3) cross into the helper: uWSGI's listening
	 * sockets are not CLOEXEC (they survive re-exec reloads). */
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, sv[1], 3);
	posix_spawn_file_actions_adddup2(&fa, errp[1], 2);
	posix_spawn_file_actions_addclosefrom_np(&fa, 4);
	/* The host's environment, whatever the image's Env did to ours. */
	snapshot_host_env();
	size_t n_env = 0;
	while (host_env[n_env])
		n_env++;
	char **envp = uwsgi_calloc(sizeof(char *) * (n_env + 2));
	size_t j = 0;
	for (size_t i = 0; i < n_env; i++)
		if (strncmp(host_env[i], "UWSGI_DOCKER_FD=", 16) != 0)
			envp[j++] = host_env[i];
	envp[j] = "UWSGI_DOCKER_FD=3";
	char **argv = helper_argv();
	pid_t pid;
	int err = posix_spawnp(&pid, argv[0], &fa, NULL, argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	free(argv);
	free(envp);
	close(sv[1]);
	close(errp[1]);
	if (err) {
		close(sv[0]);
		close(errp[0]);
		return ud_fail(e, UD_EXIT_HANDOFF, err, "cannot run %s for image '%s'", helper,
			       ud.image);
	}
	ud_error re = {0};
	int r = ud_handoff_recv(sv[0], h, helper_timeout_ms(), &re);
	close(sv[0]);
	if (r < 0 && re.errnum == ETIMEDOUT)
		kill(pid, SIGKILL);
	int status = 0;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	char msg[1024];
	read_helper_message(errp[0], msg, sizeof(msg));
	close(errp[0]);
	if (WIFSIGNALED(status)) {
		ud_handoff_free(h);
		return ud_fail(e, UD_EXIT_HANDOFF, 0, "%s was killed by signal %d%s", helper,
			       WTERMSIG(status), re.errnum == ETIMEDOUT ? " (timed out)" : "");
	}
	if (WEXITSTATUS(status) != 0) {
		ud_handoff_free(h);
		return ud_fail(e, UD_EXIT_HANDOFF, 0, "%s failed (exit status %d): %s", helper,
			       WEXITSTATUS(status), msg[0] ? msg : "no message");
	}
	if (r < 0) {
		*e = re;
		return -1;
	}
	return 0;
}

static char *ns_list(const struct ud_handoff *h, char *buf, size_t len)
{
	static const struct {
		int t;
		const char *n;
	} names[] = {{CLONE_NEWNS, "mnt"},
		     {CLONE_NEWIPC, "ipc"},
		     {CLONE_NEWUTS, "uts"},
		     {CLONE_NEWNET, "net"},
		     {CLONE_NEWCGROUP, "cgroup"}};
	buf[0] = '\0';
	for (int i = 0; i < h->n_fds; i++)
		for (size_t j = 0; j < sizeof(names) / sizeof(names[0]); j++)
			if (h->types[i] == names[j].t) {
				if (buf[0])
					strncat(buf, ",", len - strlen(buf) - 1);
				strncat(buf, names[j].n, len - strlen(buf) - 1);
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

static void docker_jail(int (*start)(void *), char **argv)
{
	(void)start;
	(void)argv;
	ud_error e = {0};

	snapshot_host_env();
	if (ud.image && uwsgi.master_process) {
		ud.form = 1;
		refuse_root();
		/* Mules and spoolers never pass through uWSGI's privileges drop under master-as-root:
		 * they would run app code as root, on the host. */
		if (uwsgi.mules_cnt || uwsgi.farms_cnt || uwsgi.spoolers) {
			uwsgi_log(LOG_PREFIX "docker-image cannot serve mules, farms or spoolers (under "
					     "master-as-root they would run as root on the host): use "
					     "exec-as-root = uwsgi-docker-rootfs %s\n",
				  ud.image);
			exit(1);
		}
		if (run_helper(&ud.h, &e) < 0)
			fatal(&e);
		/* uwsgi_setup_inherited_sockets() closes unknown fds after a re-exec reload. */
		for (int i = 0; i < ud.h.n_fds; i++)
			uwsgi_add_safe_fd(ud.h.fds[i]);
		if (wants_env())
			apply_env(&ud.h, 1);
		if (!uwsgi.master_as_root || !uwsgi.lazy_apps)
			uwsgi_log(LOG_PREFIX "enabling master-as-root and lazy-apps: the master stays "
					     "on the host, each worker enters the image\n");
		uwsgi.master_as_root = 1;
		uwsgi.lazy_apps = 1;
		char nsbuf[64];
		uwsgi_log(LOG_PREFIX "image %s (%s), %u layers, namespaces %s ready for the "
				     "workers\n",
			  ud.h.image, ud.h.id, ud.h.layers, ns_list(&ud.h, nsbuf, sizeof(nsbuf)));
		return;
	}

	if (ud.image || exec_as_root_runs_helper()) {
		ud.form = 2;
		refuse_root();
		int sv[2];
		if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
			uwsgi_error("[docker] socketpair()");
			exit(1);
		}
		ud.sock = sv[0];
		/* The hook's /bin/sh -c must inherit this end. */
		ud.peer = dup(sv[1]);
		close(sv[1]);
		if (ud.peer < 0) {
			uwsgi_error("[docker] dup()");
			exit(1);
		}
		char num[16];
		snprintf(num, sizeof(num), "%d", ud.peer);
		setenv("UWSGI_DOCKER_FD", num, 1);
		if (ud.image) {
			/* docker-image without a master: the helper runs as an exec-as-root hook,
			 * like form 2 written by hand. */
			char **hargv = helper_argv();
			char *cmd = uwsgi_str("exec");
			for (char **a = hargv; *a; a++) {
				char *q = uwsgi_concat3(" '", *a, "'");
				if (strchr(*a, '\'')) {
					uwsgi_log(LOG_PREFIX "option value with a quote: %s\n", *a);
					exit(1);
				}
				char *n = uwsgi_concat2(cmd, q);
				free(cmd);
				free(q);
				cmd = n;
			}
			free(hargv);
			uwsgi_string_new_list(&uwsgi.exec_as_root, cmd);
		}
		if (!uwsgi.exit_on_reload)
			uwsgi_log(LOG_PREFIX "the whole instance enters the image: a full reload will "
					     "end it (exit-on-reload), for the Emperor to respawn\n");
		uwsgi.exit_on_reload = 1;
	}
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

static void enter_form2(void)
{
	ud_error e = {0};
	close(ud.peer);
	ud.peer = -1;
	unsetenv("UWSGI_DOCKER_FD");
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
	/* Sockets are bound now, on the host, where nginx looks for them; uWSGI skips bound ones
	 * later. */
	uwsgi_bind_sockets();
	chown_sockets();
	if (ud_handoff_enter(&ud.h, &e) < 0 || ud_chdir_image(ud.h.workdir, &e) < 0)
		fatal(&e);
	/* The whole instance is inside, and Python starts after the privileges drop: all of Env. */
	if (wants_env())
		apply_env(&ud.h, 0);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		fatal_errno("prctl(PR_SET_NO_NEW_PRIVS)");
	char nsbuf[64];
	uwsgi_log(LOG_PREFIX "entered image %s (%s), %u layers, namespaces %s\n", ud.h.image,
		  ud.h.id, ud.h.layers, ns_list(&ud.h, nsbuf, sizeof(nsbuf)));
	/* uWSGI runs as-root hooks again on later uwsgi_as_root() calls (no uid): the helper is
	 * not inside the image, and we are in already. */
	uwsgi.exec_as_root = NULL;
	ud.entered = 1;
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
	ud_error e = {0};
	if (ud.h.n_fds < 1) {
		ud_fail(&e, UD_EXIT_HANDOFF, 0, "no namespace to enter for image '%s'", ud.image);
		fatal(&e);
	}
	struct ud_handoff mine = ud.h;
	if (ud_handoff_enter(&mine, &e) < 0)
		fatal(&e);
	/* The master's chdir option names a path for the app: inside the image. */
	if (ud_chdir_image(uwsgi.chdir ? uwsgi.chdir : ud.h.workdir, &e) < 0)
		fatal(&e);
	/* The worker's own environment gets all of Env, for what the app runs inside. */
	if (wants_env())
		apply_env(&ud.h, 0);
	/* The root is nosuid, but binds are not: nothing executed from here on gains privileges. */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		fatal_errno("prctl(PR_SET_NO_NEW_PRIVS)");
	ud.entered = 1;
	for (int i = 0; i < ud.h.n_fds; i++)
		ud.h.fds[i] = -1;
}

static void docker_post_init(void)
{
	if (ud.form != 1)
		return;
	chown_sockets();
	/* The language plugins have started (and copied the environment): back to the host's. */
	if (wants_env())
		restore_host_env();
}

struct uwsgi_plugin docker_plugin = {
	.name = "docker",
	.options = docker_options,
	.jail = docker_jail,
	.before_privileges_drop = docker_before_privileges_drop,
	.post_init = docker_post_init,
};
