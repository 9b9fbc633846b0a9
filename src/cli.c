/* The command line: the option table below is the one list an option is added to; getopt's
 * tables and --help are derived from it. The man page is kept in step by hand (test_docs.py). */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "docker.h"
#include "gc.h"
#include "tmpfsopt.h"
#include "userdb.h"



struct cli_opt;
typedef int cli_setter(struct ud_cli *c, const struct cli_opt *opt, const char *arg,
		       ud_error *e);

struct cli_opt {
	const char *name;
	int short_opt;         /* 0: long only */
	const char *metavar;   /* NULL: takes no argument */
	cli_setter *set;       /* returns -1 (error in *e), 0, or an enum ud_cli_action to stop */
	size_t param;          /* the setter's: a field offset, a flag, an action */
	const char *help;      /* '\n' continues on the next line, aligned */
	const struct ud_name *choices; /* listed after help, joined with conj */
	int choice_mask;       /* only these values of choices (0: all) */
	const char *conj;
};

/* ---- setters, one per kind of option --------------------------------------------------------- */

static int set_string(struct ud_cli *c, const struct cli_opt *opt, const char *arg, ud_error *e)
{
	(void)e;
	*(const char **)((char *)c + opt->param) = arg;
	return 0;
}

static int set_flag(struct ud_cli *c, const struct cli_opt *opt, const char *arg, ud_error *e)
{
	(void)arg, (void)e;
	*(bool *)((char *)c + opt->param) = true;
	return 0;
}

static int set_action(struct ud_cli *c, const struct cli_opt *opt, const char *arg, ud_error *e)
{
	(void)c, (void)arg, (void)e;
	return (int)opt->param;
}

static int choose(const struct cli_opt *opt, const char *arg, int *value, ud_error *e)
{
	if (ud_value_of(opt->choices, arg, value) == 0)
		return 0;
	char list[256];
	ud_cli_names(opt->choices, opt->choice_mask, " or ", list, sizeof(list));
	return ud_fail(e, UD_EXIT_USAGE, 0, "--%s '%s': expected %s", opt->name, arg, list);
}

static int set_mount_api(struct ud_cli *c, const struct cli_opt *opt, const char *arg,
			 ud_error *e)
{
	int v;
	if (choose(opt, arg, &v, e) < 0)
		return -1;
	c->o.mount_api = (enum ud_mount_api)v;
	return 0;
}

static int set_layers(struct ud_cli *c, const struct cli_opt *opt, const char *arg, ud_error *e)
{
	int v;
	if (choose(opt, arg, &v, e) < 0)
		return -1;
	c->layers = (enum ud_layers_mode)v;
	return 0;
}

static int set_pull(struct ud_cli *c, const struct cli_opt *opt, const char *arg, ud_error *e)
{
	int v;
	if (choose(opt, arg, &v, e) < 0)
		return -1;
	c->pull = (enum ud_pull_policy)v;
	return 0;
}

static int set_unshare(struct ud_cli *c, const struct cli_opt *opt, const char *arg, ud_error *e)
{
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", arg);
	char *save = NULL;
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		int ns = 0;
		bool known = ud_value_of(opt->choices, t, &ns) == 0;
		if (known && (ns & opt->choice_mask)) {
			c->o.unshare_flags |= ns;
			continue;
		}
		if (known && ns == CLONE_NEWPID)
			return ud_fail(e, UD_EXIT_USAGE, 0,
				       "--unshare pid is not offered: the helper exits after preparing "
				       "the root; use uWSGI's emperor-use-clone = pid (see "
				       "uwsgi-docker-rootfs(1))");
		char list[256];
		ud_cli_names(opt->choices, opt->choice_mask, ", ", list, sizeof(list));
		return ud_fail(e, UD_EXIT_USAGE, 0, "--unshare: unknown namespace '%s' (%s)", t, list);
	}
	return 0;
}

static int set_timeout(struct ud_cli *c, const struct cli_opt *opt, const char *arg, ud_error *e)
{
	(void)opt;
	char *end;
	errno = 0;
	double s = strtod(arg, &end);
	if (errno || *end || !(s > 0) || s > 86400)
		return ud_fail(e, UD_EXIT_USAGE, 0, "--timeout '%s': expected seconds, more than 0",
			       arg);
	c->o.timeout_ms = (long)(s * 1000);
	if (c->o.timeout_ms < 1)
		c->o.timeout_ms = 1;
	return 0;
}

static int set_gc_interval(struct ud_cli *c, const struct cli_opt *opt, const char *arg,
			   ud_error *e)
{
	char *end;
	errno = 0;
	long v = strtol(arg, &end, 10);
	if (!strcmp(arg, "never"))
		v = -1;
	else if (errno || *end || end == arg || v < 0)
		return ud_fail(e, UD_EXIT_USAGE, 0, "--%s '%s': expected seconds or never",
			       opt->name, arg);
	c->gc_interval = v;
	return 0;
}

static int set_check_max_age(struct ud_cli *c, const struct cli_opt *opt, const char *arg,
			     ud_error *e)
{
	char *end;
	errno = 0;
	double v = strtod(arg, &end);
	if (errno || *end || end == arg || !(v >= 0) || v > 86400)
		return ud_fail(e, UD_EXIT_USAGE, 0, "--%s '%s': expected seconds", opt->name, arg);
	c->check_max_age_ms = (long)(v * 1000);
	return 0;
}

static int set_digest(struct ud_cli *c, const struct cli_opt *opt, const char *arg, ud_error *e)
{
	bool ok = strncmp(arg, "sha256:", 7) == 0 && strlen(arg) == 71 &&
		  strspn(arg + 7, "0123456789abcdef") == 64;
	if (!ok)
		return ud_fail(e, UD_EXIT_USAGE, 0, "--%s '%s': expected sha256:<64 hex digits>",
			       opt->name, arg);
	return set_string(c, opt, arg, e);
}

static int set_send_to_uid(struct ud_cli *c, const struct cli_opt *opt, const char *arg,
			   ud_error *e)
{
	(void)opt;
	char *end;
	errno = 0;
	unsigned long v = strtoul(arg, &end, 10);
	if (errno || !*arg || *end || arg[0] == '-' || v >= (uid_t)-1)
		return ud_fail(e, UD_EXIT_USAGE, 0, "--send-to-uid '%s': expected a numeric uid", arg);
	c->send_to_uid = (uid_t)v;
	return 0;
}

static int set_rw(struct ud_cli *c, const struct cli_opt *opt, const char *arg, ud_error *e)
{
	(void)e;
	if (opt->metavar) { /* --rw-path DIR */
		c->o.rw = UD_RW_PATH;
		c->o.rw_path = arg;
		c->rw_path = true;
	} else {
		c->o.rw = UD_RW_NONE;
		c->read_only = true;
	}
	return 0;
}

static int set_cache_dir(struct ud_cli *c, const struct cli_opt *opt, const char *arg,
			 ud_error *e)
{
	(void)opt;
	if (arg[0] != '/' || strpbrk(arg, ",:\\"))
		return ud_fail(e, UD_EXIT_USAGE, 0,
			       "--cache-dir '%s': expected an absolute path without ',' ':' or '\\'",
			       arg);
	c->cache_dir = arg;
	return 0;
}

static int set_cache_limit(struct ud_cli *c, const struct cli_opt *opt, const char *arg,
			   ud_error *e)
{
	(void)c;
	return ud_layer_limit_option(opt->name, arg, e);
}

static int set_user(struct ud_cli *c, const struct cli_opt *opt, const char *arg, ud_error *e)
{
	(void)opt;
	struct ud_user_spec s;
	if (ud_user_spec_parse(arg, UD_EXIT_USAGE, &s, e) < 0)
		return ud_context(e, "--user");
	c->o.user = arg;
	return 0;
}

/* KEY=VALUE, as docker run -e takes it; unlike docker run, a KEY alone (the caller's value) is
 * refused: under uWSGI the caller is the master, whose environment is the host's. */
static int set_env(struct ud_cli *c, const struct cli_opt *opt, const char *arg, ud_error *e)
{
	(void)opt;
	if (!strchr(arg, '=') || arg[0] == '=')
		return ud_fail(e, UD_EXIT_USAGE, 0, "--env '%s': expected KEY=VALUE", arg);
	char *kv = (char *)arg;
	return ud_push(&c->o.env, &c->o.n_env, sizeof(kv), &kv) < 0 ? ud_oom(e) : 0;
}

static int push_op(struct ud_cli *c, struct ud_op *op, ud_error *e)
{
	if (ud_push(&c->o.binds, &c->o.n_binds, sizeof(*op), op) == 0)
		return 0;
	free(op->src);
	free(op->dst);
	free(op->data);
	return ud_oom(e);
}

static int set_bind(struct ud_cli *c, const struct cli_opt *opt, const char *arg, ud_error *e)
{
	struct ud_op op;
	if (ud_parse_bind(arg, opt->param != 0, &op, e) < 0)
		return -1;
	return push_op(c, &op, e);
}

static int set_tmpfs(struct ud_cli *c, const struct cli_opt *opt, const char *arg, ud_error *e)
{
	struct ud_op op;
	if (ud_tmpfs_parse(arg, opt->name, &op, e) < 0)
		return -1;
	return push_op(c, &op, e);
}

static int set_shm_size(struct ud_cli *c, const struct cli_opt *opt, const char *arg,
			ud_error *e)
{
	return ud_ram_size_parse(arg, opt->name, &c->o.shm_size, e);
}

/* ---- the table ------------------------------------------------------------------------------- */

#define FIELD(f) offsetof(struct ud_cli, f)

/* In --help's order. */
static const struct cli_opt options[] = {
	{"docker-host", 'H', "ADDR", set_string, FIELD(o.docker_host),
	 "Talk to the daemon at ADDR (unix:///path or /path)", NULL, 0, NULL},
	{"timeout", 't', "SECONDS", set_timeout, 0,
	 "Time limit for each Docker API request (default 10)", NULL, 0, NULL},
	{"pull", 0, "POLICY", set_pull, 0, "When to pull IMAGE through the daemon: ", ud_pull_policies,
	 0, " or "},
	{"pull-if-not", 0, "DIGEST", set_digest, FIELD(pull_if_not),
	 "With --pull always: not when the daemon's image of IMAGE\nalready has DIGEST",
	 NULL, 0, NULL},
	{"docker-config", 0, "DIR", set_string, FIELD(docker_config),
	 "Registry credentials from DIR/config.json (default\n$DOCKER_CONFIG, else ~/.docker)", NULL,
	 0, NULL},
	{"rw-path", 0, "DIR", set_rw, 0, "Keep a persistent rw layer in DIR/upper and DIR/work",
	 NULL, 0, NULL},
	{"read-only", 0, NULL, set_rw, 0, "Mount no rw layer: the root is read-only", NULL, 0, NULL},
	{"mount-api", 0, "MODE", set_mount_api, 0, "How to mount the overlay: ", ud_plan_mount_apis,
	 0, " or "},
	{"layers", 0, "MODE", set_layers, 0, "Where the layers come from: ", ud_export_layers_modes, 0,
	 " or "},
	{"cache-dir", 0, "DIR", set_cache_dir, 0, "The layer cache for exported images", NULL, 0,
	 NULL},
	{"gc", 0, NULL, set_flag, FIELD(prune),
	 "Remove kept and cached layers that no image and no live\nnamespace uses, print what was freed",
	 NULL, 0, NULL},
	{"cache-prune", 0, NULL, set_flag, FIELD(prune), "The same as --gc", NULL, 0, NULL},
	{"gc-interval", 0, "SECONDS", set_gc_interval, 0,
	 "Collect in the background when the last collection is this\nold (default 3600; never: off)",
	 NULL, 0, NULL},
	{"cache-max-files", 0, "N", set_cache_limit, 0,
	 "Most members one layer may have (default 1000000)", NULL, 0, NULL},
	{"cache-max-bytes", 0, "SIZE", set_cache_limit, 0,
	 "Most data one layer may write (default 16G)", NULL, 0, NULL},
	{"cache-max-apparent", 0, "SIZE", set_cache_limit, 0,
	 "Most file size, holes included, per layer (default 16G)", NULL, 0, NULL},
	{"no-proc", 0, NULL, set_flag, FIELD(o.no_proc), "Do not mount /proc", NULL, 0, NULL},
	{"no-dev", 0, NULL, set_flag, FIELD(o.no_dev), "Do not mount /dev", NULL, 0, NULL},
	{"no-sys", 0, NULL, set_flag, FIELD(o.no_sys), "Do not mount /sys", NULL, 0, NULL},
	{"no-network-files", 0, NULL, set_flag, FIELD(o.no_network_files),
	 "Leave the image's /etc/hosts, /etc/resolv.conf and\n/etc/hostname as they are",
	 NULL, 0, NULL},
	{"bind", 0, "SRC[:DST]", set_bind, false,
	 "Bind the host's SRC at DST inside, recursively and read-write", NULL, 0, NULL},
	{"ro-bind", 0, "SRC[:DST]", set_bind, true, "The same, read-only (really read-only)", NULL,
	 0, NULL},
	{"tmpfs", 0, "DST[:OPTS]", set_tmpfs, 0,
	 "Mount a fresh tmpfs at DST (noexec, nosuid, nodev, mode 1777),\n"
	 "OPTS as docker run's: size=64m,mode=755,exec,ro...",
	 NULL, 0, NULL},
	{"shm-size", 0, "SIZE", set_shm_size, 0, "Size of /dev/shm (default 64m)", NULL, 0, NULL},
	{"unshare", 0, "NS[,NS...]", set_unshare, 0, "Also unshare these namespaces, among ", NULL,
	 UD_CLI_UNSHAREABLE, " and "}, /* choices: ud_ns_names(), filled in by option_at() */
	{"hostname", 0, "NAME", set_string, FIELD(o.hostname),
	 "Set the hostname (requires --unshare uts)", NULL, 0, NULL},
	{"pin", 0, "PATH", set_string, FIELD(pin), "Bind the new mount namespace onto PATH", NULL, 0,
	 NULL},
	{"send-to", 0, "PATH", set_string, FIELD(send_to),
	 "Hand the namespaces to the unix socket at PATH (its listener\n"
	 "must be root, its directory writable by root only)",
	 NULL, 0, NULL},
	{"send-to-uid", 0, "UID", set_send_to_uid, 0,
	 "Also accept a --send-to listener running as UID", NULL, 0, NULL},
	{"user", 'u', "USER[:GROUP]", set_user, 0,
	 "Run COMMAND as USER (default: the image's User), names\n"
	 "looked up in the image's /etc/passwd and /etc/group",
	 NULL, 0, NULL},
	{"env", 'e', "KEY=VALUE", set_env, 0, "Set a variable over the image's Env (repeatable)",
	 NULL, 0, NULL},
	{"no-confine", 0, NULL, set_flag, FIELD(o.no_confine),
	 "No masked or read-only /proc and /sys paths, and COMMAND\n"
	 "keeps every capability, without Landlock (debugging)",
	 NULL, 0, NULL},
	{"print", 0, NULL, set_flag, FIELD(print),
	 "Resolve the image and print the plan as JSON, changing nothing", NULL, 0, NULL},
	{"check", 0, NULL, set_flag, FIELD(check),
	 "Compare IMAGE's digest with the registry's for its tag: exit 0\nwhen they match, 1 when "
	 "the registry's moved",
	 NULL, 0, NULL},
	{"check-max-age", 0, "SECONDS", set_check_max_age, 0,
	 "With --check: take another check's answer this fresh", NULL, 0, NULL},
	{"help", 'h', NULL, set_action, UD_CLI_HELP, "Print a usage summary and exit", NULL, 0, NULL},
	{"version", 'V', NULL, set_action, UD_CLI_VERSION, "Print the version and exit", NULL, 0,
	 NULL},
};

#define N_OPTIONS UD_ARRAY_SIZE(options)

/* options[i], with the namespace table that a static initialiser cannot name. */
static struct cli_opt option_at(size_t i)
{
	struct cli_opt opt = options[i];
	if (opt.set == set_unshare)
		opt.choices = ud_ns_names();
	return opt;
}

/* What getopt_long returns for options[i]. */
static int option_val(size_t i)
{
	return options[i].short_opt ? options[i].short_opt : 256 + (int)i;
}

/* ---- --help ---------------------------------------------------------------------------------- */

struct out {
	char *buf;
	size_t len, pos; /* pos counts what did not fit too */
};

static void put(struct out *o, const char *s, size_t n)
{
	if (o->pos < o->len) {
		size_t room = o->len - o->pos - 1;
		memcpy(o->buf + o->pos, s, n < room ? n : room);
		o->buf[o->pos + (n < room ? n : room)] = '\0';
	}
	o->pos += n;
}

static void puts_out(struct out *o, const char *s)
{
	put(o, s, strlen(s));
}

size_t ud_cli_names(const struct ud_name *table, int mask, const char *last, char *buf,
		    size_t len)
{
	struct out o = {buf, len, 0};
	if (len)
		buf[0] = '\0';
	size_t n = 0, done = 0;
	for (const struct ud_name *t = table; t->name; t++)
		n += !mask || (t->value & mask);
	for (const struct ud_name *t = table; t->name; t++) {
		if (mask && !(t->value & mask))
			continue;
		if (done++)
			puts_out(&o, done == n ? last : ", ");
		puts_out(&o, t->name);
	}
	return o.pos;
}

#define HELP_COLUMN 27

static void usage_option(struct out *o, const struct cli_opt *opt)
{
	char head[64];
	int n = opt->short_opt ? snprintf(head, sizeof(head), "  -%c, --%s", opt->short_opt, opt->name)
			       : snprintf(head, sizeof(head), "      --%s", opt->name);
	if (opt->metavar)
		n += snprintf(head + n, sizeof(head) - (size_t)n, " %s", opt->metavar);
	puts_out(o, head);
	char indent[HELP_COLUMN];
	memset(indent, ' ', sizeof(indent));
	/* A head too long for the column puts the help on the next line. */
	if (n < HELP_COLUMN) {
		put(o, indent, (size_t)(HELP_COLUMN - n));
	} else {
		put(o, "\n", 1);
		put(o, indent, HELP_COLUMN);
	}
	for (const char *s = opt->help; *s;) {
		size_t l = strcspn(s, "\n");
		put(o, s, l);
		s += l;
		if (*s) {
			put(o, "\n", 1);
			put(o, indent, HELP_COLUMN);
			s++;
		}
	}
	if (opt->choices) {
		char list[256];
		ud_cli_names(opt->choices, opt->choice_mask, opt->conj, list, sizeof(list));
		puts_out(o, list);
	}
	put(o, "\n", 1);
}

size_t ud_cli_usage(char *buf, size_t len)
{
	struct out o = {buf, len, 0};
	if (len)
		buf[0] = '\0';
	puts_out(&o, "Usage: " UD_CLI_PROG " [OPTIONS] IMAGE [-- COMMAND [ARG...]]\n"
		     "\n"
		     "Prepare a mount namespace whose root is the Docker image IMAGE, then run COMMAND\n"
		     "inside it, or hand the namespace to uWSGI.\n"
		     "\n"
		     "Options:\n");
	for (size_t i = 0; i < N_OPTIONS; i++) {
		struct cli_opt opt = option_at(i);
		usage_option(&o, &opt);
	}
	puts_out(&o, "\n"
		     "With none of -- COMMAND, --print, --pin and --send-to, the namespace is handed to the\n"
		     "socket whose descriptor number is in $" UD_FD_ENV ", within a time budget of\n"
		     "4 x --timeout + 5 s. See uwsgi-docker-rootfs(1).\n");
	return o.pos;
}

const char *ud_cli_version(void)
{
	return UD_CLI_PROG " " UD_VERSION " (Docker API " UD_API_VERSION ")\n";
}

/* ---- parsing --------------------------------------------------------------------------------- */

static void getopt_tables(struct option *longopts, char *shortopts)
{
	/* '+': options end at the image name, so COMMAND's own options are never ours. ':': a
	 * missing argument is told apart from an unknown option. */
	char *s = shortopts;
	*s++ = '+';
	*s++ = ':';
	for (size_t i = 0; i < N_OPTIONS; i++) {
		longopts[i] = (struct option){options[i].name,
					      options[i].metavar ? required_argument : no_argument,
					      NULL, option_val(i)};
		if (options[i].short_opt) {
			*s++ = (char)options[i].short_opt;
			if (options[i].metavar)
				*s++ = ':';
		}
	}
	longopts[N_OPTIONS] = (struct option){NULL, 0, NULL, 0};
	*s = '\0';
}

static int parse_options(int argc, char **argv, struct ud_cli *c, ud_error *e)
{
	struct option longopts[N_OPTIONS + 1];
	char shortopts[3 + 2 * N_OPTIONS];
	getopt_tables(longopts, shortopts);
	opterr = 0;
	optind = 0; /* GNU: start afresh (the unit tests parse many command lines) */
	int ch;
	while ((ch = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
		if (ch == ':')
			return ud_fail(e, UD_EXIT_USAGE, 0, "option '%s' needs an argument (see --help)",
				       argv[optind - 1]);
		size_t i = 0;
		while (i < N_OPTIONS && option_val(i) != ch)
			i++;
		if (i == N_OPTIONS)
			return ud_fail(e, UD_EXIT_USAGE, 0, "unknown option '%s' (see --help)",
				       argv[optind - 1]);
		struct cli_opt opt = option_at(i);
		int r = opt.set(c, &opt, optarg, e);
		if (r != 0)
			return r;
	}
	return UD_CLI_RUN;
}

/* IMAGE [-- COMMAND [ARG...]] */
static int parse_operands(int argc, char **argv, struct ud_cli *c, ud_error *e)
{
	if (c->prune) {
		if (optind < argc)
			return ud_fail(e, UD_EXIT_USAGE, 0, "--gc takes no IMAGE");
		return 0;
	}
	if (optind >= argc)
		return ud_fail(e, UD_EXIT_USAGE, 0, "no IMAGE given (see --help)");
	c->o.image = argv[optind++];
	if (optind < argc) {
		if (strcmp(argv[optind], "--") != 0)
			return ud_fail(e, UD_EXIT_USAGE, 0,
				       "unexpected '%s' after IMAGE: put COMMAND after '--'",
				       argv[optind]);
		if (++optind >= argc)
			return ud_fail(e, UD_EXIT_USAGE, 0, "no COMMAND after '--'");
		c->command = &argv[optind];
	}
	return 0;
}

static int check_combinations(const struct ud_cli *c, ud_error *e)
{
	int modes = !!c->command + !!c->print + !!c->pin + !!c->send_to;
	if (modes > 1)
		return ud_fail(e, UD_EXIT_USAGE, 0,
			       "choose one of -- COMMAND, --print, --pin and --send-to");
	if (c->send_to_uid != (uid_t)-1 && !c->send_to)
		return ud_fail(e, UD_EXIT_USAGE, 0, "--send-to-uid goes with --send-to");
	if (c->pin && c->o.unshare_flags)
		return ud_fail(e, UD_EXIT_USAGE, 0,
			       "--pin keeps only the mount namespace alive: it cannot be combined "
			       "with --unshare");
	if (modes == 0 && !getenv(UD_FD_ENV))
		return ud_fail(e, UD_EXIT_USAGE, 0,
			       "nothing to do: give -- COMMAND, --print, --pin or --send-to, or run "
			       "from uWSGI (" UD_FD_ENV ")");
	return 0;
}

int ud_cli_parse(int argc, char **argv, struct ud_cli *c, ud_error *e)
{
	memset(c, 0, sizeof(*c));
	c->o.timeout_ms = 10000;
	c->send_to_uid = (uid_t)-1;
	c->cache_dir = UD_DEFAULT_CACHE;
	c->gc_interval = UD_GC_DEFAULT_INTERVAL;
	int r = parse_options(argc, argv, c, e);
	if (r != UD_CLI_RUN)
		return r;
	if (c->rw_path && c->read_only)
		return ud_fail(e, UD_EXIT_USAGE, 0, "--rw-path and --read-only exclude each other");
	if (parse_operands(argc, argv, c, e) < 0)
		return -1;
	if (c->check_max_age_ms && !c->check)
		return ud_fail(e, UD_EXIT_USAGE, 0, "--check-max-age goes with --check");
	if (c->check && (c->command || c->print || c->pin || c->send_to))
		return ud_fail(e, UD_EXIT_USAGE, 0,
			       "--check only compares digests: it takes no -- COMMAND, --print, --pin "
			       "or --send-to");
	return c->prune || c->check ? UD_CLI_RUN : check_combinations(c, e);
}

void ud_cli_free(struct ud_cli *c)
{
	for (size_t i = 0; i < c->o.n_binds; i++) {
		free(c->o.binds[i].src);
		free(c->o.binds[i].dst);
		free(c->o.binds[i].data);
	}
	free(c->o.binds);
	c->o.binds = NULL;
	c->o.n_binds = 0;
	free(c->o.env);
	c->o.env = NULL;
	c->o.n_env = 0;
}
