/* One layer tar into a directory. Members are hostile: names are checked before anything is
 * written, nothing is written through a symlink (openat2 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS,
 * libarchive's SECURE_* flags), hard links stay inside the layer, whiteouts become what
 * overlayfs reads, and the limits bound what one layer may put on the disk. Three readers are
 * stacked: the source (an export's entry, or a file), one that only decompresses so that the
 * bytes can be hashed, and one that reads those bytes as tar. */
#include "layer.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "directw.h"
#include "hasher.h"
#include "la.h"
#include "prefault.h"
#include "smallw.h"
#include "util.h"

/* ---------------------------------------------------------------- pure parts */

bool ud_layer_member_name_safe(const char *name)
{
	if (!name || !*name || name[0] == '/')
		return false;
	for (const char *p = name;;) {
		const char *end = strchr(p, '/');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		if (n == 2 && p[0] == '.' && p[1] == '.')
			return false;
		if (!end)
			return true;
		p = end + 1;
	}
}

bool ud_layer_name_fits(const char *name)
{
	if (strlen(name) >= PATH_MAX)
		return false;
	for (const char *p = name; *p;) {
		size_t n = strcspn(p, "/");
		if (n > NAME_MAX)
			return false;
		p += n + strspn(p + n, "/");
	}
	return true;
}

int ud_layer_whiteout_kind(const char *name, size_t *target_off)
{
	const char *base = strrchr(name, '/');
	base = base ? base + 1 : name;
	if (strcmp(base, ".wh..wh..opq") == 0)
		return 2;
	if (strncmp(base, ".wh.", 4) == 0 && base[4]) {
		if (target_off)
			*target_off = (size_t)(base - name) + 4;
		return 1;
	}
	return 0;
}

/* ---------------------------------------------------------------- whiteouts */

struct whiteout {
	char *path; /* for kind 1: the path to hide; for kind 2: the opaque directory ("" = root) */
	int kind;
};

static int open_beneath(int rootfd, const char *path)
{
	return ud_openat2(rootfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC,
			  RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
}

/* Opens (creating if missing) a directory inside the layer, refusing any symlink on the way. */
static int open_dir_beneath(int rootfd, const char *path, ud_error *e)
{
	if (!*path)
		return fcntl(rootfd, F_DUPFD_CLOEXEC, 3);
	int fd = open_beneath(rootfd, path);
	if (fd >= 0 || errno != ENOENT)
		return fd >= 0 ? fd :
				 ud_fail(e, UD_EXIT_STORAGE, errno,
					 "layer member directory '%s' is not a plain directory",
					 path);
	char parent[4096];
	snprintf(parent, sizeof(parent), "%s", path);
	char *slash = strrchr(parent, '/');
	const char *base = path;
	ud_autoclose int pfd = -1;
	if (slash) {
		*slash = '\0';
		base = path + (slash - parent) + 1;
		pfd = open_dir_beneath(rootfd, parent, e);
	} else {
		pfd = fcntl(rootfd, F_DUPFD_CLOEXEC, 3);
	}
	if (pfd < 0)
		return -1;
	if (mkdirat(pfd, base, 0755) < 0 && errno != EEXIST)
		return ud_fail(e, UD_EXIT_STORAGE, errno, "creating '%s' in a layer", path);
	fd = open_beneath(rootfd, path);
	return fd >= 0 ? fd : ud_fail(e, UD_EXIT_STORAGE, errno, "opening '%s' in a layer", path);
}

static int apply_whiteout(int rootfd, const struct whiteout *w, ud_error *e)
{
	char dir[4096];
	const char *base = NULL;
	snprintf(dir, sizeof(dir), "%s", w->path);
	if (w->kind == 1) {
		char *slash = strrchr(dir, '/');
		base = slash ? w->path + (slash - dir) + 1 : w->path;
		if (slash)
			*slash = '\0';
		else
			dir[0] = '\0';
	}
	ud_autoclose int dfd = open_dir_beneath(rootfd, dir, e);
	if (dfd < 0)
		return -1;
	if (w->kind == 2) {
		if (fsetxattr(dfd, "trusted.overlay.opaque", "y", 1, 0) < 0)
			return ud_fail(e, UD_EXIT_STORAGE, errno,
				       "marking '%s' opaque (trusted xattrs needed)", dir);
	} else if (mknodat(dfd, base, S_IFCHR | 0000, makedev(0, 0)) < 0 && errno != EEXIST) {
		return ud_fail(e, UD_EXIT_STORAGE, errno, "whiteout for '%s'", w->path);
	}
	return 0;
}

/* ---------------------------------------------------------------- extraction */

/* One tar being extracted, and what it has unpacked so far against ud_layer_limits. */
struct extract {
	struct archive *in, *out;
	int rootfd;
	const char *layer;
	struct whiteout *wo;
	size_t n_wo;
	uint64_t files, bytes, apparent;
	ud_prefault *pf;
	int pfd; /* the member being written, opened again for pf; -1: none */
	ud_directw *dw;
	int dfd;       /* the same, opened again with O_DIRECT for dw; -1: none */
	ud_smallw *sw; /* started at the first small file; NULL before, or if it could not be */
	bool sw_failed;
	time_t start;	/* libarchive's time for a member without one */
	char dir[4096]; /* the directory a small file went to last, known to be one */
};

/* "dir/.wh.NAME" hides "dir/NAME"; "dir/.wh..wh..opq" makes "dir" opaque. */
static int record_whiteout(struct extract *x, const char *name, const char *raw, int kind,
			   size_t off, ud_error *e)
{
	struct whiteout w = {.kind = kind};
	if (kind == 1 && (!strcmp(name + off, ".") || !strcmp(name + off, "..")))
		return ud_fail(e, UD_EXIT_STORAGE, 0,
			       "layer %s: hostile member '%s' (a whiteout for '.' or '..')",
			       x->layer, raw);
	if (kind == 1) {
		size_t dl = off - 4;
		if ((w.path = malloc(strlen(name) + 1))) {
			memcpy(w.path, name, dl);
			strcpy(w.path + dl, name + off);
		}
	} else {
		const char *slash = strrchr(name, '/');
		w.path = strndup(name, slash ? (size_t)(slash - name) : 0);
	}
	if (!w.path || ud_push(&x->wo, &x->n_wo, sizeof(w), &w) < 0) {
		free(w.path);
		return ud_oom(e);
	}
	return 0;
}

/* Overlayfs reads trusted.overlay.* on lower layers (redirects, metacopy, opaque): only we set
 * those. Everything else (security.capability, user.*, ACLs) stays as the tar says. */
static void drop_overlay_xattrs(struct archive_entry *ent)
{
	if (ud_la.archive_entry_xattr_reset(ent) == 0)
		return;
	struct {
		char *name;
		void *val;
		size_t len;
	} keep[64];
	size_t nk = 0;
	bool dropped = false;
	const char *name;
	const void *val;
	size_t len;
	while (ud_la.archive_entry_xattr_next(ent, &name, &val, &len) == ARCHIVE_OK) {
		if (!strncmp(name, "trusted.overlay.", 16)) {
			dropped = true;
			continue;
		}
		if (nk < UD_ARRAY_SIZE(keep)) {
			keep[nk].name = strdup(name);
			keep[nk].val = malloc(len ? len : 1);
			if (keep[nk].name && keep[nk].val) {
				memcpy(keep[nk].val, val, len);
				keep[nk++].len = len;
			}
		}
	}
	if (dropped) {
		ud_la.archive_entry_xattr_clear(ent);
		for (size_t i = 0; i < nk; i++)
			ud_la.archive_entry_xattr_add_entry(ent, keep[i].name, keep[i].val,
							    keep[i].len);
	}
	for (size_t i = 0; i < nk; i++) {
		free(keep[i].name);
		free(keep[i].val);
	}
}

static const char *strip_dot_slash(const char *p)
{
	while (p[0] == '.' && p[1] == '/')
		p += 2;
	return p;
}

static int over_limit(const char *layer, const char *what, uint64_t limit, const char *option,
		      ud_error *e)
{
	return ud_fail(e, UD_EXIT_STORAGE, 0, "%s: the layer has more than %" PRIu64 " %s (%s)",
		       layer, limit, what, option);
}

/* Refused before anything of the member is written: names that do not fit (they would be cut
 * short), and a member past the number or apparent-size limit. */
static int check_member(struct extract *x, struct archive_entry *ent, ud_error *e)
{
	const char *names[3] = {ud_la.archive_entry_pathname(ent),
				ud_la.archive_entry_hardlink(ent),
				ud_la.archive_entry_symlink(ent)};
	static const char *const kinds[3] = {"member name", "hard link target",
					     "symbolic link target"};
	for (int i = 0; i < 3; i++)
		if (names[i] && !ud_layer_name_fits(names[i]))
			return ud_fail(
				e, UD_EXIT_STORAGE, 0,
				"layer %s: %s '%.80s...' (%zu bytes) is longer than PATH_MAX "
				"(%d) or has a component longer than NAME_MAX (%d)",
				x->layer, kinds[i], names[i], strlen(names[i]), PATH_MAX, NAME_MAX);
	const struct ud_layer_limits *l = &ud_layer_limits;
	if (++x->files > l->max_files)
		return over_limit(x->layer, "members", l->max_files, "--cache-max-files", e);
	la_int64_t size = ud_la.archive_entry_size(ent);
	if (ud_la.archive_entry_filetype(ent) == AE_IFREG && size > 0 &&
	    (x->apparent += (uint64_t)size) > l->max_apparent)
		return over_limit(x->layer, "bytes of apparent file size", l->max_apparent,
				  "--cache-max-apparent", e);
	return 0;
}

static int write_failed(struct extract *x, const char *name, const char *how, ud_error *e)
{
	int err = ud_la.archive_errno(x->out);
	return ud_fail(e, UD_EXIT_STORAGE, err > 0 ? err : 0, "layer %s: member '%s'%s: %s",
		       x->layer, name, how, ud_la.archive_error_string(x->out));
}

/* Copies the current member's data; sparse members keep their holes. */
static int copy_data(struct extract *x, const char *name, ud_error *e)
{
	const void *buf;
	size_t size;
	la_int64_t offset;
	int d;
	while ((d = ud_la.archive_read_data_block(x->in, &buf, &size, &offset)) == ARCHIVE_OK) {
		if ((x->bytes += size) > ud_layer_limits.max_bytes)
			return over_limit(x->layer, "bytes of data", ud_layer_limits.max_bytes,
					  "--cache-max-bytes", e);
		size_t took = x->dfd >= 0 ? ud_directw_put(x->dw, buf, size, (uint64_t)offset) : 0;
		if (took < size &&
		    ud_la.archive_write_data_block(x->out, (const char *)buf + took, size - took,
						   offset + (la_int64_t)took) < ARCHIVE_WARN)
			return write_failed(x, name, "", e);
		if (x->pfd >= 0)
			ud_prefault_progress(x->pf, (uint64_t)offset + size);
	}
	if (d != ARCHIVE_EOF)
		return ud_fail(e, UD_EXIT_STORAGE, 0, "layer %s: member '%s': %s", x->layer, name,
			       ud_la.archive_error_string(x->in));
	return 0;
}

/* A hard link's target must already be in this layer, reached without symlinks. */
static int check_hardlink(struct extract *x, struct archive_entry *ent, const char *raw,
			  ud_error *e)
{
	const char *link = ud_la.archive_entry_hardlink(ent);
	if (!link)
		return 0;
	char ln[4096];
	snprintf(ln, sizeof(ln), "%s", strip_dot_slash(link));
	ud_autoclose int t = ud_layer_member_name_safe(ln) ?
				     ud_openat2(x->rootfd, ln, O_PATH | O_NOFOLLOW | O_CLOEXEC,
						RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS) :
				     -1;
	if (t < 0)
		return ud_fail(e, UD_EXIT_STORAGE, 0,
			       "layer %s: hostile hard link '%s' -> '%s' (outside the layer)",
			       x->layer, raw, ln);
	ud_la.archive_entry_set_hardlink(ent, ln);
	return 0;
}

/* Below this a member comes in a block or two: the thread could not get ahead of the writes,
 * and handing it over costs more than it saves (measured: from 32 KiB the bench's export was
 * slower than from 256 KiB). */
#define PREFAULT_MIN (256 * 1024)

/* The large regular member just created, opened again by its name, beneath the layer and
 * without symlinks, if it is still the empty file libarchive made; -1 otherwise, and then the
 * member is left to libarchive's writes alone. */
static int reopen_member(struct extract *x, const char *name, int flags)
{
	ud_autoclose int fd = ud_openat2(x->rootfd, name, flags | O_NOFOLLOW | O_CLOEXEC,
					 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size != 0 ||
	    st.st_nlink != 1)
		return -1;
	return ud_steal_fd(&fd);
}

/* Hands a large regular member to the O_DIRECT writer (directw.h), or where the file system
 * will not open it so, or the member has holes, to the prefault thread (prefault.h). For that
 * one the file is extended to its size first, since readahead(2) stops at the end of the file;
 * libarchive's own writes reach that size anyway. */
static void large_member(struct extract *x, struct archive_entry *ent, const char *name)
{
	la_int64_t size = ud_la.archive_entry_size(ent);
	if (size < PREFAULT_MIN || ud_la.archive_entry_filetype(ent) != AE_IFREG ||
	    ud_la.archive_entry_hardlink(ent))
		return;
	if (x->dw && !ud_la.archive_entry_sparse_count(ent) &&
	    (x->dfd = reopen_member(x, name, O_WRONLY | O_DIRECT)) >= 0) {
		ud_directw_file(x->dw, x->dfd, (uint64_t)size);
		return;
	}
	if (!x->pf || (x->pfd = reopen_member(x, name, O_RDWR)) < 0)
		return;
	if (ftruncate(x->pfd, size) < 0)
		ud_closep(&x->pfd);
	else
		ud_prefault_file(x->pf, x->pfd, (uint64_t)size);
}

/* The member's bytes are all written, or all that will be: the threads let the file go. */
static int large_member_end(struct extract *x, const char *name, ud_error *e)
{
	int r = 0;
	if (x->dfd >= 0) {
		r = ud_directw_end(x->dw, e);
		ud_closep(&x->dfd);
	}
	if (x->pfd >= 0) {
		ud_prefault_end(x->pf);
		ud_closep(&x->pfd);
	}
	return r < 0 ? ud_context(e, "layer %s: member '%s'", x->layer, name) : 0;
}

/* ---------------------------------------------------------------- small files (smallw.h) */

/* A name without empty or "." components: the only spelling the writers' set of queued names
 * would recognise. */
static bool plain_path(const char *p)
{
	if (!*p || *p == '/')
		return false;
	for (;;) {
		size_t n = strcspn(p, "/");
		if (n == 0 || (n == 1 && p[0] == '.'))
			return false;
		if (!p[n])
			return true;
		p += n + 1;
	}
}

/* A regular file the writers make as libarchive would: no link, no extended metadata, small
 * (larger ones go to the prefault thread), a plain name in a directory that already is one. */
static bool small_plain_file(struct extract *x, struct archive_entry *ent, const char *name)
{
	unsigned long set = 0, clear = 0;
	ud_la.archive_entry_fflags(ent, &set, &clear);
	la_int64_t size = ud_la.archive_entry_size(ent);
	if (x->sw_failed || ud_la.archive_entry_filetype(ent) != AE_IFREG || size < 0 ||
	    size >= PREFAULT_MIN || ud_la.archive_entry_hardlink(ent) || set || clear ||
	    ud_la.archive_entry_xattr_count(ent) || ud_la.archive_entry_acl_types(ent) ||
	    ud_la.archive_entry_sparse_count(ent) || !plain_path(name))
		return false;
	const char *slash = strrchr(name, '/');
	size_t n = slash ? (size_t)(slash - name) : 0;
	if (!n || (strlen(x->dir) == n && !strncmp(x->dir, name, n)))
		return true;
	char dir[sizeof(x->dir)];
	snprintf(dir, sizeof(dir), "%.*s", (int)n, name);
	ud_autoclose int fd = ud_openat2(x->rootfd, dir, O_PATH | O_DIRECTORY | O_CLOEXEC,
					 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS);
	if (fd < 0)
		return false; /* libarchive makes it, or says why not */
	memcpy(x->dir, dir, n + 1);
	return true;
}

/* Before a member meets the tree: the queued files it could meet are made first. A directory
 * only meets those of its own path (or above it); anything else libarchive writes may replace
 * or link to any path, so all of them. */
static int settle(struct extract *x, struct archive_entry *ent, const char *name, bool small,
		  ud_error *e)
{
	if (!x->sw)
		return 0;
	bool wait = true;
	if (small) {
		wait = ud_smallw_pending(x->sw, name);
	} else if (ud_la.archive_entry_filetype(ent) == AE_IFDIR) {
		char dir[4096];
		snprintf(dir, sizeof(dir), "%s", name);
		for (size_t n = strlen(dir); n > 1 && dir[n - 1] == '/'; n--)
			dir[n - 1] = '\0';
		wait = !plain_path(dir) || ud_smallw_pending(x->sw, dir);
	} else {
		x->dir[0] = '\0'; /* it may replace that directory */
	}
	if (wait && ud_smallw_wait(x->sw, e) < 0)
		return ud_context(e, "layer %s", x->layer);
	return 0;
}

static struct timespec entry_time(bool set, time_t s, long ns, time_t start)
{
	return set ? (struct timespec){s, ns} : (struct timespec){start, 0};
}

/* The member's bytes, read here; the file is made by a writer. */
static int queue_small(struct extract *x, struct archive_entry *ent, const char *name, ud_error *e)
{
	size_t len = (size_t)ud_la.archive_entry_size(ent);
	if ((x->bytes += len) > ud_layer_limits.max_bytes)
		return over_limit(x->layer, "bytes of data", ud_layer_limits.max_bytes,
				  "--cache-max-bytes", e);
	char *data = malloc(len ? len : 1);
	if (!data)
		return ud_oom(e);
	for (size_t got = 0; got < len;) {
		la_ssize_t n = ud_la.archive_read_data(x->in, data + got, len - got);
		if (n <= 0) {
			free(data);
			return ud_fail(e, UD_EXIT_STORAGE, 0, "layer %s: member '%s': %s", x->layer,
				       name,
				       n < 0 ? ud_la.archive_error_string(x->in) : "truncated");
		}
		got += (size_t)n;
	}
	struct ud_smallw_file f = {
		.name = name,
		.data = data,
		.len = len,
		.uid = (uid_t)ud_la.archive_entry_uid(ent),
		.gid = (gid_t)ud_la.archive_entry_gid(ent),
		.mode = ud_la.archive_entry_mode(ent) & 07777,
		.times = {entry_time(ud_la.archive_entry_atime_is_set(ent),
				     ud_la.archive_entry_atime(ent),
				     ud_la.archive_entry_atime_nsec(ent), x->start),
			  entry_time(ud_la.archive_entry_mtime_is_set(ent),
				     ud_la.archive_entry_mtime(ent),
				     ud_la.archive_entry_mtime_nsec(ent), x->start)}};
	return ud_smallw_add(x->sw, &f, e) < 0 ? ud_context(e, "layer %s", x->layer) : 0;
}

/* Whether the member goes to the writers (started here, at the first small file). */
static bool to_writers(struct extract *x, struct archive_entry *ent, const char *name)
{
	if (!small_plain_file(x, ent, name))
		return false;
	if (!x->sw && ud_smallw_start(&x->sw, x->rootfd, NULL) < 0)
		x->sw_failed = true;
	return x->sw != NULL;
}

/* ---------------------------------------------------------------- one member */

static int extract_member(struct extract *x, struct archive_entry *ent, ud_error *e)
{
	if (check_member(x, ent, e) < 0)
		return -1;
	/* Copies: setting the entry's names below would overwrite the strings that
	 * archive_entry_pathname() and _hardlink() point into. */
	char raw[4096], name[4096];
	const char *rp = ud_la.archive_entry_pathname(ent);
	snprintf(raw, sizeof(raw), "%s", rp ? rp : "");
	snprintf(name, sizeof(name), "%s", strip_dot_slash(raw));
	if (rp && (!*name || !strcmp(name, ".") || !strcmp(name, "./")))
		return 0; /* the layer root itself */
	if (!rp || !ud_layer_member_name_safe(name))
		return ud_fail(e, UD_EXIT_STORAGE, 0,
			       "layer %s: hostile member '%s' (absolute or '..')", x->layer, raw);
	/* The link's target must be there to be checked. */
	if (ud_la.archive_entry_hardlink(ent) &&
	    (settle(x, ent, name, false, e) < 0 || check_hardlink(x, ent, raw, e) < 0))
		return -1;
	size_t off = 0;
	int kind = ud_layer_whiteout_kind(name, &off);
	if (kind) /* applied once every file is made */
		return record_whiteout(x, name, raw, kind, off, e);
	drop_overlay_xattrs(ent);
	bool small = to_writers(x, ent, name);
	if (settle(x, ent, name, small, e) < 0)
		return -1;
	if (small)
		return queue_small(x, ent, name, e);
	ud_la.archive_entry_set_pathname(ent, name);
	if (ud_la.archive_write_header(x->out, ent) < ARCHIVE_WARN)
		return write_failed(x, name, " refused", e);
	large_member(x, ent, name);
	int c = ud_la.archive_entry_size(ent) > 0 ? copy_data(x, name, e) : 0;
	if (large_member_end(x, name, c < 0 ? NULL : e) < 0 || c < 0)
		return -1;
	if (ud_la.archive_write_finish_entry(x->out) < ARCHIVE_WARN)
		return ud_fail(e, UD_EXIT_STORAGE, 0, "layer %s: member '%s': %s", x->layer, name,
			       ud_la.archive_error_string(x->out));
	return 0;
}

/* Extracts the tar in `in` (already positioned) into rootfd, which is also our cwd. */
static int extract_tar(struct archive *in, int rootfd, const char *layer, ud_prefault *pf,
		       ud_directw *dw, ud_error *e)
{
	struct extract x = {.in = in,
			    .rootfd = rootfd,
			    .layer = layer,
			    .pf = pf,
			    .pfd = -1,
			    .dw = dw,
			    .dfd = -1,
			    .start = time(NULL)};
	if (!(x.out = ud_la.archive_write_disk_new()))
		return ud_oom(e);
	ud_la.archive_write_disk_set_options(
		x.out, ARCHIVE_EXTRACT_OWNER | ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME |
			       ARCHIVE_EXTRACT_XATTR | ARCHIVE_EXTRACT_ACL |
			       ARCHIVE_EXTRACT_SECURE_SYMLINKS | ARCHIVE_EXTRACT_SECURE_NODOTDOT |
			       ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS);
	int r = 0;
	for (;;) {
		struct archive_entry *ent;
		int h = ud_la.archive_read_next_header(in, &ent);
		if (h == ARCHIVE_EOF)
			break;
		if (h < ARCHIVE_WARN) {
			r = ud_fail(e, UD_EXIT_STORAGE, 0, "layer %s: broken tar: %s", layer,
				    ud_la.archive_error_string(in));
			break;
		}
		if ((r = extract_member(&x, ent, e)) < 0)
			break;
	}
	/* Every file made before the whiteouts and the close: it sets the directories' times
	 * last, as the tar says. */
	if (x.sw && ud_smallw_wait(x.sw, r == 0 ? e : NULL) < 0 && r == 0)
		r = ud_context(e, "layer %s", layer);
	for (size_t i = 0; r == 0 && i < x.n_wo; i++)
		r = apply_whiteout(rootfd, &x.wo[i], e);
	if (ud_la.archive_write_close(x.out) < ARCHIVE_WARN && r == 0)
		r = ud_fail(e, UD_EXIT_STORAGE, 0, "layer %s: %s", layer,
			    ud_la.archive_error_string(x.out));
	ud_la.archive_write_free(x.out);
	ud_smallw_stop(x.sw);
	for (size_t i = 0; i < x.n_wo; i++)
		free(x.wo[i].path);
	free(x.wo);
	return r;
}

/* ---------------------------------------------------------------- the readers */

/* The current entry of `from`, block by block as libarchive holds it: no copy, since a block
 * stays valid until the next read of `from`, and the reader above asks again only when done
 * with it. A sparse entry's holes come as zeros. With a hasher, each block is hashed on its
 * thread while the reader above unpacks it, and the next read waits for that hash first. */
struct pull {
	struct archive *from;
	ud_hasher *h;
	la_int64_t pos;	   /* bytes handed up so far */
	const void *block; /* read from `from`, not handed up yet (a hole comes first) */
	size_t left;
	la_int64_t at; /* where that block goes; at the end, where the entry ends */
	bool eof;
};

static const char zeros[64 * 1024];

/* The next block of the entry; 0 at its end, -1 (error set on a) on failure. */
static la_ssize_t next_block(struct archive *a, struct pull *p, const void **buf)
{
	/* An empty block is no end for the reader above (0 is): read on. */
	while (!p->left && !p->eof && p->at <= p->pos) {
		int r = ud_la.archive_read_data_block(p->from, &p->block, &p->left, &p->at);
		if (r == ARCHIVE_EOF) {
			p->eof = true;
			p->left = 0;
		} else if (r != ARCHIVE_OK || p->at < p->pos) {
			const char *why = ud_la.archive_error_string(p->from);
			if (r == ARCHIVE_OK || !why)
				why = "blocks out of order";
			ud_la.archive_set_error(a, EIO, "%s", why);
			return -1;
		}
	}
	if (p->at > p->pos) {
		la_int64_t hole = p->at - p->pos;
		size_t n = hole < (la_int64_t)sizeof(zeros) ? (size_t)hole : sizeof(zeros);
		p->pos += (la_int64_t)n;
		*buf = zeros;
		return (la_ssize_t)n;
	}
	size_t n = p->left;
	p->left = 0;
	p->pos += (la_int64_t)n;
	p->at = p->pos;
	*buf = p->block;
	return (la_ssize_t)n;
}

static la_ssize_t pull_read(struct archive *a, void *client, const void **buf)
{
	struct pull *p = client;
	if (p->h)
		ud_hasher_wait(p->h); /* the last block may go at the read below */
	la_ssize_t n = next_block(a, p, buf);
	if (n > 0 && p->h)
		ud_hasher_update(p->h, *buf, (size_t)n);
	return n;
}

struct fd_src {
	int fd;
	char buf[64 * 1024];
};

static la_ssize_t fd_read(struct archive *a, void *client, const void **buf)
{
	struct fd_src *s = client;
	ssize_t n;
	while ((n = read(s->fd, s->buf, sizeof(s->buf))) < 0 && errno == EINTR)
		;
	if (n < 0) {
		ud_la.archive_set_error(a, errno, "reading the layer");
		return -1;
	}
	*buf = s->buf;
	return n;
}

struct readers {
	struct archive *raw, *tar;
	ud_hasher *h;
	ud_prefault *pf;
	ud_directw *dw;
};

/* raw decompresses what `source` gives, tar reads raw's bytes (hashed on the way) into rootfd. */
static int read_layer(struct readers *rd, archive_read_callback *source, void *client, int rootfd,
		      const char *what, bool must_be_layer, char hex[65], ud_error *e)
{
	ud_la.archive_read_support_filter_all(rd->raw);
	ud_la.archive_read_support_format_raw(rd->raw);
	struct archive_entry *ent;
	if (ud_la.archive_read_open(rd->raw, client, NULL, source, NULL) != ARCHIVE_OK ||
	    ud_la.archive_read_next_header(rd->raw, &ent) != ARCHIVE_OK)
		return ud_fail(e, UD_EXIT_STORAGE, 0, "%s: cannot read the layer: %s", what,
			       ud_la.archive_error_string(rd->raw));
	struct pull from_raw = {.from = rd->raw, .h = rd->h};
	ud_la.archive_read_support_format_tar(rd->tar);
	if (ud_la.archive_read_open(rd->tar, &from_raw, NULL, pull_read, NULL) != ARCHIVE_OK)
		/* An OCI blob we could not place by its name may be a manifest or an index. */
		return !must_be_layer ? 0 :
					ud_fail(e, UD_EXIT_STORAGE, 0, "%s: not a tar: %s", what,
						ud_la.archive_error_string(rd->tar));
	if (extract_tar(rd->tar, rootfd, what, rd->pf, rd->dw, e) < 0)
		return -1;
	/* The digest covers the whole uncompressed stream, padding after the tar's end included. */
	const void *rest;
	la_ssize_t n;
	while ((n = pull_read(rd->tar, &from_raw, &rest)) > 0)
		;
	if (n < 0)
		return ud_fail(e, UD_EXIT_STORAGE, 0, "%s: %s", what,
			       ud_la.archive_error_string(rd->tar));
	ud_hasher_final(rd->h, hex);
	return 1;
}

static int unpack(archive_read_callback *source, void *client, int rootfd, const char *what,
		  bool must_be_layer, char hex[65], ud_error *e)
{
	ud_autoclose int cwd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	struct readers rd = {ud_la.archive_read_new(), ud_la.archive_read_new(), NULL, NULL, NULL};
	int r = -1;
	if (cwd < 0 || !rd.raw || !rd.tar)
		ud_fail(e, UD_EXIT_STORAGE, errno, "preparing to unpack %s", what);
	else if (ud_hasher_start(&rd.h, e) < 0 || ud_prefault_start(&rd.pf, e) < 0 ||
		 ud_directw_start(&rd.dw, e) < 0)
		ud_context(e, "preparing to unpack %s", what);
	/* libarchive's disk writer works on paths relative to the cwd. */
	else if (fchmod(rootfd, 0755) < 0 || fchdir(rootfd) < 0)
		ud_fail(e, UD_EXIT_STORAGE, errno, "%s: entering the layer's directory", what);
	else
		r = read_layer(&rd, source, client, rootfd, what, must_be_layer, hex, e);
	if (cwd >= 0 && fchdir(cwd) < 0)
		r = ud_fail(e, UD_EXIT_STORAGE, errno, "returning to the working directory");
	/* The hasher first: a block it may still be reading belongs to the readers. */
	ud_hasher_stop(rd.h);
	ud_prefault_stop(rd.pf);
	ud_directw_stop(rd.dw);
	if (rd.raw)
		ud_la.archive_read_free(rd.raw);
	if (rd.tar)
		ud_la.archive_read_free(rd.tar);
	return r;
}

int ud_layer_unpack_entry(struct archive *outer, int rootfd, const char *what, bool must_be_layer,
			  char hex[65], ud_error *e)
{
	struct pull from_outer = {.from = outer};
	return unpack(pull_read, &from_outer, rootfd, what, must_be_layer, hex, e);
}

int ud_layer_unpack_fd(int fd, int rootfd, const char *what, char hex[65], ud_error *e)
{
	if (ud_la_load(e) < 0)
		return -1;
	struct fd_src *src = malloc(sizeof(*src));
	if (!src)
		return ud_oom(e);
	src->fd = fd;
	int r = unpack(fd_read, src, rootfd, what, true, hex, e);
	free(src);
	return r;
}
