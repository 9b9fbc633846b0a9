/* uwsgi-docker-rootfs: the command line and the order of the phases, nothing else. Every
 * failure travels up as a ud_error and is printed here, once, as one line. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "answers.h"
#include "cli.h"
#include "check.h"
#include "command.h"
#include "docker.h"
#include "error.h"
#include "export.h"
#include "gc.h"
#include "lastgood.h"
#include "lowers.h"
#include "netfiles.h"
#include "pin.h"
#include "plan.h"
#include "pull.h"
#include "reference.h"
#include "rootfs.h"
#include "rootmemo.h"
#include "snapshot.h"
#include "sockets.h"
#include "user.h"
#include "util.h"

/* Everything one run holds, released by run_free() whichever phase failed. */
struct run {
	ud_error e;
	struct ud_cli c;
	struct ud_docker d;
	struct ud_image img;
	struct ud_plan plan;
	struct ud_ns_fds ns;
	int sock, cache_lock, users_dir;
	struct ud_host_net host_net;   /* what the network files are made of */
	struct ud_user user;           /* -- COMMAND's */
	struct ud_handoff_user hu;     /* what a receiver is told of the user */
	char stamp[UD_ANSWERS_STAMP_MAX]; /* what the daemon's answer is true of (answers.h) */
	char user_error[sizeof(((ud_error *)0)->msg)];
};

static int die(const ud_error *e)
{
	char buf[1400];
	fprintf(stderr, UD_CLI_PROG ": %s\n", ud_error_text(e, buf, sizeof(buf)));
	return e->status ? e->status : UD_EXIT_REFUSED;
}

/* Refuse a setuid/setgid install: the helper mounts for whoever runs it. */
static int check_privileges(bool need_root, ud_error *e)
{
	uid_t ru, eu, su;
	gid_t rg, eg, sg;
	if (getresuid(&ru, &eu, &su) < 0 || getresgid(&rg, &eg, &sg) < 0)
		return ud_fail(e, UD_EXIT_REFUSED, errno, "getresuid");
	if (ru != eu || rg != eg)
		return ud_fail(e, UD_EXIT_REFUSED, 0,
			       "refusing to run setuid or setgid (real uid %u, effective uid %u); "
			       "remove the s bits from this binary",
			       ru, eu);
	if (need_root && eu != 0)
		return ud_fail(e, UD_EXIT_REFUSED, EPERM, "must run as root");
	return 0;
}

/* Run by uWSGI (UWSGI_DOCKER_FD), the helper holds up the whole instance's start: it ends within
 * a budget, whatever the daemon or a lock does. SIGALRM's default action kills it; uWSGI counts
 * that as success, and the plugin, receiving no namespace, stops uWSGI with one line. */
#define BUDGET_EXPORT_S 3600
static bool budget_on;

static void arm_budget(unsigned seconds)
{
	if (budget_on)
		alarm(seconds);
}

static unsigned direct_budget(long timeout_ms)
{
	return (unsigned)((4 * timeout_ms + 999) / 1000) + 5;
}

static void start_budget(long timeout_ms)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGALRM);
	/* An ignored or blocked SIGALRM is inherited across exec: undo both. */
	signal(SIGALRM, SIG_DFL);
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	budget_on = true;
	arm_budget(direct_budget(timeout_ms));
}

/* The daemon's own directories, kept under names of ours (snapshot.h) so that nothing the daemon
 * deletes takes a file from under the namespace. If that cannot be done the directories are
 * served as they are, with one line saying what is at stake. */
static int keep_layers(struct run *r)
{
	ud_error ke = {0};
	char buf[1400];
	/* Linking a first image's files takes about 5 ms per 1,000. */
	arm_budget(BUDGET_EXPORT_S);
	int ret = ud_snapshot_prepare(&r->img, r->c.print, &r->cache_lock, &ke);
	arm_budget(direct_budget(r->c.o.timeout_ms));
	if (ret < 0)
		fprintf(stderr,
			UD_CLI_PROG ": warning: %s; serving the daemon's own layer directories, "
				    "which docker rmi can take away from under it\n",
			ud_error_text(&ke, buf, sizeof(buf)));
	return 0;
}

/* Usable daemon directories: a supported driver, clean paths, and present on this machine
 * (EACCES: there, but not for us: --print as a user). */
static bool daemon_dirs_usable(struct ud_image *img)
{
	ud_error ve = {0};
	struct stat st;
	return ud_validate_layers(img, &ve) == 0 &&
	       (stat(img->layers[0], &st) == 0 ? S_ISDIR(st.st_mode) : errno == EACCES);
}

/* The layer cache, filled by an export of what it lacks. An export may rightly take minutes; a
 * stalled one ends at --timeout (export.c). */
static int from_export(struct run *r)
{
	const struct ud_cli *c = &r->c;
	arm_budget(BUDGET_EXPORT_S);
	int ret = ud_export_prepare(&r->d, &r->img, c->cache_dir, c->print, &r->cache_lock, &r->e);
	arm_budget(direct_budget(c->o.timeout_ms));
	return ret;
}

/* Where the layers come from: the daemon's own overlay directories (kept, unless --layers
 * direct), or the layer cache filled by an export. */
static int resolve_layers(struct run *r)
{
	const struct ud_cli *c = &r->c;
	if (c->layers == UD_LAYERS_DIRECT)
		return ud_docker_inspect(&r->d, c->o.image, &r->img, &r->e) < 0
			       ? -1
			       : ud_rootmemo_check(&r->d, &r->img, &r->e);
	if (ud_docker_inspect_raw(&r->d, c->o.image, &r->img, &r->e) < 0)
		return -1;
	if (c->layers == UD_LAYERS_AUTO && daemon_dirs_usable(&r->img))
		return ud_rootmemo_check(&r->d, &r->img, &r->e) < 0 ? -1 : keep_layers(r);
	return from_export(r);
}

/* --pull-if-not DIGEST: the daemon's image of the reference already is DIGEST (another helper
 * of this host pulled it a moment ago), so an always-pull would only ask the registry again. */
static bool already_pulled(void *arg)
{
	struct run *r = arg;
	struct ud_ref_parts parts;
	struct ud_image img;
	char have[80] = "";
	if (!r->c.pull_if_not || !ud_reference_parse(r->c.o.image, &parts) ||
	    ud_docker_inspect_raw(&r->d, r->c.o.image, &img, NULL) < 0)
		return false;
	bool same = ud_repo_digest(&img, parts.name, have, sizeof(have)) &&
		    !strcmp(have, r->c.pull_if_not);
	ud_image_free(&img);
	return same;
}

/* A pull may rightly take minutes, like an export; a stalled one ends at --timeout (pull.c). */
static int pull(struct run *r)
{
	const struct ud_pull_skip skip = {already_pulled, r};
	arm_budget(BUDGET_EXPORT_S);
	int ret = ud_pull(&r->d, r->c.o.image, r->c.docker_config, stderr, &skip, &r->e);
	arm_budget(direct_budget(r->c.o.timeout_ms));
	return ret;
}

/* --pull: always pulls first; missing pulls when the daemon says "not found" (a name, not an
 * id: 65 from the inspect is then only its 404), then resolves again. */
static int resolve_online(struct run *r)
{
	const struct ud_cli *c = &r->c;
	struct ud_ref_parts parts;
	bool pullable = ud_reference_parse(c->o.image, &parts);
	if (c->pull == UD_PULL_ALWAYS && pullable && !already_pulled(r) && pull(r) < 0)
		return -1;
	if (resolve_layers(r) == 0)
		return 0;
	if (c->pull != UD_PULL_MISSING || !pullable || r->e.status != UD_EXIT_IMAGE)
		return -1;
	ud_image_free(&r->img);
	if (pull(r) < 0)
		return -1;
	return resolve_layers(r);
}

static int print_plan(struct run *r)
{
	ud_autofree char *json = ud_plan_json(&r->plan);
	if (!json)
		return ud_oom(&r->e);
	puts(json);
	return 0;
}

/* The receiver's socket and the cache's use records are host paths: reach them before the host is
 * out of sight. The daemon's socket is of no use inside, and must not be inherited by COMMAND. */
static int before_entering(struct run *r)
{
	const struct ud_cli *c = &r->c;
	ud_docker_close(&r->d);
	if (!c->command && !c->pin &&
	    (r->sock = c->send_to ? ud_sockets_connect(c->send_to, c->send_to_uid, &r->e)
				  : ud_sockets_inherited(&r->e)) < 0)
		return -1;
	/* The layer cache or the snapshot store: the image's storage root either way. */
	if (r->img.from_cache &&
	    (r->users_dir = ud_cache_users_dir(r->img.storage_root, &r->e)) < 0)
		return -1;
	return 0;
}

static int enter(struct run *r)
{
	if (ud_rootfs_enter(&r->plan, &r->ns, &r->e) < 0)
		return -1;
	if (r->img.from_cache) {
		if (ud_cache_record_use(r->users_dir, &r->img, r->ns.fds[0], &r->e) < 0)
			return -1;
		/* Recorded: a prune may run now and will see the layers in use. */
		ud_closep(&r->cache_lock);
		ud_closep(&r->users_dir);
	}
	return 0;
}

/* Inside the new root: whom COMMAND runs as (always: root gets the image's groups for root too,
 * never the caller's), or what a receiver is told (only when a user is named: the image's
 * User, or --user). An image's User that does not resolve fails COMMAND, as docker run fails;
 * a receiver is told why instead, and fails only if it needs that user (the plugin does not
 * when the ini sets uid). A --pin has no user to tell. */
static int resolve_user(struct run *r)
{
	const struct ud_cli *c = &r->c;
	const char *spec = r->plan.user;
	int status = c->o.user ? UD_EXIT_USAGE : UD_EXIT_USER;
	if (c->pin || (!c->command && !spec))
		return 0;
	ud_autoclose int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (root < 0)
		return ud_fail(&r->e, UD_EXIT_MOUNT, errno, "opening the new root");
	if (ud_user_lookup(root, spec, status, &r->user, &r->e) == 0) {
		r->hu = (struct ud_handoff_user){true, r->user.uid, r->user.gid, NULL};
		return 0;
	}
	ud_context(&r->e, "image '%s'", c->o.image);
	if (c->command || c->o.user)
		return -1;
	char buf[sizeof(r->user_error)];
	snprintf(r->user_error, sizeof(r->user_error), "%s",
		 ud_error_text(&r->e, buf, sizeof(buf)));
	/* The receiver logs it, and takes printable ASCII only. */
	for (char *p = r->user_error; *p; p++)
		if (*p < 0x20 || *p > 0x7e)
			*p = '?';
	r->hu.error = r->user_error;
	r->e = (ud_error){0};
	return 0;
}

/* The namespace to its user: COMMAND (returns only on failure), the pin, or the receiver. */
static int deliver(struct run *r)
{
	if (r->c.command) {
		ud_ns_fds_close(&r->ns);
		ud_command_exec(&r->img, &r->c.o, &r->user, r->c.command, &r->e);
		return -1;
	}
	if (r->c.pin)
		return ud_pin_namespace(&r->ns, r->c.pin, &r->e);
	return ud_sockets_hand_off(r->sock, &r->img, &r->ns, &r->hu, &r->e);
}

/* The daemon gave no answer at all (not an error answer): the reference's last good resolution,
 * if every layer of it is still there (the daemon's directory, or the snapshot of it); one line
 * says so. Export mode has none. */
static int resolve_offline(struct run *r)
{
	const struct ud_cli *c = &r->c;
	ud_error le = {0};
	time_t when;
	char buf[1400], date[32];
	ud_image_free(&r->img);
	if (c->layers == UD_LAYERS_EXPORT ||
	    ud_lastgood_resolve(UD_LASTGOOD_DIR, r->d.socket_path, c->o.image, NULL, &r->img,
				&when, &le) < 0)
		return -1; /* the daemon's failure is the one to report */
	if (c->layers == UD_LAYERS_DIRECT
		    ? ud_lastgood_layers_present(&r->img, &le) < 0
		    : ud_snapshot_prepare(&r->img, c->print, &r->cache_lock, &le) < 0)
		return -1;
	strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S", localtime(&when));
	fprintf(stderr, UD_CLI_PROG ": %s: using the last good resolution of '%s' (%s, kept %s)\n",
		ud_error_text(&r->e, buf, sizeof(buf)), c->o.image, r->img.id, date);
	r->e = (ud_error){0};
	return 0;
}

/* Resolved to the daemon's own directories (vouched for by rootmemo), kept or not: keep the
 * answer for the day the daemon does not answer, and for the starts it still holds for. */
static void remember(struct run *r)
{
	if (!r->d.inspect_body || r->c.print || geteuid() != 0)
		return;
	if (!r->img.from_cache || r->img.snapshot)
		ud_lastgood_save(UD_LASTGOOD_DIR, r->d.socket_path, r->c.o.image, NULL,
				 r->d.inspect_body, r->d.inspect_len);
	if (r->stamp[0])
		ud_answers_keep(r->d.socket_path, r->c.o.image, r->stamp, r->d.inspect_body,
				r->d.inspect_len);
}

/* The daemon's answer of an earlier start, while it holds (answers.h): nothing is asked unless
 * an export must fill the layer cache. Not when the reference must be pulled first. 1 when
 * there is no such answer. */
static int resolve_answered(struct run *r)
{
	const struct ud_cli *c = &r->c;
	if (c->pull == UD_PULL_ALWAYS ||
	    !ud_answers_stamp(r->d.socket_path, r->stamp, sizeof(r->stamp)) ||
	    ud_answers_use(r->d.socket_path, c->o.image, r->stamp, &r->img) < 0)
		return 1;
	if (c->layers == UD_LAYERS_EXPORT)
		return from_export(r);
	if (c->layers == UD_LAYERS_AUTO)
		keep_layers(r);
	return 0;
}

static int resolve(struct run *r)
{
	int answered = resolve_answered(r);
	if (answered <= 0)
		return answered;
	/* --pull always with the daemon down falls back the same way. */
	if (ud_docker_negotiate(&r->d, &r->e) < 0 || resolve_online(r) < 0)
		return r->d.unreachable ? resolve_offline(r) : -1;
	remember(r);
	return 0;
}

static int run(struct run *r)
{
	const struct ud_cli *c = &r->c;
	if (ud_docker_open(&r->d, c->o.docker_host, c->o.timeout_ms, &r->e) < 0)
		return -1;
	if (c->prune)
		return ud_docker_negotiate(&r->d, &r->e) < 0
			       ? -1
			       : ud_gc_run(&r->d, c->cache_dir, stdout, &r->e);
	if (c->check)
		return ud_docker_negotiate(&r->d, &r->e) < 0
			       ? -1
			       : ud_check(&r->d, c->o.image, c->docker_config, c->check_max_age_ms,
					  stdout, &r->e);
	if (resolve(r) < 0 || ud_command_env_set(&r->img, c->o.env, c->o.n_env, &r->e) < 0)
		return -1;
	/* The host's resolv.conf, read where the host's files are: before anything is unshared. */
	if (!c->o.no_network_files) {
		if (ud_host_net_read(&r->host_net, &r->e) < 0)
			return -1;
		r->c.o.host_net = &r->host_net;
	}
	if (ud_lowers_plan(&c->o, &r->img, &r->plan, &r->e) < 0)
		return -1;
	if (c->print)
		return print_plan(r);
	if (before_entering(r) < 0 || enter(r) < 0 || resolve_user(r) < 0)
		return -1;
	return deliver(r);
}

static void run_free(struct run *r)
{
	ud_ns_fds_close(&r->ns);
	ud_plan_free(&r->plan);
	ud_image_free(&r->img);
	ud_docker_close(&r->d);
	ud_cli_free(&r->c);
	ud_closep(&r->sock);
	ud_closep(&r->cache_lock);
	ud_closep(&r->users_dir);
	ud_user_free(&r->user);
	ud_host_net_free(&r->host_net);
}

int main(int argc, char **argv)
{
	struct run r = {.ns = {.host_mnt = -1}, .sock = -1, .cache_lock = -1, .users_dir = -1};
	int action = ud_cli_parse(argc, argv, &r.c, &r.e);
	if (action == UD_CLI_HELP) {
		size_t len = ud_cli_usage(NULL, 0) + 1;
		ud_autofree char *usage = malloc(len);
		if (usage) {
			ud_cli_usage(usage, len);
			fputs(usage, stdout);
		}
	} else if (action == UD_CLI_VERSION) {
		fputs(ud_cli_version(), stdout);
	}
	if (action != UD_CLI_RUN) {
		ud_cli_free(&r.c);
		return action < 0 ? die(&r.e) : 0;
	}
	/* Installed setuid/setgid: leave at once, without atexit handlers or library destructors
	 * running with borrowed privileges. */
	if (check_privileges(!r.c.print && !r.c.check, &r.e) < 0)
		_exit(die(&r.e));
	const struct ud_cli *c = &r.c;
	if (!c->command && !c->print && !c->pin && !c->send_to && !c->prune && !c->check)
		start_budget(c->o.timeout_ms);
	/* Before anything of the run exists: the collection inherits none of it. */
	if (!c->print && !c->prune && !c->check)
		ud_gc_schedule(c->o.docker_host, c->o.timeout_ms, c->cache_dir, c->gc_interval);
	int ran = run(&r);
	int status = ran < 0 ? die(&r.e) : ran; /* --check: UD_CHECK_MOVED */
	run_free(&r);
	return status;
}
