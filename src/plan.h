/* The mount plan: options + image -> an ordered list of operations. Pure data: no syscalls, so it
 * can be printed (--print) and unit-tested. rootfs.c executes it. */
#ifndef UD_PLAN_H
#define UD_PLAN_H

#include <stdbool.h>
#include <stddef.h>

#include "docker.h"
#include "error.h"
#include "util.h"

struct ud_host_net;

enum ud_rw_mode {
	UD_RW_TMPFS,   /* default: a fresh tmpfs upper layer that dies with the namespace */
	UD_RW_PATH,    /* --rw-path DIR: DIR/upper and DIR/work, persistent */
	UD_RW_NONE,    /* --read-only */
};

enum ud_mount_api {
	UD_API_AUTO,   /* best the kernel has */
	UD_API_FD,     /* fsconfig lowerdir+ by fd (6.13) */
	UD_API_STRING, /* fsconfig lowerdir+ by path (6.8) */
	UD_API_LEGACY, /* mount(2) with Docker's short l/ names, and remount for bind flags */
};

enum ud_op_type {
	UD_OP_OVERLAY, /* the root: image layers + init layer (+ rw layer) */
	UD_OP_PROC,
	UD_OP_DEV,     /* tmpfs with device nodes, devpts, /dev/shm */
	UD_OP_SYS,
	UD_OP_BIND,
	UD_OP_TMPFS,
	UD_OP_MASK,     /* hide a /proc or /sys path: an empty read-only file or tmpfs over it */
	UD_OP_READONLY, /* a read-only bind of a /proc path over itself */
	UD_OP_FILE,     /* a file the helper writes (data), bound read-only over dst */
};

/* One lower layer of the overlay root. mount(2) takes its options as one page, so it names each
 * layer by a short name relative to the storage root, as Docker does; the new mount API takes
 * the layer itself. */
struct ud_lower {
	char *path;     /* the layer directory on the host */
	char *link;     /* "l/<name>" relative to the storage root, NULL if unknown */
};

/* Names of enum ud_mount_api: parsing, --help and --print use this one list. */
extern const struct ud_name ud_plan_mount_apis[];

struct ud_op {
	enum ud_op_type type;
	char *src;      /* host path (binds); the storage root (overlay) */
	char *dst;      /* path inside the image */
	bool readonly;
	struct ud_lower *lowers; /* overlay: the image's layers, top to bottom */
	size_t n_lowers;
	char *data;     /* tmpfs: its options for fsconfig, "mode=1777[,size=1m...]" (tmpfsopt.h);
			 * file: its content */
	unsigned attrs; /* tmpfs: MOUNT_ATTR_* */
};

struct ud_options {
	const char *image;
	const char *docker_host;
	long timeout_ms;
	enum ud_rw_mode rw;
	const char *rw_path;
	enum ud_mount_api mount_api;
	bool no_proc, no_dev, no_sys;
	bool no_confine;       /* --no-confine: no masked or read-only /proc and /sys paths */
	int unshare_flags;     /* CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET | CLONE_NEWCGROUP */
	const char *hostname;
	struct ud_op *binds;   /* UD_OP_BIND / UD_OP_TMPFS in command-line order */
	size_t n_binds;
	const char *user;      /* --user USER[:GROUP], or NULL: the image's User */
	char **env;            /* --env KEY=VALUE, in command-line order */
	size_t n_env;
	unsigned long long shm_size; /* --shm-size in bytes; 0: Docker's 64 MiB */
	bool no_network_files; /* --no-network-files */
	const struct ud_host_net *host_net; /* what the network files are made of (netfiles.h) */
};

struct ud_plan {
	const struct ud_image *img;
	enum ud_rw_mode rw;
	char *rw_path;
	enum ud_mount_api mount_api;
	int unshare_flags;     /* always includes CLONE_NEWNS */
	char *hostname;
	const char *user;      /* what the user is looked up as: --user, else the image's User */
	unsigned long long shm_size; /* /dev/shm, bytes */
	struct ud_op *ops;
	size_t n_ops;
};

/* Parses "SRC[:DST]" (DST defaults to SRC); both absolute. */
int ud_parse_bind(const char *arg, bool readonly, struct ud_op *op, ud_error *e);

/* Builds the plan; validates that every DST is absolute, normalised, free of "..", and not "/".
 * links: the short name of each of img's layers as Docker's <layer>/link file holds it (NULL
 * entries where unknown, or NULL for none; lowers.c reads them); a cache's are computed here. */
int ud_plan_build(const struct ud_options *o, const struct ud_image *img, char *const *links,
		  struct ud_plan *p, ud_error *e);
void ud_plan_free(struct ud_plan *p);

/* The plan as a JSON document (caller frees). */
char *ud_plan_json(const struct ud_plan *p);

const char *ud_op_name(enum ud_op_type t);

/* The overlay op of a plan (its first op). */
const struct ud_op *ud_plan_overlay(const struct ud_plan *p);

#define UD_SHM_DEFAULT (64ULL << 20) /* docker run's /dev/shm */

#define UD_MOUNT_DATA_MAX 4095 /* mount(2) copies its data argument as one page */

/* mount(2)'s options for the overlay root: lowerdir=INIT:<links>[,upperdir=,workdir=] and the
 * redirect/metacopy guards (upper NULL: read-only). Fails (E2BIG) past one page, and on a lower
 * without a short name. Caller frees *data. */
int ud_plan_mount_data(const struct ud_op *ov, const char *init, const char *upper,
		       const char *work, char **data, ud_error *e);

#endif
