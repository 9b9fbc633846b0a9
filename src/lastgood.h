/* The last good resolution of each reference, for starts while the daemon cannot be reached.
 *
 * After a start that resolved a reference to the daemon's own layer directories, the daemon's
 * image inspect answer is kept, as it came, in UD_LASTGOOD_DIR (root-only, on disk: an Emperor
 * may start before dockerd after a reboot). A later start whose daemon does not answer at all
 * reads it back through the same parser and checks as a fresh answer, and uses it only if every
 * layer is still there: in the daemon's directory, or kept in the snapshot store (snapshot.h). */
#ifndef UD_LASTGOOD_H
#define UD_LASTGOOD_H

#include <stddef.h>
#include <time.h>

#include "docker_json.h"
#include "error.h"

#define UD_LASTGOOD_DIR "/var/lib/uwsgi-docker/last-good"
/* Larger than any inspect answer the transport accepts. */
#define UD_LASTGOOD_MAX (4 << 20)

/* The record's file name (in dir) for a daemon socket and a reference. */
void ud_lastgood_name(const char *socket_path, const char *ref, char *out, size_t len);

/* Keeps body as the answer for (socket_path, ref) in dir: written only when it changed, replaced
 * atomically. Best effort: a failure costs only the fallback. A stamp (NULL for none; no
 * newline) is part of the record's key: answers.h keeps its records this way. */
void ud_lastgood_save(const char *dir, const char *socket_path, const char *ref,
		      const char *stamp, const char *body, size_t len);

/* The answer kept for (socket_path, ref) under the same stamp, malloc'ed in *body
 * (NUL-terminated), and when it was written. UD_EXIT_DAEMON when there is none. */
int ud_lastgood_load(const char *dir, const char *socket_path, const char *ref,
		     const char *stamp, char **body, size_t *len, time_t *when, ud_error *e);

/* The kept answer parsed and checked as a fresh one (ud_parse_inspect, ud_validate_layers). */
int ud_lastgood_resolve(const char *dir, const char *socket_path, const char *ref,
			const char *stamp, struct ud_image *img, time_t *when, ud_error *e);

/* Every layer directory of a kept answer is still there (the daemon may have deleted an image
 * while it was down, or before): for --layers direct, which has no snapshot to fall back on. */
int ud_lastgood_layers_present(const struct ud_image *img, ud_error *e);

#endif
