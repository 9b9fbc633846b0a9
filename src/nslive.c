/* The live mount namespaces (nslive.h). Everything here reads /proc of processes that may end
 * at any moment: a read that fails is a process gone, never an error. */
#include "nslive.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/nsfs.h>
#include <linux/openat2.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lm.h"
#include "util.h"

#ifndef NS_GET_MNTNS_ID
#define NS_GET_MNTNS_ID _IOR(0xb7, 0x5, __u64)
#endif

uint64_t ud_nslive_id(int fd)
{
	__u64 id = 0;
	return ioctl(fd, NS_GET_MNTNS_ID, &id) == 0 ? (uint64_t)id : 0;
}

bool ud_nslive_has(const struct ud_nslive *live, unsigned long ino, uint64_t id)
{
	for (size_t i = 0; i < live->n; i++)
		if (live->v[i].ino == ino && (!id || !live->v[i].id || live->v[i].id == id))
			return true;
	return false;
}

void ud_nslive_free(struct ud_nslive *live)
{
	free(live->v);
	*live = (struct ud_nslive){0};
}

/* "mnt:[<inode>]", as /proc/PID/ns/mnt, a descriptor's link and an nsfs mount's root read. */
static bool mnt_link_ino(const char *s, unsigned long *ino)
{
	char tail;
	return sscanf(s, "mnt:[%lu%c", ino, &tail) == 2 && tail == ']';
}

static bool known_ino(const struct ud_nslive *live, unsigned long ino)
{
	for (size_t i = 0; i < live->n; i++)
		if (live->v[i].ino == ino)
			return true;
	return false;
}

/* fd is open on an nsfs file: adds it if it is a mount namespace. */
static void add_fd(struct ud_nslive *live, int fd)
{
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0 || ioctl(fd, NS_GET_NSTYPE) != CLONE_NEWNS)
		return;
	struct ud_ns_key k = {(unsigned long)st.st_ino, ud_nslive_id(fd)};
	if (!ud_nslive_has(live, k.ino, k.id))
		ud_push(&live->v, &live->n, sizeof(k), &k);
}

static void add_path(struct ud_nslive *live, const char *path)
{
	ud_autoclose int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	add_fd(live, fd);
}

/* The nsfs pins of one mount table (a process's, so its targets are paths in that process's
 * root). The paths may cross an image's symlinks: resolved inside that root, none followed, and
 * opened non-blocking (a FIFO where a pin was must not hang the collection). */
static void add_pins(struct ud_nslive *live, const char *pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%s/mountinfo", pid);
	struct libmnt_table *tb = ud_lm.mnt_new_table_from_file(path);
	struct libmnt_iter *it = tb ? ud_lm.mnt_new_iter(MNT_ITER_FORWARD) : NULL;
	snprintf(path, sizeof(path), "/proc/%s/root", pid);
	ud_autoclose int root = it ? open(path, O_PATH | O_DIRECTORY | O_CLOEXEC) : -1;
	struct libmnt_fs *fs;
	while (root >= 0 && ud_lm.mnt_table_next_fs(tb, it, &fs) == 0) {
		unsigned long ino;
		const char *type = ud_lm.mnt_fs_get_fstype(fs), *froot = ud_lm.mnt_fs_get_root(fs);
		if (!type || strcmp(type, "nsfs") || !froot || !mnt_link_ino(froot, &ino) ||
		    known_ino(live, ino) || !ud_lm.mnt_fs_get_target(fs))
			continue;
		ud_autoclose int fd =
			ud_openat2(root, ud_lm.mnt_fs_get_target(fs), O_RDONLY | O_NONBLOCK | O_CLOEXEC,
				   RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
		add_fd(live, fd);
	}
	ud_lm.mnt_free_iter(it);
	ud_lm.mnt_unref_table(tb);
}

static void add_fds(struct ud_nslive *live, const char *pid)
{
	char dir[64], path[384], link[64];
	snprintf(dir, sizeof(dir), "/proc/%s/fd", pid);
	DIR *d = opendir(dir);
	struct dirent *de;
	while (d && (de = readdir(d))) {
		unsigned long ino;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		ssize_t n = readlink(path, link, sizeof(link) - 1);
		if (n <= 0 || (link[n] = '\0', !mnt_link_ino(link, &ino)) || known_ino(live, ino))
			continue;
		add_path(live, path);
	}
	if (d)
		closedir(d);
}

/* A process's own namespace (and the pins its mount table holds, read once per namespace),
 * then the namespaces its descriptors hold. */
static void add_process(struct ud_nslive *live, const char *pid)
{
	char path[64], link[64];
	unsigned long ino;
	snprintf(path, sizeof(path), "/proc/%s/ns/mnt", pid);
	ssize_t n = readlink(path, link, sizeof(link) - 1);
	if (n > 0 && (link[n] = '\0', mnt_link_ino(link, &ino)) && !known_ino(live, ino)) {
		add_path(live, path);
		add_pins(live, pid);
	}
	add_fds(live, pid);
}

int ud_nslive_scan(struct ud_nslive *live, ud_error *e)
{
	*live = (struct ud_nslive){0};
	if (ud_lm_load(e) < 0)
		return -1;
	DIR *proc = opendir("/proc");
	if (!proc)
		return ud_fail(e, UD_EXIT_STORAGE, errno, "reading /proc");
	/* Our own table first. "self", never getpid(): in a PID namespace of our own under the
	 * host's /proc, our pid names some other process. */
	add_process(live, "self");
	struct dirent *de;
	while ((de = readdir(proc)))
		if (isdigit((unsigned char)de->d_name[0]))
			add_process(live, de->d_name);
	closedir(proc);
	return 0;
}
