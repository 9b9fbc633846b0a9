/* --pin PATH: the new mount namespace bound onto a file of the host's, so that it outlives the
 * helper (nsenter --mount=PATH, setns). */
#ifndef UD_PIN_H
#define UD_PIN_H

#include <stdbool.h>

#include "error.h"
#include "rootfs.h"

/* The pin file: one created here (*created), or an existing empty regular file of root's with a
 * single link, reached without following any symlink. */
int ud_pin_open(const char *path, bool *created, ud_error *e);

/* Returns to the host's mount namespace (ns->host_mnt) and binds ns->fds[0] onto path. */
int ud_pin_namespace(const struct ud_ns_fds *ns, const char *path, ud_error *e);

#endif
