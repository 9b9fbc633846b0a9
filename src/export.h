/* Any storage behind the daemon: export the image (GET /images/{id}/get, streamed) and unpack its
 * layers into a layer cache shared by every image and instance, keyed by diffID. */
#ifndef UD_EXPORT_H
#define UD_EXPORT_H

#include <stdio.h>

#include "docker.h"
#include "error.h"

#define UD_DEFAULT_CACHE "/var/lib/uwsgi-docker/layers"

enum ud_layers_mode {
	UD_LAYERS_AUTO,   /* the daemon's overlay dirs when usable, else export */
	UD_LAYERS_DIRECT, /* only the daemon's dirs */
	UD_LAYERS_EXPORT, /* always the cache */
};

/* The path of a cached layer: <cache>/sha256/<hex> for diffID "sha256:<hex>" (no ':' in it, so
 * it can stand in overlay options). Returns -1 for a diffID that is not sha256:<64 hex>. */
int ud_cache_layer_path(const char *cache, const char *diff_id, char *buf, size_t len);

/* Points img->layers at the cache (top to bottom), exporting and unpacking whatever is missing
 * unless dry_run. Holds a shared lock on the cache until ud_cache_release(), so that a prune
 * cannot remove a layer between here and ud_cache_record_use(). */
int ud_cache_prepare(struct ud_docker *d, struct ud_image *img, const char *cache, bool dry_run,
		     int *cache_lock, ud_error *e);

/* Opens <cache>/users for ud_cache_record_use(), before the helper leaves the host's root. */
int ud_cache_users_dir(const char *cache, ud_error *e);

/* Records that the mount namespace mnt_ns_fd uses img's layers (read by --cache-prune). */
int ud_cache_record_use(int users_dir, const struct ud_image *img, int mnt_ns_fd, ud_error *e);

/* --cache-prune: removes layers no image refers to and no live namespace uses. */
int ud_cache_prune(struct ud_docker *d, const char *cache, FILE *out, ud_error *e);

/* ---- pure parts, unit-tested ---- */

/* A tar member name is acceptable inside a layer: relative, no ".." component, not empty. */
bool ud_member_name_safe(const char *name);

/* ".wh..wh..opq" → 2 (opaque), ".wh.NAME" → 1 with *target = NAME's offset in name, else 0. */
int ud_whiteout_kind(const char *name, size_t *target_off);

#endif
