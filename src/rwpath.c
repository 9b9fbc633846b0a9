/* --rw-path DIR, made safe to use as root: no symlink anywhere in the path (a link to /etc would
 * have the helper create /etc/upper), never "/", and never a directory that something else
 * filled (a foreign work/ would be handed to overlayfs as its scratch space). */
#include "rwpath.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

#define NO_LINKS (RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)

static int openat2_nolinks(int dirfd, const char *path, int flags)
{
	return ud_openat2(dirfd, path, flags | O_CLOEXEC, NO_LINKS);
}

/* Walks DIR one component at a time from "/", each relative to its parent's fd, making the
 * missing ones: nothing a symlink says is ever followed. */
static int walk_mkdir(const char *dir, ud_error *e)
{
	char buf[4096];
	if (snprintf(buf, sizeof(buf), "%s", dir) >= (int)sizeof(buf))
		return ud_fail(e, UD_EXIT_USAGE, ENAMETOOLONG, "--rw-path %s", dir);
	ud_autoclose int fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	char *save = NULL;
	for (char *c = strtok_r(buf, "/", &save); c && fd >= 0; c = strtok_r(NULL, "/", &save)) {
		if (!strcmp(c, ".") || !strcmp(c, ".."))
			return ud_fail(e, UD_EXIT_USAGE, 0, "--rw-path %s: no '.' or '..' please", dir);
		int next = openat2_nolinks(fd, c, O_PATH | O_DIRECTORY);
		if (next < 0 && errno == ENOENT && (mkdirat(fd, c, 0700) == 0 || errno == EEXIST))
			next = openat2_nolinks(fd, c, O_PATH | O_DIRECTORY);
		if (next < 0)
			return ud_fail(e, UD_EXIT_MOUNT, errno,
				       "--rw-path %s: at '%s'%s", dir, c,
				       errno == ELOOP || errno == EXDEV || errno == ENOTDIR
					       ? " (a symlink or not a directory: refused)"
					       : "");
		ud_closep(&fd);
		fd = next;
	}
	int r = fd < 0 ? -1 : openat2_nolinks(fd, ".", O_RDONLY | O_DIRECTORY);
	if (r < 0)
		return ud_fail(e, UD_EXIT_MOUNT, errno, "opening --rw-path %s", dir);
	return r;
}

/* 1: marked; 0: empty; -1 (refused) otherwise. */
static int dir_state(int fd, const char *dir, ud_error *e)
{
	static const char *const ours[] = {"lock", "upper", "work", UD_RW_MARKER};
	int dfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
	if (!d) {
		if (dfd >= 0)
			close(dfd);
		return ud_fail(e, UD_EXIT_MOUNT, errno, "reading --rw-path %s", dir);
	}
	bool marked = false, known = true;
	char first[256] = "", odd[256] = "";
	for (struct dirent *de; (de = readdir(d));) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		bool ok = false;
		for (size_t i = 0; i < UD_ARRAY_SIZE(ours); i++)
			ok |= !strcmp(de->d_name, ours[i]);
		marked |= !strcmp(de->d_name, UD_RW_MARKER);
		if (!first[0])
			snprintf(first, sizeof(first), "%s", de->d_name);
		if (!ok && known) {
			known = false;
			snprintf(odd, sizeof(odd), "%s", de->d_name);
		}
	}
	closedir(d);
	if (marked && known)
		return 1;
	if (!first[0])
		return 0;
	return ud_fail(e, UD_EXIT_MOUNT, 0,
		       "--rw-path %s holds '%s' and is not a rw layer of this helper (no %s): "
		       "name a new or empty directory",
		       dir, marked ? odd : first, UD_RW_MARKER);
}

static int init_dir(int fd, const char *dir, bool marked, ud_error *e)
{
	if (!marked) {
		int m = openat(fd, UD_RW_MARKER, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
			       0600);
		static const char text[] = "a persistent rw layer of uwsgi-docker-rootfs\n";
		/* EEXIST: another helper marked DIR since we looked (only root writes there). */
		if (m < 0 && errno == EEXIST)
			return init_dir(fd, dir, true, e);
		if (m < 0 || write(m, text, sizeof(text) - 1) != (ssize_t)sizeof(text) - 1) {
			int err = errno;
			if (m >= 0)
				close(m);
			return ud_fail(e, UD_EXIT_MOUNT, err, "marking --rw-path %s", dir);
		}
		close(m);
	}
	static const struct {
		const char *name;
		mode_t mode;
	} subs[] = {{"upper", 0755}, {"work", 0700}};
	for (size_t i = 0; i < UD_ARRAY_SIZE(subs); i++) {
		struct stat st;
		if ((mkdirat(fd, subs[i].name, subs[i].mode) < 0 && errno != EEXIST) ||
		    fstatat(fd, subs[i].name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			return ud_fail(e, UD_EXIT_MOUNT, errno, "creating %s/%s", dir, subs[i].name);
		if (!S_ISDIR(st.st_mode))
			return ud_fail(e, UD_EXIT_MOUNT, 0, "%s/%s is not a directory", dir,
				       subs[i].name);
	}
	return 0;
}

int ud_rw_path_prepare(const char *dir, int *dir_fd, int *lock_fd, ud_error *e)
{
	ud_autoclose int fd = walk_mkdir(dir, e);
	if (fd < 0)
		return -1;
	struct stat st;
	if (fstat(fd, &st) < 0)
		return ud_fail(e, UD_EXIT_MOUNT, errno, "--rw-path %s", dir);
	/* Anyone else who may write in DIR could swap upper/ or work/ under the helper. */
	if (st.st_uid != 0 || (st.st_mode & 022))
		return ud_fail(e, UD_EXIT_MOUNT, 0,
			       "--rw-path %s must be owned by root and not writable by group or "
			       "others (owner %u, mode %04o)",
			       dir, (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777));
	int state = dir_state(fd, dir, e);
	if (state < 0 || init_dir(fd, dir, state == 1, e) < 0)
		return -1;
	/* Serialises helpers on the same DIR from the in-use probe to the real mount. */
	*lock_fd = openat(fd, "lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (*lock_fd < 0 || flock(*lock_fd, LOCK_EX) < 0)
		return ud_fail(e, UD_EXIT_MOUNT, errno, "locking %s/lock", dir);
	*dir_fd = ud_steal_fd(&fd);
	return 0;
}

int ud_rw_path_reopen(const char *dir, int prepared_fd, ud_error *e)
{
	ud_autoclose int fd = openat2_nolinks(AT_FDCWD, dir, O_PATH | O_DIRECTORY);
	struct stat a, b;
	if (fd < 0 || fstat(fd, &a) < 0 || fstat(prepared_fd, &b) < 0)
		return ud_fail(e, UD_EXIT_MOUNT, errno, "opening --rw-path %s", dir);
	if (a.st_dev != b.st_dev || a.st_ino != b.st_ino)
		return ud_fail(e, UD_EXIT_MOUNT, 0, "--rw-path %s changed while being prepared", dir);
	return ud_steal_fd(&fd);
}
