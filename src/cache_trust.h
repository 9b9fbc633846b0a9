/* The layer cache's own safety: whose directories it trusts, how it names the mount namespaces
 * that use it. Used by cache.c only. */
#ifndef UD_CACHE_TRUST_H
#define UD_CACHE_TRUST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "nslive.h"

/* Opens the directory at the absolute path `path` (creating what is missing, mode 0700, if
 * create), walking from / one component at a time without following symlinks. Every component
 * must be a directory owned by root; the last one must not be writable by group or others,
 * the ones above it neither unless they carry the sticky bit (/tmp): there only an entry's owner
 * may rename it. Returns an O_PATH descriptor, or -1 with UD_EXIT_STORAGE. */
int ud_cache_trust_dir(const char *path, bool create, ud_error *e);

/* The same rule for a directory inside the cache: dirfd/name, created (0700) if create, opened
 * with O_NOFOLLOW and `flags` (O_PATH or O_RDONLY), owned by root, no group or other write. */
int ud_cache_trust_subdir(int dirfd, const char *cache, const char *name, bool create, int flags,
		      ud_error *e);

/* Creates and opens (O_RDONLY) a fresh directory "<pid>.<random>" in dirfd, its name into
 * name (at least 32 bytes). Marks dirfd (if opened O_RDONLY) for ext4 to spread its
 * subdirectories over the disk (chattr +T), best effort. */
int ud_cache_trust_mkdtemp(int dirfd, char *name, size_t len, ud_error *e);

/* ---- use records: <cache>/users/<name> */

/* The record name of the mount namespace ns_fd: "mnt-<inode>-<boot id>-<id>", id being the
 * 64-bit mount-namespace id that the kernel never reuses (NS_GET_MNTNS_ID, Linux 6.8+), or 0
 * where the kernel has none. */
int ud_cache_trust_record_name(int ns_fd, char *buf, size_t len, ud_error *e);

/* Is the namespace a record names among the live ones (nslive.h)? Records of another boot are
 * dead; with an id, only the namespace with that id counts; without one (and for the older
 * "mnt-<inode>" records), any namespace with the inode does. Names that are not records:
 * *valid = false. */
bool ud_cache_trust_record_alive(const char *name, const struct ud_nslive *live, bool *valid);

#endif
