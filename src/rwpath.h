/* --rw-path DIR: a persistent rw layer in a host directory the operator names. The helper, as
 * root, creates and writes there, so DIR is resolved without following any symlink and must be
 * the helper's own: new, empty, or marked by an earlier run. */
#ifndef UD_RWPATH_H
#define UD_RWPATH_H

#include "error.h"

#define UD_RW_MARKER ".uwsgi-docker-rw"

/* In the host's mount namespace: resolves DIR (creating missing components, mode 0700), checks
 * it (owned by root, not writable by group or others, holding nothing but lock, upper/, work/
 * and the marker, or nothing at all), marks it, makes upper/ and work/, and takes DIR/lock
 * (flock, blocking). *dir_fd and *lock_fd are O_CLOEXEC; exit status 68 on refusal. */
int ud_rw_path_prepare(const char *dir, int *dir_fd, int *lock_fd, ud_error *e);

/* In the new mount namespace: DIR again by path (the overlay needs a mount of this namespace),
 * without symlinks, and only if it is still the directory prepared above. Returns an O_PATH
 * fd. */
int ud_rw_path_reopen(const char *dir, int prepared_fd, ud_error *e);

#endif
