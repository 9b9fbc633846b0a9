/* The mount plan: pure data built from the options and the resolved image. The order of the
 * operations is the order rootfs.c performs them: the overlay root first (everything else is
 * mounted inside it), then /proc, /dev, /sys, then the user's binds and tmpfs in command-line
 * order, so that a later bind may land inside an earlier tmpfs. The overlay op names its lower
 * layers with their short names (read beforehand by lowers.c, where they are I/O), so the
 * executor only executes and --print shows the whole stack. */
#include "plan.h"

#include <errno.h>
#include <json-c/json.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "netfiles.h"
#include "tmpfsopt.h"
#include "util.h"

const struct ud_name ud_plan_mount_apis[] = {
	{UD_API_AUTO, "auto"},
	{UD_API_FD, "fd"},
	{UD_API_STRING, "string"},
	{UD_API_LEGACY, "legacy"},
	{0, NULL},
};

const char *ud_op_name(enum ud_op_type t)
{
	switch (t) {
	case UD_OP_OVERLAY:
		return "overlay";
	case UD_OP_PROC:
		return "proc";
	case UD_OP_DEV:
		return "dev";
	case UD_OP_SYS:
		return "sys";
	case UD_OP_BIND:
		return "bind";
	case UD_OP_TMPFS:
		return "tmpfs";
	case UD_OP_MASK:
		return "mask";
	case UD_OP_READONLY:
		return "readonly";
	case UD_OP_FILE:
		return "file";
	}
	return "?";
}


/* Absolute, no empty, "." or ".." components, no trailing slash, not "/". Paths inside the image
 * are resolved inside the new root later anyway; refusing odd spellings keeps the plan readable and
 * the comparison of targets exact. */
static bool dst_valid(const char *p)
{
	if (p[0] != '/' || p[1] == '\0' || strlen(p) >= 4096)
		return false;
	for (const char *c = p + 1;;) {
		const char *end = strchr(c, '/');
		size_t n = end ? (size_t)(end - c) : strlen(c);
		if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
			return false;
		if (!end)
			return true;
		c = end + 1;
	}
}

int ud_parse_bind(const char *arg, bool readonly, struct ud_op *op, ud_error *e)
{
	memset(op, 0, sizeof(*op));
	op->type = UD_OP_BIND;
	op->readonly = readonly;
	const char *colon = strchr(arg, ':');
	op->src = colon ? strndup(arg, (size_t)(colon - arg)) : strdup(arg);
	op->dst = strdup(colon ? colon + 1 : arg);
	if (!op->src || !op->dst) {
		free(op->src);
		free(op->dst);
		return ud_oom(e);
	}
	if (op->src[0] != '/' || !dst_valid(op->dst) || strchr(op->dst, ':')) {
		ud_fail(e, UD_EXIT_USAGE, 0,
			"--%sbind '%s': SRC and DST must be absolute, DST normalised and not '/'",
			readonly ? "ro-" : "", arg);
		free(op->src);
		free(op->dst);
		op->src = op->dst = NULL;
		return -1;
	}
	return 0;
}

static int push_op(struct ud_plan *p, enum ud_op_type type, const char *src, const char *dst,
		   bool readonly, ud_error *e)
{
	struct ud_op op = {.type = type, .readonly = readonly};
	op.src = src ? strdup(src) : NULL;
	op.dst = strdup(dst);
	if ((src && !op.src) || !op.dst || ud_push(&p->ops, &p->n_ops, sizeof(op), &op) < 0) {
		free(op.src);
		free(op.dst);
		return ud_oom(e);
	}
	return 0;
}

/* *link = "l/<name>" for a plain short name, NULL otherwise (the name goes into mount(2)'s
 * options); -1 only when out of memory. */
static int lower_link(const char *name, size_t len, char **link)
{
	static const char plain[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef0123456789";
	*link = NULL;
	if (!name || !len || strspn(name, plain) < len)
		return 0;
	if (!(*link = malloc(len + 3)))
		return -1;
	snprintf(*link, len + 3, "l/%.*s", (int)len, name);
	return 0;
}

/* The overlay op: the storage root and each layer with its short name. The layer cache names
 * <cache>/sha256/<hex> as <cache>/l/<first 20 hex>; Docker's names were read from its storage. */
static int push_overlay(const struct ud_options *o, const struct ud_image *img,
			char *const *links, struct ud_plan *p, ud_error *e)
{
	if (push_op(p, UD_OP_OVERLAY, img->storage_root, "/", o->rw == UD_RW_NONE, e) < 0)
		return -1;
	struct ud_op *ov = &p->ops[p->n_ops - 1];
	if (img->n_layers && !(ov->lowers = calloc(img->n_layers, sizeof(*ov->lowers))))
		return ud_oom(e);
	for (size_t i = 0; i < img->n_layers; i++) {
		struct ud_lower *l = &ov->lowers[i];
		const char *name = links ? links[i] : NULL;
		size_t len = name ? strlen(name) : 0;
		if (img->from_cache) {
			name = strrchr(img->layers[i], '/') + 1;
			len = strnlen(name, 20);
		}
		ov->n_lowers++;
		if (!(l->path = strdup(img->layers[i])) || lower_link(name, len, &l->link) < 0)
			return ud_oom(e);
	}
	return 0;
}

/* What docker run hides from a container (moby's oci defaults): kernel memory, keys, timers and
 * firmware; and the kernel's knobs, read-only. Paths a kernel lacks are skipped at mount time. */
static const char *const masked_paths[] = {
	"/proc/asound",	      "/proc/acpi",	    "/proc/kcore",	"/proc/keys",
	"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
	"/proc/scsi",	      "/sys/firmware",	    "/sys/devices/virtual/powercap",
};
static const char *const readonly_paths[] = {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
					     "/proc/sysrq-trigger"};

static bool confine_wanted(const struct ud_options *o, const char *path)
{
	return !o->no_confine && (strncmp(path, "/proc/", 6) ? !o->no_sys : !o->no_proc);
}

static int push_confine(const struct ud_options *o, struct ud_plan *p, ud_error *e)
{
	for (size_t i = 0; i < UD_ARRAY_SIZE(masked_paths); i++)
		if (confine_wanted(o, masked_paths[i]) &&
		    push_op(p, UD_OP_MASK, NULL, masked_paths[i], true, e) < 0)
			return -1;
	for (size_t i = 0; i < UD_ARRAY_SIZE(readonly_paths); i++)
		if (confine_wanted(o, readonly_paths[i]) &&
		    push_op(p, UD_OP_READONLY, NULL, readonly_paths[i], true, e) < 0)
			return -1;
	return 0;
}

/* /etc/hosts, /etc/resolv.conf and /etc/hostname (netfiles.h), made from what the host has (none
 * given: an empty resolv.conf). The hostname is the one the app sees: --hostname, else the
 * host's. */
static int push_netfiles(const struct ud_options *o, struct ud_plan *p, ud_error *e)
{
	const struct ud_host_net *hn = o->host_net;
	const char *name = p->hostname ? p->hostname : hn ? hn->nodename : "";
	char *content[3] = {
		ud_netfiles_hosts(name),
		ud_netfiles_resolv(hn ? hn->resolv : NULL, hn ? hn->resolved : NULL,
				   p->unshare_flags & CLONE_NEWNET),
		ud_netfiles_hostname(name),
	};
	static const char *const dst[] = {"/etc/hosts", "/etc/resolv.conf", "/etc/hostname"};
	int r = 0;
	for (size_t i = 0; i < 3; i++) {
		if (r == 0 && (!content[i] || push_op(p, UD_OP_FILE, NULL, dst[i], true, e) < 0))
			r = content[i] ? -1 : ud_oom(e);
		if (r == 0)
			p->ops[p->n_ops - 1].data = content[i];
		else
			free(content[i]);
	}
	return r;
}

/* The user's binds and tmpfs mounts, in command-line order. A tmpfs without options (one built
 * by hand, not by ud_tmpfs_parse) gets docker run's defaults. */
static int push_user_ops(const struct ud_options *o, struct ud_plan *p, ud_error *e)
{
	for (size_t i = 0; i < o->n_binds; i++) {
		const struct ud_op *b = &o->binds[i];
		if (!b->dst || !dst_valid(b->dst))
			return ud_fail(e, UD_EXIT_USAGE, 0,
				       "mount target '%s' must be absolute, normalised and not '/'",
				       b->dst ? b->dst : "");
		if (b->type == UD_OP_BIND && (!b->src || b->src[0] != '/'))
			return ud_fail(e, UD_EXIT_USAGE, 0, "bind source '%s' must be absolute",
				       b->src ? b->src : "");
		if (b->type != UD_OP_BIND && b->type != UD_OP_TMPFS)
			return ud_fail(e, UD_EXIT_USAGE, 0, "only binds and tmpfs can be added");
		if (push_op(p, b->type, b->src, b->dst, b->readonly, e) < 0)
			return -1;
		if (b->type != UD_OP_TMPFS)
			continue;
		struct ud_op *t = &p->ops[p->n_ops - 1];
		t->attrs = b->data ? b->attrs : UD_TMPFS_DEFAULT_ATTRS;
		t->readonly = t->attrs & MOUNT_ATTR_RDONLY;
		if (!(t->data = strdup(b->data ? b->data : "mode=1777")))
			return ud_oom(e);
	}
	return 0;
}

int ud_plan_build(const struct ud_options *o, const struct ud_image *img, char *const *links,
		  struct ud_plan *p, ud_error *e)
{
	memset(p, 0, sizeof(*p));
	p->img = img;
	p->rw = o->rw;
	p->mount_api = o->mount_api;
	p->unshare_flags = CLONE_NEWNS | o->unshare_flags;
	p->user = o->user ? o->user : img->user && *img->user ? img->user : NULL;
	p->shm_size = o->shm_size ? o->shm_size : UD_SHM_DEFAULT;

	if (o->unshare_flags & ~(CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET | CLONE_NEWCGROUP))
		return ud_fail(e, UD_EXIT_USAGE, 0,
			       "only ipc, uts, net and cgroup namespaces can be unshared");
	if (o->hostname) {
		if (!(o->unshare_flags & CLONE_NEWUTS))
			return ud_fail(e, UD_EXIT_USAGE, 0, "--hostname needs --unshare uts");
		if (!*o->hostname || strlen(o->hostname) > 64)
			return ud_fail(e, UD_EXIT_USAGE, 0, "--hostname must be 1 to 64 characters");
		/* It goes into /etc/hosts and /etc/hostname: one word. */
		for (const char *c = o->hostname; *c; c++)
			if ((unsigned char)*c <= ' ' || *c == 0x7f || *c == '#')
				return ud_fail(e, UD_EXIT_USAGE, 0,
					       "--hostname has whitespace, '#' or a control character");
		if (!(p->hostname = strdup(o->hostname)))
			return ud_oom(e);
	}
	if (o->rw == UD_RW_PATH) {
		if (!o->rw_path || o->rw_path[0] != '/' || strpbrk(o->rw_path, ",:\\"))
			return ud_fail(e, UD_EXIT_USAGE, 0,
				       "--rw-path must be an absolute path without ',' ':' or '\\'");
		if (!o->rw_path[strspn(o->rw_path, "/")])
			return ud_fail(e, UD_EXIT_USAGE, 0, "--rw-path cannot be '/'");
		if (!(p->rw_path = strdup(o->rw_path)))
			return ud_oom(e);
	}

	if (push_overlay(o, img, links, p, e) < 0)
		return -1;
	if (!o->no_proc && push_op(p, UD_OP_PROC, NULL, "/proc", false, e) < 0)
		return -1;
	if (!o->no_dev && push_op(p, UD_OP_DEV, NULL, "/dev", false, e) < 0)
		return -1;
	if (!o->no_sys && push_op(p, UD_OP_SYS, NULL, "/sys", true, e) < 0)
		return -1;
	if (push_confine(o, p, e) < 0 || (!o->no_network_files && push_netfiles(o, p, e) < 0))
		return -1;
	return push_user_ops(o, p, e);
}

const struct ud_op *ud_plan_overlay(const struct ud_plan *p)
{
	for (size_t i = 0; i < p->n_ops; i++)
		if (p->ops[i].type == UD_OP_OVERLAY)
			return &p->ops[i];
	return NULL;
}

int ud_plan_mount_data(const struct ud_op *ov, const char *init, const char *upper,
		       const char *work, char **data, ud_error *e)
{
	static const char guards[] = ",redirect_dir=nofollow,metacopy=off";
	size_t len = strlen("lowerdir=") + strlen(init) + strlen(guards);
	for (size_t i = 0; i < ov->n_lowers; i++) {
		if (!ov->lowers[i].link)
			return ud_fail(e, UD_EXIT_STORAGE, 0,
				       "layer %s has no usable short name for mount(2)",
				       ov->lowers[i].path);
		len += 1 + strlen(ov->lowers[i].link);
	}
	if (upper)
		len += strlen(",upperdir=,workdir=") + strlen(upper) + strlen(work);
	if (len > UD_MOUNT_DATA_MAX)
		return ud_fail(e, UD_EXIT_MOUNT, E2BIG,
			       "overlay options for %zu layers are %zu bytes, more than mount(2) "
			       "takes (%d); a kernel with lowerdir+ (6.8) has no such limit",
			       ov->n_lowers, len, UD_MOUNT_DATA_MAX);
	char *d = malloc(len + 1);
	if (!d)
		return ud_oom(e);
	char *end = stpcpy(stpcpy(d, "lowerdir="), init);
	for (size_t i = 0; i < ov->n_lowers; i++)
		end = stpcpy(stpcpy(end, ":"), ov->lowers[i].link);
	if (upper)
		end += sprintf(end, ",upperdir=%s,workdir=%s", upper, work);
	strcpy(end, guards);
	*data = d;
	return 0;
}

void ud_plan_free(struct ud_plan *p)
{
	for (size_t i = 0; i < p->n_ops; i++) {
		struct ud_op *op = &p->ops[i];
		for (size_t j = 0; j < op->n_lowers; j++) {
			free(op->lowers[j].path);
			free(op->lowers[j].link);
		}
		free(op->lowers);
		free(op->src);
		free(op->dst);
		free(op->data);
	}
	free(p->ops);
	free(p->rw_path);
	free(p->hostname);
	memset(p, 0, sizeof(*p));
}

static json_object *strv_json(char *const *v, size_t n)
{
	json_object *a = json_object_new_array();
	for (size_t i = 0; i < n; i++)
		json_object_array_add(a, json_object_new_string(v[i]));
	return a;
}

static json_object *str_or_null(const char *s)
{
	return s ? json_object_new_string(s) : NULL;
}

static json_object *op_json(const struct ud_op *op)
{
	json_object *m = json_object_new_object();
	json_object_object_add(m, "type", json_object_new_string(ud_op_name(op->type)));
	if (op->src)
		json_object_object_add(m, "src", json_object_new_string(op->src));
	json_object_object_add(m, "dst", json_object_new_string(op->dst));
	json_object_object_add(m, "readonly", json_object_new_boolean(op->readonly));
	if (op->type == UD_OP_FILE)
		json_object_object_add(m, "content", str_or_null(op->data));
	if (op->type == UD_OP_TMPFS) {
		const char *names[8];
		size_t n = ud_tmpfs_flag_names(op->attrs, names);
		json_object_object_add(m, "options", str_or_null(op->data));
		json_object_object_add(m, "flags", strv_json((char *const *)names, n));
	}
	if (op->type != UD_OP_OVERLAY)
		return m;
	json_object *lowers = json_object_new_array();
	for (size_t i = 0; i < op->n_lowers; i++) {
		json_object *l = json_object_new_object();
		json_object_object_add(l, "path", json_object_new_string(op->lowers[i].path));
		json_object_object_add(l, "link", str_or_null(op->lowers[i].link));
		json_object_array_add(lowers, l);
	}
	json_object_object_add(m, "lowers", lowers);
	return m;
}

char *ud_plan_json(const struct ud_plan *p)
{
	static const char *const rw_names[] = {"tmpfs", "path", "none"};
	static const int ns_order[] = {CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWUTS, CLONE_NEWNET,
				       CLONE_NEWCGROUP};
	const struct ud_image *img = p->img;
	json_object *o = json_object_new_object();
	json_object_object_add(o, "image", str_or_null(img->ref));
	json_object_object_add(o, "id", str_or_null(img->id));
	json_object_object_add(o, "driver", str_or_null(img->driver));
	json_object_object_add(o, "storage_root", str_or_null(img->storage_root));
	json_object_object_add(o, "layers_mode",
			       json_object_new_string(img->snapshot     ? "snapshot"
						      : img->from_cache ? "export"
									: "direct"));
	json_object_object_add(o, "layers", strv_json(img->layers, img->n_layers));
	json_object *rw = json_object_new_object();
	json_object_object_add(rw, "mode", json_object_new_string(rw_names[p->rw]));
	json_object_object_add(rw, "path", str_or_null(p->rw_path));
	json_object_object_add(o, "rw", rw);
	json_object_object_add(o, "mount_api", json_object_new_string(ud_name_of(ud_plan_mount_apis, p->mount_api)));
	json_object *ns = json_object_new_array();
	for (size_t i = 0; i < UD_ARRAY_SIZE(ns_order); i++)
		if (p->unshare_flags & ns_order[i])
			json_object_array_add(ns, json_object_new_string(ud_ns_name(ns_order[i])));
	json_object_object_add(o, "namespaces", ns);
	json_object_object_add(o, "hostname", str_or_null(p->hostname));
	json_object_object_add(o, "user", str_or_null(p->user));
	json_object_object_add(o, "shm_size", json_object_new_int64((int64_t)p->shm_size));
	json_object_object_add(o, "workdir", json_object_new_string(img->workdir ? img->workdir : ""));
	json_object_object_add(o, "env", strv_json(img->env, img->n_env));
	json_object *mounts = json_object_new_array(), *confine = json_object_new_array();
	for (size_t i = 0; i < p->n_ops; i++) {
		const struct ud_op *op = &p->ops[i];
		bool conf = op->type == UD_OP_MASK || op->type == UD_OP_READONLY;
		json_object_array_add(conf ? confine : mounts, op_json(op));
	}
	json_object_object_add(o, "mounts", mounts);
	json_object_object_add(o, "confine", confine);
	char *out = strdup(json_object_to_json_string_ext(
		o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
	return out;
}
