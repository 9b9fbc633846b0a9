/* Executes a mount plan. Everything happens in a mount namespace of our own, made private before
 * the first mount, so the host's mount table never sees any of it.
 *
 * Layout while building (all inside the new namespace):
 *   /tmp            a scratch tmpfs (mode 0700): init/ upper/ work/ root/
 *   /tmp/init       Docker's "init layer" idea: empty proc/ dev/ sys/ directories stacked above the
 *                   image, so an image whose /proc is a symlink (to /etc, to ../../..) gets a plain
 *                   directory there: a directory in a higher layer hides a lower non-directory.
 *   /tmp/root       the overlay: init + image layers (+ rw layer)
 * Then pivot_root into /tmp/root and detach the old root; the scratch tmpfs stays alive through
 * the overlay's private clones of its layers and vanishes with the namespace.
 *
 * Image paths are hostile: every path inside the new root is resolved with openat2(RESOLVE_IN_ROOT)
 * relative to the root's fd, and mounts go onto the resulting fd, never onto a path string. */
#include "rootfs.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "rwpath.h"
#include "util.h"

#define SCRATCH "/tmp"
#define MAX_MOUNT_DATA 4095 /* mount(2) copies its data argument as one page */

static int sys_openat2(int dirfd, const char *path, int flags, unsigned long long resolve)
{
	struct open_how how = {.flags = (unsigned long long)flags, .resolve = resolve};
	return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
}

static int sys_pivot_root(const char *new_root, const char *put_old)
{
	return (int)syscall(SYS_pivot_root, new_root, put_old);
}

/* Appends the fs context's log ("e overlay: ...") to a failure: the kernel explains there what
 * errno alone cannot. */
static int fs_fail(ud_error *e, int fsfd, int err, const char *what)
{
	char log[512] = "", line[256];
	size_t used = 0;
	for (int i = 0; i < 8 && fsfd >= 0; i++) {
		ssize_t n = read(fsfd, line, sizeof(line) - 1);
		if (n <= 0)
			break;
		line[n] = '\0';
		if (line[n - 1] == '\n')
			line[n - 1] = '\0';
		int w = snprintf(log + used, sizeof(log) - used, "%s%s", used ? "; " : " (kernel: ",
				 line);
		if (w < 0 || (size_t)w >= sizeof(log) - used)
			break;
		used += (size_t)w;
	}
	if (used && used + 1 < sizeof(log))
		strcat(log, ")");
	return ud_fail(e, UD_EXIT_MOUNT, err, "%s%s", what, log);
}

/* A fresh filesystem, detached: fsopen + options + fsmount with the given MOUNT_ATTR_* flags. */
static int new_fs(const char *type, const char *const *opts, unsigned attrs, ud_error *e)
{
	ud_autoclose int fsfd = fsopen(type, FSOPEN_CLOEXEC);
	char what[128];
	if (fsfd < 0)
		return ud_fail(e, UD_EXIT_MOUNT, errno, "fsopen(%s)", type);
	for (size_t i = 0; opts && opts[i]; i += 2) {
		int r = opts[i + 1] ? fsconfig(fsfd, FSCONFIG_SET_STRING, opts[i], opts[i + 1], 0)
				    : fsconfig(fsfd, FSCONFIG_SET_FLAG, opts[i], NULL, 0);
		if (r < 0) {
			snprintf(what, sizeof(what), "%s option %s", type, opts[i]);
			return fs_fail(e, fsfd, errno, what);
		}
	}
	if (fsconfig(fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0) {
		snprintf(what, sizeof(what), "creating a %s filesystem", type);
		return fs_fail(e, fsfd, errno, what);
	}
	int mfd = fsmount(fsfd, FSMOUNT_CLOEXEC, attrs);
	if (mfd < 0) {
		snprintf(what, sizeof(what), "fsmount(%s)", type);
		return fs_fail(e, fsfd, errno, what);
	}
	return mfd;
}

static int attach(int mfd, int target_fd, const char *where, ud_error *e)
{
	if (move_mount(mfd, "", target_fd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
		return ud_fail(e, UD_EXIT_MOUNT, errno, "mounting on %s", where);
	return 0;
}

/* ---------------------------------------------------------------- paths inside the new root */

#define IN_ROOT (RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)

/* Mounts where missing mount points may be created: the overlay root and the user's fresh tmpfs
 * mounts. Not a bind: an image symlink (/data -> /shared, with a bind at /shared) must not make
 * the helper, as root, create files in a host directory. */
struct mnt_set {
	uint64_t ids[64];
	size_t n;
};

static uint64_t mnt_id(int fd)
{
	struct statx stx;
	if (statx(fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_MNT_ID, &stx) < 0 ||
	    !(stx.stx_mask & STATX_MNT_ID))
		return 0;
	return stx.stx_mnt_id;
}

static void mnt_set_add(struct mnt_set *m, int fd)
{
	uint64_t id = mnt_id(fd);
	if (id && m->n < UD_ARRAY_SIZE(m->ids))
		m->ids[m->n++] = id;
}

static bool mnt_set_has(const struct mnt_set *m, int fd)
{
	uint64_t id = mnt_id(fd);
	for (size_t i = 0; id && i < m->n; i++)
		if (m->ids[i] == id)
			return true;
	return false;
}

/* Resolves an absolute image path inside rootfd. With create, missing components are made as
 * directories (the last one as a file when !dir), each relative to its resolved parent's fd, and
 * only on the mounts in `creatable`. */
static int resolve_in_root(int rootfd, const char *path, const struct mnt_set *creatable,
			   bool dir, ud_error *e)
{
	bool create = creatable != NULL;
	const char *rel = path + 1;
	int fd = sys_openat2(rootfd, rel, O_PATH | O_CLOEXEC, IN_ROOT);
	if (fd >= 0 || errno != ENOENT || !create) {
		if (fd < 0)
			return ud_fail(e, UD_EXIT_MOUNT, errno, "resolving %s inside the image",
				       path);
		return fd;
	}
	char parent[4096];
	snprintf(parent, sizeof(parent), "%s", path);
	char *slash = strrchr(parent, '/');
	const char *base = slash + 1;
	ud_autoclose int pfd = -1;
	if (slash == parent)
		pfd = fcntl(rootfd, F_DUPFD_CLOEXEC, 3);
	else {
		*slash = '\0';
		pfd = resolve_in_root(rootfd, parent, creatable, true, e);
	}
	if (pfd < 0)
		return -1;
	if (!mnt_set_has(creatable, pfd))
		return creatable->n == 0
			       ? ud_fail(e, UD_EXIT_MOUNT, ENOENT,
					 "mount point %s does not exist in the image, and the root is "
					 "read-only",
					 path)
			       : ud_fail(e, UD_EXIT_MOUNT, 0,
			       "mount point %s is missing and would have to be created inside a bind "
			       "mount or special filesystem (through a symlink in the image?): refusing",
			       path);
	/* The parent fd was resolved in the root; creating relative to it cannot escape. */
	int r;
	if (dir)
		r = mkdirat(pfd, base, 0755);
	else {
		r = openat(pfd, base, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
		if (r >= 0)
			close(r);
	}
	if (r < 0 && errno != EEXIST)
		return ud_fail(e, UD_EXIT_MOUNT, errno, "creating mount point %s inside the image%s",
			       path, errno == EROFS ? " (the root is read-only)" : "");
	fd = sys_openat2(rootfd, rel, O_PATH | O_CLOEXEC, IN_ROOT);
	if (fd < 0)
		return ud_fail(e, UD_EXIT_MOUNT, errno, "resolving %s inside the image", path);
	return fd;
}

/* ---------------------------------------------------------------- the overlay root */

struct layer_set {
	int *layer_fds;      /* each image layer, opened before the scratch tmpfs may hide it */
	int storage_fd;      /* img->storage_root */
	int scratch_fd;      /* /tmp scratch tmpfs */
	int rw_fd;           /* --rw-path DIR, or -1 */
	char upper[64], work[64];
};

static int overlay_fd_or_string(const struct ud_plan *p, struct layer_set *ls, bool by_fd,
				int target_fd, ud_error *e)
{
	const struct ud_image *img = p->img;
	ud_autoclose int fsfd = fsopen("overlay", FSOPEN_CLOEXEC);
	if (fsfd < 0)
		return ud_fail(e, UD_EXIT_MOUNT, errno, "fsopen(overlay)");

	/* lowerdir+ appends one layer per call, topmost first: init, then the image top to bottom. */
	for (size_t i = 0; i <= img->n_layers; i++) {
		const char *path = i == 0 ? SCRATCH "/init" : img->layers[i - 1];
		int r;
		if (by_fd) {
			ud_autoclose int init = -1;
			if (i == 0)
				init = openat(ls->scratch_fd, "init",
					      O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
			int lfd = i == 0 ? init : ls->layer_fds[i - 1];
			if (lfd < 0)
				return ud_fail(e, UD_EXIT_MOUNT, errno, "opening %s", path);
			r = fsconfig(fsfd, FSCONFIG_SET_FD, "lowerdir+", NULL, lfd);
		} else {
			/* By path; one under /tmp is hidden by the scratch tmpfs by now, so reach it
			 * through its fd (the plain path reads better in mountinfo). */
			char fdpath[64];
			bool hidden = i > 0 && !strncmp(path, SCRATCH "/", sizeof(SCRATCH));
			if (hidden)
				snprintf(fdpath, sizeof(fdpath), "/proc/self/fd/%d", ls->layer_fds[i - 1]);
			r = fsconfig(fsfd, FSCONFIG_SET_STRING, "lowerdir+", hidden ? fdpath : path, 0);
		}
		if (r < 0) {
			int err = errno;
			char what[1200];
			snprintf(what, sizeof(what), "overlay lowerdir+ %s (%s)", path,
				 by_fd ? "by fd" : "by path");
			fs_fail(e, fsfd, err, what);
			e->errnum = err;
			return -1;
		}
	}
	if (p->rw != UD_RW_NONE) {
		const char *keys[2] = {"upperdir", "workdir"};
		const char *vals[2] = {ls->upper, ls->work};
		for (int i = 0; i < 2; i++)
			if (fsconfig(fsfd, FSCONFIG_SET_STRING, keys[i], vals[i], 0) < 0)
				return fs_fail(e, fsfd, errno, keys[i]);
	}
	/* Docker's own layer dirs keep an image's trusted.overlay.redirect/metacopy xattrs (the
	 * export path drops them); without these the kernel would follow them (and with
	 * redirect_always_follow even redirect_dir=off does). */
	if (fsconfig(fsfd, FSCONFIG_SET_STRING, "redirect_dir", "nofollow", 0) < 0 ||
	    fsconfig(fsfd, FSCONFIG_SET_STRING, "metacopy", "off", 0) < 0)
		return fs_fail(e, fsfd, errno, "redirect_dir=nofollow,metacopy=off");
	if (fsconfig(fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
		return fs_fail(e, fsfd, errno, "creating the overlay root");
	/* nosuid, nodev: without a user namespace or a bounding set, a setuid-root binary in the
	 * image would be full root (and /proc/1/root leads to the host); without a devices cgroup,
	 * a device node in a layer would be usable. /dev is a tmpfs of our own. */
	unsigned attrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
	ud_autoclose int mfd = fsmount(fsfd, FSMOUNT_CLOEXEC,
				       attrs | (p->rw == UD_RW_NONE ? MOUNT_ATTR_RDONLY : 0));
	if (mfd < 0)
		return fs_fail(e, fsfd, errno, "fsmount(overlay)");
	return attach(mfd, target_fd, "the new root", e);
}

/* mount(2) with Docker's short names: the storage root's l/<id> symlinks point at each layer's
 * diff/, and a relative lowerdir resolves against our cwd, so 120 layers fit in one page. */
static int overlay_legacy(const struct ud_plan *p, struct layer_set *ls, ud_error *e)
{
	const struct ud_image *img = p->img;
	size_t cap = 64 + img->n_layers * 32 + 256, len = 0;
	ud_autofree char *data = malloc(cap);
	if (!data)
		return ud_fail(e, UD_EXIT_REFUSED, ENOMEM, "out of memory");
	len = (size_t)snprintf(data, cap, "lowerdir=%s", SCRATCH "/init");
	for (size_t i = 0; i < img->n_layers; i++) {
		const char *l = img->layers[i];
		char link[64];
		if (img->from_cache) {
			/* <cache>/sha256/<hex> → <cache>/l/<first 20 hex> */
			snprintf(link, sizeof(link), "%.20s", strrchr(l, '/') + 1);
		} else {
			/* <storage>/<id>/diff → <id>/link holds the short name */
			size_t rootlen = strlen(img->storage_root) + 1;
			char linkfile[1100];
			snprintf(linkfile, sizeof(linkfile), "%.*s/link",
				 (int)(strlen(l) - rootlen - 5), l + rootlen);
			ud_autoclose int lf =
				openat(ls->storage_fd, linkfile, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
			ssize_t n = lf >= 0 ? read(lf, link, sizeof(link) - 1) : -1;
			if (n <= 0)
				return ud_fail(e, UD_EXIT_STORAGE, n < 0 ? errno : 0,
					       "reading the short name of layer %s (%s/%s)", l,
					       img->storage_root, linkfile);
			link[n] = '\0';
			link[strcspn(link, "\n")] = '\0';
		}
		/* The short name goes into the mount options: it must be a plain name. */
		if (!*link ||
		    strspn(link, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef0123456789") != strlen(link))
			return ud_fail(e, UD_EXIT_STORAGE, 0, "layer %s has a bad short name '%s'", l,
				       link);
		char lpath[80];
		snprintf(lpath, sizeof(lpath), "l/%s", link);
		struct stat st;
		if (fstatat(ls->storage_fd, lpath, &st, 0) < 0 || !S_ISDIR(st.st_mode))
			return ud_fail(e, UD_EXIT_STORAGE, errno,
				       "layer %s: short name %s/%s is not a directory", l,
				       img->storage_root, lpath);
		len += (size_t)snprintf(data + len, cap - len, ":%s", lpath);
	}
	if (p->rw != UD_RW_NONE)
		len += (size_t)snprintf(data + len, cap - len, ",upperdir=%s,workdir=%s", ls->upper,
					ls->work);
	len += (size_t)snprintf(data + len, cap - len, ",redirect_dir=nofollow,metacopy=off");
	if (len > MAX_MOUNT_DATA)
		return ud_fail(e, UD_EXIT_MOUNT, E2BIG,
			       "overlay options for %zu layers are %zu bytes, more than mount(2) "
			       "takes (%d); a kernel with lowerdir+ (6.8) has no such limit",
			       img->n_layers, len, MAX_MOUNT_DATA);
	ud_autoclose int cwd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fchdir(ls->storage_fd) < 0)
		return ud_fail(e, UD_EXIT_MOUNT, errno, "chdir to %s", img->storage_root);
	unsigned long flags = MS_NOSUID | MS_NODEV | (p->rw == UD_RW_NONE ? MS_RDONLY : 0);
	int r = mount("overlay", SCRATCH "/root", "overlay", flags, data);
	int err = errno;
	if (cwd >= 0 && fchdir(cwd) < 0) {
		/* cwd only matters for the relative layer names above */
	}
	if (r < 0)
		return ud_fail(e, UD_EXIT_MOUNT, err, "mount(2) of the overlay root (%zu layers)",
			       img->n_layers);
	return 0;
}

/* A persistent rw layer must not serve two live namespaces at once. The kernel knows: overlayfs
 * marks an upperdir in use for as long as its mount lives (in whatever namespace, pinned or held
 * by an fd), but only refuses a second user when mounted with index=on, which would tie the rw
 * layer to one exact lower stack. So we probe (rw_path_probe): an overlay with index=on over
 * DIR/upper and a workdir on another mount. The kernel checks the upperdir first (EBUSY if in
 * use) and then refuses the workdir (EINVAL) before it writes anything: no mount, no side
 * effect. DIR/lock, taken in rwpath.c, serialises helpers from the probe to the real mount. */
static int rw_path_open(const char *dir, int prepared_fd, struct layer_set *ls, ud_error *e)
{
	ls->rw_fd = ud_rw_path_reopen(dir, prepared_fd, e);
	if (ls->rw_fd < 0)
		return -1;
	/* /proc/self/fd/N reaches DIR even where the scratch tmpfs hides it (DIR under /tmp). */
	snprintf(ls->upper, sizeof(ls->upper), "/proc/self/fd/%d/upper", ls->rw_fd);
	snprintf(ls->work, sizeof(ls->work), "/proc/self/fd/%d/work", ls->rw_fd);
	return 0;
}

static int rw_path_probe(const char *dir, const struct layer_set *ls, ud_error *e)
{
	ud_autoclose int fsfd = fsopen("overlay", FSOPEN_CLOEXEC);
	if (fsfd < 0)
		return ud_fail(e, UD_EXIT_MOUNT, errno, "fsopen(overlay)");
	const char *const opts[][2] = {{"lowerdir", SCRATCH "/init"},
				       {"upperdir", ls->upper},
				       {"workdir", SCRATCH "/work"},
				       {"index", "on"}};
	for (size_t i = 0; i < UD_ARRAY_SIZE(opts); i++)
		if (fsconfig(fsfd, FSCONFIG_SET_STRING, opts[i][0], opts[i][1], 0) < 0)
			return fs_fail(e, fsfd, errno, "probing --rw-path");
	if (fsconfig(fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) == 0)
		return ud_fail(e, UD_EXIT_MOUNT, 0, "probing --rw-path %s: unexpected success", dir);
	if (errno == EBUSY)
		return ud_fail(e, UD_EXIT_MOUNT, EBUSY,
			       "--rw-path %s is in use by another live namespace", dir);
	return 0;
}

/* ---------------------------------------------------------------- special filesystems */

static int mount_proc(int target, ud_error *e)
{
	ud_autoclose int m = new_fs("proc", NULL, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC, e);
	return m < 0 ? -1 : attach(m, target, "/proc", e);
}

static int mount_sys(int target, ud_error *e)
{
	ud_autoclose int m = new_fs("sysfs", NULL,
				    MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV |
					    MOUNT_ATTR_NOEXEC,
				    e);
	return m < 0 ? -1 : attach(m, target, "/sys", e);
}

static int mount_dev(int target, ud_error *e)
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
	ud_autoclose int dev = new_fs("tmpfs", tmpfs_opts, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, e);
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
	if (attach(dev, target, "/dev", e) < 0)
		return -1;

	/* Attached now: dev refers to the mounted tmpfs's root. Submounts go on paths resolved
	 * from it (moving into a detached tree needs Linux 6.5+). */
	static const char *const pts_opts[] = {"newinstance", NULL, "ptmxmode", "0666",
					       "mode",	      "0620", "gid",	  "5",
					       NULL};
	static const char *const shm_opts[] = {"mode", "1777", "size", "65536k", NULL};
	ud_autoclose int pts_dir = openat(dev, "pts", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	ud_autoclose int shm_dir = openat(dev, "shm", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (pts_dir < 0 || shm_dir < 0)
		return ud_fail(e, UD_EXIT_MOUNT, errno, "opening /dev/pts or /dev/shm");
	ud_autoclose int pts = new_fs("devpts", pts_opts, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, e);
	if (pts < 0 || attach(pts, pts_dir, "/dev/pts", e) < 0)
		return -1;
	ud_autoclose int shm = new_fs("tmpfs", shm_opts,
				      MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC, e);
	if (shm < 0 || attach(shm, shm_dir, "/dev/shm", e) < 0)
		return -1;
	/* mkdirat applied the umask; /dev/shm must be world-writable and sticky. */
	ud_autoclose int shm_root = openat(dev, "shm", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (shm_root < 0 || fchmod(shm_root, 01777) < 0)
		return ud_fail(e, UD_EXIT_MOUNT, errno, "chmod /dev/shm");
	return 0;
}

static int mount_tmpfs(int target, const char *where, struct mnt_set *creatable, ud_error *e)
{
	static const char *const opts[] = {"mode", "1777", NULL};
	ud_autoclose int m = new_fs("tmpfs", opts, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, e);
	if (m < 0 || attach(m, target, where, e) < 0)
		return -1;
	/* Ours and empty: later mount points beneath it may be made there. */
	mnt_set_add(creatable, m);
	return 0;
}

/* A fresh bind takes the source's flags and ignores MS_RDONLY: read-only is applied to the new
 * mount afterwards, recursively, with mount_setattr (5.12) on the detached tree, or with a bind
 * remount once attached (older kernels, and --mount-api legacy, which then covers only the top
 * mount). */
static int readonly_detached(int tree, bool *legacy, const char *where, ud_error *e)
{
	if (*legacy)
		return 0;
	struct mount_attr attr = {.attr_set = MOUNT_ATTR_RDONLY};
	if (mount_setattr(tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof(attr)) == 0)
		return 0;
	if (errno != ENOSYS)
		return ud_fail(e, UD_EXIT_MOUNT, errno, "making %s read-only", where);
	*legacy = true;
	return 0;
}

static int readonly_attached(int tree, const char *where, ud_error *e)
{
	/* tree now refers to the attached mount's root; its /proc/self/fd path names it. */
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", tree);
	unsigned long keep = 0;
	static const unsigned long map[][2] = {
		{ST_NOSUID, MS_NOSUID}, {ST_NODEV, MS_NODEV}, {ST_NOEXEC, MS_NOEXEC}};
	struct statvfs sv;
	if (fstatvfs(tree, &sv) == 0)
		for (size_t i = 0; i < UD_ARRAY_SIZE(map); i++)
			if (sv.f_flag & map[i][0])
				keep |= map[i][1];
	/* A remount must restate the locked flags it keeps, or EPERM. */
	if (mount(NULL, path, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | keep, NULL) < 0)
		return ud_fail(e, UD_EXIT_MOUNT, errno, "remounting %s read-only", where);
	return 0;
}

/* Clones srcfd's tree onto target, read-only if asked. */
static int bind_onto(const struct ud_plan *p, int srcfd, int target, bool readonly,
		     const char *where, ud_error *e)
{
	ud_autoclose int tree = open_tree(srcfd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC |
							    AT_EMPTY_PATH | AT_RECURSIVE);
	if (tree < 0)
		return ud_fail(e, UD_EXIT_MOUNT, errno, "cloning the tree for %s", where);
	bool legacy = p->mount_api == UD_API_LEGACY;
	if ((readonly && readonly_detached(tree, &legacy, where, e) < 0) ||
	    attach(tree, target, where, e) < 0)
		return -1;
	return readonly && legacy ? readonly_attached(tree, where, e) : 0;
}

static int mount_bind(const struct ud_plan *p, int srcfd, int rootfd, const struct ud_op *op,
		      const struct mnt_set *creatable, ud_error *e)
{
	struct stat st;
	if (fstat(srcfd, &st) < 0)
		return ud_fail(e, UD_EXIT_MOUNT, errno, "bind source %s", op->src);
	ud_autoclose int target = resolve_in_root(rootfd, op->dst, creatable,
						  S_ISDIR(st.st_mode), e);
	if (target < 0)
		return -1;
	return bind_onto(p, srcfd, target, op->readonly, op->dst, e);
}

/* Masked and read-only paths inside our own fresh /proc and /sys, resolved in the root all the
 * same. A path this kernel lacks is skipped. A masked file gets an empty read-only file of the
 * scratch tmpfs over it (reads give nothing), a masked directory an empty read-only tmpfs. */
static int mount_confine(const struct ud_plan *p, int rootfd, const struct ud_op *op,
			 int empty_file, ud_error *e)
{
	ud_autoclose int t = sys_openat2(rootfd, op->dst + 1, O_PATH | O_CLOEXEC, IN_ROOT);
	struct stat st;
	if (t < 0 && errno == ENOENT)
		return 0;
	if (t < 0 || fstat(t, &st) < 0)
		return ud_fail(e, UD_EXIT_MOUNT, errno, "resolving %s inside the image", op->dst);
	if (op->type == UD_OP_READONLY)
		return bind_onto(p, t, t, true, op->dst, e);
	if (!S_ISDIR(st.st_mode))
		return bind_onto(p, empty_file, t, true, op->dst, e);
	static const char *const opts[] = {"mode", "0555", "size", "4k", NULL};
	ud_autoclose int m = new_fs("tmpfs", opts,
				    MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV |
					    MOUNT_ATTR_NOEXEC,
				    e);
	return m < 0 ? -1 : attach(m, t, op->dst, e);
}

/* Everything after the root, in plan order, each on a target resolved inside the new root. */
static int mount_ops(const struct ud_plan *p, int rootfd, const int *srcs, int scratch_fd,
		     ud_error *e)
{
	/* A read-only root takes no new mount points; the init layer has /proc /dev /sys. */
	struct mnt_set creatable = {.n = 0};
	if (p->rw != UD_RW_NONE)
		mnt_set_add(&creatable, rootfd);
	/* The masks' empty file (mode 0444 under umask 0), on the scratch tmpfs. */
	ud_autoclose int empty = -1;
	for (size_t i = 1; i < p->n_ops; i++) {
		const struct ud_op *op = &p->ops[i];
		if (op->type == UD_OP_BIND) {
			if (mount_bind(p, srcs[i], rootfd, op, &creatable, e) < 0)
				return -1;
			continue;
		}
		if (op->type == UD_OP_MASK || op->type == UD_OP_READONLY) {
			if (empty < 0 &&
			    (empty = openat(scratch_fd, "empty", O_RDONLY | O_CREAT | O_EXCL |
								 O_NOFOLLOW | O_CLOEXEC, 0444)) < 0)
				return ud_fail(e, UD_EXIT_MOUNT, errno, "creating %s/empty", SCRATCH);
			if (mount_confine(p, rootfd, op, empty, e) < 0)
				return -1;
			continue;
		}
		/* /proc /dev /sys exist as plain directories thanks to the init layer; the user's
		 * tmpfs targets are created if missing. */
		ud_autoclose int t = resolve_in_root(rootfd, op->dst, &creatable, true, e);
		int rc = t < 0 ? -1
			 : op->type == UD_OP_PROC ? mount_proc(t, e)
			 : op->type == UD_OP_DEV  ? mount_dev(t, e)
			 : op->type == UD_OP_SYS  ? mount_sys(t, e)
						  : mount_tmpfs(t, op->dst, &creatable, e);
		if (rc < 0)
			return -1;
	}
	return 0;
}

/* ---------------------------------------------------------------- the whole sequence */

void ud_ns_fds_close(struct ud_ns_fds *ns)
{
	for (int i = 0; i < ns->n; i++)
		if (ns->fds[i] >= 0)
			close(ns->fds[i]);
	if (ns->host_mnt >= 0)
		close(ns->host_mnt);
	ns->n = 0;
	ns->host_mnt = -1;
}

static int open_ns_fds(const struct ud_plan *p, struct ud_ns_fds *ns, ud_error *e)
{
	static const int order[] = {CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWUTS, CLONE_NEWNET,
				    CLONE_NEWCGROUP};
	for (size_t i = 0; i < UD_ARRAY_SIZE(order); i++) {
		if (!(p->unshare_flags & order[i]))
			continue;
		char path[64];
		/* /proc/self, never /proc/<getpid()>: under emperor-use-clone=pid our pid is
		 * another process's in /proc. */
		snprintf(path, sizeof(path), "/proc/self/ns/%s", ud_ns_name(order[i]));
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return ud_fail(e, UD_EXIT_MOUNT, errno, "opening %s", path);
		ns->types[ns->n] = order[i];
		ns->fds[ns->n++] = fd;
	}
	return 0;
}

int ud_rootfs_enter(const struct ud_plan *p, struct ud_ns_fds *ns, ud_error *e)
{
	const struct ud_image *img = p->img;
	struct layer_set ls = {.storage_fd = -1, .scratch_fd = -1, .rw_fd = -1};
	ud_autoclose int lock_fd = -1, rw_host = -1, rootfd = -1, scratch_mp = -1, root_mp = -1;
	ud_autofree int *srcs = NULL;
	int r = -1;
	mode_t old_umask = umask(0);

	memset(ns, 0, sizeof(*ns));
	ns->host_mnt = -1;
	ns->host_mnt = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
	if (ns->host_mnt < 0) {
		ud_fail(e, UD_EXIT_MOUNT, errno, "opening /proc/self/ns/mnt (is /proc mounted?)");
		goto out;
	}
	if (p->rw == UD_RW_PATH && ud_rw_path_prepare(p->rw_path, &rw_host, &lock_fd, e) < 0)
		goto out;
	if (unshare(p->unshare_flags) < 0) {
		ud_fail(e, UD_EXIT_MOUNT, errno, "unshare of the namespaces");
		goto out;
	}
	/* Before any mount: nothing we do may propagate back to the host's peers. */
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
		ud_fail(e, UD_EXIT_MOUNT, errno, "making / private in the new namespace");
		goto out;
	}
	if (open_ns_fds(p, ns, e) < 0)
		goto out;
	if (p->hostname && sethostname(p->hostname, strlen(p->hostname)) < 0) {
		ud_fail(e, UD_EXIT_MOUNT, errno, "sethostname %s", p->hostname);
		goto out;
	}

	/* Host-side paths are opened now, in the new namespace (a mount of another namespace cannot
	 * be cloned or used as a layer) and before the scratch tmpfs may hide them. */
	ls.storage_fd = open(img->storage_root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (ls.storage_fd < 0) {
		ud_fail(e, UD_EXIT_STORAGE, errno, "opening storage %s", img->storage_root);
		goto out;
	}
	if (p->mount_api != UD_API_LEGACY) {
		ls.layer_fds = malloc(sizeof(int) * (img->n_layers + 1));
		if (!ls.layer_fds) {
			ud_fail(e, UD_EXIT_REFUSED, ENOMEM, "out of memory");
			goto out;
		}
		for (size_t i = 0; i < img->n_layers; i++)
			ls.layer_fds[i] = -1;
		for (size_t i = 0; i < img->n_layers; i++) {
			ls.layer_fds[i] = open(img->layers[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			if (ls.layer_fds[i] < 0) {
				ud_fail(e, UD_EXIT_STORAGE, errno, "opening layer %s", img->layers[i]);
				goto out;
			}
		}
	}
	srcs = calloc(p->n_ops + 1, sizeof(int));
	if (!srcs) {
		ud_fail(e, UD_EXIT_REFUSED, ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < p->n_ops; i++) {
		srcs[i] = -1;
		if (p->ops[i].type != UD_OP_BIND)
			continue;
		srcs[i] = open(p->ops[i].src, O_PATH | O_CLOEXEC);
		if (srcs[i] < 0) {
			ud_fail(e, UD_EXIT_MOUNT, errno, "bind source %s", p->ops[i].src);
			goto out;
		}
	}
	if (p->rw == UD_RW_PATH && rw_path_open(p->rw_path, rw_host, &ls, e) < 0)
		goto out;

	/* Scratch tmpfs on /tmp. Attached (not left detached): overlayfs clones its layers'
	 * mounts privately, which older kernels allow only for mounts in our own namespace. */
	{
		static const char *const opts[] = {"mode", "0700", "size", "16m", NULL};
		ud_autoclose int m = new_fs("tmpfs", opts, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, e);
		if (m < 0)
			goto out;
		scratch_mp = open(SCRATCH, O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (scratch_mp < 0) {
			ud_fail(e, UD_EXIT_MOUNT, errno, "opening %s", SCRATCH);
			goto out;
		}
		if (attach(m, scratch_mp, SCRATCH, e) < 0)
			goto out;
		ls.scratch_fd = fcntl(m, F_DUPFD_CLOEXEC, 3);
	}
	static const char *const scratch_dirs[] = {"init", "init/proc", "init/dev", "init/sys",
						   "upper", "work", "root"};
	for (size_t i = 0; i < UD_ARRAY_SIZE(scratch_dirs); i++)
		if (mkdirat(ls.scratch_fd, scratch_dirs[i], 0755) < 0) {
			ud_fail(e, UD_EXIT_MOUNT, errno, "mkdir %s/%s", SCRATCH, scratch_dirs[i]);
			goto out;
		}
	if (p->rw == UD_RW_PATH && rw_path_probe(p->rw_path, &ls, e) < 0)
		goto out;
	if (p->rw == UD_RW_TMPFS) {
		snprintf(ls.upper, sizeof(ls.upper), SCRATCH "/upper");
		snprintf(ls.work, sizeof(ls.work), SCRATCH "/work");
	}

	root_mp = openat(ls.scratch_fd, "root", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (root_mp < 0) {
		ud_fail(e, UD_EXIT_MOUNT, errno, "opening %s/root", SCRATCH);
		goto out;
	}
	switch (p->mount_api) {
	case UD_API_AUTO:
		/* Best first; EINVAL from lowerdir+ means this kernel lacks that form. */
		if (overlay_fd_or_string(p, &ls, true, root_mp, e) == 0)
			break;
		if (e->errnum != EINVAL)
			goto out;
		if (overlay_fd_or_string(p, &ls, false, root_mp, e) == 0)
			break;
		if (e->errnum != EINVAL)
			goto out;
		if (overlay_legacy(p, &ls, e) < 0)
			goto out;
		break;
	case UD_API_FD:
	case UD_API_STRING:
		if (overlay_fd_or_string(p, &ls, p->mount_api == UD_API_FD, root_mp, e) < 0)
			goto out;
		break;
	case UD_API_LEGACY:
		if (overlay_legacy(p, &ls, e) < 0)
			goto out;
		break;
	}

	rootfd = openat(ls.scratch_fd, "root", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0) {
		ud_fail(e, UD_EXIT_MOUNT, errno, "opening the new root");
		goto out;
	}
	if (mount_ops(p, rootfd, srcs, ls.scratch_fd, e) < 0)
		goto out;

	/* pivot_root(".", "."): the old root ends up mounted on top of the new one, where "." now
	 * resolves; make it private (already so, but a detach must never propagate) and detach. */
	if (fchdir(rootfd) < 0 || sys_pivot_root(".", ".") < 0) {
		ud_fail(e, UD_EXIT_MOUNT, errno, "pivot_root into the new root");
		goto out;
	}
	if (mount(NULL, ".", NULL, MS_REC | MS_PRIVATE, NULL) < 0 || umount2(".", MNT_DETACH) < 0) {
		ud_fail(e, UD_EXIT_MOUNT, errno, "detaching the old root");
		goto out;
	}
	if (chdir("/") < 0) {
		ud_fail(e, UD_EXIT_MOUNT, errno, "chdir /");
		goto out;
	}
	r = 0;
out:
	if (srcs)
		for (size_t i = 0; i < p->n_ops; i++)
			if (srcs[i] >= 0)
				close(srcs[i]);
	if (ls.layer_fds) {
		for (size_t i = 0; i < img->n_layers; i++)
			if (ls.layer_fds[i] >= 0)
				close(ls.layer_fds[i]);
		free(ls.layer_fds);
	}
	ud_closep(&ls.storage_fd);
	ud_closep(&ls.scratch_fd);
	ud_closep(&ls.rw_fd);
	umask(old_umask);
	if (r < 0)
		ud_ns_fds_close(ns);
	return r;
}
