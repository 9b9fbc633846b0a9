/* Hard-link snapshots of the daemon's layer directories into the layer cache (snapshot.h has
 * the why). The daemon is trusted but the trees it unpacked are the image's: every name is
 * reached from its parent's descriptor, no symlink is followed, and a link to a symlink links
 * the symlink itself. */
#include "snapshot.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "util.h"

/* One tree being linked: buffers shared by every level (xattr names and values may each take
 * 64 KiB, too much for a frame per level). */
struct walk {
	const char *what;
	ud_error *e;
	char names[65536];
	char value[65536];
};

static int walk_fail(struct walk *w, const char *step, const char *name)
{
	return ud_fail(w->e, UD_EXIT_STORAGE, errno, "%s: %s '%.200s' while keeping its files",
		       w->what, step, name);
}

/* Extended attributes are per inode: a linked file keeps its own; a directory made anew gets
 * the source's, overlayfs's trusted.overlay.opaque above all (without it a deleted directory's
 * lower contents would show through). */
static int copy_xattrs(int src, int dst, const char *name, struct walk *w)
{
	ssize_t n = flistxattr(src, w->names, sizeof(w->names));
	if (n < 0)
		return errno == ENOTSUP ? 0 : walk_fail(w, "listing the attributes of", name);
	for (ssize_t off = 0; off < n; off += (ssize_t)strlen(w->names + off) + 1) {
		const char *key = w->names + off;
		ssize_t len = fgetxattr(src, key, w->value, sizeof(w->value));
		if (len < 0 || fsetxattr(dst, key, w->value, (size_t)len, 0) < 0)
			return walk_fail(w, "copying an attribute of", name);
	}
	return 0;
}

/* Owner before mode (chown may clear set-id bits), times last (every entry made in the
 * directory moved its mtime). */
static int copy_dir_attrs(int src, int dst, const struct stat *st, const char *name,
			  struct walk *w)
{
	struct timespec times[2] = {st->st_atim, st->st_mtim};
	if (fchown(dst, st->st_uid, st->st_gid) < 0 || fchmod(dst, st->st_mode & 07777) < 0)
		return walk_fail(w, "setting the owner and mode of", name);
	if (copy_xattrs(src, dst, name, w) < 0)
		return -1;
	if (futimens(dst, times) < 0)
		return walk_fail(w, "setting the times of", name);
	return 0;
}

static int link_dir(int sparent, int dparent, const char *name, int depth, struct walk *w);

static int link_entries(DIR *d, int dst, int depth, struct walk *w)
{
	int src = dirfd(d);
	struct dirent *de;
	for (errno = 0; (de = readdir(d)); errno = 0) {
		const char *name = de->d_name;
		if (!strcmp(name, ".") || !strcmp(name, ".."))
			continue;
		bool is_dir = de->d_type == DT_DIR;
		struct stat st;
		if (de->d_type == DT_UNKNOWN) {
			if (fstatat(src, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
				return walk_fail(w, "reading", name);
			is_dir = S_ISDIR(st.st_mode);
		}
		if (is_dir ? link_dir(src, dst, name, depth + 1, w)
			   : linkat(src, name, dst, name, 0) < 0 ? walk_fail(w, "linking", name) : 0)
			return -1;
	}
	return errno ? walk_fail(w, "listing", "a directory") : 0;
}

static int link_dir(int sparent, int dparent, const char *name, int depth, struct walk *w)
{
	if (depth > UD_SNAPSHOT_MAX_DEPTH) {
		errno = 0;
		return ud_fail(w->e, UD_EXIT_STORAGE, 0,
			       "%s: directories nested deeper than %d levels (at '%.200s')", w->what,
			       UD_SNAPSHOT_MAX_DEPTH, name);
	}
	int sfd = openat(sparent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;
	if (sfd < 0 || fstat(sfd, &st) < 0) {
		int saved = errno;
		if (sfd >= 0)
			close(sfd);
		errno = saved;
		return walk_fail(w, "opening", name);
	}
	DIR *d = fdopendir(sfd);
	if (!d) {
		close(sfd);
		return walk_fail(w, "opening", name);
	}
	ud_autoclose int dfd = -1;
	int r = -1;
	if (mkdirat(dparent, name, 0700) < 0 ||
	    (dfd = openat(dparent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		walk_fail(w, "making", name);
	else if (link_entries(d, dfd, depth, w) == 0)
		r = copy_dir_attrs(sfd, dfd, &st, name, w);
	closedir(d);
	return r;
}

int ud_snapshot_tree(int src_dir, int dst_dir, const char *what, ud_error *e)
{
	/* Its own open file: reading a dup would move the caller's directory offset. */
	int fd = openat(src_dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		ud_closep(&fd);
		return ud_fail(e, UD_EXIT_STORAGE, errno, "%s: opening the layer directory", what);
	}
	struct walk *w = malloc(sizeof(*w));
	int r = -1;
	if (!w) {
		ud_oom(e);
	} else {
		w->what = what;
		w->e = e;
		if (link_entries(d, dst_dir, 0, w) == 0)
			r = copy_xattrs(src_dir, dst_dir, ".", w);
	}
	free(w);
	closedir(d);
	return r;
}

/* ---------------------------------------------------------------- the image */

/* The store lives in the daemon's storage root: a hard link needs both names on one mount, and
 * the layers' mount is often the daemon's own (a disk for /var/lib/docker; Podman bind-mounts
 * its overlay directory onto itself). Neither daemon lists or removes names it did not make
 * there (Podman's layer scan wants a diff/ inside). */
int ud_snapshot_store(const struct ud_image *img, char *buf, size_t len)
{
	int n = snprintf(buf, len, "%s/" UD_SNAPSHOT_STORE, img->storage_root);
	return n < 0 || (size_t)n >= len ? -1 : 0;
}

/* The daemon's directory of the layer with this diffID hex (layers top to bottom, diffIDs
 * bottom to top). */
static const char *source_of(char *const *layers, const struct ud_image *img, const char *hex)
{
	for (size_t i = 0; i < img->n_diff_ids; i++)
		if (!strcmp(ud_cache_digest_hex(img->diff_ids[img->n_diff_ids - 1 - i]), hex))
			return layers[i];
	return NULL;
}

struct link_job {
	const char *src;
	const char *what;
};

static int link_layer(int rootfd, void *arg, ud_error *e)
{
	const struct link_job *j = arg;
	ud_autoclose int src = open(j->src, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (src < 0)
		return ud_fail(e, UD_EXIT_STORAGE, errno, "%s: opening %s", j->what, j->src);
	return ud_snapshot_tree(src, rootfd, j->what, e);
}

static int link_missing(struct ud_cache *c, struct ud_cache_want *w, char *const *layers,
			const struct ud_image *img, ud_error *e)
{
	for (size_t i = 0; i < w->n; i++) {
		char what[160];
		snprintf(what, sizeof(what), "image '%.80s': layer sha256:%.12s", img->ref,
			 w->hex[i]);
		struct link_job j = {source_of(layers, img, w->hex[i]), what};
		if (ud_cache_add_layer(c, w, w->hex[i], link_layer, &j, e) < 0)
			return -1;
	}
	return 0;
}

static int check_pairs(const struct ud_image *img, ud_error *e)
{
	if (img->n_layers != img->n_diff_ids || !img->n_layers)
		return ud_fail(e, UD_EXIT_STORAGE, 0,
			       "image '%s': %zu layer directories for %zu diffIDs", img->ref,
			       img->n_layers, img->n_diff_ids);
	for (size_t i = 0; i < img->n_diff_ids; i++)
		if (!ud_cache_digest_hex(img->diff_ids[i]))
			return ud_fail(e, UD_EXIT_STORAGE, 0, "image '%s': bad diffID '%s'",
				       img->ref, img->diff_ids[i]);
	return 0;
}

/* The image's daemon-side fields: the sources of the layers the store lacks, and what is put
 * back on failure for the caller to fall back on. */
struct daemon_view {
	char **layers;
	size_t n_layers;
	char *storage_root, *driver;
};

static void view_free(struct daemon_view *v)
{
	for (size_t i = 0; v->layers && i < v->n_layers; i++)
		free(v->layers[i]);
	free(v->layers);
	free(v->storage_root);
	free(v->driver);
	*v = (struct daemon_view){0};
}

static int view_save(const struct ud_image *img, struct daemon_view *v)
{
	*v = (struct daemon_view){calloc(img->n_layers + 1, sizeof(char *)), img->n_layers,
				  strdup(img->storage_root), strdup(img->driver)};
	bool ok = v->layers && v->storage_root && v->driver;
	for (size_t i = 0; ok && i < img->n_layers; i++)
		ok = (v->layers[i] = strdup(img->layers[i])) != NULL;
	if (!ok)
		view_free(v);
	return ok ? 0 : -1;
}

static void view_restore(struct ud_image *img, struct daemon_view *v)
{
	struct daemon_view now = {img->layers, img->n_layers, img->storage_root, img->driver};
	view_free(&now);
	img->layers = v->layers;
	img->n_layers = v->n_layers;
	img->storage_root = v->storage_root;
	img->driver = v->driver;
	img->from_cache = false;
	*v = (struct daemon_view){0};
}

static int fill_store(struct ud_image *img, const char *store, char *const *daemon_layers,
		      int *cache_lock, ud_error *e)
{
	struct ud_cache c;
	struct ud_cache_want w = {0};
	int r = -1;
	if (ud_cache_open(&c, store, e) == 0 && ud_cache_lock_prune(&c, false, cache_lock, e) == 0 &&
	    ud_cache_want_missing(&c, img, &w, e) == 0)
		r = link_missing(&c, &w, daemon_layers, img, e);
	ud_cache_want_release(&w);
	ud_cache_close(&c);
	if (r < 0)
		ud_closep(cache_lock);
	return r;
}

int ud_snapshot_prepare(struct ud_image *img, bool dry_run, int *cache_lock, ud_error *e)
{
	char store[1100];
	struct daemon_view v;
	*cache_lock = -1;
	if (check_pairs(img, e) < 0)
		return -1;
	if (ud_snapshot_store(img, store, sizeof(store)) < 0)
		return ud_fail(e, UD_EXIT_STORAGE, ENAMETOOLONG, "image '%s': storage root %s",
			       img->ref, img->storage_root);
	if (view_save(img, &v) < 0)
		return ud_oom(e);
	int r = ud_cache_point_image(img, store, e);
	if (r == 0 && !dry_run)
		r = fill_store(img, store, v.layers, cache_lock, e);
	if (r < 0) {
		view_restore(img, &v);
		return -1;
	}
	/* The driver stays the daemon's: the layers are its directories, under names of ours. */
	free(img->driver);
	img->driver = ud_steal_ptr(&v.driver);
	img->snapshot = true;
	view_free(&v);
	return 0;
}
