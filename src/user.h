/* The user a process in the image runs as: the image's User or --user, looked up in the image's
 * own /etc/passwd and /etc/group (userdb.h), read inside the new root. */
#ifndef UD_USER_H
#define UD_USER_H

#include "error.h"
#include "userdb.h"

/* Resolves spec (NULL or "": root) against the image's files, reached from rootfd with openat2
 * RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS: a symlink out of the image lands on the image's own
 * file of that path. A file that is not a regular file, that lies on /proc or /sys, or that
 * fails ud_userdb_check() is refused (71). spec_status: the status of a malformed spec (64 for
 * --user, 71 for the image's User). */
int ud_user_lookup(int rootfd, const char *spec, int spec_status, struct ud_user *u, ud_error *e);

/* setgroups, setgid, setuid, in that order (the process must still be root). */
int ud_user_apply(const struct ud_user *u, ud_error *e);

#endif
