/* uwsgi-docker-rootfs: command line and orchestration only. Every failure travels up as a
 * ud_error and is printed here, once, as one line. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <linux/openat2.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "caps.h"
#include "docker.h"
#include "error.h"
#include "export.h"
#include "handoff.h"
#include "lowers.h"
#include "plan.h"
#include "rootfs.h"
#include "util.h"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

#define PROG "uwsgi-docker-rootfs"
#define DEFAULT_PATH "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/* Kept in step with OPTIONS in man/uwsgi-docker-rootfs.1 (tests/integration checks both). */
static const char usage_text[] =
	"Usage: " PROG " [OPTIONS] IMAGE [-- COMMAND [ARG...]]\n"
	"\n"
	"Prepare a mount namespace whose root is the Docker image IMAGE, then run COMMAND\n"
	"inside it, or hand the namespace to uWSGI.\n"
	"\n"
	"Options:\n"
	"  -H, --docker-host ADDR   Talk to the daemon at ADDR (unix:///path or /path)\n"
	"  -t, --timeout SECONDS    Time limit for each Docker API request (default 10)\n"
	"      --rw-path DIR        Keep a persistent rw layer in DIR/upper and DIR/work\n"
	"      --read-only          Mount no rw layer: the root is read-only\n"
	"      --mount-api MODE     How to mount the overlay: auto, fd, string or legacy\n"
	"      --layers MODE        Where the layers come from: auto, direct or export\n"
	"      --cache-dir DIR      The layer cache for exported images\n"
	"      --cache-prune        Remove cached layers no image and no live namespace uses\n"
	"      --cache-max-files N  Most members one layer may have (default 1000000)\n"
	"      --cache-max-bytes SIZE\n"
	"                           Most data one layer may write (default 16G)\n"
	"      --cache-max-apparent SIZE\n"
	"                           Most file size, holes included, per layer (default 16G)\n"
	"      --no-proc            Do not mount /proc\n"
	"      --no-dev             Do not mount /dev\n"
	"      --no-sys             Do not mount /sys\n"
	"      --bind SRC[:DST]     Bind the host's SRC at DST inside, recursively and read-write\n"
	"      --ro-bind SRC[:DST]  The same, read-only (really read-only)\n"
	"      --tmpfs DST          Mount a fresh tmpfs (mode 1777, nosuid, nodev) at DST\n"
	"      --unshare NS[,NS...] Also unshare these namespaces, among ipc, uts, net and cgroup\n"
	"      --hostname NAME      Set the hostname (requires --unshare uts)\n"
	"      --pin PATH           Bind the new mount namespace onto PATH\n"
	"      --send-to PATH       Hand the namespaces to the unix socket at PATH (its listener\n"
	"                           must be root, its directory writable by root only)\n"
	"      --send-to-uid UID    Also accept a --send-to listener running as UID\n"
	"      --no-confine         No masked or read-only /proc and /sys paths, and COMMAND\n"
	"                           keeps every capability, without Landlock (debugging)\n"
	"      --print              Resolve the image and print the plan as JSON, changing nothing\n"
	"  -h, --help               Print a usage summary and exit\n"
	"  -V, --version            Print the version and exit\n"
	"\n"
	"With none of -- COMMAND, --print, --pin and --send-to, the namespace is handed to the\n"
	"socket whose descriptor number is in $UWSGI_DOCKER_FD, within a time budget of\n"
	"4 x --timeout + 5 s. See uwsgi-docker-rootfs(1).\n";

enum {
	OPT_RW_PATH = 256,
	OPT_READ_ONLY,
	OPT_MOUNT_API,
	OPT_NO_PROC,
	OPT_NO_DEV,
	OPT_NO_SYS,
	OPT_BIND,
	OPT_RO_BIND,
	OPT_TMPFS,
	OPT_UNSHARE,
	OPT_HOSTNAME,
	OPT_PIN,
	OPT_SEND_TO,
	OPT_PRINT,
	OPT_LAYERS,
	OPT_CACHE_DIR,
	OPT_CACHE_PRUNE,
	OPT_CACHE_MAX_FILES,
	OPT_CACHE_MAX_BYTES,
	OPT_CACHE_MAX_APPARENT,
	OPT_SEND_TO_UID,
	OPT_NO_CONFINE,
};

struct cli {
	struct ud_options o;
	const char *pin;
	const char *send_to;
	uid_t send_to_uid;
	bool print;
	bool prune;
	enum ud_layers_mode layers;
	const char *cache_dir;
	char **command;
};

static int die(const ud_error *e)
{
	char buf[1400];
	fprintf(stderr, PROG ": %s\n", ud_error_text(e, buf, sizeof(buf)));
	return e->status ? e->status : UD_EXIT_REFUSED;
}

static int parse_unshare(const char *arg, int *flags, ud_error *e)
{
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", arg);
	char *save = NULL;
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (!strcmp(t, "ipc"))
			*flags |= CLONE_NEWIPC;
		else if (!strcmp(t, "uts"))
			*flags |= CLONE_NEWUTS;
		else if (!strcmp(t, "net"))
			*flags |= CLONE_NEWNET;
		else if (!strcmp(t, "cgroup"))
			*flags |= CLONE_NEWCGROUP;
		else if (!strcmp(t, "pid"))
			return ud_fail(e, UD_EXIT_USAGE, 0,
				       "--unshare pid is not offered: the helper exits after preparing "
				       "the root; use uWSGI's emperor-use-clone = pid (see "
				       "uwsgi-docker-rootfs(1))");
		else
			return ud_fail(e, UD_EXIT_USAGE, 0,
				       "--unshare: unknown namespace '%s' (ipc, uts, net, cgroup)", t);
	}
	return 0;
}

static int parse_uid(const char *arg, uid_t *uid, ud_error *e)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(arg, &end, 10);
	if (errno || !*arg || *end || arg[0] == '-' || v >= (uid_t)-1)
		return ud_fail(e, UD_EXIT_USAGE, 0, "--send-to-uid '%s': expected a numeric uid", arg);
	*uid = (uid_t)v;
	return 0;
}

static int add_op(struct ud_options *o, struct ud_op *op, ud_error *e)
{
	struct ud_op *n = realloc(o->binds, (o->n_binds + 1) * sizeof(*n));
	if (!n)
		return ud_fail(e, UD_EXIT_REFUSED, ENOMEM, "out of memory");
	o->binds = n;
	n[o->n_binds++] = *op;
	return 0;
}

/* Returns 1 when the program should exit 0 right away (--help, --version). */
static int parse_args(int argc, char **argv, struct cli *c, ud_error *e)
{
	static const struct option longopts[] = {
		{"docker-host", required_argument, NULL, 'H'},
		{"timeout", required_argument, NULL, 't'},
		{"rw-path", required_argument, NULL, OPT_RW_PATH},
		{"read-only", no_argument, NULL, OPT_READ_ONLY},
		{"mount-api", required_argument, NULL, OPT_MOUNT_API},
		{"no-proc", no_argument, NULL, OPT_NO_PROC},
		{"no-dev", no_argument, NULL, OPT_NO_DEV},
		{"no-sys", no_argument, NULL, OPT_NO_SYS},
		{"bind", required_argument, NULL, OPT_BIND},
		{"ro-bind", required_argument, NULL, OPT_RO_BIND},
		{"tmpfs", required_argument, NULL, OPT_TMPFS},
		{"unshare", required_argument, NULL, OPT_UNSHARE},
		{"hostname", required_argument, NULL, OPT_HOSTNAME},
		{"pin", required_argument, NULL, OPT_PIN},
		{"send-to", required_argument, NULL, OPT_SEND_TO},
		{"send-to-uid", required_argument, NULL, OPT_SEND_TO_UID},
		{"no-confine", no_argument, NULL, OPT_NO_CONFINE},
		{"print", no_argument, NULL, OPT_PRINT},
		{"layers", required_argument, NULL, OPT_LAYERS},
		{"cache-dir", required_argument, NULL, OPT_CACHE_DIR},
		{"cache-prune", no_argument, NULL, OPT_CACHE_PRUNE},
		{"cache-max-files", required_argument, NULL, OPT_CACHE_MAX_FILES},
		{"cache-max-bytes", required_argument, NULL, OPT_CACHE_MAX_BYTES},
		{"cache-max-apparent", required_argument, NULL, OPT_CACHE_MAX_APPARENT},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	memset(c, 0, sizeof(*c));
	c->o.timeout_ms = 10000;
	c->send_to_uid = (uid_t)-1;
	c->cache_dir = UD_DEFAULT_CACHE;
	bool rw_path = false, read_only = false;
	opterr = 0;
	int ch;
	/* '+': options end at the image name, so COMMAND's own options are never ours. */
	while ((ch = getopt_long(argc, argv, "+:H:t:hV", longopts, NULL)) != -1) {
		struct ud_op op;
		switch (ch) {
		case 'H':
			c->o.docker_host = optarg;
			break;
		case 't': {
			char *end;
			errno = 0;
			double s = strtod(optarg, &end);
			if (errno || *end || !(s > 0) || s > 86400)
				return ud_fail(e, UD_EXIT_USAGE, 0,
					       "--timeout '%s': expected seconds, more than 0", optarg);
			c->o.timeout_ms = (long)(s * 1000);
			if (c->o.timeout_ms < 1)
				c->o.timeout_ms = 1;
			break;
		}
		case OPT_RW_PATH:
			c->o.rw = UD_RW_PATH;
			c->o.rw_path = optarg;
			rw_path = true;
			break;
		case OPT_READ_ONLY:
			c->o.rw = UD_RW_NONE;
			read_only = true;
			break;
		case OPT_MOUNT_API:
			if (!strcmp(optarg, "auto"))
				c->o.mount_api = UD_API_AUTO;
			else if (!strcmp(optarg, "fd"))
				c->o.mount_api = UD_API_FD;
			else if (!strcmp(optarg, "string"))
				c->o.mount_api = UD_API_STRING;
			else if (!strcmp(optarg, "legacy"))
				c->o.mount_api = UD_API_LEGACY;
			else
				return ud_fail(e, UD_EXIT_USAGE, 0,
					       "--mount-api '%s': expected auto, fd, string or legacy",
					       optarg);
			break;
		case OPT_NO_PROC:
			c->o.no_proc = true;
			break;
		case OPT_NO_DEV:
			c->o.no_dev = true;
			break;
		case OPT_NO_SYS:
			c->o.no_sys = true;
			break;
		case OPT_BIND:
		case OPT_RO_BIND:
			if (ud_parse_bind(optarg, ch == OPT_RO_BIND, &op, e) < 0 ||
			    add_op(&c->o, &op, e) < 0)
				return -1;
			break;
		case OPT_TMPFS:
			memset(&op, 0, sizeof(op));
			op.type = UD_OP_TMPFS;
			if (!(op.dst = strdup(optarg)) || add_op(&c->o, &op, e) < 0)
				return ud_fail(e, UD_EXIT_REFUSED, ENOMEM, "out of memory");
			break;
		case OPT_UNSHARE:
			if (parse_unshare(optarg, &c->o.unshare_flags, e) < 0)
				return -1;
			break;
		case OPT_HOSTNAME:
			c->o.hostname = optarg;
			break;
		case OPT_PIN:
			c->pin = optarg;
			break;
		case OPT_SEND_TO:
			c->send_to = optarg;
			break;
		case OPT_SEND_TO_UID:
			if (parse_uid(optarg, &c->send_to_uid, e) < 0)
				return -1;
			break;
		case OPT_NO_CONFINE:
			c->o.no_confine = true;
			break;
		case OPT_PRINT:
			c->print = true;
			break;
		case OPT_LAYERS:
			if (!strcmp(optarg, "auto"))
				c->layers = UD_LAYERS_AUTO;
			else if (!strcmp(optarg, "direct"))
				c->layers = UD_LAYERS_DIRECT;
			else if (!strcmp(optarg, "export"))
				c->layers = UD_LAYERS_EXPORT;
			else
				return ud_fail(e, UD_EXIT_USAGE, 0,
					       "--layers '%s': expected auto, direct or export", optarg);
			break;
		case OPT_CACHE_DIR:
			if (optarg[0] != '/' || strpbrk(optarg, ",:\\"))
				return ud_fail(e, UD_EXIT_USAGE, 0,
					       "--cache-dir '%s': expected an absolute path without ',' "
					       "':' or '\\'",
					       optarg);
			c->cache_dir = optarg;
			break;
		case OPT_CACHE_PRUNE:
			c->prune = true;
			break;
		case OPT_CACHE_MAX_FILES:
		case OPT_CACHE_MAX_BYTES:
		case OPT_CACHE_MAX_APPARENT:
			if (ud_cache_limit_option(ch == OPT_CACHE_MAX_FILES   ? "cache-max-files"
						  : ch == OPT_CACHE_MAX_BYTES ? "cache-max-bytes"
									      : "cache-max-apparent",
						  optarg, e) < 0)
				return -1;
			break;
		case 'h':
			fputs(usage_text, stdout);
			return 1;
		case 'V':
			printf(PROG " %s (Docker API %s)\n", UD_VERSION, UD_API_VERSION);
			return 1;
		case ':':
			return ud_fail(e, UD_EXIT_USAGE, 0, "option '%s' needs an argument (see --help)",
				       argv[optind - 1]);
		default:
			return ud_fail(e, UD_EXIT_USAGE, 0, "unknown option '%s' (see --help)",
				       argv[optind - 1]);
		}
	}
	if (rw_path && read_only)
		return ud_fail(e, UD_EXIT_USAGE, 0, "--rw-path and --read-only exclude each other");
	if (c->prune) {
		if (optind < argc)
			return ud_fail(e, UD_EXIT_USAGE, 0, "--cache-prune takes no IMAGE");
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
	if (modes == 0 && !getenv("UWSGI_DOCKER_FD"))
		return ud_fail(e, UD_EXIT_USAGE, 0,
			       "nothing to do: give -- COMMAND, --print, --pin or --send-to, or run "
			       "from uWSGI (UWSGI_DOCKER_FD)");
	return 0;
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

static int run_command(const struct ud_image *img, const struct ud_options *o, char **command,
		       ud_error *e)
{
	const char *hostname = o->hostname;
	if (ud_chdir_image(img->workdir, e) < 0)
		return -1;
	/* The image's Env, as docker run gives it; TERM and HOSTNAME from the caller (or
	 * --hostname) unless the image sets them, so a shell inside behaves. */
	const char *term = getenv("TERM"), *host = hostname ? hostname : getenv("HOSTNAME");
	char *term_copy = term ? strdup(term) : NULL, *host_copy = host ? strdup(host) : NULL;
	clearenv();
	bool has_path = false;
	for (size_t i = 0; i < img->n_env; i++) {
		if (!strncmp(img->env[i], "PATH=", 5))
			has_path = true;
		/* putenv keeps the pointer: the image outlives the exec attempt. */
		if (strchr(img->env[i], '=') && putenv(img->env[i]) != 0)
			return ud_fail(e, UD_EXIT_REFUSED, errno, "setting the image's environment");
	}
	if (!has_path)
		putenv((char *)DEFAULT_PATH);
	if (term_copy && !getenv("TERM"))
		setenv("TERM", term_copy, 1);
	if (host_copy && !getenv("HOSTNAME"))
		setenv("HOSTNAME", host_copy, 1);
	free(term_copy);
	free(host_copy);
	/* What docker run gives a root process, no more: its 14 capabilities (no CAP_SYS_ADMIN to
	 * remount /sys or /proc/sys, no CAP_SYS_MODULE...), and no abstract unix sockets or signals
	 * of the host's (we share its network and PID namespaces). */
	if (!o->no_confine && (ud_caps_docker_default(e) < 0 || ud_landlock_scope(e) < 0))
		return -1;
	/* Anything inherited (an UWSGI_DOCKER_FD, a caller's stray fd) stays outside. */
	syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC);
	fflush(NULL);
	execvp(command[0], command);
	int err = errno;
	return ud_fail(e, err == ENOENT ? UD_EXIT_NOT_FOUND : UD_EXIT_CANNOT_EXEC, err,
		       "cannot run '%s' inside image '%s'", command[0], img->ref);
}

/* The pin file: one the helper creates, or an existing empty regular file of root's with a single
 * link. Reached without following any symlink, so that --pin cannot be steered onto
 * /etc/passwd or another host file; the mount then goes onto the fd that was checked. */
static int open_pin(const char *path, bool *created, ud_error *e)
{
	char parent[4096];
	if (snprintf(parent, sizeof(parent), "%s", path) >= (int)sizeof(parent))
		return ud_fail(e, UD_EXIT_USAGE, ENAMETOOLONG, "--pin %s", path);
	char *slash = strrchr(parent, '/');
	const char *base = slash ? slash + 1 : parent;
	if (slash)
		*slash = '\0';
	struct open_how how = {.flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
			       .resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS};
	const char *dir = !slash ? "." : parent[0] ? parent : "/";
	ud_autoclose int pfd = (int)syscall(SYS_openat2, AT_FDCWD, dir, &how, sizeof(how));
	if (pfd < 0)
		return ud_fail(e, UD_EXIT_MOUNT, errno, "--pin %s: its directory%s", path,
			       errno == ELOOP ? " is reached through a symlink: refused" : "");
	int fd = openat(pfd, base, O_RDONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	*created = fd >= 0;
	if (fd < 0 && errno == EEXIST)
		fd = openat(pfd, base, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		int err = errno;
		if (fd >= 0)
			close(fd);
		return ud_fail(e, UD_EXIT_MOUNT, err, "--pin %s", path);
	}
	if (!*created && (!S_ISREG(st.st_mode) || st.st_size != 0 || st.st_uid != 0 ||
			  st.st_nlink != 1)) {
		close(fd);
		return ud_fail(e, UD_EXIT_MOUNT, 0,
			       "--pin %s: refusing an existing file that is not an empty regular "
			       "file of root's (remove it, or name a new path)",
			       path);
	}
	return fd;
}

static int pin_namespace(struct ud_ns_fds *ns, const char *path, ud_error *e)
{
	/* Back to the host's mount namespace: the pin must be a mount there. */
	if (setns(ns->host_mnt, CLONE_NEWNS) < 0)
		return ud_fail(e, UD_EXIT_MOUNT, errno, "returning to the host mount namespace");
	bool created = false;
	ud_autoclose int fd = open_pin(path, &created, e);
	if (fd < 0)
		return -1;
	char src[64], dst[64];
	snprintf(src, sizeof(src), "/proc/self/fd/%d", ns->fds[0]);
	snprintf(dst, sizeof(dst), "/proc/self/fd/%d", fd);
	if (mount(src, dst, NULL, MS_BIND, NULL) < 0) {
		int err = errno;
		if (created)
			unlink(path);
		return ud_fail(e, UD_EXIT_MOUNT, err, "binding the mount namespace onto %s", path);
	}
	return 0;
}

/* The payload carries the image's Env (secrets, often): only a listener of root's, or of the one
 * uid the operator names, in a directory nobody else may write (where a socket could be
 * swapped), receives it. */
static int check_send_dir(const char *path, uid_t allowed, ud_error *e)
{
	char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == dir)
		dir[1] = '\0'; /* "/sock": the directory is "/" */
	else
		*slash = '\0';
	struct stat st;
	if (stat(dir, &st) < 0)
		return ud_fail(e, UD_EXIT_HANDOFF, errno, "--send-to %s: its directory %s", path, dir);
	if ((st.st_uid != 0 && st.st_uid != allowed) || (st.st_mode & 022))
		return ud_fail(e, UD_EXIT_HANDOFF, 0,
			       "--send-to %s: refusing a socket in %s (owner %u, mode %04o): its "
			       "directory must be writable by its owner only, root or --send-to-uid",
			       path, dir, (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777));
	return 0;
}

static int check_listener(int s, const char *path, uid_t allowed, ud_error *e)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	if (getsockopt(s, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return ud_fail(e, UD_EXIT_HANDOFF, errno, "--send-to %s: SO_PEERCRED", path);
	if (cred.uid != 0 && cred.uid != allowed)
		return ud_fail(e, UD_EXIT_HANDOFF, 0,
			       "--send-to %s: the listener runs as uid %u, not root%s: refusing to "
			       "send it the namespace and the image's Env",
			       path, (unsigned)cred.uid,
			       allowed != (uid_t)-1 ? " nor --send-to-uid" : " (see --send-to-uid)");
	return 0;
}

static int connect_to(const char *path, uid_t allowed, ud_error *e)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sa.sun_path))
		return ud_fail(e, UD_EXIT_HANDOFF, ENAMETOOLONG, "--send-to %s", path);
	strcpy(sa.sun_path, path);
	if (check_send_dir(path, allowed, e) < 0)
		return -1;
	static const int types[] = {SOCK_SEQPACKET, SOCK_STREAM};
	int err = 0;
	for (size_t i = 0; i < UD_ARRAY_SIZE(types); i++) {
		ud_autoclose int s = socket(AF_UNIX, types[i] | SOCK_CLOEXEC, 0);
		if (s < 0)
			return ud_fail(e, UD_EXIT_HANDOFF, errno, "socket");
		if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			return check_listener(s, path, allowed, e) < 0 ? -1 : ud_steal_fd(&s);
		err = errno;
		if (err != EPROTOTYPE)
			break;
	}
	return ud_fail(e, UD_EXIT_HANDOFF, err, "connecting to --send-to %s", path);
}

static int inherited_socket(ud_error *e)
{
	const char *v = getenv("UWSGI_DOCKER_FD");
	char *end;
	errno = 0;
	long fd = strtol(v, &end, 10);
	struct stat st;
	if (!*v || *end || errno || fd < 0 || fd > INT_MAX || fstat((int)fd, &st) < 0 ||
	    !S_ISSOCK(st.st_mode))
		return ud_fail(e, UD_EXIT_HANDOFF, 0,
			       "UWSGI_DOCKER_FD='%s' is not an open socket inherited from uWSGI", v);
	fcntl((int)fd, F_SETFD, FD_CLOEXEC);
	return (int)fd;
}

static int hand_off(int s, const struct ud_image *img, struct ud_ns_fds *ns, ud_error *e)
{
	struct ud_handoff h;
	ud_handoff_init(&h);
	h.image = img->ref;
	h.id = img->id;
	h.workdir = img->workdir;
	h.layers = (unsigned)img->n_layers;
	h.env = img->env;
	h.n_env = img->n_env;
	h.n_fds = ns->n;
	memcpy(h.types, ns->types, sizeof(int) * (size_t)ns->n);
	memcpy(h.fds, ns->fds, sizeof(int) * (size_t)ns->n);
	return ud_handoff_send(s, &h, e);
}

/* The layers must lie in the daemon's DockerRootDir. /info costs 5 ms or more (half a start),
 * so its answers are kept in one small file in /run, a line per daemon socket: the socket's
 * path, inode and creation time (a restarted daemon makes a new socket), and the root. At most
 * ROOT_CACHE_MAX lines, the newest first. A stale line can only cost a fresh /info, asked
 * again before refusing. */
#define ROOT_CACHE_DIR "/run/uwsgi-docker"
#define ROOT_CACHE ROOT_CACHE_DIR "/docker-roots"
#define ROOT_CACHE_MAX 16

static bool under_root(const char *path, const char *root)
{
	size_t rl = strlen(root);
	while (rl > 1 && root[rl - 1] == '/')
		rl--;
	return rl > 0 && root[0] == '/' && !strncmp(path, root, rl) && path[rl] == '/';
}

static void remember_root(const char *key, const char *root)
{
	if (mkdir(ROOT_CACHE_DIR, 0700) < 0 && errno != EEXIST)
		return; /* best effort: a user running --print cannot write here */
	char tmp[64];
	snprintf(tmp, sizeof(tmp), ROOT_CACHE ".%d", (int)getpid());
	FILE *out = fopen(tmp, "wxe");
	if (!out)
		return;
	fprintf(out, "%s %s\n", key, root);
	FILE *in = fopen(ROOT_CACHE, "re");
	char line[2048];
	size_t kl = strlen(key);
	for (int n = 1; in && n < ROOT_CACHE_MAX && fgets(line, sizeof(line), in);)
		if (strncmp(line, key, kl) || line[kl] != ' ') {
			fputs(line, out);
			n++;
		}
	if (in)
		fclose(in);
	if (fclose(out) == 0)
		rename(tmp, ROOT_CACHE);
	else
		unlink(tmp);
}

static int check_docker_root(struct ud_docker *d, const struct ud_image *img, ud_error *e)
{
	char key[400] = "", line[2048];
	struct stat st;
	if (stat(d->socket_path, &st) == 0 && !strpbrk(d->socket_path, " \n"))
		snprintf(key, sizeof(key), "%s %lu %lld.%09ld", d->socket_path,
			 (unsigned long)st.st_ino, (long long)st.st_ctim.tv_sec, st.st_ctim.tv_nsec);
	FILE *in = key[0] ? fopen(ROOT_CACHE, "re") : NULL;
	size_t kl = strlen(key);
	bool hit = false;
	while (in && !hit && fgets(line, sizeof(line), in)) {
		line[strcspn(line, "\n")] = '\0';
		hit = !strncmp(line, key, kl) && line[kl] == ' ' &&
		      under_root(img->storage_root, line + kl + 1);
	}
	if (in)
		fclose(in);
	if (hit)
		return 0;
	char *desc = NULL, *root = NULL;
	if (ud_docker_info(d, &desc, &root, e) < 0)
		return -1;
	free(desc);
	bool ok = under_root(img->storage_root, root);
	if (ok && key[0] && !strchr(root, '\n'))
		remember_root(key, root);
	else if (!ok)
		ud_fail(e, UD_EXIT_STORAGE, 0,
			"image '%s': layers in %s, outside the daemon's root directory %s", img->ref,
			img->storage_root, root);
	free(root);
	return ok ? 0 : -1;
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

/* Where the layers come from: the daemon's own overlay directories, or the layer cache. */
static int resolve_layers(const struct cli *c, struct ud_docker *d, struct ud_image *img,
			  int *cache_lock, ud_error *e)
{
	if (c->layers == UD_LAYERS_DIRECT)
		return ud_docker_inspect(d, c->o.image, img, e) < 0 ? -1
									: check_docker_root(d, img, e);
	if (ud_docker_inspect_raw(d, c->o.image, img, e) < 0)
		return -1;
	if (c->layers == UD_LAYERS_AUTO) {
		/* Usable: a supported driver, clean paths, and present on this machine. */
		ud_error ve = {0};
		struct stat st;
		/* EACCES: there, but not for us (--print as a user): still the daemon's dirs. */
		if (ud_validate_layers(img, &ve) == 0 &&
		    (stat(img->layers[0], &st) == 0 ? S_ISDIR(st.st_mode) : errno == EACCES))
			return check_docker_root(d, img, e);
	}
	/* An export may rightly take minutes; a stalled one ends at --timeout (export.c). */
	arm_budget(BUDGET_EXPORT_S);
	int r = ud_cache_prepare(d, img, c->cache_dir, c->print, cache_lock, e);
	arm_budget(direct_budget(c->o.timeout_ms));
	return r;
}

static void free_cli(struct cli *c)
{
	for (size_t i = 0; i < c->o.n_binds; i++) {
		free(c->o.binds[i].src);
		free(c->o.binds[i].dst);
	}
	free(c->o.binds);
}

int main(int argc, char **argv)
{
	ud_error e = {0};
	struct cli c;
	struct ud_docker d = {0};
	struct ud_image img = {0};
	struct ud_plan plan = {0};
	struct ud_ns_fds ns = {.host_mnt = -1};
	ud_autoclose int sock = -1, cache_lock = -1, users_dir = -1;
	int status = 0;

	int pr = parse_args(argc, argv, &c, &e);
	if (pr != 0) {
		free_cli(&c);
		return pr > 0 ? 0 : die(&e);
	}
	if (check_privileges(!c.print, &e) < 0) {
		/* Installed setuid/setgid: leave at once, without atexit handlers or library
		 * destructors running with borrowed privileges. */
		int st = die(&e);
		_exit(st);
	}
	if (!c.command && !c.print && !c.pin && !c.send_to && !c.prune)
		start_budget(c.o.timeout_ms);
	if (ud_docker_open(&d, c.o.docker_host, c.o.timeout_ms, &e) < 0 ||
	    ud_docker_negotiate(&d, &e) < 0)
		goto fail;
	if (c.prune) {
		if (ud_cache_prune(&d, c.cache_dir, stdout, &e) < 0)
			goto fail;
		goto done;
	}
	if (resolve_layers(&c, &d, &img, &cache_lock, &e) < 0)
		goto fail;
	if (ud_lowers_plan(&c.o, &img, &plan, &e) < 0)
		goto fail;

	if (c.print) {
		char *json = ud_plan_json(&plan);
		if (!json) {
			ud_fail(&e, UD_EXIT_REFUSED, ENOMEM, "out of memory");
			goto fail;
		}
		puts(json);
		free(json);
		goto done;
	}
	/* The client's socket is of no use inside, and must not be inherited by COMMAND. */
	ud_docker_close(&d);

	/* The receiver's socket and the cache's use records are host paths: reach them before the
	 * host is out of sight. */
	if (!c.command && !c.pin &&
	    (sock = c.send_to ? connect_to(c.send_to, c.send_to_uid, &e) : inherited_socket(&e)) < 0)
		goto fail;
	if (img.from_cache && (users_dir = ud_cache_users_dir(c.cache_dir, &e)) < 0)
		goto fail;
	if (ud_rootfs_enter(&plan, &ns, &e) < 0)
		goto fail;
	if (img.from_cache) {
		if (ud_cache_record_use(users_dir, &img, ns.fds[0], &e) < 0)
			goto fail;
		/* Recorded: a prune may run now and will see the layers in use. */
		ud_closep(&cache_lock);
		ud_closep(&users_dir);
	}
	if (c.command) {
		ud_ns_fds_close(&ns);
		run_command(&img, &c.o, c.command, &e);
		goto fail;
	}
	if (c.pin ? pin_namespace(&ns, c.pin, &e) < 0 : hand_off(sock, &img, &ns, &e) < 0)
		goto fail;
	goto done;

fail:
	status = die(&e);
done:
	ud_ns_fds_close(&ns);
	ud_plan_free(&plan);
	ud_image_free(&img);
	ud_docker_close(&d);
	free_cli(&c);
	return status;
}
