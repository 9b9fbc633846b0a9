/* Form 1 rollouts: every chain reload (touch-chain-reload, the master FIFO's 'c') resolves the
 * image again and moves the workers onto the new namespace one at a time, the first of them a
 * canary.
 *
 * uWSGI drives a chain reload from its master loop through uwsgi.status.chain_reloading: 1 starts
 * it, and uwsgi_master_check_chain() then curses worker N and waits for its successor to accept
 * before it goes on to N+1. Plugins' master_cycle hooks run at the top of that loop, before the
 * check, and both the touch check and the FIFO only set the flag further down: so this module
 * sees every request before uWSGI acts on it, and holds it (flag back to 0) while the helper
 * prepares the new namespace off the request path and while the canary loads the app. Only then
 * does it hand the chain back to uWSGI, starting after the canary.
 *
 * The master learns what a worker entered and whether its app loaded through a page shared with
 * the workers (one report per worker): uWSGI tells plugins nothing about a worker's death, and a
 * worker in its PID namespace cannot signal the master. A report is only a hint from an
 * untrusted process: a lying app can fail its own rollout or stop its own instance, nothing
 * more. */
#include "plugin.h"

#include <sys/mman.h>
#include <sys/wait.h>

#include "util.h"

enum phase { RO_IDLE, RO_RESOLVING, RO_CANARY, RO_ROLLING };
enum { W_NONE, W_ENTERED, W_LOADED, W_FAILED };

struct report {
	volatile uint32_t gen;
	volatile uint32_t state;
};

static struct {
	enum phase phase;
	struct ud_helper_run run;
	struct ud_handoff next;
	uint32_t next_gen, last_gen;
	int canary, canary_forked, again, followed;
	long long started_ms, resolved_ms, canary_deadline_ms;
	struct report *reports; /* [0..numproc], shared with the workers */
} ro = {.run = UD_HELPER_RUN_INIT, .last_gen = 1};

/* The jail, every start and every re-exec reload: uWSGI's own need-app would end the whole
 * instance when a canary's app fails; this module stops it only when the serving image fails. */
void ud_rollout_init(void)
{
	/* A helper of the previous generation of this process (before a re-exec) is a child that
	 * sends no SIGCHLD: reap it if it is done. */
	while (waitpid(-1, NULL, WNOHANG | __WCLONE) > 0)
		;
	uwsgi.need_app = 0;
	size_t len = sizeof(struct report) * (size_t)(uwsgi.numproc + 1);
	ro.reports = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (ro.reports == MAP_FAILED)
		ud_dief(errno, "mmap of the workers' reports");
	ud.gen = 1;
	ud_handoff_init(&ro.next);
}

static void unwatch_helper(void)
{
	event_queue_del_fd(uwsgi.master_queue, ro.run.sock, event_queue_read());
	event_queue_del_fd(uwsgi.master_queue, ro.run.pidfd, event_queue_read());
}

/* The helper runs in the workers' PID namespace, like at the start: the /proc it mounts must be
 * that namespace's. The master's loop wakes up when it answers or exits. */
static int start_helper(ud_error *e)
{
	ud_error le = {0};
	if (ud_pidns_enter(&ud.pidns, e) < 0)
		return -1;
	ro.run.nice = 10;
	int r = ud_helper_start(&ro.run, e);
	/* Staying there would put every later child of the master (gateways, daemons) in it. */
	if (ud_pidns_leave(&ud.pidns, &le) < 0)
		ud_die(&le);
	if (r < 0)
		return -1;
	event_queue_add_fd_read(uwsgi.master_queue, ro.run.sock);
	event_queue_add_fd_read(uwsgi.master_queue, ro.run.pidfd);
	return 0;
}

static void finish_rollout(enum ud_rollout_end end)
{
	ro.phase = RO_IDLE;
	ro.run.pull = ro.run.pull_if_not = NULL;
	if (ro.followed) {
		ro.followed = 0;
		ud_follow_rollout_ended(end, ro.resolved_ms - ro.started_ms);
	}
	if (ro.again) {
		ro.again = 0;
		uwsgi.status.chain_reloading = 1; /* the next master cycle starts it */
	}
}

static void stop_rollout(const char *why, enum ud_rollout_end end)
{
	uwsgi_log(LOG_PREFIX "rollout of image %s stopped: %s; the workers stay on %s\n", ud.image,
		  why, ud.h.id);
	ud_handoff_free(&ro.next);
	finish_rollout(end);
}

/* The helper's statuses that speak of the image itself (its storage, its files, its users):
 * trying the same digest again gives the same answer. Anything else (a registry or daemon that
 * failed, a tag gone for a moment, a helper killed at its deadline) may pass. */
static enum ud_rollout_end helper_failure(int status)
{
	return status == UD_EXIT_STORAGE || status == UD_EXIT_MOUNT || status == UD_EXIT_USER
		       ? UD_ROLLOUT_REFUSED
		       : UD_ROLLOUT_UNRESOLVED;
}

static void begin(void)
{
	ud_error e = {0};
	char buf[1400];
	uwsgi.status.chain_reloading = 0;
	ro.started_ms = ud_now_ms();
	if (start_helper(&e) < 0) {
		stop_rollout(ud_error_text(&e, buf, sizeof(buf)), UD_ROLLOUT_UNRESOLVED);
		return;
	}
	ro.phase = RO_RESOLVING;
	uwsgi_log(LOG_PREFIX "chain reload: resolving image %s again before any worker goes\n",
		  ud.image);
}

/* The first worker uWSGI's chain would take: worker 1 unless it is cheaped. */
static int pick_canary(void)
{
	for (int i = 1; i <= uwsgi.numproc; i++)
		if (!uwsgi.workers[i].cheaped)
			return i;
	return 1;
}

static void resolved(void)
{
	ud_error e = {0};
	char buf[1400];
	unwatch_helper();
	ud_handoff_init(&ro.next);
	if (ud_helper_finish(&ro.run, &ro.next, &e) < 0) {
		stop_rollout(ud_error_text(&e, buf, sizeof(buf)), helper_failure(ro.run.status));
		return;
	}
	if (ud_handoff_check_foreign(&ro.next, &e) < 0 || ud_image_user_check(&ro.next, 1, &e) < 0) {
		stop_rollout(ud_error_text(&e, buf, sizeof(buf)), UD_ROLLOUT_REFUSED);
		return;
	}
	ro.next_gen = ++ro.last_gen;
	ro.resolved_ms = ud_now_ms();
	ro.canary = pick_canary();
	ro.canary_forked = 0;
	ro.canary_deadline_ms = ud_now_ms() + ud_canary_timeout_s() * 1000LL;
	ro.phase = RO_CANARY;
	uwsgi_log(LOG_PREFIX "image %s is %s (%u layers, %lld ms); worker %d tries it first\n",
		  ud.image, ro.next.id, ro.next.layers, ud_now_ms() - ro.started_ms, ro.canary);
	if (uwsgi.workers[ro.canary].pid > 0)
		uwsgi_curse(ro.canary, SIGHUP);
}

static void canary_failed(const char *what, int wid)
{
	char why[256];
	snprintf(why, sizeof(why), "worker %d %s", wid, what);
	pid_t pid = uwsgi.workers[wid].pid;
	/* A canary that outlived its deadline is still in the new image: it goes, and comes back
	 * on the serving one. */
	if (pid > 0 && ro.reports[wid].gen == ro.next_gen)
		kill(pid, SIGKILL);
	stop_rollout(why, UD_ROLLOUT_REFUSED);
}

/* Called at each master cycle and right before each worker fork: a canary that died must not
 * be respawned into the image that killed it. */
static void check_canary(void)
{
	int c = ro.canary;
	uint32_t gen = ro.reports[c].gen, state = ro.reports[c].state;
	if (gen == ro.next_gen && state == W_LOADED) {
		ro.phase = RO_ROLLING;
		uwsgi.status.chain_reloading = c + 1;
		uwsgi_log(LOG_PREFIX "worker %d serves %s: the other workers follow\n", c, ro.next.id);
	} else if (gen == ro.next_gen && state == W_FAILED)
		canary_failed("did not load the app (see above)", c);
	else if (ro.canary_forked && uwsgi.workers[c].pid == 0)
		canary_failed("exited before its app loaded", c);
	else if (ud_now_ms() > ro.canary_deadline_ms)
		canary_failed("did not load the app within docker-canary-timeout", c);
}

/* uWSGI's chain is over: every worker it took is on the new image. One that was not accepting
 * when the chain passed it was skipped: it goes now. */
static void commit(void)
{
	char old[80];
	snprintf(old, sizeof(old), "%s", ud.h.id);
	ud_handoff_free(&ud.h);
	ud.h = ro.next;
	ud.gen = ro.next_gen;
	ud_handoff_init(&ro.next);
	for (int i = 1; i <= uwsgi.numproc; i++)
		if (uwsgi.workers[i].pid > 0 && !uwsgi.workers[i].cursed_at &&
		    ro.reports[i].gen != ud.gen)
			uwsgi_curse(i, SIGHUP);
	uwsgi_log(LOG_PREFIX "rolled out image %s: %s -> %s in %lld ms\n", ud.image, old, ud.h.id,
		  ud_now_ms() - ro.started_ms);
	finish_rollout(UD_ROLLOUT_DONE);
}

/* need-app, the way this plugin keeps it: a worker of the serving image without an app stops
 * the instance (exit status 22, as uWSGI's own need-app). */
static void check_serving_apps(void)
{
	if (uwsgi_instance_is_dying)
		return;
	for (int i = 1; i <= uwsgi.numproc; i++) {
		uint32_t gen = ro.reports[i].gen;
		if (ro.reports[i].state != W_FAILED ||
		    !(gen == ud.gen || (ro.phase == RO_ROLLING && gen == ro.next_gen)))
			continue;
		uwsgi_log(LOG_PREFIX "the app did not load in worker %d from image %s (%s): stopping "
				     "uWSGI (need-app)\n",
			  i, ud.image, gen == ud.gen ? ud.h.id : ro.next.id);
		uwsgi.status.dying_for_need_app = 1;
		kill_them_all(0);
		return;
	}
}

/* A chain reload asked for while one is under way is done after it. */
static void hold_chain(void)
{
	if (uwsgi.status.chain_reloading) {
		uwsgi.status.chain_reloading = 0;
		ro.again = 1;
	}
}

void ud_rollout_master_cycle(void)
{
	check_serving_apps();
	switch (ro.phase) {
	case RO_IDLE:
		if (uwsgi.status.chain_reloading && !uwsgi_instance_is_reloading &&
		    !uwsgi_instance_is_dying)
			begin();
		break;
	case RO_RESOLVING:
		hold_chain();
		if (ud_helper_done(&ro.run))
			resolved();
		break;
	case RO_CANARY:
		hold_chain();
		check_canary();
		break;
	case RO_ROLLING:
		if (!uwsgi.status.chain_reloading)
			commit();
		break;
	}
}

/* The master, right before it forks a worker (uwsgi_respawn_worker(), slot already marked
 * dead). The child inherits what this decides. */
void ud_rollout_before_fork(void)
{
	if (ro.phase != RO_CANARY)
		return;
	check_canary();
	if (ro.phase == RO_CANARY && !ro.canary_forked && uwsgi.workers[ro.canary].pid == 0)
		ro.canary_forked = 1;
}

/* Begun here, not through chain_reloading: uWSGI's own chain check runs after the master_cycle
 * hooks in the same loop, and would take a worker before this module could hold the chain. */
int ud_rollout_request(const char *pull, const char *pull_if_not)
{
	if (ro.phase != RO_IDLE || uwsgi_instance_is_reloading || uwsgi_instance_is_dying)
		return -1;
	ro.run.pull = pull;
	ro.run.pull_if_not = pull_if_not;
	ro.followed = 1;
	begin();
	return 0;
}

int ud_rollout_idle(void)
{
	return ro.phase == RO_IDLE && !uwsgi.status.chain_reloading;
}

/* A worker, right after fork: which namespace it enters. It keeps no fd of the other. */
struct ud_handoff *ud_rollout_pick(int wid)
{
	int next = (ro.phase == RO_CANARY && wid == ro.canary) || ro.phase == RO_ROLLING;
	struct ud_handoff *h = next ? &ro.next : &ud.h;
	ud_handoff_free(next ? &ud.h : &ro.next);
	ud_closep(&ro.run.sock);
	ud_closep(&ro.run.err);
	ud_closep(&ro.run.out);
	ud_closep(&ro.run.pidfd);
	ud_follow_forget();
	if (ro.reports && wid <= uwsgi.numproc) {
		ro.reports[wid].state = W_NONE;
		ro.reports[wid].gen = next ? ro.next_gen : ud.gen;
		ro.reports[wid].state = W_ENTERED;
	}
	return h;
}

/* A worker, once uWSGI has loaded (or failed to load) its apps. */
void ud_rollout_report_apps(void)
{
	int wid = uwsgi.mywid;
	if (!ro.reports || wid <= 0 || wid > uwsgi.numproc)
		return;
	int loaded = uwsgi.workers[wid].apps_cnt > 0;
	ro.reports[wid].state = loaded ? W_LOADED : W_FAILED;
	if (!loaded)
		exit(UWSGI_FAILED_APP_CODE);
}
