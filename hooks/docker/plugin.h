/* The docker plugin's shared state: its options and what it holds between uWSGI's callbacks. */
#ifndef UD_PLUGIN_H
#define UD_PLUGIN_H

#include <uwsgi.h>

#include "creds.h"
#include "error.h"
#include "handoff.h"
#include "pidns.h"

#define LOG_PREFIX "[docker] "
#define HELPER_NAME "uwsgi-docker-rootfs"

enum ud_form {
	UD_FORM_NONE,
	UD_FORM_WORKERS,  /* form 1, docker-image: the master stays on the host */
	UD_FORM_INSTANCE, /* form 2, exec-as-root: the whole instance enters */
};

struct ud_plugin {
	/* options */
	char *image;
	char *rwpath;
	struct uwsgi_string_list *binds, *ro_binds, *tmpfs;
	char *unshare;
	char *hostname;
	int read_only;
	char *host;
	char *helper;
	int image_env;            /* docker-image-env; -1: default (on) */
	int image_env_deprecated; /* docker-env = BOOL, the old spelling of it; -1: not given */
	struct uwsgi_string_list *env_vars; /* docker-env = KEY=VALUE, in order */
	int allow_root;
	int no_confine;
	int no_network_files;
	char *shm_size;
	char *user;
	char *timeout;
	char *mount_api;
	char *layers;
	char *pull;
	char *cache_dir;
	char *gc_interval;
	char *follow;
	char *canary_timeout;

	/* state */
	enum ud_form form;
	int sock;  /* form 2: our end of the hand-off socket, -1 */
	int peer;  /* form 2: the end the hook inherits, -1 */
	int entered;
	int listen_fds; /* sockets from socket activation: fds 3 .. 3 + listen_fds - 1 */
	struct ud_handoff h; /* the namespace workers enter (form 1: of the serving generation) */
	uint32_t gen;        /* form 1: that generation's number, 1 at each start */
	struct ud_pidns pidns;
};

extern struct ud_plugin ud;
extern struct uwsgi_server uwsgi;

/* docker_plugin.c: what both forms share. The plugin fails one way: one log line, exit 1. */
__attribute__((noreturn)) void ud_die(const ud_error *e);
__attribute__((noreturn, format(printf, 2, 3))) void ud_dief(int errnum, const char *fmt, ...);
char *ud_ns_list(const struct ud_handoff *h, char *buf, size_t len);
void ud_refuse_root(void);
void ud_refuse_own_namespace(const struct ud_handoff *h);
void ud_chown_sockets(void);
void ud_enter_image(struct ud_handoff *h, const char *chdir_to);
int ud_canary_timeout_s(void);

/* optparse.c: option setters that refuse a value they do not understand, in one line. */
void ud_opt_bool(char *opt, char *value, void *key);
void ud_opt_env(char *opt, char *value, void *key);

/* The image's User (docker_plugin.c): when the ini names no uid, what h says the processes
 * that enter it run as; refuses root (unless docker-allow-root) and gid 0 (unless the ini sets
 * gid, or docker-allow-root). log: one line when the image's User is used. */
int ud_image_user_check(const struct ud_handoff *h, int log, ud_error *e);

/* form1.c, form2.c */
void ud_form1_jail(void);
void ud_form1_ready(void);
void ud_form1_enter_worker(void);
void ud_form2_jail(void);
void ud_form2_enter(void);

/* notify.c: form 2 tells systemd (NOTIFY_SOCKET) through an fd connected on the host. */
void ud_notify_connect(void);

/* rollout.c: form 1 chain reloads onto a newly resolved image, canary first. */
void ud_rollout_init(void);
void ud_rollout_master_cycle(void);
void ud_rollout_before_fork(void);
struct ud_handoff *ud_rollout_pick(int wid);
void ud_rollout_report_apps(void);

/* stash.c: a full reload that cannot resolve serves the previous generation's namespace. */
void ud_stash_save(void);
void ud_stash_take(void);
void ud_stash_drop(void);
int ud_stash_fall_back(const ud_error *why);

/* rollout.c, for follow.c: begins a rollout with this --pull (-1: one is under way), and whether
 * none is under way or asked for. */
int ud_rollout_request(const char *pull, const char *pull_if_not);
int ud_rollout_idle(void);

/* follow.c: docker-follow, the tag followed in the registry. */
void ud_follow_init(void);
void ud_follow_master_cycle(void);
/* How a rollout that follow.c asked for ended. */
enum ud_rollout_end {
	UD_ROLLOUT_DONE,
	UD_ROLLOUT_REFUSED,    /* the image: its canary failed, or a check of its files or User */
	UD_ROLLOUT_UNRESOLVED, /* no image to try: the pull or the daemon failed, or a race */
};
void ud_follow_rollout_ended(enum ud_rollout_end end, long long prepared_ms);
void ud_follow_forget(void);

/* graceful.c: a worker's SIGHUP that never resets a client's connection; a worker that loads
 * its app while the others serve does it at a lower priority. */
void ud_graceful_install(void);
void ud_graceful_load_gently(void);
void ud_graceful_loaded(void);
void ud_graceful_nudge(void);

/* helper.c: runs uwsgi-docker-rootfs (form 1) and receives its namespace. */
struct ud_helper_run {
	pid_t pid;   /* -1 when none runs */
	int pidfd;   /* the helper's pidfd: it is reaped through it */
	int sock;    /* our end of the hand-off socket */
	int err;     /* the helper's stderr */
	int out;     /* its stdout, with argv set (else the master's) */
	long long deadline_ms;
	int nice;    /* the helper's nice value: a rollout's yields to the workers that serve */
	const char *pull; /* --pull for this run (NULL: docker-pull) */
	const char *pull_if_not; /* --pull-if-not DIGEST for this run, or NULL */
	char **argv; /* another command line (--check): stdout comes back in out */
	int status;  /* after ud_helper_finish: its exit status, 128 + a signal that killed it */
};
#define UD_HELPER_RUN_INIT {.pid = -1, .pidfd = -1, .sock = -1, .err = -1, .out = -1}
int ud_helper_start(struct ud_helper_run *run, ud_error *e);
/* True once the helper has answered, exited or outlived its deadline (never blocks). */
int ud_helper_done(const struct ud_helper_run *run);
/* Receives the namespace (waiting at most until the deadline) and reaps the helper. */
int ud_helper_finish(struct ud_helper_run *run, struct ud_handoff *h, ud_error *e);
long long ud_now_ms(void);
/* The longest the plugin waits for the helper, in seconds. */
int ud_helper_deadline_s(void);
/* argv for the helper, NULL-terminated (caller frees the array, not the strings); pull: the
 * --pull of this run, NULL for docker-pull. */
char **ud_helper_argv(const char *pull, const char *pull_if_not);
/* Reaps a run started with argv: its exit status (128 + signal when killed), what it wrote on
 * stdout and the last line of its stderr. Kills it first if it outlived its deadline. */
int ud_helper_finish_plain(struct ud_helper_run *run, char *out, size_t out_len, char *msg,
			   size_t msg_len);

#endif
