/* --pin. */
#include "pin.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

/* Reached without following any symlink, so that --pin cannot be steered onto /etc/passwd or
 * another host file; the mount then goes onto the fd that was checked. */
int ud_pin_open(const char *path, bool *created, ud_error *e)
{
	char parent[4096];
	if (snprintf(parent, sizeof(parent), "%s", path) >= (int)sizeof(parent))
		return ud_fail(e, UD_EXIT_USAGE, ENAMETOOLONG, "--pin %s", path);
	char *slash = strrchr(parent, '/');
	const char *base = slash ? slash + 1 : parent;
	if (slash)
		*slash = '\0';
	const char *dir = !slash ? "." : parent[0] ? parent : "/";
	ud_autoclose int pfd = ud_openat2(AT_FDCWD, dir, O_PATH | O_DIRECTORY | O_CLOEXEC,
					  RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
	if (pfd < 0)
		return ud_fail(e, UD_EXIT_MOUNT, errno, "--pin %s: its directory%s", path,
			       errno == ELOOP ? " is reached through a symlink: refused" : "");
	ud_autoclose int fd =
		openat(pfd, base, O_RDONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	*created = fd >= 0;
	if (fd < 0 && errno == EEXIST)
		fd = openat(pfd, base, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0)
		return ud_fail(e, UD_EXIT_MOUNT, errno, "--pin %s", path);
	if (!*created && (!S_ISREG(st.st_mode) || st.st_size != 0 || st.st_uid != 0 ||
			  st.st_nlink != 1))
		return ud_fail(e, UD_EXIT_MOUNT, 0,
			       "--pin %s: refusing an existing file that is not an empty regular "
			       "file of root's (remove it, or name a new path)",
			       path);
	return ud_steal_fd(&fd);
}

int ud_pin_namespace(const struct ud_ns_fds *ns, const char *path, ud_error *e)
{
	/* Back to the host's mount namespace: the pin must be a mount there. */
	if (setns(ns->host_mnt, CLONE_NEWNS) < 0)
		return ud_fail(e, UD_EXIT_MOUNT, errno, "returning to the host mount namespace");
	bool created = false;
	ud_autoclose int fd = ud_pin_open(path, &created, e);
	if (fd < 0)
		return -1;
	char src[64], dst[64];
	snprintf(src, sizeof(src), "/proc/self/fd/%d", ns->fds[0]);
	snprintf(dst, sizeof(dst), "/proc/self/fd/%d", fd);
	if (mount(src, dst, NULL, MS_BIND, NULL) < 0) {
		int err = errno;
		if (created)
			unlink(path);
		return ud_fail(e, UD_EXIT_MOUNT, err, "binding the mount namespace onto %s", path);
	}
	return 0;
}
