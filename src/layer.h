/* One layer: a tar (plain, gzip or zstd), hostile, turned into a directory in overlayfs's own
 * format (whiteouts are 0/0 character devices, opaque directories carry trusted.overlay.opaque),
 * its uncompressed bytes hashed on the way for the diffID check. No daemon, no cache: the
 * caller gives the directory and decides what to do with it by the digest. */
#ifndef UD_LAYER_H
#define UD_LAYER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

/* Per layer: a Debian image with Python has about 10,000 members, big ones 200,000. */
#define UD_DEFAULT_MAX_FILES 1000000ULL
#define UD_DEFAULT_MAX_BYTES (16ULL << 30)
#define UD_DEFAULT_MAX_APPARENT (16ULL << 30)

struct ud_layer_limits {
	uint64_t max_files;    /* members (every entry: files, directories, links, whiteouts) */
	uint64_t max_bytes;    /* data written */
	uint64_t max_apparent; /* sum of the regular files' declared sizes, holes included */
};

/* The limits in force: the defaults, changed by ud_layer_limit_option(). */
extern struct ud_layer_limits ud_layer_limits;

/* --cache-max-files, --cache-max-bytes, --cache-max-apparent (option is the name without
 * "--"): sets the limit for every layer unpacked from now on. */
int ud_layer_limit_option(const char *option, const char *arg, ud_error *e);

struct archive;

/* The current entry of `outer` is a layer blob: unpacks it into rootfd (an empty directory)
 * and puts the sha256 of its uncompressed bytes, in hex, into hex. 1: unpacked; 0: the blob is
 * not a tar and !must_be_layer (nothing written); -1 otherwise (a hostile member: status 67).
 * `what` names the layer in messages. Uses libarchive as ud_la_load() left it. */
int ud_layer_unpack_entry(struct archive *outer, int rootfd, const char *what, bool must_be_layer,
			  char hex[65], ud_error *e);

/* The same for a layer read from fd (a local file): for tests and tools, no daemon needed. */
int ud_layer_unpack_fd(int fd, int rootfd, const char *what, char hex[65], ud_error *e);

/* ---- pure parts, unit-tested ---- */

/* "123", "16G", "512MiB", "2KB" (powers of 1024) → bytes; -1 for 0, garbage or overflow. */
int ud_layer_parse_size(const char *s, uint64_t *out);

/* A member name or link target fits: shorter than PATH_MAX, no component longer than NAME_MAX. */
bool ud_layer_name_fits(const char *name);

/* A tar member name is acceptable inside a layer: relative, no ".." component, not empty. */
bool ud_layer_member_name_safe(const char *name);

/* ".wh..wh..opq" → 2 (opaque), ".wh.NAME" → 1 with *target = NAME's offset in name, else 0.
 * NAME "." or ".." is still kind 1: the unpacker refuses such a member as hostile. */
int ud_layer_whiteout_kind(const char *name, size_t *target_off);

#endif
