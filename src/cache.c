/* The layer cache (layout in cache.h): lookups, the locks that let helpers share it, use records
 * and --cache-prune. What goes into a layer directory is layer.c's business; the export that
 * brings the layers is export.c's. */
#include "cache.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cache_trust.h"
#include "layer.h"
#include "util.h"

#define HEX_LEN 64
#define SHORT_LEN 20

bool ud_cache_is_hex(const char *s)
{
	for (int i = 0; i < HEX_LEN; i++)
		if (!isxdigit((unsigned char)s[i]) || isupper((unsigned char)s[i]))
			return false;
	return s[HEX_LEN] == '\0' || !isxdigit((unsigned char)s[HEX_LEN]);
}

const char *ud_cache_digest_hex(const char *digest)
{
	if (strncmp(digest, "sha256:", 7) != 0 || strlen(digest) != 7 + HEX_LEN ||
	    !ud_cache_is_hex(digest + 7))
		return NULL;
	return digest + 7;
}

int ud_cache_layer_path(const char *cache, const char *diff_id, char *buf, size_t len)
{
	const char *hex = ud_cache_digest_hex(diff_id);
	if (!hex)
		return -1;
	int n = snprintf(buf, len, "%s/sha256/%s", cache, hex);
	return n < 0 || (size_t)n >= len ? -1 : 0;
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

/* opendir() of dirfd/name, no symlink followed. */
static DIR *open_dir_at(int dirfd, const char *name)
{
	int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d && fd >= 0)
		close(fd);
	return d;
}

/* ---------------------------------------------------------------- layout */

void ud_cache_close(struct ud_cache *c)
{
	ud_closep(&c->fd);
	ud_closep(&c->sha_fd);
	ud_closep(&c->tmp_fd);
	ud_closep(&c->locks_fd);
	ud_closep(&c->l_fd);
}

int ud_cache_open(struct ud_cache *c, const char *dir, ud_error *e)
{
	*c = (struct ud_cache){
		.dir = dir, .fd = -1, .sha_fd = -1, .tmp_fd = -1, .locks_fd = -1, .l_fd = -1};
	if ((c->fd = ud_cache_trust_dir(dir, true, e)) < 0)
		return -1;
	ud_autoclose int users = ud_cache_trust_subdir(c->fd, dir, "users", true, O_PATH, e);
	if (users < 0 ||
	    (c->sha_fd = ud_cache_trust_subdir(c->fd, dir, "sha256", true, O_RDONLY, e)) < 0 ||
	    (c->tmp_fd = ud_cache_trust_subdir(c->fd, dir, "tmp", true, O_RDONLY, e)) < 0 ||
	    (c->locks_fd = ud_cache_trust_subdir(c->fd, dir, "locks", true, O_PATH, e)) < 0 ||
	    (c->l_fd = ud_cache_trust_subdir(c->fd, dir, "l", true, O_PATH, e)) < 0)
		return -1;
	return 0;
}

/* 1: sha256/<hex> is there, root's and writable by root alone (as we make them); 0: missing. */
static int layer_state(const struct ud_cache *c, const char *hex, ud_error *e)
{
	struct stat st;
	if (fstatat(c->sha_fd, hex, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 :
					 ud_fail(e, UD_EXIT_STORAGE, errno,
						 "layer cache %s/sha256/%s", c->dir, hex);
	if (!S_ISDIR(st.st_mode) || st.st_uid != 0 || (st.st_mode & (S_IWGRP | S_IWOTH)))
		return ud_fail(e, UD_EXIT_STORAGE, 0,
			       "layer cache: %s/sha256/%s is not a directory of root's alone "
			       "(uid %u, mode %04o; refused)",
			       c->dir, hex, (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777));
	return 1;
}

bool ud_cache_has(const struct ud_cache *c, const char *hex)
{
	return layer_state(c, hex, NULL) == 1;
}

static void free_strings(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

int ud_cache_point_image(struct ud_image *img, const char *cache, ud_error *e)
{
	/* The stack, top to bottom: RootFS.Layers lists bottom to top. */
	char **layers = calloc(img->n_diff_ids + 1, sizeof(char *));
	if (!layers)
		return ud_oom(e);
	/* A diffID may repeat (empty layers often do); overlayfs refuses a directory twice in one
	 * stack, and the topmost occurrence alone gives the same tree. */
	size_t n = 0;
	for (size_t i = 0; i < img->n_diff_ids; i++) {
		char p[1200];
		const char *diff = img->diff_ids[img->n_diff_ids - 1 - i];
		if (ud_cache_layer_path(cache, diff, p, sizeof(p)) < 0) {
			free_strings(layers, n);
			return ud_fail(e, UD_EXIT_STORAGE, 0, "image '%s': bad diffID '%s'",
				       img->ref, diff);
		}
		bool dup = false;
		for (size_t j = 0; j < n && !dup; j++)
			dup = !strcmp(layers[j], p);
		if (!dup && !(layers[n++] = strdup(p))) {
			free_strings(layers, n - 1);
			return ud_oom(e);
		}
	}
	free_strings(img->layers, img->n_layers);
	img->layers = layers;
	img->n_layers = n;
	free(img->storage_root);
	free(img->driver);
	img->storage_root = strdup(cache);
	img->driver = strdup("export");
	img->from_cache = true;
	return !img->storage_root || !img->driver ? ud_oom(e) : 0;
}

/* ---------------------------------------------------------------- locks */

int ud_cache_lock_prune(const struct ud_cache *c, bool exclusive, int *lock, ud_error *e)
{
	*lock = openat(c->fd, "prune.lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (*lock < 0 || flock(*lock, exclusive ? LOCK_EX : LOCK_SH) < 0)
		return ud_fail(e, UD_EXIT_STORAGE, errno, "locking %s/prune.lock", c->dir);
	return 0;
}

/* A tmp entry is stale when nobody holds its lock (the unpacking helper keeps an flock on the
 * directory itself until it is done) and it is not brand new: between mkdtemp() and flock()
 * there is an instant without the lock. "New" is our pid-named helper still alive, or a minute;
 * the pid alone is no proof (under emperor-use-clone = pid another vassal's helper has a pid we
 * cannot see, and pids are reused). */
static void clean_stale_tmp(const struct ud_cache *c)
{
	DIR *d = open_dir_at(c->fd, "tmp");
	struct dirent *de;
	while (d && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		ud_autoclose int fd = openat(c->tmp_fd, de->d_name,
					     O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		struct stat st;
		if (fd < 0 || fstat(fd, &st) < 0 || flock(fd, LOCK_EX | LOCK_NB) < 0)
			continue;
		long pid = strtol(de->d_name, NULL, 10);
		bool pid_gone = pid > 0 && kill((pid_t)pid, 0) < 0 && errno == ESRCH;
		if (pid_gone || time(NULL) - st.st_mtime > 60)
			rm_tree_at(c->tmp_fd, de->d_name);
	}
	if (d)
		closedir(d);
}

int ud_cache_want_index(const struct ud_cache_want *w, const char *hex)
{
	for (size_t i = 0; i < w->n; i++)
		if (!strcmp(w->hex[i], hex))
			return (int)i;
	return -1;
}

bool ud_cache_want_all_done(const struct ud_cache_want *w)
{
	for (size_t i = 0; i < w->n; i++)
		if (!w->done[i])
			return false;
	return true;
}

void ud_cache_want_release(struct ud_cache_want *w)
{
	for (size_t i = 0; i < w->n_locks; i++)
		close(w->locks[i]);
	free(w->locks);
	free(w->hex);
	free(w->done);
	*w = (struct ud_cache_want){0};
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Keeps in w those of its layers that the cache still lacks. */
static int drop_cached(const struct ud_cache *c, struct ud_cache_want *w, ud_error *e)
{
	size_t still = 0;
	for (size_t i = 0; i < w->n; i++) {
		int st = layer_state(c, w->hex[i], e);
		if (st < 0)
			return -1;
		if (!st)
			w->hex[still++] = w->hex[i];
	}
	w->n = still;
	return 0;
}

int ud_cache_want_missing(const struct ud_cache *c, const struct ud_image *img,
			  struct ud_cache_want *w, ud_error *e)
{
	*w = (struct ud_cache_want){0};
	w->hex = calloc(img->n_diff_ids, sizeof(char *));
	w->done = calloc(img->n_diff_ids, sizeof(bool));
	w->locks = malloc(img->n_diff_ids * sizeof(int));
	if (!w->hex || !w->done || !w->locks)
		return ud_oom(e);
	for (size_t i = 0; i < img->n_diff_ids; i++) {
		const char *hex = ud_cache_digest_hex(img->diff_ids[i]);
		if (ud_cache_want_index(w, hex) < 0)
			w->hex[w->n++] = (char *)hex;
	}
	if (drop_cached(c, w, e) < 0)
		return -1;
	if (w->n == 0)
		return 0;
	/* Lock every missing layer, in one order for all helpers (no deadlock), then look again:
	 * whoever held a lock before us may have unpacked it. */
	qsort(w->hex, w->n, sizeof(char *), cmp_str);
	for (size_t i = 0; i < w->n; i++) {
		char name[HEX_LEN + 8];
		snprintf(name, sizeof(name), "%s.lock", w->hex[i]);
		ud_autoclose int fd =
			openat(c->locks_fd, name, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd < 0 || flock(fd, LOCK_EX) < 0)
			return ud_fail(e, UD_EXIT_STORAGE, errno, "locking %s/locks/%s", c->dir,
				       name);
		w->locks[w->n_locks++] = ud_steal_fd(&fd);
	}
	if (drop_cached(c, w, e) < 0)
		return -1;
	clean_stale_tmp(c);
	return 0;
}

/* ---------------------------------------------------------------- adding a layer */

/* The short name first: a crash between the two leaves a dangling link, never a cached layer
 * without its name. */
static int place_layer(struct ud_cache *c, const char *tmpname, const char *hex, ud_error *e)
{
	char link[64], target[128];
	snprintf(link, sizeof(link), "%.*s", SHORT_LEN, hex);
	snprintf(target, sizeof(target), "../sha256/%s", hex);
	unlinkat(c->l_fd, link, 0);
	if (symlinkat(target, c->l_fd, link) < 0)
		return ud_fail(e, UD_EXIT_STORAGE, errno, "short name for layer sha256:%s", hex);
	if (renameat(c->tmp_fd, tmpname, c->sha_fd, hex) < 0)
		return ud_fail(e, UD_EXIT_STORAGE, errno, "moving layer sha256:%s into the cache",
			       hex);
	return 0;
}

int ud_cache_unpack_entry(struct ud_cache *c, struct ud_cache_want *w, struct archive *outer,
			  const char *what, bool must_be_layer, ud_error *e)
{
	char tmpname[64], hex[HEX_LEN + 1];
	ud_autoclose int rootfd = ud_cache_trust_mkdtemp(c->tmp_fd, tmpname, sizeof(tmpname), e);
	if (rootfd < 0)
		return -1;
	/* Held until the end: this tmp dir is not stale while we are alive (see clean_stale_tmp). */
	flock(rootfd, LOCK_EX);
	int r = ud_layer_unpack_entry(outer, rootfd, what, must_be_layer, hex, e);
	if (r == 1) {
		int idx = ud_cache_want_index(w, hex);
		r = 0;
		if (idx >= 0 && !w->done[idx] && (r = place_layer(c, tmpname, hex, e)) == 0)
			w->done[idx] = true;
	}
	/* Whatever was not moved into place (unwanted, failed, mismatched) goes. */
	rm_tree_at(c->tmp_fd, tmpname);
	return r;
}

int ud_cache_add_layer(struct ud_cache *c, struct ud_cache_want *w, const char *hex,
		       int (*fill)(int rootfd, void *arg, ud_error *e), void *arg, ud_error *e)
{
	int idx = ud_cache_want_index(w, hex);
	if (idx < 0 || w->done[idx])
		return 0;
	char tmpname[64];
	ud_autoclose int rootfd = ud_cache_trust_mkdtemp(c->tmp_fd, tmpname, sizeof(tmpname), e);
	if (rootfd < 0)
		return -1;
	flock(rootfd, LOCK_EX); /* not stale while we are alive (see clean_stale_tmp) */
	int r = fchmod(rootfd, 0755) < 0 ? ud_fail(e, UD_EXIT_STORAGE, errno, "tmp/%s", tmpname)
					 : fill(rootfd, arg, e);
	if (r == 0 && (r = place_layer(c, tmpname, hex, e)) == 0)
		w->done[idx] = true;
	rm_tree_at(c->tmp_fd, tmpname);
	return r;
}

/* ---------------------------------------------------------------- use records */

int ud_cache_users_dir(const char *cache, ud_error *e)
{
	ud_autoclose int fd = ud_cache_trust_dir(cache, false, e);
	return fd < 0 ? -1 : ud_cache_trust_subdir(fd, cache, "users", false, O_PATH, e);
}

int ud_cache_record_use(int users_dir, const struct ud_image *img, int mnt_ns_fd, ud_error *e)
{
	char name[128];
	if (ud_cache_trust_record_name(mnt_ns_fd, name, sizeof(name), e) < 0)
		return -1;
	ud_autoclose int fd = openat(users_dir, name,
				     O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return ud_fail(e, UD_EXIT_STORAGE, errno, "recording the layers in use");
	for (size_t i = 0; i < img->n_diff_ids; i++)
		if (dprintf(fd, "%s\n", img->diff_ids[i]) < 0)
			return ud_fail(e, UD_EXIT_STORAGE, errno, "recording the layers in use");
	return 0;
}

/* ---------------------------------------------------------------- prune */

struct strset {
	char **v;
	size_t n;
};

static bool strset_has(const struct strset *s, const char *hex)
{
	for (size_t i = 0; i < s->n; i++)
		if (!strcmp(s->v[i], hex))
			return true;
	return false;
}

static int strset_add(struct strset *s, const char *hex)
{
	if (strset_has(s, hex))
		return 0;
	char *copy = strdup(hex);
	if (!copy || ud_push(&s->v, &s->n, sizeof(copy), &copy) < 0) {
		free(copy);
		return -1;
	}
	return 0;
}

/* Every layer of every image the daemon has. */
static int keep_image_layers(struct ud_docker *d, struct strset *keep, ud_error *e)
{
	char **ids = NULL;
	size_t n_ids = 0;
	int r = ud_docker_list_images(d, &ids, &n_ids, e);
	for (size_t i = 0; r == 0 && i < n_ids; i++) {
		struct ud_image img;
		if (ud_docker_inspect_raw(d, ids[i], &img, e) < 0) {
			if (e->status != UD_EXIT_IMAGE) /* else removed meanwhile */
				r = -1;
			continue;
		}
		for (size_t j = 0; r == 0 && j < img.n_diff_ids; j++) {
			const char *hex = ud_cache_digest_hex(img.diff_ids[j]);
			if (hex && strset_add(keep, hex) < 0)
				r = ud_oom(e);
		}
		ud_image_free(&img);
	}
	free_strings(ids, n_ids);
	return r;
}

/* The layers a use record lists, kept. */
static void keep_record_layers(int users, const char *name, struct strset *keep)
{
	int f = openat(users, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	FILE *fp = f >= 0 ? fdopen(f, "r") : NULL;
	char line[128];
	while (fp && fgets(line, sizeof(line), fp)) {
		line[strcspn(line, "\n")] = '\0';
		const char *hex = ud_cache_digest_hex(line);
		if (hex)
			strset_add(keep, hex);
	}
	if (fp)
		fclose(fp);
	else if (f >= 0)
		close(f);
}

/* Layers of live namespaces stay; records of dead ones go. The records are listed before the
 * namespaces are looked for: a record is written once its namespace exists, so one listed here
 * has a namespace the scan sees if it is alive; one written later is judged by
 * keep_new_records(). Every record listed lands in seen. */
static int keep_used_layers(const struct ud_cache *c, struct strset *keep, struct strset *seen,
			    ud_error *e)
{
	DIR *ud = open_dir_at(c->fd, "users");
	struct dirent *de;
	while (ud && (de = readdir(ud)))
		if (de->d_name[0] != '.' && strset_add(seen, de->d_name) < 0) {
			closedir(ud);
			return ud_oom(e);
		}
	struct ud_nslive live;
	if (!ud || ud_nslive_scan(&live, e) < 0) {
		if (ud)
			closedir(ud);
		return ud ? -1 : 0;
	}
	for (size_t i = 0; i < seen->n; i++) {
		bool valid;
		bool alive = ud_cache_trust_record_alive(seen->v[i], &live, &valid);
		if (valid && alive)
			keep_record_layers(dirfd(ud), seen->v[i], keep);
		else if (valid)
			unlinkat(dirfd(ud), seen->v[i], 0);
	}
	closedir(ud);
	ud_nslive_free(&live);
	return 0;
}

/* Under the exclusive lock: records written since the scan are of namespaces just made. */
static void keep_new_records(const struct ud_cache *c, struct strset *keep,
			     const struct strset *seen)
{
	DIR *ud = open_dir_at(c->fd, "users");
	struct dirent *de;
	while (ud && (de = readdir(ud)))
		if (de->d_name[0] != '.' && !strset_has(seen, de->d_name))
			keep_record_layers(dirfd(ud), de->d_name, keep);
	if (ud)
		closedir(ud);
}

/* What removing a tree gives back: directories, and the files whose last name it holds (a
 * snapshot shares the rest with the daemon). */
static long long freed_bytes_at(int at, const char *name)
{
	struct stat st;
	if (fstatat(at, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return 0;
	if (!S_ISDIR(st.st_mode))
		return st.st_nlink == 1 ? (long long)st.st_blocks * 512 : 0;
	long long total = (long long)st.st_blocks * 512;
	DIR *d = open_dir_at(at, name);
	struct dirent *de;
	while (d && (de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			total += freed_bytes_at(dirfd(d), de->d_name);
	if (d)
		closedir(d);
	return total;
}

/* Under the exclusive lock, each unkept layer leaves sha256/ at once (its short name first, as
 * place_layer() makes them in the other order): a helper that starts after the lock sees it
 * missing, never half removed. The trash is deleted afterwards, without the lock. */
static int trash_unkept(const struct ud_cache *c, const struct strset *keep, struct strset *gone,
			ud_error *e)
{
	DIR *sd = open_dir_at(c->fd, "sha256");
	struct dirent *de;
	int r = 0;
	while (r == 0 && sd && (de = readdir(sd))) {
		if (!ud_cache_is_hex(de->d_name) || strlen(de->d_name) != HEX_LEN ||
		    strset_has(keep, de->d_name))
			continue;
		char link[SHORT_LEN + 1], trash[HEX_LEN + 32];
		snprintf(link, sizeof(link), "%.*s", SHORT_LEN, de->d_name);
		snprintf(trash, sizeof(trash), "%d.gc-%s", (int)getpid(), de->d_name);
		unlinkat(c->l_fd, link, 0);
		if (renameat(dirfd(sd), de->d_name, c->tmp_fd, trash) < 0 ||
		    strset_add(gone, de->d_name) < 0)
			r = ud_fail(e, UD_EXIT_STORAGE, errno, "removing %s/sha256/%s", c->dir,
				    de->d_name);
	}
	if (sd)
		closedir(sd);
	return r;
}

static void empty_trash(const struct ud_cache *c, const struct strset *gone, FILE *out,
			struct ud_cache_freed *freed)
{
	for (size_t i = 0; i < gone->n; i++) {
		char trash[HEX_LEN + 32];
		snprintf(trash, sizeof(trash), "%d.gc-%s", (int)getpid(), gone->v[i]);
		/* Locked while it goes, so that no clean_stale_tmp() takes it for stale meanwhile. */
		ud_autoclose int fd = openat(c->tmp_fd, trash,
					     O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd >= 0)
			flock(fd, LOCK_EX);
		long long bytes = freed_bytes_at(c->tmp_fd, trash);
		rm_tree_at(c->tmp_fd, trash);
		if (out)
			fprintf(out, "removed sha256:%s (%lld bytes) from %s\n", gone->v[i], bytes,
				c->dir);
		freed->bytes += bytes;
		freed->layers++;
	}
	clean_stale_tmp(c);
}

int ud_cache_prune(struct ud_docker *d, const char *cache, FILE *out, struct ud_cache_freed *freed,
		   ud_error *e)
{
	struct ud_cache c;
	struct strset keep = {0}, seen = {0}, gone = {0};
	ud_autoclose int lock = -1;
	int r = -1;
	/* The slow parts (the daemon's images, the live namespaces) run unlocked: starts go on.
	 * Exclusive only to catch what started meanwhile and to take the layers out of sight: no
	 * helper is between its lookup and its use record then. */
	if (ud_cache_open(&c, cache, e) == 0 && keep_image_layers(d, &keep, e) == 0 &&
	    keep_used_layers(&c, &keep, &seen, e) == 0 &&
	    ud_cache_lock_prune(&c, true, &lock, e) == 0) {
		keep_new_records(&c, &keep, &seen);
		r = trash_unkept(&c, &keep, &gone, e);
		ud_closep(&lock);
		empty_trash(&c, &gone, r == 0 ? out : NULL, freed);
	}
	free_strings(keep.v, keep.n);
	free_strings(seen.v, seen.n);
	free_strings(gone.v, gone.n);
	ud_cache_close(&c);
	return r;
}
