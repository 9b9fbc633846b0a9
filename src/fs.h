/* The new mount API in small steps shared by the executor's modules (rootfs, overlay,
 * specialfs): fresh filesystems are built detached and attached onto an fd, never a path. */
#ifndef UD_FS_H
#define UD_FS_H

#include "error.h"

/* Fills *e (status 68) with what, errno err, and the fs context's log ("e overlay: ...") when
 * fsfd >= 0: the kernel explains there what errno alone cannot. Returns -1. */
int ud_fs_fail(ud_error *e, int fsfd, int err, const char *what);

/* A fresh filesystem, detached: fsopen + options (name, value or NULL for a flag, ..., NULL)
 * + fsmount with the given MOUNT_ATTR_* flags. Returns the mount fd (O_CLOEXEC). */
int ud_fs_new(const char *type, const char *const *opts, unsigned attrs, ud_error *e);

/* Moves the detached (or cloned) mount mfd onto target_fd. */
int ud_fs_attach(int mfd, int target_fd, const char *where, ud_error *e);

#endif
