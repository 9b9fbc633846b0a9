/* --tmpfs DST[:OPTS] and --shm-size: docker run's syntax, checked before anything is mounted. */
#include "tmpfsopt.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lm.h"
#include "util.h"

/* The mount flags a tmpfs may take, as libmount names them (it sorts them into its "vfs" list). */
static const struct {
	const char *name;
	unsigned set, clear;
} flags[] = {
	{"ro", MOUNT_ATTR_RDONLY, 0},
	{"rw", 0, MOUNT_ATTR_RDONLY},
	{"noexec", MOUNT_ATTR_NOEXEC, 0},
	{"exec", 0, MOUNT_ATTR_NOEXEC},
	{"nosuid", MOUNT_ATTR_NOSUID, 0},
	{"nodev", MOUNT_ATTR_NODEV, 0},
	{"noatime", MOUNT_ATTR_NOATIME, MOUNT_ATTR__ATIME},
	{"relatime", MOUNT_ATTR_RELATIME, MOUNT_ATTR__ATIME},
	{"strictatime", MOUNT_ATTR_STRICTATIME, MOUNT_ATTR__ATIME},
	{"nodiratime", MOUNT_ATTR_NODIRATIME, 0},
	{"nosymfollow", MOUNT_ATTR_NOSYMFOLLOW, 0},
};

/* The filesystem's options we pass on; their values are checked by kind. */
enum kind {
	MEM,
	MEM_OR_PERCENT,
	OCTAL_MODE,
	ID
};
static const struct {
	const char *name;
	enum kind kind;
} fs_opts[] = {
	{"mode", OCTAL_MODE}, {"size", MEM_OR_PERCENT}, {"nr_inodes", MEM}, {"uid", ID},
	{"gid", ID},
};
#define N_FS_OPTS UD_ARRAY_SIZE(fs_opts)

/* The kernel's memparse(): digits and an optional k, m, g, t, p or e (or, for size, a %). Only
 * decimal digits (memparse would take 0x and 0 prefixes), and no overflow. */
static bool valid_value(enum kind kind, const char *v, size_t n)
{
	size_t d = 0;
	unsigned long long x = 0;
	for (; d < n && v[d] >= '0' && v[d] <= '9'; d++) {
		if (x > (~0ULL - 9) / 10)
			return false;
		x = x * 10 + (unsigned)(v[d] - '0');
	}
	if (d == 0 || d > 20)
		return false;
	if (kind == OCTAL_MODE)
		return d == n && d <= 5 && strspn(v, "01234567") >= n &&
		       strtoul(v, NULL, 8) <= 07777;
	if (kind == ID)
		return d == n && x <= 2147483647ULL;
	if (d == n)
		return true;
	if (d + 1 != n)
		return false;
	if (kind == MEM_OR_PERCENT && v[d] == '%')
		return x <= 100;
	const char *suffix = strchr("kmgtpe", v[d] | 0x20);
	int shift = suffix && v[d] ? 10 * (int)(suffix - "kmgtpe" + 1) : -1;
	return shift > 0 && (shift >= 64 || x <= (~0ULL >> shift));
}

static int bad(ud_error *e, const char *flag, const char *arg, const char *why, const char *name,
	       size_t n)
{
	return ud_fail(e, UD_EXIT_USAGE, 0, "--%s '%s': %s '%.*s'", flag, arg, why, (int)n, name);
}

/* libmount's "vfs" list: the mount flags. */
static int apply_flags(char *list, const char *flag, const char *arg, unsigned *attrs, ud_error *e)
{
	char *p = list, *name, *val;
	size_t nl, vl;
	int r;
	while ((r = ud_lm.mnt_optstr_next_option(&p, &name, &nl, &val, &vl)) == 0) {
		size_t i = 0;
		while (i < UD_ARRAY_SIZE(flags) &&
		       (strlen(flags[i].name) != nl || memcmp(flags[i].name, name, nl)))
			i++;
		if (i == UD_ARRAY_SIZE(flags) || val) {
			/* dev and suid: no device node or set-uid program the app can make in it is
			 * to work; the rest (bind, shared, remount...) is not a tmpfs's. */
			bool danger = (nl == 3 && !memcmp(name, "dev", 3)) ||
				      (nl == 4 && !memcmp(name, "suid", 4));
			return bad(e, flag, arg,
				   danger ? "refusing" : "not an option for a tmpfs:", name, nl);
		}
		*attrs = (*attrs & ~flags[i].clear) | flags[i].set;
	}
	return r < 0 ? bad(e, flag, arg, "cannot parse", list, strlen(list)) : 0;
}

/* libmount's "fs" list: the filesystem's own options, into vals[] by fs_opts' index. */
static int take_fs_opts(char *list, const char *flag, const char *arg, char **vals, ud_error *e)
{
	char *p = list, *name, *val;
	size_t nl, vl;
	int r;
	while ((r = ud_lm.mnt_optstr_next_option(&p, &name, &nl, &val, &vl)) == 0) {
		size_t i = 0;
		while (i < N_FS_OPTS &&
		       (strlen(fs_opts[i].name) != nl || memcmp(fs_opts[i].name, name, nl)))
			i++;
		if (i == N_FS_OPTS)
			return bad(e, flag, arg, "unknown tmpfs option", name, nl);
		if (!val || !valid_value(fs_opts[i].kind, val, vl))
			return bad(e, flag, arg, "bad value in", name,
				   val ? (size_t)(val - name) + vl : nl);
		free(vals[i]);
		if (!(vals[i] = strndup(val, vl)))
			return ud_oom(e);
	}
	return r < 0 ? bad(e, flag, arg, "cannot parse", list, strlen(list)) : 0;
}

static int split_opts(const char *opts, const char *flag, const char *arg, char **vals,
		      unsigned *attrs, ud_error *e)
{
	ud_autofree char *user = NULL, *vfs = NULL, *fs = NULL;
	if (ud_lm_load(e) < 0)
		return ud_context(e, "--%s", flag);
	if (ud_lm.mnt_split_optstr(opts, &user, &vfs, &fs, 0, 0) < 0)
		return bad(e, flag, arg, "cannot parse", opts, strlen(opts));
	/* user, users, owner, noauto, x-...: fstab's, not a mount's. */
	if (user && *user)
		return bad(e, flag, arg, "not an option for a tmpfs:", user, strcspn(user, ",="));
	if ((vfs && apply_flags(vfs, flag, arg, attrs, e) < 0) ||
	    (fs && take_fs_opts(fs, flag, arg, vals, e) < 0))
		return -1;
	return 0;
}

/* "mode=..,size=..": the values in fs_opts' order, mode always. */
static char *canonical(char **vals)
{
	size_t len = 16;
	for (size_t i = 0; i < N_FS_OPTS; i++)
		len += vals[i] ? strlen(fs_opts[i].name) + strlen(vals[i]) + 2 : 0;
	char *out = malloc(len), *end = out;
	if (!out)
		return NULL;
	end += sprintf(end, "mode=%s", vals[0] ? vals[0] : "1777");
	for (size_t i = 1; i < N_FS_OPTS; i++)
		if (vals[i])
			end += sprintf(end, ",%s=%s", fs_opts[i].name, vals[i]);
	return out;
}

int ud_tmpfs_parse(const char *arg, const char *flag, struct ud_op *op, ud_error *e)
{
	memset(op, 0, sizeof(*op));
	op->type = UD_OP_TMPFS;
	op->attrs = UD_TMPFS_DEFAULT_ATTRS;
	const char *colon = strchr(arg, ':');
	char *vals[N_FS_OPTS] = {NULL};
	int r = colon && colon[1] ? split_opts(colon + 1, flag, arg, vals, &op->attrs, e) : 0;
	if (r == 0) {
		op->dst = colon ? strndup(arg, (size_t)(colon - arg)) : strdup(arg);
		op->data = canonical(vals);
		op->readonly = op->attrs & MOUNT_ATTR_RDONLY;
		if (!op->dst || !op->data)
			r = ud_oom(e);
	}
	for (size_t i = 0; i < N_FS_OPTS; i++)
		free(vals[i]);
	if (r < 0) {
		free(op->dst);
		free(op->data);
		op->dst = op->data = NULL;
	}
	return r;
}

int ud_ram_size_parse(const char *s, const char *flag, unsigned long long *bytes, ud_error *e)
{
	char *end;
	errno = 0;
	double v = s[0] >= '0' && s[0] <= '9' ? strtod(s, &end) : -1;
	static const char units[] = "bkmgtp";
	const char *u = v >= 0 && *end ? strchr(units, *end | 0x20) : NULL;
	int shift = u ? 10 * (int)(u - units) : 0;
	const char *rest = v < 0 ? s : u ? end + 1 : end;
	if (u && *u != 'b' && (*rest | 0x20) == 'i')
		rest++;
	if (u && *u != 'b' && (*rest | 0x20) == 'b')
		rest++;
	/* strtod would take "1e3", "inf", hex: only digits and one '.' before the unit. */
	bool digits = v >= 0 && strspn(s, "0123456789.") == (size_t)(end - s) &&
		      strchr(s, '.') == strrchr(s, '.');
	double b = v * (double)(1ULL << shift);
	if (errno || !digits || *rest || !(b >= 1) || b > 9.2e18)
		return ud_fail(e, UD_EXIT_USAGE, 0,
			       "--%s '%s': expected a size more than 0 (bytes, or with k, m, g, "
			       "t or p: 64m)",
			       flag, s);
	*bytes = (unsigned long long)b;
	return 0;
}

size_t ud_tmpfs_flag_names(unsigned attrs, const char **names)
{
	static const struct {
		unsigned bit;
		const char *name;
	} order[] = {{MOUNT_ATTR_RDONLY, "ro"},
		     {MOUNT_ATTR_NOSUID, "nosuid"},
		     {MOUNT_ATTR_NODEV, "nodev"},
		     {MOUNT_ATTR_NOEXEC, "noexec"},
		     {MOUNT_ATTR_NOATIME, "noatime"},
		     {MOUNT_ATTR_STRICTATIME, "strictatime"},
		     {MOUNT_ATTR_NODIRATIME, "nodiratime"},
		     {MOUNT_ATTR_NOSYMFOLLOW, "nosymfollow"}};
	size_t n = 0;
	for (size_t i = 0; i < UD_ARRAY_SIZE(order); i++) {
		bool on = order[i].bit & MOUNT_ATTR__ATIME ?
				  (attrs & MOUNT_ATTR__ATIME) == order[i].bit :
				  (attrs & order[i].bit) != 0;
		if (on)
			names[n++] = order[i].name;
	}
	return n;
}
