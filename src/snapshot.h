/* The daemon's layer directories, kept for as long as a namespace serves them.
 *
 * `docker rmi`, `image prune` and `system prune` delete a layer directory with everything in it,
 * also while an overlay stacks it: the overlay keeps the directory's inode, not the names in it,
 * so files vanish under a running app. Each layer is therefore hard-linked, tree by tree, into
 * the layer cache (cache.h) under its diffID, and the overlay stacks the cache's copy: a name of
 * our own keeps every file whatever the daemon deletes. Files are shared, not copied (same
 * filesystem only); directories are made anew with the daemon's owners, modes, times and
 * extended attributes (overlayfs's opaque marks among them). A layer seen before costs a lookup;
 * --gc releases what only dead namespaces used. */
#ifndef UD_SNAPSHOT_H
#define UD_SNAPSHOT_H

#include <stdbool.h>

#include "cache.h"
#include "docker.h"
#include "error.h"

/* Deepest directory nesting a layer may have: one descriptor per level is open while its tree
 * is linked (PATH_MAX allows about 2,000 levels; no real image comes near 512). */
#define UD_SNAPSHOT_MAX_DEPTH 512

/* The store's directory name inside the daemon's storage root (snapshot.c says why there). */
#define UD_SNAPSHOT_STORE "uwsgi-docker"

/* <img->storage_root>/UD_SNAPSHOT_STORE into buf; -1 if it does not fit. */
int ud_snapshot_store(const struct ud_image *img, char *buf, size_t len);

/* Points img (the daemon's own layer directories, validated) at the store, a layer cache
 * (cache.h), linking whatever layer it lacks unless dry_run. 0: done, *cache_lock holds the
 * store's shared lock (close it once the use is recorded, as for ud_export_prepare); -1: failed,
 * img as it was (the caller may serve the daemon's directories instead). */
int ud_snapshot_prepare(struct ud_image *img, bool dry_run, int *cache_lock, ud_error *e);

/* Links the tree under src_dir (a directory fd) into the empty directory dst_dir: every
 * non-directory by a hard link, every directory made with src's attributes. The top directory
 * gets src's extended attributes only (the cache keeps its own owner and mode). what names the
 * layer in messages. */
int ud_snapshot_tree(int src_dir, int dst_dir, const char *what, ud_error *e);

#endif
