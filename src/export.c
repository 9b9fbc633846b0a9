/* The layer cache: images whose layers the daemon does not give us as directories (containerd
 * image store, btrfs, zfs, vfs, a daemon whose disk we cannot read) are exported and unpacked here.
 *
 *   <cache>/sha256/<hex>/     an unpacked layer, named by its diffID (sha256 of the uncompressed
 *                             tar), in overlayfs's own format (whiteouts are 0/0 char devices,
 *                             opaque directories carry trusted.overlay.opaque=y)
 *   <cache>/l/<20 hex>        short names for mount(2)'s one-page option string
 *   <cache>/tmp/<pid>.XXXXXX  layers being unpacked; renamed into sha256/ only when complete and
 *                             verified, so a crash never leaves a half layer where it is used
 *   <cache>/locks/<hex>.lock  held while a layer is being unpacked: helpers wait for each other
 *   <cache>/users/mnt-<ino>-<boot id>-<mount namespace id>
 *                             the layers a mount namespace uses, for --cache-prune
 *   <cache>/prune.lock        shared by helpers from lookup to record, exclusive by a prune
 *
 * The export is read as it arrives: the outer archive (docker-archive or OCI layout) through
 * libarchive, each layer through a second reader that only decompresses (gzip, zstd or none) so
 * that its bytes can be hashed, and a third that reads those bytes as tar. Layer members are
 * hostile: names are checked, nothing is written through a symlink, hard links stay inside, and
 * the layer lands in the cache only if its digest is the diffID the image config names. Every
 * directory of the cache, and every one above it, is root's alone (cache_trust.c). */
#include "export.h"

#include <archive.h>
#include <archive_entry.h>
#include <ctype.h>
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/openat2.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "cache_trust.h"
#include "util.h"

#define HEX_LEN 64
#define SHORT_LEN 20
#define MAX_CONFIG (16 * 1024 * 1024)

static int sys_openat2(int dirfd, const char *path, int flags, unsigned long long resolve)
{
	struct open_how how = {.flags = (unsigned long long)flags, .resolve = resolve};
	return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
}

static bool is_hex64(const char *s)
{
	for (int i = 0; i < HEX_LEN; i++)
		if (!isxdigit((unsigned char)s[i]) || isupper((unsigned char)s[i]))
			return false;
	return s[HEX_LEN] == '\0' || !isxdigit((unsigned char)s[HEX_LEN]);
}

static const char *digest_hex(const char *digest)
{
	if (strncmp(digest, "sha256:", 7) != 0 || strlen(digest) != 7 + HEX_LEN ||
	    !is_hex64(digest + 7))
		return NULL;
	return digest + 7;
}

int ud_cache_layer_path(const char *cache, const char *diff_id, char *buf, size_t len)
{
	const char *hex = digest_hex(diff_id);
	if (!hex)
		return -1;
	int n = snprintf(buf, len, "%s/sha256/%s", cache, hex);
	return n < 0 || (size_t)n >= len ? -1 : 0;
}

bool ud_member_name_safe(const char *name)
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

bool ud_name_fits(const char *name)
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

int ud_whiteout_kind(const char *name, size_t *target_off)
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

/* libarchive is loaded only when an image is exported: linking it costs every start about 3 ms
 * (a dozen more shared libraries), and most starts use the daemon's own layer directories. */
#define LA_FUNCS(X)                                                                                \
	X(archive_entry_filetype) \
	X(archive_entry_hardlink) \
	X(archive_entry_pathname) \
	X(archive_entry_set_hardlink) \
	X(archive_entry_set_pathname) \
	X(archive_entry_size) \
	X(archive_entry_symlink) \
	X(archive_entry_xattr_add_entry) \
	X(archive_entry_xattr_clear) \
	X(archive_entry_xattr_next) \
	X(archive_entry_xattr_reset) \
	X(archive_errno) \
	X(archive_error_string) \
	X(archive_read_data) \
	X(archive_read_data_block) \
	X(archive_read_free) \
	X(archive_read_new) \
	X(archive_read_next_header) \
	X(archive_read_open) \
	X(archive_read_support_filter_all) \
	X(archive_read_support_format_raw) \
	X(archive_read_support_format_tar) \
	X(archive_set_error) \
	X(archive_write_close) \
	X(archive_write_data_block) \
	X(archive_write_disk_new) \
	X(archive_write_disk_set_options) \
	X(archive_write_finish_entry) \
	X(archive_write_free) \
	X(archive_write_header)

static struct {
#define LA_FIELD(f) __typeof__(&f) f;
	LA_FUNCS(LA_FIELD)
#undef LA_FIELD
} la;

static int la_load(ud_error *e)
{
	static void *handle;
	if (handle)
		return 0;
	void *h = dlopen("libarchive.so.13", RTLD_NOW | RTLD_LOCAL);
	if (!h)
		return ud_fail(e, UD_EXIT_STORAGE, 0, "cannot load libarchive: %s", dlerror());
#define LA_SYM(f)                                                                                  \
	if (!(*(void **)&la.f = dlsym(h, #f))) {                                                   \
		dlclose(h);                                                                        \
		return ud_fail(e, UD_EXIT_STORAGE, 0, "libarchive lacks %s", #f);                  \
	}
	LA_FUNCS(LA_SYM)
#undef LA_SYM
	handle = h;
	return 0;
}

/* ---------------------------------------------------------------- file-system helpers */

/* rm -rf of dirfd/name without following any symlink. */
static int rm_tree_at(int dirfd, const char *name)
{
	if (unlinkat(dirfd, name, 0) == 0 || errno == ENOENT)
		return 0;
	if (errno != EISDIR && errno != EPERM)
		return -1;
	int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -1;
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -1;
	}
	struct dirent *de;
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			rm_tree_at(fd, de->d_name);
	closedir(d);
	return unlinkat(dirfd, name, AT_REMOVEDIR);
}

static long long tree_bytes_at(int dirfd, const char *name)
{
	struct stat st;
	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return 0;
	long long total = (long long)st.st_blocks * 512;
	if (!S_ISDIR(st.st_mode))
		return total;
	int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return total;
	}
	struct dirent *de;
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			total += tree_bytes_at(fd, de->d_name);
	closedir(d);
	return total;
}

struct cache {
	const char *dir;
	int fd, sha_fd, tmp_fd, locks_fd, l_fd;
};

static void cache_close(struct cache *c)
{
	ud_closep(&c->fd);
	ud_closep(&c->sha_fd);
	ud_closep(&c->tmp_fd);
	ud_closep(&c->locks_fd);
	ud_closep(&c->l_fd);
}

static int cache_open(struct cache *c, const char *dir, ud_error *e)
{
	*c = (struct cache){.dir = dir, .fd = -1, .sha_fd = -1, .tmp_fd = -1, .locks_fd = -1, .l_fd = -1};
	if ((c->fd = ud_trusted_dir(dir, true, e)) < 0)
		return -1;
	ud_autoclose int users = ud_trusted_subdir(c->fd, dir, "users", true, O_PATH, e);
	if (users < 0 ||
	    (c->sha_fd = ud_trusted_subdir(c->fd, dir, "sha256", true, O_RDONLY, e)) < 0 ||
	    (c->tmp_fd = ud_trusted_subdir(c->fd, dir, "tmp", true, O_RDONLY, e)) < 0 ||
	    (c->locks_fd = ud_trusted_subdir(c->fd, dir, "locks", true, O_PATH, e)) < 0 ||
	    (c->l_fd = ud_trusted_subdir(c->fd, dir, "l", true, O_PATH, e)) < 0)
		return -1;
	return 0;
}

/* 1: sha256/<hex> is there, root's and writable by root alone (as we make them); 0: missing. */
static int layer_state(const struct cache *c, const char *hex, ud_error *e)
{
	struct stat st;
	if (fstatat(c->sha_fd, hex, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0
				       : ud_fail(e, UD_EXIT_STORAGE, errno, "layer cache %s/sha256/%s",
						 c->dir, hex);
	if (!S_ISDIR(st.st_mode) || st.st_uid != 0 || (st.st_mode & (S_IWGRP | S_IWOTH)))
		return ud_fail(e, UD_EXIT_STORAGE, 0,
			       "layer cache: %s/sha256/%s is not a directory of root's alone "
			       "(uid %u, mode %04o; refused)",
			       c->dir, hex, (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777));
	return 1;
}

static bool cached(const struct cache *c, const char *hex)
{
	return layer_state(c, hex, NULL) == 1;
}

/* A tmp entry is stale when nobody holds its lock (the unpacking helper keeps an flock on the
 * directory itself until it is done) and it is not brand new: between mkdtemp() and flock()
 * there is an instant without the lock. "New" is our pid-named helper still alive, or a minute;
 * the pid alone is no proof (under emperor-use-clone = pid another vassal's helper has a pid we
 * cannot see, and pids are reused). */
static void clean_stale_tmp(struct cache *c)
{
	int fd = openat(c->fd, "tmp", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return;
	}
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		ud_autoclose int e = openat(c->tmp_fd, de->d_name,
					    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		struct stat st;
		if (e < 0 || fstat(e, &st) < 0 || flock(e, LOCK_EX | LOCK_NB) < 0)
			continue;
		long pid = strtol(de->d_name, NULL, 10);
		bool pid_gone = pid > 0 && kill((pid_t)pid, 0) < 0 && errno == ESRCH;
		if (pid_gone || time(NULL) - st.st_mtime > 60)
			rm_tree_at(c->tmp_fd, de->d_name);
	}
	closedir(d);
}

/* ---------------------------------------------------------------- one layer */

struct want {
	char **hex;    /* diffIDs still missing, sorted */
	size_t n;
	bool *done;
};

static int want_index(const struct want *w, const char *hex)
{
	for (size_t i = 0; i < w->n; i++)
		if (!strcmp(w->hex[i], hex))
			return (int)i;
	return -1;
}

struct pull {
	struct archive *from; /* the archive whose current entry's data we read */
	EVP_MD_CTX *md;       /* hashes what passes, if set */
	char buf[64 * 1024];
	ud_error *e;
};

static la_ssize_t pull_read(struct archive *a, void *client, const void **buf)
{
	(void)a;
	struct pull *p = client;
	la_ssize_t n = la.archive_read_data(p->from, p->buf, sizeof(p->buf));
	if (n < 0) {
		la.archive_set_error(a, EIO, "%s", la.archive_error_string(p->from));
		return -1;
	}
	if (n > 0 && p->md)
		EVP_DigestUpdate(p->md, p->buf, (size_t)n);
	*buf = p->buf;
	return n;
}

struct whiteout {
	char *path; /* for kind 1: the path to hide; for kind 2: the opaque directory ("" = root) */
	int kind;
};

static void free_whiteouts(struct whiteout *w, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(w[i].path);
	free(w);
}

/* Opens (creating if missing) a directory inside the layer, refusing any symlink on the way. */
static int open_dir_beneath(int rootfd, const char *path, ud_error *e)
{
	if (!*path)
		return fcntl(rootfd, F_DUPFD_CLOEXEC, 3);
	int fd = sys_openat2(rootfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC,
			     RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
	if (fd >= 0 || errno != ENOENT)
		return fd >= 0 ? fd
			       : ud_fail(e, UD_EXIT_STORAGE, errno,
					 "layer member directory '%s' is not a plain directory", path);
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
	fd = sys_openat2(rootfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC,
			 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
	return fd >= 0 ? fd : ud_fail(e, UD_EXIT_STORAGE, errno, "opening '%s' in a layer", path);
}

static int apply_whiteouts(int rootfd, struct whiteout *w, size_t n, ud_error *e)
{
	for (size_t i = 0; i < n; i++) {
		char dir[4096];
		const char *base = NULL;
		if (w[i].kind == 1) {
			snprintf(dir, sizeof(dir), "%s", w[i].path);
			char *slash = strrchr(dir, '/');
			base = slash ? w[i].path + (slash - dir) + 1 : w[i].path;
			if (slash)
				*slash = '\0';
			else
				dir[0] = '\0';
		} else {
			snprintf(dir, sizeof(dir), "%s", w[i].path);
		}
		ud_autoclose int dfd = open_dir_beneath(rootfd, dir, e);
		if (dfd < 0)
			return -1;
		if (w[i].kind == 2) {
			if (fsetxattr(dfd, "trusted.overlay.opaque", "y", 1, 0) < 0)
				return ud_fail(e, UD_EXIT_STORAGE, errno,
					       "marking '%s' opaque (trusted xattrs needed)", dir);
		} else if (mknodat(dfd, base, S_IFCHR | 0000, makedev(0, 0)) < 0 && errno != EEXIST) {
			return ud_fail(e, UD_EXIT_STORAGE, errno, "whiteout for '%s'", w[i].path);
		}
	}
	return 0;
}

/* Overlayfs reads trusted.overlay.* on lower layers (redirects, metacopy, opaque): only we set
 * those. Everything else (security.capability, user.*, ACLs) stays as the tar says. */
static void drop_overlay_xattrs(struct archive_entry *ent)
{
	if (la.archive_entry_xattr_reset(ent) == 0)
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
	while (la.archive_entry_xattr_next(ent, &name, &val, &len) == ARCHIVE_OK) {
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
		la.archive_entry_xattr_clear(ent);
		for (size_t i = 0; i < nk; i++)
			la.archive_entry_xattr_add_entry(ent, keep[i].name, keep[i].val, keep[i].len);
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

/* What one layer has unpacked so far, against ud_cache_limits. */
struct tally {
	uint64_t files, bytes, apparent;
};

static int over_limit(const char *layer, const char *what, uint64_t limit, const char *option,
		      ud_error *e)
{
	return ud_fail(e, UD_EXIT_STORAGE, 0, "%s: the layer has more than %" PRIu64 " %s (%s)",
		       layer, limit, what, option);
}

/* Refused before anything of the member is written: names that do not fit (they would be cut
 * short), and a member past the number or apparent-size limit. */
static int check_member(struct archive_entry *ent, struct tally *t, const char *layer,
			ud_error *e)
{
	const char *names[3] = {la.archive_entry_pathname(ent), la.archive_entry_hardlink(ent),
				la.archive_entry_symlink(ent)};
	static const char *const kinds[3] = {"member name", "hard link target",
					     "symbolic link target"};
	for (int i = 0; i < 3; i++)
		if (names[i] && !ud_name_fits(names[i]))
			return ud_fail(e, UD_EXIT_STORAGE, 0,
				       "layer %s: %s '%.80s...' (%zu bytes) is longer than PATH_MAX "
				       "(%d) or has a component longer than NAME_MAX (%d)",
				       layer, kinds[i], names[i], strlen(names[i]), PATH_MAX,
				       NAME_MAX);
	const struct ud_cache_limits *l = &ud_cache_limits;
	if (++t->files > l->max_files)
		return over_limit(layer, "members", l->max_files, "--cache-max-files", e);
	la_int64_t size = la.archive_entry_size(ent);
	if (la.archive_entry_filetype(ent) == AE_IFREG && size > 0 &&
	    (t->apparent += (uint64_t)size) > l->max_apparent)
		return over_limit(layer, "bytes of apparent file size", l->max_apparent,
				  "--cache-max-apparent", e);
	return 0;
}

/* Copies the current member's data; sparse members keep their holes. */
static int copy_data(struct archive *in, struct archive *out, struct tally *t, const char *layer,
		     const char *name, ud_error *e)
{
	const void *buf;
	size_t size;
	la_int64_t offset;
	int d;
	while ((d = la.archive_read_data_block(in, &buf, &size, &offset)) == ARCHIVE_OK) {
		if ((t->bytes += size) > ud_cache_limits.max_bytes)
			return over_limit(layer, "bytes of data", ud_cache_limits.max_bytes,
					  "--cache-max-bytes", e);
		if (la.archive_write_data_block(out, buf, size, offset) < ARCHIVE_WARN)
			return ud_fail(e, UD_EXIT_STORAGE, la.archive_errno(out) > 0 ? la.archive_errno(out) : 0,
				       "layer %s: member '%s': %s", layer, name,
				       la.archive_error_string(out));
	}
	if (d != ARCHIVE_EOF)
		return ud_fail(e, UD_EXIT_STORAGE, 0, "layer %s: member '%s': %s", layer, name,
			       la.archive_error_string(in));
	return 0;
}

/* Extracts the tar in `in` (already positioned) into rootfd, which is also our cwd. */
static int extract_tar(struct archive *in, int rootfd, const char *layer, ud_error *e)
{
	struct archive *out = la.archive_write_disk_new();
	if (!out)
		return ud_fail(e, UD_EXIT_REFUSED, ENOMEM, "out of memory");
	la.archive_write_disk_set_options(out, ARCHIVE_EXTRACT_OWNER | ARCHIVE_EXTRACT_PERM |
						    ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_XATTR |
						    ARCHIVE_EXTRACT_ACL |
						    ARCHIVE_EXTRACT_SECURE_SYMLINKS |
						    ARCHIVE_EXTRACT_SECURE_NODOTDOT |
						    ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS);
	struct whiteout *wo = NULL;
	size_t n_wo = 0;
	struct tally tally = {0};
	int r = 0;
	for (;;) {
		struct archive_entry *ent;
		int h = la.archive_read_next_header(in, &ent);
		if (h == ARCHIVE_EOF)
			break;
		if (h < ARCHIVE_WARN) {
			r = ud_fail(e, UD_EXIT_STORAGE, 0, "layer %s: broken tar: %s", layer,
				    la.archive_error_string(in));
			break;
		}
		if (check_member(ent, &tally, layer, e) < 0) {
			r = -1;
			break;
		}
		/* Copies: setting the entry's names below would overwrite the strings that
		 * la.archive_entry_pathname() and _hardlink() point into. */
		char raw[4096], name_buf[4096], link_buf[4096];
		const char *rp = la.archive_entry_pathname(ent);
		snprintf(raw, sizeof(raw), "%s", rp ? rp : "");
		snprintf(name_buf, sizeof(name_buf), "%s", strip_dot_slash(raw));
		const char *name = rp ? name_buf : NULL;
		if (name && (!*name || !strcmp(name, ".") || !strcmp(name, "./")))
			continue; /* the layer root itself */
		if (!ud_member_name_safe(name)) {
			r = ud_fail(e, UD_EXIT_STORAGE, 0,
				    "layer %s: hostile member '%s' (absolute or '..')", layer,
				    raw);
			break;
		}
		const char *link = la.archive_entry_hardlink(ent);
		if (link) {
			snprintf(link_buf, sizeof(link_buf), "%s", strip_dot_slash(link));
			const char *ln = link_buf;
			/* The target must already be in this layer, reached without symlinks. */
			int t = ud_member_name_safe(ln)
					? sys_openat2(rootfd, ln, O_PATH | O_NOFOLLOW | O_CLOEXEC,
						      RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)
					: -1;
			if (t < 0) {
				r = ud_fail(e, UD_EXIT_STORAGE, 0,
					    "layer %s: hostile hard link '%s' -> '%s' (outside the layer)",
					    layer, raw, ln);
				break;
			}
			close(t);
			la.archive_entry_set_hardlink(ent, ln);
		}
		la.archive_entry_set_pathname(ent, name);
		size_t off = 0;
		int kind = ud_whiteout_kind(name, &off);
		if (kind) {
			struct whiteout *nw = realloc(wo, (n_wo + 1) * sizeof(*wo));
			if (!nw) {
				r = ud_fail(e, UD_EXIT_REFUSED, ENOMEM, "out of memory");
				break;
			}
			wo = nw;
			if (kind == 1) {
				/* "dir/.wh.NAME" hides "dir/NAME" */
				size_t dl = off - 4;
				wo[n_wo].path = malloc(strlen(name) + 1);
				if (wo[n_wo].path) {
					memcpy(wo[n_wo].path, name, dl);
					strcpy(wo[n_wo].path + dl, name + off);
				}
			} else {
				const char *slash = strrchr(name, '/');
				wo[n_wo].path = strndup(name, slash ? (size_t)(slash - name) : 0);
			}
			wo[n_wo].kind = kind;
			if (!wo[n_wo++].path) {
				r = ud_fail(e, UD_EXIT_REFUSED, ENOMEM, "out of memory");
				break;
			}
			continue;
		}
		drop_overlay_xattrs(ent);
		if (la.archive_write_header(out, ent) < ARCHIVE_WARN) {
			r = ud_fail(e, UD_EXIT_STORAGE, la.archive_errno(out) > 0 ? la.archive_errno(out) : 0,
				    "layer %s: member '%s' refused: %s", layer, name,
				    la.archive_error_string(out));
			break;
		}
		if (la.archive_entry_size(ent) > 0 && copy_data(in, out, &tally, layer, name, e) < 0) {
			r = -1;
			break;
		}
		if (la.archive_write_finish_entry(out) < ARCHIVE_WARN) {
			r = ud_fail(e, UD_EXIT_STORAGE, 0, "layer %s: member '%s': %s", layer, name,
				    la.archive_error_string(out));
			break;
		}
	}
	/* Whiteouts before the close: it sets the directories' times last, as the tar says. */
	if (r == 0)
		r = apply_whiteouts(rootfd, wo, n_wo, e);
	if (la.archive_write_close(out) < ARCHIVE_WARN && r == 0)
		r = ud_fail(e, UD_EXIT_STORAGE, 0, "layer %s: %s", layer, la.archive_error_string(out));
	la.archive_write_free(out);
	free_whiteouts(wo, n_wo);
	return r;
}

static void hex_of(const unsigned char *md, char *out)
{
	for (int i = 0; i < 32; i++)
		sprintf(out + 2 * i, "%02x", md[i]);
}

/* The current entry of `outer` is a layer blob (plain, gzip or zstd tar). Unpack it into a tmp
 * dir while hashing the uncompressed bytes; keep it if its digest is wanted. */
static int unpack_layer(struct archive *outer, struct cache *c, struct want *w, const char *what,
			bool must_be_layer, ud_error *e)
{
	char tmpbase[64];
	ud_autoclose int rootfd = ud_mkdtemp_at(c->tmp_fd, tmpbase, sizeof(tmpbase), e);
	if (rootfd < 0)
		return -1;
	ud_autoclose int cwd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	/* Held until the end: this tmp dir is not stale while we are alive (see clean_stale_tmp). */
	flock(rootfd, LOCK_EX);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	struct archive *raw = la.archive_read_new(), *tar = la.archive_read_new();
	int r = -1;
	if (cwd < 0 || !md || !raw || !tar) {
		ud_fail(e, UD_EXIT_STORAGE, errno, "preparing to unpack %s", what);
		goto out;
	}
	/* libarchive's disk writer works on paths relative to the cwd. */
	if (fchmod(rootfd, 0755) < 0 || fchdir(rootfd) < 0) {
		ud_fail(e, UD_EXIT_STORAGE, errno, "entering %s/tmp/%s", c->dir, tmpbase);
		goto out;
	}
	EVP_DigestInit_ex(md, EVP_sha256(), NULL);
	struct pull from_outer = {.from = outer, .e = e};
	la.archive_read_support_filter_all(raw);
	la.archive_read_support_format_raw(raw);
	struct archive_entry *ent;
	if (la.archive_read_open(raw, &from_outer, NULL, pull_read, NULL) != ARCHIVE_OK ||
	    la.archive_read_next_header(raw, &ent) != ARCHIVE_OK) {
		ud_fail(e, UD_EXIT_STORAGE, 0, "%s: cannot read the layer: %s", what,
			la.archive_error_string(raw));
		goto out;
	}
	struct pull from_raw = {.from = raw, .md = md, .e = e};
	la.archive_read_support_format_tar(tar);
	if (la.archive_read_open(tar, &from_raw, NULL, pull_read, NULL) != ARCHIVE_OK) {
		/* An OCI blob we could not place by its name may be a manifest or an index. */
		if (!must_be_layer)
			r = 0;
		else
			ud_fail(e, UD_EXIT_STORAGE, 0, "%s: not a tar: %s", what,
				la.archive_error_string(tar));
		goto out;
	}
	if (extract_tar(tar, rootfd, what, e) < 0)
		goto out;
	/* The digest covers the whole uncompressed stream, padding after the tar's end included. */
	char sink[64 * 1024];
	la_ssize_t n;
	while ((n = la.archive_read_data(raw, sink, sizeof(sink))) > 0)
		EVP_DigestUpdate(md, sink, (size_t)n);
	if (n < 0) {
		ud_fail(e, UD_EXIT_STORAGE, 0, "%s: %s", what, la.archive_error_string(raw));
		goto out;
	}
	unsigned char digest[32];
	char hex[HEX_LEN + 1];
	EVP_DigestFinal_ex(md, digest, NULL);
	hex_of(digest, hex);
	int idx = want_index(w, hex);
	if (idx >= 0 && !w->done[idx]) {
		/* The short name first: a crash between the two leaves a dangling link, never a
		 * cached layer without its name. */
		char link[64], target[128];
		snprintf(link, sizeof(link), "%.*s", SHORT_LEN, hex);
		snprintf(target, sizeof(target), "../sha256/%s", hex);
		unlinkat(c->l_fd, link, 0);
		if (symlinkat(target, c->l_fd, link) < 0) {
			ud_fail(e, UD_EXIT_STORAGE, errno, "short name for layer sha256:%s", hex);
			goto out;
		}
		if (renameat(c->tmp_fd, tmpbase, c->sha_fd, hex) < 0) {
			ud_fail(e, UD_EXIT_STORAGE, errno, "moving layer sha256:%s into the cache", hex);
			goto out;
		}
		w->done[idx] = true;
	}
	r = 0;
out:
	if (cwd >= 0 && fchdir(cwd) < 0)
		r = ud_fail(e, UD_EXIT_STORAGE, errno, "returning to the working directory");
	if (raw)
		la.archive_read_free(raw);
	if (tar)
		la.archive_read_free(tar);
	if (md)
		EVP_MD_CTX_free(md);
	/* Whatever was not moved into place (unwanted, failed, mismatched) goes. */
	rm_tree_at(c->tmp_fd, tmpbase);
	return r;
}

/* ---------------------------------------------------------------- the export */

struct outer_src {
	ud_stream *s;
	ud_error se; /* the stream's own error: it wins over what libarchive makes of it */
	bool failed;
};

static la_ssize_t outer_read(struct archive *a, void *client, const void **buf)
{
	struct outer_src *o = client;
	long n = ud_stream_read(o->s, buf, &o->se);
	if (n < 0) {
		o->failed = true;
		la.archive_set_error(a, EIO, "export stream failed");
		return -1;
	}
	return n;
}

/* Reads a small entry whole (configs). */
static char *read_small(struct archive *a, size_t *len)
{
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap);
	while (buf) {
		if (n == cap) {
			if (cap >= MAX_CONFIG) {
				free(buf);
				return NULL;
			}
			char *nb = realloc(buf, cap * 2);
			if (!nb) {
				free(buf);
				return NULL;
			}
			buf = nb;
			cap *= 2;
		}
		la_ssize_t r = la.archive_read_data(a, buf + n, cap - n);
		if (r < 0) {
			free(buf);
			return NULL;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	*len = n;
	return buf;
}

static bool sha256_is(const char *data, size_t len, const char *hex)
{
	unsigned char md[32];
	char got[HEX_LEN + 1];
	unsigned int mdlen = 0;
	EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
	hex_of(md, got);
	return strcmp(got, hex) == 0;
}

static int export_layers(struct ud_docker *d, const struct ud_image *img, struct cache *c,
			 struct want *w, ud_error *e)
{
	const char *id_hex = digest_hex(img->id);
	if (!id_hex)
		return ud_fail(e, UD_EXIT_STORAGE, 0, "image '%s' has an unexpected id '%s'", img->ref,
			       img->id);
	if (la_load(e) < 0)
		return -1;
	char path[256];
	snprintf(path, sizeof(path), "/v%s/images/%s/get", d->api, img->id);
	ud_stream *s = NULL;
	if (ud_docker_stream_open(d, path, &s, e) < 0)
		return -1;
	struct outer_src src = {.s = s};
	struct archive *outer = la.archive_read_new();
	la.archive_read_support_format_tar(outer);
	int r = -1;
	bool config_ok = false;
	if (la.archive_read_open(outer, &src, NULL, outer_read, NULL) != ARCHIVE_OK) {
		if (!src.failed)
			ud_fail(e, UD_EXIT_DAEMON, 0, "image '%s': the export is not a tar archive: %s",
				img->ref, la.archive_error_string(outer));
		goto out;
	}
	for (;;) {
		struct archive_entry *ent;
		int h = la.archive_read_next_header(outer, &ent);
		if (h == ARCHIVE_EOF)
			break;
		if (h < ARCHIVE_WARN) {
			if (!src.failed)
				ud_fail(e, UD_EXIT_DAEMON, 0, "image '%s': broken export archive: %s",
					img->ref, la.archive_error_string(outer));
			goto out;
		}
		const char *name = strip_dot_slash(la.archive_entry_pathname(ent));
		if (la.archive_entry_filetype(ent) != AE_IFREG)
			continue;
		/* docker-archive: <config hex>.json, and layers as <v1 id>/layer.tar (Docker) or
		 * <diffID hex>.tar (Podman); OCI layout: blobs/sha256/<hex> for everything. */
		size_t nl = strlen(name);
		bool top = !strchr(name, '/');
		bool blob = !strncmp(name, "blobs/sha256/", 13) && nl == 13 + HEX_LEN &&
			    is_hex64(name + 13);
		bool hex_json = top && nl == HEX_LEN + 5 && is_hex64(name) &&
				!strcmp(name + HEX_LEN, ".json");
		bool hex_tar = top && nl == HEX_LEN + 4 && is_hex64(name) &&
			       !strcmp(name + HEX_LEN, ".tar");
		bool layer_tar = nl >= 9 && !strcmp(name + nl - 9, "layer.tar") &&
				 (nl == 9 || name[nl - 10] == '/');
		char named[HEX_LEN + 1] = "";
		if (blob || hex_json || hex_tar)
			snprintf(named, sizeof(named), "%.64s", blob ? name + 13 : name);
		if ((blob || hex_json) && !strcmp(named, id_hex)) {
			size_t len;
			char *cfg = read_small(outer, &len);
			if (!cfg || !sha256_is(cfg, len, id_hex)) {
				free(cfg);
				ud_fail(e, UD_EXIT_STORAGE, 0,
					"image '%s': the exported config does not match the image id %s",
					img->ref, img->id);
				goto out;
			}
			free(cfg);
			config_ok = true;
			continue;
		}
		bool all = true;
		for (size_t i = 0; i < w->n; i++)
			all = all && w->done[i];
		if (all || hex_json)
			continue;
		bool must = layer_tar || hex_tar;
		if (blob || hex_tar) {
			/* Named by a digest: a diffID we have needs no reading. Otherwise it may be a
			 * layer (compressed blobs are named by another digest) or JSON. */
			int idx = want_index(w, named);
			if (idx >= 0 ? w->done[idx] : cached(c, named))
				continue;
			must = must || idx >= 0;
		} else if (!layer_tar) {
			continue;
		}
		char what[160];
		snprintf(what, sizeof(what), "image '%s' member %.100s", img->ref, name);
		if (unpack_layer(outer, c, w, what, must, e) < 0)
			goto out;
	}
	for (size_t i = 0; i < w->n; i++)
		if (!w->done[i]) {
			ud_fail(e, UD_EXIT_STORAGE, 0,
				"image '%s': no layer in the export has diffID sha256:%s "
				"(digest mismatch or missing layer)",
				img->ref, w->hex[i]);
			goto out;
		}
	if (!config_ok) {
		ud_fail(e, UD_EXIT_STORAGE, 0,
			"image '%s': the export carries no config matching the image id %s", img->ref,
			img->id);
		goto out;
	}
	r = 0;
out:
	if (r < 0 && src.failed && e)
		*e = src.se;
	la.archive_read_free(outer);
	ud_stream_close(s);
	return r;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int ud_cache_prepare(struct ud_docker *d, struct ud_image *img, const char *cache, bool dry_run,
		     int *cache_lock, ud_error *e)
{
	*cache_lock = -1;
	if (img->n_diff_ids == 0)
		return ud_fail(e, UD_EXIT_STORAGE, 0, "image '%s' lists no layers (RootFS.Layers)",
			       img->ref);
	if (img->n_diff_ids > UD_MAX_LAYERS)
		return ud_fail(e, UD_EXIT_STORAGE, 0, "image '%s' has more than %d layers", img->ref,
			       UD_MAX_LAYERS);
	if (cache[0] != '/' || strpbrk(cache, ",:\\") || strlen(cache) > 1024)
		return ud_fail(e, UD_EXIT_USAGE, 0,
			       "--cache-dir must be an absolute path without ',' ':' or '\\'");
	/* The stack, top to bottom: RootFS.Layers lists bottom to top. */
	char **layers = calloc(img->n_diff_ids + 1, sizeof(char *));
	if (!layers)
		return ud_fail(e, UD_EXIT_REFUSED, ENOMEM, "out of memory");
	/* A diffID may repeat (empty layers often do); overlayfs refuses a directory twice in one
	 * stack, and the topmost occurrence alone gives the same tree. */
	size_t n = 0;
	for (size_t i = 0; i < img->n_diff_ids; i++) {
		char p[1200];
		const char *diff = img->diff_ids[img->n_diff_ids - 1 - i];
		if (ud_cache_layer_path(cache, diff, p, sizeof(p)) < 0) {
			for (size_t j = 0; j < n; j++)
				free(layers[j]);
			free(layers);
			return ud_fail(e, UD_EXIT_STORAGE, 0, "image '%s': bad diffID '%s'", img->ref,
				       diff);
		}
		bool dup = false;
		for (size_t j = 0; j < n && !dup; j++)
			dup = !strcmp(layers[j], p);
		if (!dup && !(layers[n++] = strdup(p))) {
			for (size_t j = 0; j + 1 < n; j++)
				free(layers[j]);
			free(layers);
			return ud_fail(e, UD_EXIT_REFUSED, ENOMEM, "out of memory");
		}
	}
	for (size_t i = 0; i < img->n_layers; i++)
		free(img->layers[i]);
	free(img->layers);
	img->layers = layers;
	img->n_layers = n;
	free(img->storage_root);
	free(img->driver);
	img->storage_root = strdup(cache);
	img->driver = strdup("export");
	img->from_cache = true;
	if (!img->storage_root || !img->driver)
		return ud_fail(e, UD_EXIT_REFUSED, ENOMEM, "out of memory");
	if (dry_run)
		return 0;

	struct cache c;
	int r = -1;
	struct want w = {0};
	int *locks = NULL;
	if (cache_open(&c, cache, e) < 0)
		goto out;
	*cache_lock = openat(c.fd, "prune.lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (*cache_lock < 0 || flock(*cache_lock, LOCK_SH) < 0) {
		ud_fail(e, UD_EXIT_STORAGE, errno, "locking %s/prune.lock", cache);
		goto out;
	}
	w.hex = calloc(img->n_diff_ids, sizeof(char *));
	w.done = calloc(img->n_diff_ids, sizeof(bool));
	locks = malloc(img->n_diff_ids * sizeof(int));
	if (!w.hex || !w.done || !locks) {
		ud_fail(e, UD_EXIT_REFUSED, ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < img->n_diff_ids; i++) {
		const char *hex = digest_hex(img->diff_ids[i]);
		int st = layer_state(&c, hex, e);
		if (st < 0)
			goto out;
		if (!st && want_index(&w, hex) < 0)
			w.hex[w.n++] = (char *)hex;
	}
	if (w.n == 0) {
		r = 0;
		goto out;
	}
	/* Lock every missing layer, in one order for all helpers (no deadlock), then look again:
	 * whoever held a lock before us may have unpacked it. */
	qsort(w.hex, w.n, sizeof(char *), cmp_str);
	size_t n_locks = 0;
	for (size_t i = 0; i < w.n; i++) {
		char name[HEX_LEN + 8];
		snprintf(name, sizeof(name), "%s.lock", w.hex[i]);
		int fd = openat(c.locks_fd, name, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd < 0 || flock(fd, LOCK_EX) < 0) {
			if (fd >= 0)
				close(fd);
			ud_fail(e, UD_EXIT_STORAGE, errno, "locking %s/locks/%s", cache, name);
			goto unlock;
		}
		locks[n_locks++] = fd;
	}
	size_t still = 0;
	for (size_t i = 0; i < w.n; i++) {
		int st = layer_state(&c, w.hex[i], e);
		if (st < 0)
			goto unlock;
		if (!st)
			w.hex[still++] = w.hex[i];
	}
	w.n = still;
	clean_stale_tmp(&c);
	r = w.n ? export_layers(d, img, &c, &w, e) : 0;
unlock:
	for (size_t i = 0; i < n_locks; i++)
		close(locks[i]);
out:
	free(locks);
	free(w.hex);
	free(w.done);
	cache_close(&c);
	if (r < 0)
		ud_closep(cache_lock);
	return r;
}

int ud_cache_users_dir(const char *cache, ud_error *e)
{
	ud_autoclose int fd = ud_trusted_dir(cache, false, e);
	return fd < 0 ? -1 : ud_trusted_subdir(fd, cache, "users", false, O_PATH, e);
}

int ud_cache_record_use(int users_dir, const struct ud_image *img, int mnt_ns_fd, ud_error *e)
{
	char name[128];
	if (ud_mntns_record_name(mnt_ns_fd, name, sizeof(name), e) < 0)
		return -1;
	ud_autoclose int fd =
		openat(users_dir, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return ud_fail(e, UD_EXIT_STORAGE, errno, "recording the layers in use");
	for (size_t i = 0; i < img->n_diff_ids; i++)
		if (dprintf(fd, "%s\n", img->diff_ids[i]) < 0)
			return ud_fail(e, UD_EXIT_STORAGE, errno, "recording the layers in use");
	return 0;
}

/* ---------------------------------------------------------------- prune */

struct hexset {
	char **v;
	size_t n, cap;
};

static int hexset_add(struct hexset *s, const char *hex)
{
	for (size_t i = 0; i < s->n; i++)
		if (!strcmp(s->v[i], hex))
			return 0;
	if (s->n == s->cap) {
		size_t ncap = s->cap ? s->cap * 2 : 64;
		char **nv = realloc(s->v, ncap * sizeof(char *));
		if (!nv)
			return -1;
		s->v = nv;
		s->cap = ncap;
	}
	if (!(s->v[s->n] = strdup(hex)))
		return -1;
	s->n++;
	return 0;
}

static bool hexset_has(const struct hexset *s, const char *hex)
{
	for (size_t i = 0; i < s->n; i++)
		if (!strcmp(s->v[i], hex))
			return true;
	return false;
}

static void hexset_free(struct hexset *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
}

int ud_cache_prune(struct ud_docker *d, const char *cache, FILE *out, ud_error *e)
{
	struct cache c;
	struct hexset keep = {0};
	char **ids = NULL;
	size_t n_ids = 0;
	int r = -1;
	ud_autoclose int lock = -1;
	if (cache_open(&c, cache, e) < 0)
		goto out;
	/* Exclusive: no helper is between its lookup and its use record now. */
	lock = openat(c.fd, "prune.lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (lock < 0 || flock(lock, LOCK_EX) < 0) {
		ud_fail(e, UD_EXIT_STORAGE, errno, "locking %s/prune.lock", cache);
		goto out;
	}
	if (ud_docker_list_images(d, &ids, &n_ids, e) < 0)
		goto out;
	for (size_t i = 0; i < n_ids; i++) {
		struct ud_image img;
		if (ud_docker_inspect_raw(d, ids[i], &img, e) < 0) {
			if (e->status == UD_EXIT_IMAGE)
				continue; /* removed meanwhile */
			goto out;
		}
		for (size_t j = 0; j < img.n_diff_ids; j++) {
			const char *hex = digest_hex(img.diff_ids[j]);
			if (hex && hexset_add(&keep, hex) < 0) {
				ud_image_free(&img);
				ud_fail(e, UD_EXIT_REFUSED, ENOMEM, "out of memory");
				goto out;
			}
		}
		ud_image_free(&img);
	}
	/* Layers of live namespaces stay; records of dead ones go. */
	int ufd = openat(c.fd, "users", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	DIR *ud = ufd >= 0 ? fdopendir(ufd) : NULL;
	struct dirent *de;
	while (ud && (de = readdir(ud))) {
		bool valid;
		bool alive = ud_mntns_record_alive(de->d_name, &valid);
		if (!valid)
			continue;
		if (!alive) {
			unlinkat(ufd, de->d_name, 0);
			continue;
		}
		int f = openat(ufd, de->d_name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		FILE *fp = f >= 0 ? fdopen(f, "r") : NULL;
		char line[128];
		while (fp && fgets(line, sizeof(line), fp)) {
			line[strcspn(line, "\n")] = '\0';
			const char *hex = digest_hex(line);
			if (hex)
				hexset_add(&keep, hex);
		}
		if (fp)
			fclose(fp);
		else if (f >= 0)
			close(f);
	}
	if (ud)
		closedir(ud);
	else if (ufd >= 0)
		close(ufd);

	long long freed = 0;
	size_t removed = 0;
	int sfd = openat(c.fd, "sha256", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	DIR *sd = sfd >= 0 ? fdopendir(sfd) : NULL;
	while (sd && (de = readdir(sd))) {
		if (!is_hex64(de->d_name) || strlen(de->d_name) != HEX_LEN ||
		    hexset_has(&keep, de->d_name))
			continue;
		long long bytes = tree_bytes_at(sfd, de->d_name);
		char link[SHORT_LEN + 1];
		snprintf(link, sizeof(link), "%.*s", SHORT_LEN, de->d_name);
		unlinkat(c.l_fd, link, 0);
		if (rm_tree_at(sfd, de->d_name) < 0) {
			ud_fail(e, UD_EXIT_STORAGE, errno, "removing %s/sha256/%s", cache, de->d_name);
			closedir(sd);
			goto out;
		}
		fprintf(out, "removed sha256:%s (%lld bytes)\n", de->d_name, bytes);
		freed += bytes;
		removed++;
	}
	if (sd)
		closedir(sd);
	else if (sfd >= 0)
		close(sfd);
	clean_stale_tmp(&c);
	fprintf(out, "freed %lld bytes in %zu layers\n", freed, removed);
	r = 0;
out:
	for (size_t i = 0; i < n_ids; i++)
		free(ids[i]);
	free(ids);
	hexset_free(&keep);
	cache_close(&c);
	return r;
}
