/* /proc, /dev and /sys of the new root: fresh instances, built detached where they can be, so
 * that nothing in the image is ever in the way. */
#include "specialfs.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "fs.h"
#include "util.h"

int ud_specialfs_proc(int target, ud_error *e)
{
	ud_autoclose int m =
		ud_fs_new("proc", NULL, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC, e);
	return m < 0 ? -1 : ud_fs_attach(m, target, "/proc", e);
}

int ud_specialfs_sys(int target, ud_error *e)
{
	ud_autoclose int m = ud_fs_new("sysfs", NULL,
				       MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV |
					       MOUNT_ATTR_NOEXEC,
				       e);
	return m < 0 ? -1 : ud_fs_attach(m, target, "/sys", e);
}

int ud_specialfs_dev(int target, unsigned long long shm_size, ud_error *e)
{
	static const char *const tmpfs_opts[] = {"mode", "0755", "size", "65536k", NULL};
	static const struct {
		const char *name;
		unsigned major, minor;
	} nodes[] = {{"null", 1, 3}, {"zero", 1, 5},	{"full", 1, 7},
		     {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}};
	static const char *const links[][2] = {{"fd", "/proc/self/fd"},
					       {"stdin", "/proc/self/fd/0"},
					       {"stdout", "/proc/self/fd/1"},
					       {"stderr", "/proc/self/fd/2"},
					       {"ptmx", "pts/ptmx"}};

	/* Filled while still detached: nothing in the image can be in the way, and the device
	 * nodes are created relative to this fresh tmpfs's fd only. */
	ud_autoclose int dev = ud_fs_new("tmpfs", tmpfs_opts, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, e);
	if (dev < 0)
		return -1;
	for (size_t i = 0; i < UD_ARRAY_SIZE(nodes); i++)
		if (mknodat(dev, nodes[i].name, S_IFCHR | 0666,
			    makedev(nodes[i].major, nodes[i].minor)) < 0)
			return ud_fail(e, UD_EXIT_MOUNT, errno, "mknod /dev/%s", nodes[i].name);
	for (size_t i = 0; i < UD_ARRAY_SIZE(links); i++)
		if (symlinkat(links[i][1], dev, links[i][0]) < 0)
			return ud_fail(e, UD_EXIT_MOUNT, errno, "symlink /dev/%s", links[i][0]);
	if (mkdirat(dev, "pts", 0755) < 0 || mkdirat(dev, "shm", 01777) < 0)
		return ud_fail(e, UD_EXIT_MOUNT, errno, "mkdir in /dev");
	if (ud_fs_attach(dev, target, "/dev", e) < 0)
		return -1;

	/* Attached now: dev refers to the mounted tmpfs's root. Submounts go on paths resolved
	 * from it (moving into a detached tree needs Linux 6.5+). */
	static const char *const pts_opts[] = {"newinstance", NULL, "ptmxmode", "0666",
					       "mode",	      "0620", "gid",	  "5",
					       NULL};
	char shm_bytes[24];
	snprintf(shm_bytes, sizeof(shm_bytes), "%llu", shm_size);
	const char *const shm_opts[] = {"mode", "1777", "size", shm_bytes, NULL};
	ud_autoclose int pts_dir = openat(dev, "pts", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	ud_autoclose int shm_dir = openat(dev, "shm", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (pts_dir < 0 || shm_dir < 0)
		return ud_fail(e, UD_EXIT_MOUNT, errno, "opening /dev/pts or /dev/shm");
	ud_autoclose int pts = ud_fs_new("devpts", pts_opts, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, e);
	if (pts < 0 || ud_fs_attach(pts, pts_dir, "/dev/pts", e) < 0)
		return -1;
	ud_autoclose int shm = ud_fs_new("tmpfs", shm_opts,
				      MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC, e);
	if (shm < 0 || ud_fs_attach(shm, shm_dir, "/dev/shm", e) < 0)
		return -1;
	/* mkdirat applied the umask; /dev/shm must be world-writable and sticky. */
	ud_autoclose int shm_root = openat(dev, "shm", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (shm_root < 0 || fchmod(shm_root, 01777) < 0)
		return ud_fail(e, UD_EXIT_MOUNT, errno, "chmod /dev/shm");
	return 0;
}
