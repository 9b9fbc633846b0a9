/* Whom the layer cache trusts, and how it tells namespaces apart.
 *
 * The cache holds layers that the helper mounts as images, as root: whoever can write to the
 * cache directory, or to any directory above it, can swap in a layer of their own under a real
 * diffID (nothing re-hashes a cached layer). So, as ssh's StrictModes does for ~/.ssh, every
 * directory from / down to the cache and inside it must be root's and writable by root alone;
 * the walk never follows a symlink and each check is an fstat of the descriptor it then uses. */
#include "cache_trust.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <linux/types.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nslive.h"
#include "util.h"

/* fd is the directory `what` (a path, for the message); sticky_ok for the ones above the cache. */
static int check_dir(int fd, const char *what, bool sticky_ok, ud_error *e)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return ud_fail(e, UD_EXIT_STORAGE, errno, "layer cache: fstat of %s", what);
	if (S_ISLNK(st.st_mode))
		return ud_fail(e, UD_EXIT_STORAGE, 0,
			       "layer cache: %s is a symbolic link (refused: give the real path)",
			       what);
	if (!S_ISDIR(st.st_mode))
		return ud_fail(e, UD_EXIT_STORAGE, ENOTDIR, "layer cache: %s", what);
	if (st.st_uid != 0)
		return ud_fail(e, UD_EXIT_STORAGE, 0,
			       "layer cache: %s is owned by uid %u, not root (refused: another user "
			       "could replace cached layers)",
			       what, (unsigned)st.st_uid);
	if ((st.st_mode & (S_IWGRP | S_IWOTH)) && !(sticky_ok && (st.st_mode & S_ISVTX)))
		return ud_fail(e, UD_EXIT_STORAGE, 0,
			       "layer cache: %s is writable by %s (mode %04o; refused: another user "
			       "could replace cached layers)",
			       what, st.st_mode & S_IWOTH ? "others" : "its group",
			       (unsigned)(st.st_mode & 07777));
	return 0;
}

/* openat(dirfd, name) of a directory, no symlink followed; a symlink is opened as itself (O_PATH)
 * so that check_dir() can name it. */
static int open_dir_nofollow(int dirfd, const char *name, int flags)
{
	int fd = openat(dirfd, name, flags | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 && (errno == ELOOP || errno == ENOTDIR))
		fd = openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	return fd;
}

int ud_cache_trust_dir(const char *path, bool create, ud_error *e)
{
	if (path[0] != '/' || strlen(path) >= 4096)
		return ud_fail(e, UD_EXIT_USAGE, 0, "--cache-dir '%s': expected an absolute path",
			       path);
	ud_autoclose int fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || check_dir(fd, "/", true, e) < 0)
		return fd < 0 ? ud_fail(e, UD_EXIT_STORAGE, errno, "opening /") : -1;
	char sofar[4096] = "";
	size_t len = 0;
	for (const char *p = path; *p;) {
		while (*p == '/')
			p++;
		size_t n = strcspn(p, "/");
		if (n == 0)
			break;
		char name[256];
		if (n >= sizeof(name))
			return ud_fail(e, UD_EXIT_STORAGE, ENAMETOOLONG, "layer cache %s", path);
		memcpy(name, p, n);
		name[n] = '\0';
		p += n;
		if (!strcmp(name, "."))
			continue;
		if (!strcmp(name, ".."))
			return ud_fail(e, UD_EXIT_USAGE, 0, "--cache-dir '%s': '..' is not allowed",
				       path);
		len += (size_t)snprintf(sofar + len, sizeof(sofar) - len, "/%s", name);
		bool last = strspn(p, "/") == strlen(p);
		int next = open_dir_nofollow(fd, name, O_PATH);
		if (next < 0 && errno == ENOENT && create) {
			if (mkdirat(fd, name, 0700) < 0 && errno != EEXIST)
				return ud_fail(e, UD_EXIT_STORAGE, errno, "creating %s", sofar);
			next = open_dir_nofollow(fd, name, O_PATH);
		}
		if (next < 0)
			return ud_fail(e, UD_EXIT_STORAGE, errno, "opening layer cache %s", sofar);
		ud_closep(&fd);
		fd = next;
		if (check_dir(fd, sofar, !last, e) < 0)
			return -1;
	}
	/* The cache itself (also when the path ends in "." or is "/"): no sticky exception. */
	if (check_dir(fd, *sofar ? sofar : "/", false, e) < 0)
		return -1;
	return ud_steal_fd(&fd);
}

int ud_cache_trust_subdir(int dirfd, const char *cache, const char *name, bool create, int flags,
		      ud_error *e)
{
	if (create && mkdirat(dirfd, name, 0700) < 0 && errno != EEXIST)
		return ud_fail(e, UD_EXIT_STORAGE, errno, "creating %s/%s", cache, name);
	ud_autoclose int fd = open_dir_nofollow(dirfd, name, flags);
	char what[1200];
	snprintf(what, sizeof(what), "%s/%s", cache, name);
	if (fd < 0)
		return ud_fail(e, UD_EXIT_STORAGE, errno, "opening %s", what);
	if (check_dir(fd, what, false, e) < 0)
		return -1;
	return ud_steal_fd(&fd);
}

/* The layer directories made in dirfd are unrelated trees: the "T" attribute (FS_TOPDIR_FL, see
 * chattr(1)) tells ext4's Orlov allocator to spread them over the block groups, as it does the
 * children of /home, instead of packing each next to its parent -- where the layers pruned or
 * failed before were. On ext4 without a journal every new inode first skips each inode freed in
 * its group in the last minutes (60 s, 360 s while their table block is dirty): measured, 12,000
 * files unpacked just after 12,000 were removed took 3-4 times the system time. A hint only:
 * other filesystems refuse or ignore it, and nothing depends on it. */
static void spread_subdirs(int dirfd)
{
	int flags = 0;
	if (ioctl(dirfd, FS_IOC_GETFLAGS, &flags) == 0 && !(flags & FS_TOPDIR_FL)) {
		flags |= FS_TOPDIR_FL;
		ioctl(dirfd, FS_IOC_SETFLAGS, &flags);
	}
}

int ud_cache_trust_mkdtemp(int dirfd, char *name, size_t len, ud_error *e)
{
	static const char alnum[] = "abcdefghijklmnopqrstuvwxyz0123456789";
	spread_subdirs(dirfd);
	for (int tries = 0; tries < 100; tries++) {
		unsigned char rnd[8];
		if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
			return ud_fail(e, UD_EXIT_STORAGE, errno, "getrandom");
		char suffix[sizeof(rnd) + 1];
		for (size_t i = 0; i < sizeof(rnd); i++)
			suffix[i] = alnum[rnd[i] % (sizeof(alnum) - 1)];
		suffix[sizeof(rnd)] = '\0';
		snprintf(name, len, "%d.%s", (int)getpid(), suffix);
		if (mkdirat(dirfd, name, 0700) < 0) {
			if (errno == EEXIST)
				continue;
			return ud_fail(e, UD_EXIT_STORAGE, errno, "creating a layer directory in tmp/");
		}
		ud_autoclose int fd = open_dir_nofollow(dirfd, name, O_RDONLY);
		if (fd < 0)
			return ud_fail(e, UD_EXIT_STORAGE, errno, "opening tmp/%s", name);
		if (check_dir(fd, name, false, e) < 0)
			return -1;
		return ud_steal_fd(&fd);
	}
	return ud_fail(e, UD_EXIT_STORAGE, EEXIST, "creating a layer directory in tmp/");
}

/* ---------------------------------------------------------------- use records */

/* The boot id without dashes (32 hex): namespace ids and inodes start over at each boot. */
static void boot_id(char out[33])
{
	char raw[64] = "";
	FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");
	if (f) {
		if (!fgets(raw, sizeof(raw), f))
			raw[0] = '\0';
		fclose(f);
	}
	size_t n = 0;
	for (const char *p = raw; *p && n < 32; p++)
		if (isxdigit((unsigned char)*p))
			out[n++] = *p;
	while (n < 32)
		out[n++] = '0';
	out[32] = '\0';
}

int ud_cache_trust_record_name(int ns_fd, char *buf, size_t len, ud_error *e)
{
	struct stat st;
	if (fstat(ns_fd, &st) < 0)
		return ud_fail(e, UD_EXIT_STORAGE, errno, "fstat of the mount namespace");
	char boot[33];
	boot_id(boot);
	snprintf(buf, len, "mnt-%lu-%s-%" PRIu64, (unsigned long)st.st_ino, boot, ud_nslive_id(ns_fd));
	return 0;
}

bool ud_cache_trust_record_alive(const char *name, const struct ud_nslive *live, bool *valid)
{
	unsigned long ino;
	char boot[33], tail;
	uint64_t id = 0;
	int n = sscanf(name, "mnt-%lu-%32[0-9a-f]-%" SCNu64 "%c", &ino, boot, &id, &tail);
	*valid = n == 3 && strlen(boot) == 32;
	if (!*valid) {
		/* a record of the previous format, "mnt-<inode>": the inode alone */
		*valid = sscanf(name, "mnt-%lu%c", &ino, &tail) == 1;
		id = 0;
		if (!*valid)
			return false;
	} else {
		char now[33];
		boot_id(now);
		if (strcmp(now, boot) != 0)
			return false;
	}
	return ud_nslive_has(live, ino, id);
}
