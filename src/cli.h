/* The command line of uwsgi-docker-rootfs: one table of options serves parsing and --help, and one
 * name table per enumerated option serves parsing, --help and the error messages. No printing
 * and no exiting here: main.c does both. */
#ifndef UD_CLI_H
#define UD_CLI_H

#include <sched.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "error.h"
#include "export.h"
#include "plan.h"
#include "pull.h"
#include "util.h"

#define UD_CLI_PROG "uwsgi-docker-rootfs"

struct ud_cli {
	struct ud_options o;
	const char *pin;
	const char *send_to;
	uid_t send_to_uid;      /* (uid_t)-1: none */
	bool print;
	bool prune;             /* --gc (--cache-prune) */
	bool check;             /* --check IMAGE */
	long check_max_age_ms;  /* --check-max-age SECONDS, 0: ask the registry every time */
	long gc_interval;       /* seconds, -1: never */
	enum ud_layers_mode layers;
	const char *cache_dir;
	enum ud_pull_policy pull;
	const char *pull_if_not;   /* --pull-if-not DIGEST, or NULL */
	const char *docker_config; /* --docker-config DIR, or NULL */
	char **command;         /* after "--", or NULL */
	bool rw_path, read_only; /* as given, to refuse both */
};

enum ud_cli_action {
	UD_CLI_RUN,
	UD_CLI_HELP,    /* print ud_cli_usage() and exit 0 */
	UD_CLI_VERSION, /* print ud_cli_version() and exit 0 */
};

/* The names of the enumerated options' values, in the order --help lists them. */
/* The namespaces --unshare offers (a subset of ud_ns_names()). */
#define UD_CLI_UNSHAREABLE (CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET | CLONE_NEWCGROUP)

/* Fills *c from argv (c needs no initialisation). Returns an enum ud_cli_action, or -1 with a
 * usage error (status 64) or out of memory in *e. ud_cli_free() afterwards in every case. */
int ud_cli_parse(int argc, char **argv, struct ud_cli *c, ud_error *e);
void ud_cli_free(struct ud_cli *c);

/* The --help text into buf (truncated to len); returns its full length. */
size_t ud_cli_usage(char *buf, size_t len);
/* The --version line (with its newline). */
const char *ud_cli_version(void);

/* "a, b, c<last>d" from the names of table whose value is in mask (every name when mask is 0):
 * ud_cli_names(t, 0, " or ", ...) gives "auto, fd, string or legacy". */
size_t ud_cli_names(const struct ud_name *table, int mask, const char *last, char *buf,
		    size_t len);

#endif
