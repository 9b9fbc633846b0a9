/* Form 1, docker-image = IMAGE with a master: the master stays on the host and keeps the
 * namespace the helper prepared; each worker enters it right after fork. */
#include "plugin.h"

/* ---------------------------------------------------------------- fork hooks
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
	ud_rollout_before_fork();
	if (ud.pidns.gen_fd >= 0 && ud_pidns_enter(&ud.pidns, &e) < 0)
		ud_die(&e);
}

static void post_worker_fork(int child)
{
	ud_error e = {0};
	if (!child && ud.pidns.gen_fd >= 0 && ud_pidns_leave(&ud.pidns, &e) < 0)
		ud_die(&e);
}

/* A worker, after its apps were loaded (mounts too) and uWSGI set its signal handlers, before
 * it accepts. */
static void worker_fixup(void)
{
	if (uwsgi.mywid <= 0 || ud.form != UD_FORM_WORKERS)
		return;
	ud_graceful_loaded();
	ud_rollout_report_apps();
	ud_graceful_install();
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
		fork_hooks.fixup = worker_fixup;
		uwsgi.p[i] = &fork_hooks;
		return;
	}
	ud_dief(0, "no free request-plugin slot for the workers' fork hooks");
}

/* Mules and spoolers never pass through uWSGI's privileges drop under master-as-root: they would
 * run app code as root, on the host. */
static void refuse_mules(void)
{
	if (!uwsgi.mules_cnt && !uwsgi.farms_cnt && !uwsgi.spoolers)
		return;
	ud_dief(0,
		"docker-image cannot serve mules, farms or spoolers (under master-as-root they "
		"would run as root on the host): use exec-as-root = uwsgi-docker-rootfs %s",
		ud.image);
}

static struct ud_helper_run helper_run = UD_HELPER_RUN_INIT;

/* The helper runs in the workers' PID namespace: the /proc it mounts belongs to it. It works
 * while uWSGI starts; ud_form1_ready() collects what it prepared. */
static void start_helper(void)
{
	ud_error e = {0}, le = {0};
	if (ud_pidns_create(&ud.pidns, &e) < 0)
		ud_die(&e);
	int r = ud_helper_start(&helper_run, &e);
	if (ud_pidns_leave(&ud.pidns, &le) < 0)
		ud_die(&le);
	if (r < 0)
		ud_die(&e);
	/* uwsgi_setup_inherited_sockets() closes unknown fds after a re-exec reload, and it runs
	 * between the jail and post_init. */
	int fds[] = {ud.pidns.host_fd, ud.pidns.gen_fd, ud.pidns.life_fd, helper_run.sock,
		     helper_run.err, helper_run.pidfd};
	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
		uwsgi_add_safe_fd(fds[i]);
}

void ud_form1_jail(void)
{
	ud.form = UD_FORM_WORKERS;
	refuse_mules();
	ud_rollout_init();
	ud_follow_init();
	ud_stash_take();
	start_helper();
	install_fork_hooks();
	/* Now, not once the helper is done: uWSGI reads both before post_init. */
	if (!uwsgi.master_as_root || !uwsgi.lazy_apps)
		uwsgi_log(LOG_PREFIX "enabling master-as-root and lazy-apps: the master stays "
				     "on the host, each worker enters the image\n");
	uwsgi.master_as_root = 1;
	uwsgi.lazy_apps = 1;
}

/* post_init: the language plugins have started; no worker has been forked yet. */
void ud_form1_ready(void)
{
	ud_error e = {0};
	if (ud_helper_finish(&helper_run, &ud.h, &e) < 0 ||
	    ud_handoff_check_foreign(&ud.h, &e) < 0) {
		/* A reload never makes things worse: only a first start fails. */
		if (ud_stash_fall_back(&e) < 0)
			ud_die(&e);
	} else
		ud_stash_drop();
	/* No uid in the ini: the image's User, or a refusal before any worker exists. */
	if (ud_image_user_check(&ud.h, 1, &e) < 0)
		ud_die(&e);
	for (int i = 0; i < ud.h.n_fds; i++)
		uwsgi_add_safe_fd(ud.h.fds[i]);
	char nsbuf[64];
	uwsgi_log(LOG_PREFIX "image %s (%s), %u layers, namespaces %s,pid ready for the "
			     "workers\n",
		  ud.h.image, ud.h.id, ud.h.layers, ud_ns_list(&ud.h, nsbuf, sizeof(nsbuf)));
}

/* A worker, right after fork, as root; the master keeps its copies. Gateways (http,
 * fastrouter...) come here too under master-as-root: they stay on the host. */
void ud_form1_enter_worker(void)
{
	if (uwsgi.mywid <= 0)
		return;
	struct ud_handoff *h = ud_rollout_pick(uwsgi.mywid);
	if (h->n_fds < 1)
		ud_dief(0, "no namespace to enter for image '%s'", ud.image);
	ud_pidns_close(&ud.pidns);
	ud_graceful_load_gently();
	/* The master's chdir option names a path for the app: inside the image. */
	ud_enter_image(h, uwsgi.chdir ? uwsgi.chdir : h->workdir);
}
