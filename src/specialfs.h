/* The special filesystems of the new root: /proc, /dev (a tmpfs of our own with device nodes,
 * devpts, /dev/shm) and /sys. Each is mounted onto a target fd already resolved inside the new
 * root. */
#ifndef UD_SPECIALFS_H
#define UD_SPECIALFS_H

#include "error.h"

int ud_specialfs_proc(int target, ud_error *e);
/* shm_size: of /dev/shm, in bytes. */
int ud_specialfs_dev(int target, unsigned long long shm_size, ud_error *e);
int ud_specialfs_sys(int target, ud_error *e);

#endif
