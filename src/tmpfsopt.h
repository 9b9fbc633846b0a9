/* docker run's tmpfs syntax: --tmpfs DST[:OPTS] and --shm-size SIZE. OPTS is split and its names
 * sorted by libmount's option-string functions (lm.h: strings only, never a path); the values
 * are checked here, so that a tmpfs is mounted with exactly what was asked or not at all. */
#ifndef UD_TMPFSOPT_H
#define UD_TMPFSOPT_H

#include <sys/mount.h>

#include "error.h"
#include "plan.h"

/* Docker's defaults for --tmpfs: noexec, nosuid, nodev (mode 1777, no size: the kernel's). */
#define UD_TMPFS_DEFAULT_ATTRS (MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC)

/* "DST[:OPTS]" into a UD_OP_TMPFS op: dst, data (the filesystem's options for fsconfig, in a
 * fixed order: "mode=1777[,size=..][,nr_inodes=..][,uid=..][,gid=..]") and attrs (MOUNT_ATTR_*).
 * OPTS is a comma list: size= and nr_inodes= (a number with a k, m, g, t, p or e suffix, size
 * also N%), mode= (octal, at most 07777), uid= and gid= (numbers), and the flags ro, rw, exec,
 * noexec, nosuid, nodev, noatime, relatime, strictatime, nodiratime, nosymfollow (later ones win).
 * suid, dev and every other option are refused (status 64), naming the option. */
int ud_tmpfs_parse(const char *arg, const char *flag, struct ud_op *op, ud_error *e);

/* docker run --shm-size: bytes, or a number (decimals allowed) with b, k, m, g, t or p (powers
 * of 1024, an optional "i" and "b" after it: 64m, 1.5GiB); more than 0. */
int ud_ram_size_parse(const char *s, const char *flag, unsigned long long *bytes, ud_error *e);

/* The MOUNT_ATTR_* flags as option names, in a fixed order ("ro", "nosuid", ...), for --print:
 * fills names (at most 8) and returns how many. */
size_t ud_tmpfs_flag_names(unsigned attrs, const char **names);

#endif
