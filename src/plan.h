/* The mount plan: options + image -> an ordered list of operations. Pure data: no syscalls, so it
 * can be printed (--print) and unit-tested. rootfs.c executes it. */
#ifndef UD_PLAN_H
#define UD_PLAN_H

#include <stdbool.h>
#include <stddef.h>

#include "docker.h"
#include "error.h"
#include "util.h"

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
};

struct ud_op {
	enum ud_op_type type;
	char *src;      /* host path (binds) */
	char *dst;      /* path inside the image */
	bool readonly;
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
};

struct ud_plan {
	const struct ud_image *img;
	enum ud_rw_mode rw;
	char *rw_path;
	enum ud_mount_api mount_api;
	int unshare_flags;     /* always includes CLONE_NEWNS */
	char *hostname;
	struct ud_op *ops;
	size_t n_ops;
};

/* Parses "SRC[:DST]" (DST defaults to SRC); both absolute. */
int ud_parse_bind(const char *arg, bool readonly, struct ud_op *op, ud_error *e);

/* Builds the plan; validates that every DST is absolute, normalised, free of "..", and not "/". */
int ud_plan_build(const struct ud_options *o, const struct ud_image *img, struct ud_plan *p,
		  ud_error *e);
void ud_plan_free(struct ud_plan *p);

/* The plan as a JSON document (caller frees). */
char *ud_plan_json(const struct ud_plan *p);

const char *ud_op_name(enum ud_op_type t);

#endif
