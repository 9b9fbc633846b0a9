/* The overlay root. The plan names the layers (paths and short names); this file opens them
 * and mounts them by the best form the kernel takes, falling back, with --mount-api auto, where
 * the kernel answers EINVAL for a form it lacks. */
#include "overlay.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs.h"
#include "rwpath.h"
#include "util.h"

#define TRY_NEXT 1 /* this kernel lacks this form of the mount: try the next one */

void ud_overlay_layers_close(struct ud_overlay_layers *ls)
{
	for (size_t i = 0; i < ls->n_fds; i++)
		ud_closep(&ls->fds[i]);
	free(ls->fds);
	ls->fds = NULL;
	ls->n_fds = 0;
	ud_closep(&ls->storage_fd);
	ud_closep(&ls->scratch_fd);
	ud_closep(&ls->rw_fd);
}

/* A persistent rw layer must not serve two live namespaces at once. The kernel knows: overlayfs
 * marks an upperdir in use for as long as its mount lives (in whatever namespace, pinned or held
 * by an fd), but only refuses a second user when mounted with index=on, which would tie the rw
 * layer to one exact lower stack. So we probe (ud_overlay_rw_probe): an overlay with index=on
 * over DIR/upper and a workdir on another mount. The kernel checks the upperdir first (EBUSY if
 * in use) and then refuses the workdir (EINVAL) before it writes anything: no mount, no side
 * effect. DIR/lock, taken in rwpath.c, serialises helpers from the probe to the real mount. */
static int rw_path_open(const char *dir, int prepared_fd, struct ud_overlay_layers *ls,
			ud_error *e)
{
	ls->rw_fd = ud_rw_path_reopen(dir, prepared_fd, e);
	if (ls->rw_fd < 0)
		return -1;
	/* /proc/self/fd/N reaches DIR even where the scratch tmpfs hides it (DIR under /tmp). */
	snprintf(ls->upper, sizeof(ls->upper), "/proc/self/fd/%d/upper", ls->rw_fd);
	snprintf(ls->work, sizeof(ls->work), "/proc/self/fd/%d/work", ls->rw_fd);
	return 0;
}

int ud_overlay_rw_probe(const char *dir, const struct ud_overlay_layers *ls, ud_error *e)
{
	ud_autoclose int fsfd = fsopen("overlay", FSOPEN_CLOEXEC);
	if (fsfd < 0)
		return ud_fail(e, UD_EXIT_MOUNT, errno, "fsopen(overlay)");
	const char *const opts[][2] = {{"lowerdir", UD_SCRATCH "/init"},
				       {"upperdir", ls->upper},
				       {"workdir", UD_SCRATCH "/work"},
				       {"index", "on"}};
	for (size_t i = 0; i < UD_ARRAY_SIZE(opts); i++)
		if (fsconfig(fsfd, FSCONFIG_SET_STRING, opts[i][0], opts[i][1], 0) < 0)
			return ud_fs_fail(e, fsfd, errno, "probing --rw-path");
	if (fsconfig(fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) == 0)
		return ud_fail(e, UD_EXIT_MOUNT, 0, "probing --rw-path %s: unexpected success", dir);
	if (errno == EBUSY)
		return ud_fail(e, UD_EXIT_MOUNT, EBUSY,
			       "--rw-path %s is in use by another live namespace", dir);
	return 0;
}

int ud_overlay_layers_open(const struct ud_plan *p, int rw_host, struct ud_overlay_layers *ls,
			   ud_error *e)
{
	const struct ud_op *ov = ud_plan_overlay(p);
	if (!ov || !ov->src)
		return ud_fail(e, UD_EXIT_REFUSED, 0, "internal error: the plan has no overlay root");
	ls->storage_fd = open(ov->src, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (ls->storage_fd < 0)
		return ud_fail(e, UD_EXIT_STORAGE, errno, "opening storage %s", ov->src);
	if (p->mount_api != UD_API_LEGACY && ov->n_lowers) {
		if (!(ls->fds = malloc(ov->n_lowers * sizeof(*ls->fds))))
			return ud_oom(e);
		for (size_t i = 0; i < ov->n_lowers; i++) {
			int fd = open(ov->lowers[i].path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			if (fd < 0)
				return ud_fail(e, UD_EXIT_STORAGE, errno, "opening layer %s",
					       ov->lowers[i].path);
			ls->fds[ls->n_fds++] = fd;
		}
	}
	if (p->rw == UD_RW_PATH)
		return rw_path_open(p->rw_path, rw_host, ls, e);
	if (p->rw == UD_RW_TMPFS) {
		snprintf(ls->upper, sizeof(ls->upper), UD_SCRATCH "/upper");
		snprintf(ls->work, sizeof(ls->work), UD_SCRATCH "/work");
	}
	return 0;
}

/* With --mount-api auto, EINVAL is the kernel saying it lacks this form: lowerdir+ (6.8), by fd
 * (6.13); before 6.5 overlayfs takes any string and refuses lowerdir+ only at create. */
static int refuse(int fsfd, int err, bool fallback, const char *what, ud_error *e)
{
	if (fallback && err == EINVAL)
		return TRY_NEXT;
	return ud_fs_fail(e, fsfd, err, what);
}

/* lowerdir+ appends one layer per call, topmost first: init, then the image top to bottom. By
 * path, a layer under /tmp is hidden by the scratch tmpfs by now, so it is reached through its
 * fd (the plain path reads better in mountinfo). */
static int add_lowers(int fsfd, const struct ud_op *ov, const struct ud_overlay_layers *ls,
		      bool by_fd, bool fallback, ud_error *e)
{
	ud_autoclose int init = -1;
	if (by_fd && (init = openat(ls->scratch_fd, "init",
				    O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW)) < 0)
		return ud_fail(e, UD_EXIT_MOUNT, errno, "opening %s", UD_SCRATCH "/init");
	for (size_t i = 0; i <= ov->n_lowers; i++) {
		const char *path = i == 0 ? UD_SCRATCH "/init" : ov->lowers[i - 1].path;
		int lfd = i == 0 ? init : ls->fds[i - 1];
		char fdpath[64];
		const char *arg = path;
		if (i > 0 && !strncmp(path, UD_SCRATCH "/", sizeof(UD_SCRATCH))) {
			snprintf(fdpath, sizeof(fdpath), "/proc/self/fd/%d", lfd);
			arg = fdpath;
		}
		int r = by_fd ? fsconfig(fsfd, FSCONFIG_SET_FD, "lowerdir+", NULL, lfd)
			      : fsconfig(fsfd, FSCONFIG_SET_STRING, "lowerdir+", arg, 0);
		if (r < 0) {
			int err = errno;
			char what[1200];
			snprintf(what, sizeof(what), "overlay lowerdir+ %s (%s)", path,
				 by_fd ? "by fd" : "by path");
			return refuse(fsfd, err, fallback, what, e);
		}
	}
	return 0;
}

/* fsopen/fsconfig/fsmount: each layer its own call, so no page limit. */
static int by_new_api(const struct ud_op *ov, const struct ud_overlay_layers *ls, bool by_fd,
		      bool fallback, int target, ud_error *e)
{
	if (ls->n_fds != ov->n_lowers)
		return ud_fail(e, UD_EXIT_REFUSED, 0, "internal error: the layers are not open");
	ud_autoclose int fsfd = fsopen("overlay", FSOPEN_CLOEXEC);
	if (fsfd < 0)
		return ud_fail(e, UD_EXIT_MOUNT, errno, "fsopen(overlay)");
	int r = add_lowers(fsfd, ov, ls, by_fd, fallback, e);
	if (r != 0)
		return r;
	const char *const rw[][2] = {{"upperdir", ls->upper}, {"workdir", ls->work}};
	for (size_t i = 0; ls->upper[0] && i < UD_ARRAY_SIZE(rw); i++)
		if (fsconfig(fsfd, FSCONFIG_SET_STRING, rw[i][0], rw[i][1], 0) < 0)
			return refuse(fsfd, errno, fallback, rw[i][0], e);
	/* Docker's own layer dirs keep an image's trusted.overlay.redirect/metacopy xattrs (the
	 * export path drops them); without these the kernel would follow them (and with
	 * redirect_always_follow even redirect_dir=off does). */
	if (fsconfig(fsfd, FSCONFIG_SET_STRING, "redirect_dir", "nofollow", 0) < 0 ||
	    fsconfig(fsfd, FSCONFIG_SET_STRING, "metacopy", "off", 0) < 0)
		return refuse(fsfd, errno, fallback, "redirect_dir=nofollow,metacopy=off", e);
	if (fsconfig(fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
		return refuse(fsfd, errno, fallback, "creating the overlay root", e);
	/* nosuid, nodev: without a user namespace or a bounding set, a setuid-root binary in the
	 * image would be full root (and /proc/1/root leads to the host); without a devices cgroup,
	 * a device node in a layer would be usable. /dev is a tmpfs of our own. */
	unsigned attrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
	ud_autoclose int mfd =
		fsmount(fsfd, FSMOUNT_CLOEXEC, attrs | (ov->readonly ? MOUNT_ATTR_RDONLY : 0));
	if (mfd < 0)
		return ud_fs_fail(e, fsfd, errno, "fsmount(overlay)");
	return ud_fs_attach(mfd, target, "the new root", e);
}

/* mount(2) with the storage's short names: each l/<name> links to a layer, and a relative
 * lowerdir resolves against our cwd, so 120 layers fit in one page. */
static int by_mount2(const struct ud_op *ov, const struct ud_overlay_layers *ls, ud_error *e)
{
	ud_autofree char *data = NULL;
	if (ud_plan_mount_data(ov, UD_SCRATCH "/init", ls->upper[0] ? ls->upper : NULL, ls->work,
			       &data, e) < 0)
		return -1;
	for (size_t i = 0; i < ov->n_lowers; i++) {
		struct stat st;
		if (fstatat(ls->storage_fd, ov->lowers[i].link, &st, 0) < 0 || !S_ISDIR(st.st_mode))
			return ud_fail(e, UD_EXIT_STORAGE, errno,
				       "layer %s: short name %s/%s is not a directory",
				       ov->lowers[i].path, ov->src, ov->lowers[i].link);
	}
	ud_autoclose int cwd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fchdir(ls->storage_fd) < 0)
		return ud_fail(e, UD_EXIT_MOUNT, errno, "chdir to %s", ov->src);
	unsigned long flags = MS_NOSUID | MS_NODEV | (ov->readonly ? MS_RDONLY : 0);
	int r = mount("overlay", UD_SCRATCH "/root", "overlay", flags, data);
	int err = errno;
	if (cwd >= 0 && fchdir(cwd) < 0) {
		/* cwd only matters for the relative layer names above */
	}
	if (r < 0)
		return ud_fail(e, UD_EXIT_MOUNT, err, "mount(2) of the overlay root (%zu layers)",
			       ov->n_lowers);
	return 0;
}

int ud_overlay_mount(const struct ud_op *ov, enum ud_mount_api api,
		     const struct ud_overlay_layers *ls, int target, ud_error *e)
{
	bool fallback = api == UD_API_AUTO;
	int r = TRY_NEXT;
	if (api == UD_API_AUTO || api == UD_API_FD)
		r = by_new_api(ov, ls, true, fallback, target, e);
	if (r == TRY_NEXT && (api == UD_API_AUTO || api == UD_API_STRING))
		r = by_new_api(ov, ls, false, fallback, target, e);
	if (r == TRY_NEXT)
		r = by_mount2(ov, ls, e);
	return r;
}
