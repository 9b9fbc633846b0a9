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

#include <sys/prctl.h>

#include "abi.h"
#include "appenv.h"
#include "caps.h"
#include "util.h"

struct ud_plugin ud = {.image_env = -1,
		       .image_env_deprecated = -1,
		       .sock = -1,
		       .peer = -1,
		       .pidns = UD_PIDNS_INIT};

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
	{"docker-tmpfs", required_argument, 0,
	 "mount a fresh tmpfs at DST[:OPTS] inside the image (docker run's OPTS: size=,mode=,exec...)",
	 uwsgi_opt_add_string_list, &ud.tmpfs, 0},
	{"docker-shm-size", required_argument, 0, "size of /dev/shm inside the image (default 64m)",
	 uwsgi_opt_set_str, &ud.shm_size, 0},
	{"docker-unshare", required_argument, 0, "also unshare ipc, uts, net or cgroup (comma-separated)",
	 uwsgi_opt_set_str, &ud.unshare, 0},
	{"docker-hostname", required_argument, 0, "hostname inside (needs docker-unshare = uts)",
	 uwsgi_opt_set_str, &ud.hostname, 0},
	{"docker-read-only", optional_argument, 0, "no writable layer: the image root is read-only",
	 ud_opt_bool, &ud.read_only, 0},
	{"docker-no-network-files", optional_argument, 0,
	 "leave the image's /etc/hosts, /etc/resolv.conf and /etc/hostname as they are",
	 ud_opt_bool, &ud.no_network_files, 0},
	{"docker-host", required_argument, 0, "Docker daemon socket (unix:///PATH or /PATH)",
	 uwsgi_opt_set_str, &ud.host, 0},
	{"docker-helper", required_argument, 0, "path of uwsgi-docker-rootfs when it is not on PATH",
	 uwsgi_opt_set_str, &ud.helper, 0},
	{"docker-env", required_argument, 0,
	 "set KEY=VALUE for the app, over the image's Env (repeatable, as docker run -e)",
	 ud_opt_env, NULL, 0},
	{"docker-image-env", optional_argument, 0, "apply the image's Env to the app (default true)",
	 ud_opt_bool, &ud.image_env, 0},
	{"docker-user", required_argument, 0,
	 "USER[:GROUP] from the image's /etc/passwd, when the ini sets no uid (docker run --user)",
	 uwsgi_opt_set_str, &ud.user, 0},
	{"docker-allow-root", optional_argument, 0, "allow app code to run as root inside the image",
	 ud_opt_bool, &ud.allow_root, 0},
	{"docker-no-confine", optional_argument, 0,
	 "no Docker-style confinement (masked /proc paths, capabilities, Landlock): debugging only",
	 ud_opt_bool, &ud.no_confine, 0},
	{"docker-timeout", required_argument, 0, "timeout of each Docker API request, in seconds",
	 uwsgi_opt_set_str, &ud.timeout, 0},
	{"docker-mount-api", required_argument, 0, "auto, fd, string or legacy (see the helper)",
	 uwsgi_opt_set_str, &ud.mount_api, 0},
	{"docker-layers", required_argument, 0, "where the layers come from: auto, direct or export",
	 uwsgi_opt_set_str, &ud.layers, 0},
	{"docker-pull", required_argument, 0, "when the helper pulls the image: missing, always or never",
	 uwsgi_opt_set_str, &ud.pull, 0},
	{"docker-cache-dir", required_argument, 0, "the layer cache for exported images",
	 uwsgi_opt_set_str, &ud.cache_dir, 0},
	{"docker-gc-interval", required_argument, 0,
	 "seconds between the helper's background collections (default 3600; never: off)",
	 uwsgi_opt_set_str, &ud.gc_interval, 0},
	{"docker-follow", required_argument, 0,
	 "follow the image's tag in its registry: check every INTERVAL (30s, 5m), roll out when it "
	 "moves", uwsgi_opt_set_str, &ud.follow, 0},
	{"docker-canary-timeout", required_argument, 0,
	 "seconds a rollout's first worker gets to load the app (default 60)", uwsgi_opt_set_str,
	 &ud.canary_timeout, 0},
	UWSGI_END_OF_OPTIONS};

void ud_die(const ud_error *e)
{
	char buf[1400];
	uwsgi_log(LOG_PREFIX "%s\n", ud_error_text(e, buf, sizeof(buf)));
	exit(1);
}

void ud_dief(int errnum, const char *fmt, ...)
{
	ud_error e = {.errnum = errnum};
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e.msg, sizeof(e.msg), fmt, ap);
	va_end(ap);
	ud_die(&e);
}

char *ud_ns_list(const struct ud_handoff *h, char *buf, size_t len)
{
	buf[0] = '\0';
	for (int i = 0; i < h->n_fds; i++) {
		if (buf[0])
			strncat(buf, ",", len - strlen(buf) - 1);
		strncat(buf, ud_ns_name(h->types[i]), len - strlen(buf) - 1);
	}
	return buf;
}

/* The Env the helper hands over (the image's, with its --env): docker-image-env, else the old
 * docker-env = BOOL, else on. */
static int wants_env(void)
{
	return ud.image_env >= 0 ? ud.image_env : ud.image_env_deprecated != 0;
}

/* With no uid in the ini the answer waits for the image's User (ud_image_user_check). */
void ud_refuse_root(void)
{
	uid_t uid;
	gid_t gid;
	ud_host_ids(&uid, &gid);
	if (ud.allow_root || uid != 0 || !ud_ini_names_uid())
		return;
	ud_dief(0,
		"refusing to run app code as root inside image '%s': set uid (and gid), or "
		"docker-allow-root = true",
		ud.image ? ud.image : "(exec-as-root)");
}

/* The helper is ours to trust only as far as what it hands back is a namespace of its own: a
 * "helper" that returned our mount namespace would have the workers run on the host's files. */
void ud_refuse_own_namespace(const struct ud_handoff *h)
{
	ud_error e = {0};
	if (ud_handoff_check_foreign(h, &e) < 0)
		ud_die(&e);
}

/* Unix sockets bound as root (form 1: by the master; form 2: by us before entering) go to the
 * uid/gid that nginx and the workers expect, unless chown-socket says otherwise. In form 1 the
 * master never resolved uid/gid names (master-as-root), so they are resolved here, on the
 * host. */
void ud_chown_sockets(void)
{
	uid_t uid;
	gid_t gid;
	if (uwsgi.chown_socket)
		return;
	ud_host_ids(&uid, &gid);
	if (!uid && !gid)
		return;
	struct uwsgi_socket *s;
	for (s = uwsgi.sockets; s; s = s->next)
		if (s->family == AF_UNIX && s->name && s->name[0] != '@' && s->bound &&
		    !(s->fd >= 3 && s->fd < 3 + ud.listen_fds))
			if (chown(s->name, uid, gid) < 0)
				uwsgi_error_realpath(s->name);
}

int ud_image_user_check(const struct ud_handoff *h, int log, ud_error *e)
{
	const char *image = ud.image ? ud.image : h->image;
	if (ud_ini_names_uid())
		return 0;
	if (h->has_user && h->uid != 0) {
		int ini_gid = uwsgi.gid || uwsgi.gidname;
		if (!ini_gid && h->gid == 0 && !ud.allow_root)
			return ud_fail(e, UD_EXIT_REFUSED, 0,
				       "refusing the User of image '%s': uid %u with gid 0, root's "
				       "group: set gid (or uid and gid), or docker-allow-root = true",
				       image, h->uid);
		if (log)
			uwsgi_log(LOG_PREFIX "the ini sets no uid: image %s runs as its User, uid %u, "
					     "gid %u, no supplementary groups\n",
				  image, h->uid, ini_gid ? (unsigned)uwsgi.gid : h->gid);
		return 0;
	}
	if (ud.allow_root)
		return 0;
	char why[sizeof(e->msg) / 2];
	snprintf(why, sizeof(why), "%s%s", h->user_error ? "its User does not resolve: " : "",
		 h->user_error ? h->user_error : h->has_user ? "its User is root" : "it names no User");
	return ud_fail(e, UD_EXIT_REFUSED, 0,
		       "refusing to run app code as root inside image '%s' (%s): set uid (and gid), "
		       "or docker-allow-root = true",
		       image, why);
}

/* Sockets handed over by socket activation (fds 3.. in LISTEN_FDS, for this pid) are systemd's,
 * with the owner and mode of their .socket unit: never chowned. uWSGI takes them, and clears
 * the variables, after the jail; a re-executed master inherits them, and our note of them. */
#define LISTEN_NOTE_ENV "UWSGI_DOCKER_LISTEN_FDS"
static void note_socket_activation(void)
{
	const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
	const char *noted = getenv(LISTEN_NOTE_ENV);
	if (pid && fds && atoi(pid) == (int)getpid() && atoi(fds) > 0) {
		ud.listen_fds = atoi(fds);
		setenv(LISTEN_NOTE_ENV, fds, 1);
	} else if (noted)
		ud.listen_fds = atoi(noted);
}

/* This process (a form 1 worker, or the form 2 master) goes into the image: groups looked up on
 * the host first, then the namespaces, then the rest inside. */
int ud_canary_timeout_s(void)
{
	int t = ud.canary_timeout ? atoi(ud.canary_timeout) : 60;
	return t > 0 ? t : 60;
}

void ud_enter_image(struct ud_handoff *h, const char *chdir_to)
{
	ud_error e = {0};
	struct ud_creds cr;
	if (ud_image_user_check(h, 0, &e) < 0 || ud_creds_resolve(&cr, h, &e) < 0 ||
	    ud_handoff_enter(h, &e) < 0 || ud_creds_apply(&cr, &e) < 0 ||
	    ud_chdir_image(chdir_to, &e) < 0)
		ud_die(&e);
	ud_creds_free(&cr);
	if (wants_env() && ud_appenv_apply(h->env, h->n_env, &e) < 0)
		ud_die(&e);
	/* docker-env, over the image's: the ini's, applied here like the image's (never in the
	 * form 1 master). */
	struct uwsgi_string_list *usl;
	uwsgi_foreach(usl, ud.env_vars) if (ud_appenv_apply(&usl->value, 1, &e) < 0) ud_die(&e);
	/* The root is nosuid, but binds are not: nothing executed from here on gains privileges. */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		ud_dief(errno, "prctl(PR_SET_NO_NEW_PRIVS)");
	/* What docker run gives a root process (uWSGI's setuid and setgid stay possible), and
	 * Landlock's scoping: no abstract unix socket and no signal outside this process's domain
	 * (the network namespace is the host's unless docker-unshare = net). */
	if (!ud.no_confine && (ud_caps_docker_default(&e) < 0 || ud_landlock_scope(&e) < 0))
		ud_die(&e);
	ud.entered = 1;
}

static int exec_as_root_runs_helper(void)
{
	struct uwsgi_string_list *usl;
	uwsgi_foreach(usl, uwsgi.exec_as_root) if (strstr(usl->value, HELPER_NAME)) return 1;
	return 0;
}

/* The namespace is prepared as root, then workers drop to uid/gid. A uWSGI started unprivileged
 * (a vassal of an Emperor that dropped privileges, as Debian's uwsgi-emperor does by default)
 * would fail later and less clearly: in form 2 uWSGI would not even run its as-root hooks. */
static void require_root(void)
{
	if (geteuid() == 0)
		return;
	ud_dief(0,
		"uWSGI runs as uid %u, and the docker plugin must start as root (the master prepares "
		"the image's namespace, the workers drop to uid/gid): an Emperor that drops "
		"privileges cannot start docker vassals (see the README, systemd)",
		(unsigned)geteuid());
}

/* Root, config parsed, on every start and every re-exec reload. */
static void docker_jail(int (*start)(void *), char **argv)
{
	(void)start;
	(void)argv;
	if (ud.image || exec_as_root_runs_helper()) {
		require_root();
		ud_refuse_root();
		note_socket_activation();
	}
	if (ud.follow && !(ud.image && uwsgi.master_process))
		ud_dief(0, "docker-follow needs docker-image and master = true (form 1): an instance "
			   "that entered the image cannot roll itself onto another");
	if (ud.image && uwsgi.master_process)
		ud_form1_jail();
	else if (ud.image || exec_as_root_runs_helper())
		ud_form2_jail();
}

static void docker_before_privileges_drop(void)
{
	if (ud.entered)
		return;
	if (ud.form == UD_FORM_WORKERS)
		ud_form1_enter_worker();
	else if (ud.form == UD_FORM_INSTANCE)
		ud_form2_enter();
}

/* A worker, after the language plugins' own post_fork: Python copied the environment into
 * os.environ in the master, at its start; the app must see this worker's, the image's. */
static void docker_post_fork(void)
{
	ud_error e = {0};
	if (ud.form == UD_FORM_WORKERS && ud.entered && (wants_env() || ud.env_vars) &&
	    ud_appenv_refresh_runtimes(&e) < 0)
		ud_die(&e);
}

static void docker_master_cycle(void)
{
	if (ud.form != UD_FORM_WORKERS)
		return;
	ud_rollout_master_cycle();
	ud_follow_master_cycle();
	ud_graceful_nudge();
}

/* The master, before it exits or re-executes itself (uwsgi_reload()). */
static void docker_master_cleanup(void)
{
	ud_stash_save();
}

static void docker_post_init(void)
{
	if (ud.form != UD_FORM_WORKERS)
		return;
	/* First: the helper may still be at work meanwhile. */
	ud_appenv_preload_runtimes();
	ud_form1_ready();
	ud_chown_sockets();
}

/* The first callback uWSGI makes into the plugin, right after dlopen(): nothing of `uwsgi` has
 * been read yet, and nothing may be before the ABI is known to be this build's (abi.c). */
static void docker_on_load(void)
{
	char msg[512];
	if (ud_abi_verify(msg, sizeof(msg)) < 0) {
		uwsgi_log(LOG_PREFIX "%s\n", msg);
		exit(1);
	}
}

struct uwsgi_plugin docker_plugin = {
	.name = "docker",
	.on_load = docker_on_load,
	.options = docker_options,
	.jail = docker_jail,
	.before_privileges_drop = docker_before_privileges_drop,
	.post_fork = docker_post_fork,
	.post_init = docker_post_init,
	.master_cycle = docker_master_cycle,
	.master_cleanup = docker_master_cleanup,
};
