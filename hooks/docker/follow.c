/* docker-follow (form 1): the instance follows its image's tag in the registry. Every INTERVAL,
 * with jitter (a thousand hosts must not ask at once), the master runs the helper's --check as a
 * child, the way a rollout's helper runs (a keeper clone reaped through its pidfd, so uWSGI's
 * waitpid(-1) never sees it), and reads its answer at a later master cycle: the master's loop
 * never waits for the daemon or the registry. When the tag moved, a rollout pulls it (--pull
 * always) and moves the workers onto it canary first, as a chain reload does. A digest whose
 * rollout failed (its canary, or the image refused) is not tried again until the tag moves on;
 * one that could not be pulled is, at checks that back off. A registry or daemon that does not
 * answer costs one line per kind of failure, and the checks back off. */
#include "plugin.h"

#include <sys/random.h>
#include <sys/timerfd.h>

#include "util.h"

enum fphase { F_OFF, F_WAIT, F_CHECKING, F_ROLLING };

#define MAX_BACKOFF 16 /* intervals */

static struct {
	enum fphase phase;
	long long interval_ms, next_ms, roll_started_ms;
	int backoff, fail_kind;
	int roll_backoff; /* intervals until a digest that could not be pulled is tried again */
	int timer;  /* wakes the master's loop when a check is due (its cycle is a second) */
	int queued; /* timer in the master's event queue */
	struct ud_helper_run run;
	char *argv[16];
	char serving[96], target[96], failed[96], retrying[96];
} fo = {.run = UD_HELPER_RUN_INIT, .backoff = 1, .roll_backoff = 1, .timer = -1};

/* "30s", "5m", "1h", "90" (seconds). */
static long long parse_interval(const char *s)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	long long unit = !strcmp(end, "") || !strcmp(end, "s") ? 1000
			 : !strcmp(end, "m")			? 60000
			 : !strcmp(end, "h")			? 3600000
								: 0;
	if (errno || end == s || v < 1 || !unit || v > 24 * 3600000LL / unit)
		return -1;
	return v * unit;
}

static long long jittered(long long span, long long lo_pct, long long hi_pct)
{
	uint32_t r = 0;
	if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r))
		r = (uint32_t)ud_now_ms();
	return span * lo_pct / 100 + (long long)(r % 1000) * span * (hi_pct - lo_pct) / 100000;
}

static void arm(long long in_ms)
{
	fo.next_ms = ud_now_ms() + in_ms;
	fo.phase = F_WAIT;
	struct itimerspec it = {.it_value = {in_ms / 1000, (in_ms % 1000) * 1000000 + 1}};
	if (fo.timer >= 0)
		timerfd_settime(fo.timer, 0, &it, NULL);
}

/* Within a tenth of the interval (times the back-off) either way: hosts that start together
 * drift apart, and none waits much longer than its interval. */
static void schedule(void)
{
	arm(jittered(fo.interval_ms * fo.backoff, 90, 110));
}

static void build_argv(void)
{
	size_t i = 0;
	fo.argv[i++] = ud.helper ? ud.helper : HELPER_NAME;
	fo.argv[i++] = "--check";
	if (ud.host) {
		fo.argv[i++] = "--docker-host";
		fo.argv[i++] = ud.host;
	}
	if (ud.timeout) {
		fo.argv[i++] = "--timeout";
		fo.argv[i++] = ud.timeout;
	}
	/* Vassals of one host that follow the same tag share about one answer per interval: each
	 * takes another's younger than the shortest jittered interval (never its own, older). */
	static char age[32];
	snprintf(age, sizeof(age), "%.3f", fo.interval_ms * 0.7 / 1000);
	fo.argv[i++] = "--check-max-age";
	fo.argv[i++] = age;
	fo.argv[i++] = ud.image;
	fo.argv[i] = NULL;
}

/* The jail of form 1, every start and every re-exec reload. */
void ud_follow_init(void)
{
	if (!ud.follow)
		return;
	if ((fo.interval_ms = parse_interval(ud.follow)) < 0)
		ud_dief(0, "docker-follow '%s': expected an interval such as 30s, 5m or 1h",
			ud.follow);
	if (strchr(ud.image, '@'))
		ud_dief(0,
			"docker-follow: image %s names a digest, which never moves: follow a tag, or "
			"drop docker-follow",
			ud.image);
	build_argv();
	/* uwsgi_setup_inherited_sockets() closes unknown fds after a re-exec reload. */
	fo.timer = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (fo.timer >= 0)
		uwsgi_add_safe_fd(fo.timer);
	/* The first check anywhere in the first interval: a fleet started at once asks apart. */
	arm(jittered(fo.interval_ms, 5, 100));
}

static void start_check(void)
{
	ud_error e = {0};
	char buf[1400];
	fo.run.argv = fo.argv;
	fo.run.nice = 10;
	if (ud_helper_start(&fo.run, &e) < 0) {
		uwsgi_log(LOG_PREFIX "follow: %s\n", ud_error_text(&e, buf, sizeof(buf)));
		schedule();
		return;
	}
	/* The master wakes when the check ends, not at its next cycle. */
	event_queue_add_fd_read(uwsgi.master_queue, fo.run.pidfd);
	fo.phase = F_CHECKING;
}

/* One line per kind of failure, not per interval; the checks back off meanwhile. */
static void check_failed(int status, const char *msg)
{
	if (fo.backoff < MAX_BACKOFF)
		fo.backoff *= 2;
	if (status != fo.fail_kind)
		uwsgi_log(LOG_PREFIX "follow: checking image %s failed (status %d): %s; the workers "
				     "stay on %s, the next checks back off\n",
			  ud.image, status, msg[0] ? msg : "no message", ud.h.id);
	fo.fail_kind = status;
	schedule();
}

/* What the check said: the digest of the daemon's image of the tag and the registry's, each
 * with the id of the daemon's image of it when it has one. */
struct answer {
	char local[80], id[96], remote[80], remote_id[96];
};

static bool parse_answer(const char *out, struct answer *a)
{
	const char *reg = strstr(out, "\nregistry ");
	if (!reg || sscanf(out, "local %79s", a->local) != 1 ||
	    sscanf(reg + 1, "registry %79s", a->remote) != 1)
		return false;
	/* no "(image ID)": the daemon has no image of the tag, or of the registry's digest */
	if (sscanf(out, "local %*s (image %95[^)])", a->id) != 1)
		a->id[0] = '\0';
	if (sscanf(reg + 1, "registry %*s (image %95[^)])", a->remote_id) != 1)
		a->remote_id[0] = '\0';
	return true;
}

/* The tag moved for this instance when the registry serves a digest other than the one of the
 * image it serves. The daemon's tag may be ahead of the instance (a vassal of the same host, or
 * someone, pulled it): then it is rolled out without pulling again. The daemon's tag alone
 * never moves the instance: while someone tags another image and pushes it, the registry still
 * serves the digest of the image the instance serves. */
static void decide(const struct answer *a)
{
	bool ours = !strcmp(a->id, ud.h.id), have = !strcmp(a->local, a->remote);
	bool serving = a->remote_id[0] && !strcmp(a->remote_id, ud.h.id);
	if (serving || (ours && have) || !strcmp(a->remote, fo.failed)) {
		if (serving || (ours && have))
			fo.retrying[0] = '\0';
		schedule(); /* up to date, or rolled out once and failed: not until it moves on */
		return;
	}
	snprintf(fo.serving, sizeof(fo.serving), "%s", ours ? a->local : ud.h.id);
	snprintf(fo.target, sizeof(fo.target), "%s", a->remote);
	fo.roll_started_ms = ud_now_ms();
	fo.phase = F_ROLLING;
	uwsgi_log(LOG_PREFIX "follow: image %s moved in its registry (%s -> %s): rolling out\n",
		  ud.image, fo.serving, a->remote);
	/* Pulled already if another vassal's rollout pulled the digest since this check. */
	if (ud_rollout_request(have ? "missing" : "always", have ? NULL : fo.target) < 0)
		schedule(); /* a chain reload came first: the next check sees what it left */
}

static void checked(void)
{
	char out[512], msg[1024];
	struct answer a;
	event_queue_del_fd(uwsgi.master_queue, fo.run.pidfd, event_queue_read());
	int status = ud_helper_finish_plain(&fo.run, out, sizeof(out), msg, sizeof(msg));
	if ((status != 0 && status != 1) || !parse_answer(out, &a)) {
		check_failed(status, msg);
		return;
	}
	if (fo.fail_kind)
		uwsgi_log(LOG_PREFIX "follow: image %s can be checked again\n", ud.image);
	fo.fail_kind = 0;
	fo.backoff = 1;
	decide(&a);
}

void ud_follow_master_cycle(void)
{
	if (fo.phase == F_OFF)
		return;
	if (!fo.queued && fo.timer >= 0 && uwsgi.master_queue >= 0) {
		event_queue_add_fd_read(uwsgi.master_queue, fo.timer);
		fo.queued = 1;
	}
	uint64_t ticks;
	if (fo.timer >= 0 && read(fo.timer, &ticks, sizeof(ticks)) < 0 && errno != EAGAIN)
		ud_closep(&fo.timer); /* cannot be: falls back on the master's cycle */
	if (fo.phase == F_WAIT && ud_now_ms() >= fo.next_ms && ud_rollout_idle() &&
	    !uwsgi_instance_is_reloading && !uwsgi_instance_is_dying)
		start_check();
	else if (fo.phase == F_CHECKING && ud_helper_done(&fo.run))
		checked();
}

/* A digest that could not be pulled or prepared: the next checks, backing off, try it again. */
static void retry_later(void)
{
	if (strcmp(fo.retrying, fo.target)) {
		uwsgi_log(LOG_PREFIX "follow: %s of image %s could not be pulled or prepared (see "
				     "above); the next checks try it again, less often\n",
			  fo.target, ud.image);
		snprintf(fo.retrying, sizeof(fo.retrying), "%s", fo.target);
		fo.roll_backoff = 1;
	}
	if (fo.roll_backoff < MAX_BACKOFF)
		fo.roll_backoff *= 2;
	arm(jittered(fo.interval_ms * fo.roll_backoff, 90, 110));
}

/* rollout.c, when a rollout that ud_rollout_request() asked for ends. */
void ud_follow_rollout_ended(enum ud_rollout_end end, long long prepared_ms)
{
	if (fo.phase != F_ROLLING)
		return;
	if (end == UD_ROLLOUT_UNRESOLVED) {
		retry_later();
		return;
	}
	fo.retrying[0] = '\0';
	double prep = prepared_ms / 1000.0, all = (ud_now_ms() - fo.roll_started_ms) / 1000.0;
	if (end == UD_ROLLOUT_DONE) {
		uwsgi_log(LOG_PREFIX "follow: image %s is now %s (was %s): pulled and prepared in "
				     "%.1f s, rolled out in %.1f s\n",
			  ud.image, fo.target, fo.serving, prep, all);
		fo.failed[0] = '\0';
	} else {
		uwsgi_log(LOG_PREFIX "follow: %s of image %s was not rolled out (see above); it is "
				     "not tried again until the tag moves\n",
			  fo.target, ud.image);
		snprintf(fo.failed, sizeof(fo.failed), "%s", fo.target);
	}
	schedule();
}

/* A worker, right after fork: it keeps nothing of a check in flight. */
void ud_follow_forget(void)
{
	ud_closep(&fo.timer);
	ud_closep(&fo.run.sock);
	ud_closep(&fo.run.err);
	ud_closep(&fo.run.out);
	ud_closep(&fo.run.pidfd);
}
