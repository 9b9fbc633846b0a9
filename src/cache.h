/* The layer cache, shared by every image and instance, keyed by diffID:
 *
 *   <cache>/sha256/<hex>/     an unpacked layer, named by its diffID (sha256 of the uncompressed
 *                             tar), in overlayfs's own format (layer.c)
 *   <cache>/l/<20 hex>        short names for mount(2)'s one-page option string
 *   <cache>/tmp/<pid>.XXXXXX  layers being unpacked; renamed into sha256/ only when complete and
 *                             verified, so a crash never leaves a half layer where it is used
 *   <cache>/locks/<hex>.lock  held while a layer is being unpacked: helpers wait for each other
 *   <cache>/users/mnt-<ino>-<boot id>-<mount namespace id>
 *                             the layers a mount namespace uses, for --gc
 *   <cache>/prune.lock        shared by helpers from lookup to record, exclusive by a --gc
 *                             while it takes layers out of sha256/ (into tmp/, then deleted)
 *
 * The same layout serves the export's layer cache and the snapshot store (snapshot.h).
 *
 * Every directory of the cache, and every one above it, is root's alone (cache_trust.c). */
#ifndef UD_CACHE_H
#define UD_CACHE_H

#include <stdbool.h>
#include <stdio.h>

#include "docker.h"
#include "error.h"

#define UD_DEFAULT_CACHE "/var/lib/uwsgi-docker/layers"

struct ud_cache {
	const char *dir;
	int fd, sha_fd, tmp_fd, locks_fd, l_fd;
};

/* Opens (creating what is missing) the cache's directories, checking that they are trusted. */
int ud_cache_open(struct ud_cache *c, const char *dir, ud_error *e);
void ud_cache_close(struct ud_cache *c);

/* The path of a cached layer: <cache>/sha256/<hex> for diffID "sha256:<hex>" (no ':' in it, so
 * it can stand in overlay options). Returns -1 for a diffID that is not sha256:<64 hex>. */
int ud_cache_layer_path(const char *cache, const char *diff_id, char *buf, size_t len);

/* The hex of "sha256:<64 lowercase hex>", else NULL. */
const char *ud_cache_digest_hex(const char *digest);

/* s starts with 64 lowercase hex digits, not followed by a 65th. */
bool ud_cache_is_hex(const char *s);

/* Points img->layers at the cache (top to bottom, a repeated diffID once), driver "export". */
int ud_cache_point_image(struct ud_image *img, const char *cache, ud_error *e);

/* Takes prune.lock shared (exclusive) into *lock: see ud_cache_prune(). */
int ud_cache_lock_prune(const struct ud_cache *c, bool exclusive, int *lock, ud_error *e);

/* The layers of one image that the cache lacks, each locked (LOCK_EX on locks/<hex>.lock, in
 * one order for every helper) and looked up again under its lock. */
struct ud_cache_want {
	char **hex; /* sorted; point into the image's diffIDs */
	size_t n;
	bool *done;
	int *locks;
	size_t n_locks;
};

int ud_cache_want_missing(const struct ud_cache *c, const struct ud_image *img,
			  struct ud_cache_want *w, ud_error *e);
/* The index of hex in w, or -1. */
int ud_cache_want_index(const struct ud_cache_want *w, const char *hex);
bool ud_cache_want_all_done(const struct ud_cache_want *w);
/* Unlocks and frees. */
void ud_cache_want_release(struct ud_cache_want *w);

/* Is sha256/<hex> there (and root's alone)? */
bool ud_cache_has(const struct ud_cache *c, const char *hex);

struct archive;

/* The current entry of `outer` is a layer blob: unpacks it into tmp/ and moves it into sha256/
 * if its digest is wanted and not done yet (then marks it done). must_be_layer, what: as for
 * ud_layer_unpack_entry(). */
int ud_cache_unpack_entry(struct ud_cache *c, struct ud_cache_want *w, struct archive *outer,
			  const char *what, bool must_be_layer, ud_error *e);

/* Adds the layer hex of w (skipped when w does not want it or has it): fill() populates a fresh
 * directory of tmp/, which then moves into sha256/ (with its short name), or goes on failure. */
int ud_cache_add_layer(struct ud_cache *c, struct ud_cache_want *w, const char *hex,
		       int (*fill)(int rootfd, void *arg, ud_error *e), void *arg, ud_error *e);

/* Opens <cache>/users for ud_cache_record_use(), before the helper leaves the host's root. */
int ud_cache_users_dir(const char *cache, ud_error *e);

/* Records that the mount namespace mnt_ns_fd uses img's layers (read by --cache-prune). */
int ud_cache_record_use(int users_dir, const struct ud_image *img, int mnt_ns_fd, ud_error *e);

struct ud_cache_freed {
	long long bytes; /* directories, and files whose last name went */
	size_t layers;
};

/* --gc: removes the layers of cache that no image of d refers to and no live namespace uses,
 * each reported on out ("removed sha256:HEX (N bytes) from CACHE") and added to *freed. */
int ud_cache_prune(struct ud_docker *d, const char *cache, FILE *out, struct ud_cache_freed *freed,
		   ud_error *e);

#endif
