/* Any storage behind the daemon: export the image (GET /images/{id}/get, streamed) and unpack its
 * layers into a layer cache shared by every image and instance, keyed by diffID. */
#ifndef UD_EXPORT_H
#define UD_EXPORT_H

#include <stdint.h>
#include <stdio.h>

#include "docker.h"
#include "error.h"

#define UD_DEFAULT_CACHE "/var/lib/uwsgi-docker/layers"

/* Per layer: a Debian image with Python has about 10,000 members, big ones 200,000. */
#define UD_DEFAULT_MAX_FILES 1000000ULL
#define UD_DEFAULT_MAX_BYTES (16ULL << 30)
#define UD_DEFAULT_MAX_APPARENT (16ULL << 30)

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

/* --cache-max-files, --cache-max-bytes, --cache-max-apparent (option is the name without
 * "--"): sets the limit for every layer unpacked from now on. */
int ud_cache_limit_option(const char *option, const char *arg, ud_error *e);

/* ---- pure parts, unit-tested ---- */

/* "123", "16G", "512MiB", "2KB" (powers of 1024) → bytes; -1 for 0, garbage or overflow. */
int ud_parse_size(const char *s, uint64_t *out);

/* A member name or link target fits: shorter than PATH_MAX, no component longer than NAME_MAX. */
bool ud_name_fits(const char *name);

/* A tar member name is acceptable inside a layer: relative, no ".." component, not empty. */
bool ud_member_name_safe(const char *name);

/* ".wh..wh..opq" → 2 (opaque), ".wh.NAME" → 1 with *target = NAME's offset in name, else 0. */
int ud_whiteout_kind(const char *name, size_t *target_off);

#endif
