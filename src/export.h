/* Any storage behind the daemon: export the image (GET /images/{id}/get, streamed) and unpack
 * its layers into the layer cache (cache.h), each through layer.c. */
#ifndef UD_EXPORT_H
#define UD_EXPORT_H

#include <stdbool.h>

#include "cache.h"
#include "docker.h"
#include "error.h"
#include "util.h"
#include "layer.h"

enum ud_layers_mode {
	UD_LAYERS_AUTO,	  /* the daemon's overlay dirs when usable, else export */
	UD_LAYERS_DIRECT, /* only the daemon's dirs */
	UD_LAYERS_EXPORT, /* always the cache */
};

/* Names of enum ud_layers_mode (--layers): parsing and --help use this one list. */
extern const struct ud_name ud_export_layers_modes[];

/* Points img->layers at the cache (top to bottom), exporting and unpacking whatever is missing
 * unless dry_run. Holds a shared lock on the cache in *cache_lock (close it when the use is
 * recorded), so that a prune cannot remove a layer between here and ud_cache_record_use(). */
int ud_export_prepare(struct ud_docker *d, struct ud_image *img, const char *cache, bool dry_run,
		      int *cache_lock, ud_error *e);

/* ---- pure parts, unit-tested ---- */

/* What a member of an export is, by its name (a leading "./" ignored). docker-archive:
 * <config hex>.json, and layers as <v1 id>/layer.tar (Docker) or <diffID hex>.tar (Podman);
 * OCI layout: blobs/sha256/<hex> for everything (config, manifests, compressed layers). */
enum ud_export_member {
	UD_EXPORT_OTHER,
	UD_EXPORT_BLOB,	     /* blobs/sha256/<hex> */
	UD_EXPORT_HEX_JSON,  /* <hex>.json at the top */
	UD_EXPORT_HEX_TAR,   /* <hex>.tar at the top */
	UD_EXPORT_LAYER_TAR, /* layer.tar or <dir>/layer.tar */
};

/* The kind of member `name`; for a name with a digest in it (blob, hex json, hex tar), the 64
 * hex digits into named, else "". */
enum ud_export_member ud_export_classify(const char *name, char named[65]);

#endif
