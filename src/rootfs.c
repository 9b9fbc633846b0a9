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
 * relative to the root's fd, and mounts go onto the resulting fd, never onto a path string.
 *
 * ud_rootfs_enter() runs six phases, each a function of its own: enter the namespaces, open the
 * host sources, mount the scratch tmpfs, mount the root (overlay.c), apply the other ops
 * (specialfs.c for /proc /dev /sys), switch root. */
#include "rootfs.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "fs.h"
#include "overlay.h"
#include "rwpath.h"
#include "specialfs.h"
#include "util.h"

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
	int fd = ud_openat2(rootfd, rel, O_PATH | O_CLOEXEC, IN_ROOT);
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
	fd = ud_openat2(rootfd, rel, O_PATH | O_CLOEXEC, IN_ROOT);
	if (fd < 0)
		return ud_fail(e, UD_EXIT_MOUNT, errno, "resolving %s inside the image", path);
	return fd;
}

/* ---------------------------------------------------------------- the user's mounts, confinement */

/* The user's tmpfs: op->data, checked by tmpfsopt.c ("mode=1777,size=1m"), goes to fsconfig one
 * option at a time; op->attrs are the mount's flags. */
static int mount_tmpfs(int target, const struct ud_op *op, struct mnt_set *creatable,
		       ud_error *e)
{
	char data[256];
	const char *opts[2 * 8 + 1];
	size_t n = 0;
	snprintf(data, sizeof(data), "%s", op->data);
	char *save = NULL;
	for (char *kv = strtok_r(data, ",", &save); kv && n + 2 < UD_ARRAY_SIZE(opts);
	     kv = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(kv, '=');
		if (eq)
			*eq = '\0';
		opts[n++] = kv;
		opts[n++] = eq ? eq + 1 : NULL;
	}
	opts[n] = NULL;
	ud_autoclose int m = ud_fs_new("tmpfs", opts, op->attrs, e);
	if (m < 0 || ud_fs_attach(m, target, op->dst, e) < 0)
		return -1;
	/* Ours and empty: later mount points beneath it may be made there (unless read-only). */
	if (!(op->attrs & MOUNT_ATTR_RDONLY))
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
	    ud_fs_attach(tree, target, where, e) < 0)
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

/* A file of the helper's (op->data) written to the scratch's files/ and bound read-only onto
 * op->dst, resolved inside the root: the init layer's empty file (or, with a --rw-path layer,
 * whatever an earlier run left there). It must be a regular file of the root's own mount; a
 * symlink in a persistent layer may lead elsewhere inside the root, never out of it. */
static int mount_file(const struct ud_plan *p, int rootfd, const struct ud_op *op, size_t i,
		      int scratch_fd, ud_error *e)
{
	char name[32];
	snprintf(name, sizeof(name), "files/%zu", i);
	ud_autoclose int w = openat(scratch_fd, name,
				    O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	size_t len = strlen(op->data), done = 0;
	for (ssize_t n = 0; w >= 0 && done < len; done += (size_t)n)
		if ((n = write(w, op->data + done, len - done)) < 0)
			break;
	if (w < 0 || done < len)
		return ud_fail(e, UD_EXIT_MOUNT, errno, "writing %s/%s for %s", UD_SCRATCH, name,
			       op->dst);
	ud_autoclose int src = openat(scratch_fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	ud_autoclose int t = ud_openat2(rootfd, op->dst + 1, O_PATH | O_CLOEXEC, IN_ROOT);
	struct stat st;
	if (src < 0 || t < 0 || fstat(t, &st) < 0)
		return ud_fail(e, UD_EXIT_MOUNT, errno, "placing %s inside the image", op->dst);
	if (!S_ISREG(st.st_mode) || mnt_id(t) != mnt_id(rootfd))
		return ud_fail(e, UD_EXIT_MOUNT, 0,
			       "%s inside the image is not a regular file of the image's root "
			       "(a symlink in the writable layer?): refusing to mount over it",
			       op->dst);
	return bind_onto(p, src, t, true, op->dst, e);
}

/* Masked and read-only paths inside our own fresh /proc and /sys, resolved in the root all the
 * same. A path this kernel lacks is skipped. A masked file gets an empty read-only file of the
 * scratch tmpfs over it (reads give nothing), a masked directory an empty read-only tmpfs. */
static int mount_confine(const struct ud_plan *p, int rootfd, const struct ud_op *op,
			 int empty_file, ud_error *e)
{
	ud_autoclose int t = ud_openat2(rootfd, op->dst + 1, O_PATH | O_CLOEXEC, IN_ROOT);
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
	ud_autoclose int m = ud_fs_new("tmpfs", opts,
				    MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV |
					    MOUNT_ATTR_NOEXEC,
				    e);
	return m < 0 ? -1 : ud_fs_attach(m, t, op->dst, e);
}

/* Phase 5. Everything after the root, in plan order, each on a target resolved inside the new
 * root. */
static int apply_ops(const struct ud_plan *p, int rootfd, const int *srcs, int scratch_fd,
		     ud_error *e)
{
	/* A read-only root takes no new mount points; the init layer has /proc /dev /sys. */
	struct mnt_set creatable = {.n = 0};
	if (p->rw != UD_RW_NONE)
		mnt_set_add(&creatable, rootfd);
	/* The masks' empty file (mode 0444 under umask 0), on the scratch tmpfs. */
	ud_autoclose int empty = -1;
	for (size_t i = 0; i < p->n_ops; i++) {
		const struct ud_op *op = &p->ops[i];
		if (op->type == UD_OP_OVERLAY)
			continue;
		if (op->type == UD_OP_BIND) {
			if (mount_bind(p, srcs[i], rootfd, op, &creatable, e) < 0)
				return -1;
			continue;
		}
		if (op->type == UD_OP_FILE) {
			if (mount_file(p, rootfd, op, i, scratch_fd, e) < 0)
				return -1;
			continue;
		}
		if (op->type == UD_OP_MASK || op->type == UD_OP_READONLY) {
			if (empty < 0 &&
			    (empty = openat(scratch_fd, "empty", O_RDONLY | O_CREAT | O_EXCL |
								 O_NOFOLLOW | O_CLOEXEC, 0444)) < 0)
				return ud_fail(e, UD_EXIT_MOUNT, errno, "creating %s/empty", UD_SCRATCH);
			if (mount_confine(p, rootfd, op, empty, e) < 0)
				return -1;
			continue;
		}
		/* /proc /dev /sys exist as plain directories thanks to the init layer; the user's
		 * tmpfs targets are created if missing. */
		ud_autoclose int t = resolve_in_root(rootfd, op->dst, &creatable, true, e);
		int rc = t < 0 ? -1
			 : op->type == UD_OP_PROC ? ud_specialfs_proc(t, e)
			 : op->type == UD_OP_DEV  ? ud_specialfs_dev(t, p->shm_size, e)
			 : op->type == UD_OP_SYS  ? ud_specialfs_sys(t, e)
						  : mount_tmpfs(t, op, &creatable, e);
		if (rc < 0)
			return -1;
	}
	return 0;
}

/* ---------------------------------------------------------------- the phases */

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

/* Phase 1. The --rw-path directory is checked and locked on the host first; then the new
 * namespaces, made private before any mount so that nothing propagates back to the host's
 * peers. *rw_host and *lock_fd go to the caller, which holds the lock to the end. */
static int enter_namespaces(const struct ud_plan *p, struct ud_ns_fds *ns, int *rw_host,
			    int *lock_fd, ud_error *e)
{
	ns->host_mnt = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
	if (ns->host_mnt < 0)
		return ud_fail(e, UD_EXIT_MOUNT, errno,
			       "opening /proc/self/ns/mnt (is /proc mounted?)");
	if (p->rw == UD_RW_PATH && ud_rw_path_prepare(p->rw_path, rw_host, lock_fd, e) < 0)
		return -1;
	if (unshare(p->unshare_flags) < 0)
		return ud_fail(e, UD_EXIT_MOUNT, errno, "unshare of the namespaces");
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return ud_fail(e, UD_EXIT_MOUNT, errno, "making / private in the new namespace");
	if (open_ns_fds(p, ns, e) < 0)
		return -1;
	if (p->hostname && sethostname(p->hostname, strlen(p->hostname)) < 0)
		return ud_fail(e, UD_EXIT_MOUNT, errno, "sethostname %s", p->hostname);
	return 0;
}

/* The host-side sources of the new root: the overlay's layers and each bind's source. */
struct sources {
	struct ud_overlay_layers layers;
	int *bind_fds; /* per op: a bind's source, or -1 */
	size_t n_bind_fds;
};

static void sources_close(struct sources *s)
{
	ud_overlay_layers_close(&s->layers);
	for (size_t i = 0; i < s->n_bind_fds; i++)
		ud_closep(&s->bind_fds[i]);
	free(s->bind_fds);
	s->bind_fds = NULL;
	s->n_bind_fds = 0;
}

/* Phase 2. Opened in the new namespace (a mount of another namespace cannot be cloned or used
 * as a layer) and before the scratch tmpfs may hide them. */
static int open_sources(const struct ud_plan *p, int rw_host, struct sources *s, ud_error *e)
{
	if (ud_overlay_layers_open(p, rw_host, &s->layers, e) < 0)
		return -1;
	if (!(s->bind_fds = malloc((p->n_ops + 1) * sizeof(*s->bind_fds))))
		return ud_oom(e);
	for (size_t i = 0; i < p->n_ops; i++) {
		int fd = -1;
		if (p->ops[i].type == UD_OP_BIND && (fd = open(p->ops[i].src, O_PATH | O_CLOEXEC)) < 0)
			return ud_fail(e, UD_EXIT_MOUNT, errno, "bind source %s", p->ops[i].src);
		s->bind_fds[s->n_bind_fds++] = fd;
	}
	return 0;
}

/* The files the helper binds over the image's (/etc/hosts...) exist in the init layer as empty
 * regular files, as in Docker's init layer: so they are there whatever the image has at those
 * paths (nothing, a symlink out of the image, a directory; an /etc that is a symlink becomes a
 * directory), with --read-only too, and the image's writable layer is never written. Their
 * content waits in the scratch's files/, one per op. */
static int init_files(const struct ud_plan *p, int scratch_fd, ud_error *e)
{
	bool any = false;
	for (size_t i = 0; i < p->n_ops; i++) {
		if (p->ops[i].type != UD_OP_FILE)
			continue;
		char path[4096];
		snprintf(path, sizeof(path), "init%s", p->ops[i].dst);
		/* Each directory above it (dst is normalised: no "..", no "//"). */
		for (char *s = strchr(path, '/'); s; s = strchr(s + 1, '/')) {
			*s = '\0';
			if (mkdirat(scratch_fd, path, 0755) < 0 && errno != EEXIST)
				return ud_fail(e, UD_EXIT_MOUNT, errno, "mkdir %s/%s", UD_SCRATCH, path);
			*s = '/';
		}
		int fd = openat(scratch_fd, path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
				0644);
		if (fd < 0)
			return ud_fail(e, UD_EXIT_MOUNT, errno, "creating %s/%s", UD_SCRATCH, path);
		close(fd);
		any = true;
	}
	if (any && mkdirat(scratch_fd, "files", 0700) < 0)
		return ud_fail(e, UD_EXIT_MOUNT, errno, "mkdir %s/files", UD_SCRATCH);
	return 0;
}

/* Phase 3. The scratch tmpfs on /tmp, holding the init layer, the tmpfs rw layer and the
 * overlay's mount point. Attached (not left detached): overlayfs clones its layers' mounts
 * privately, which older kernels allow only for mounts in our own namespace. */
static int mount_scratch(const struct ud_plan *p, struct ud_overlay_layers *ls, ud_error *e)
{
	static const char *const opts[] = {"mode", "0700", "size", "16m", NULL};
	static const char *const dirs[] = {"init", "init/proc", "init/dev", "init/sys",
					   "upper", "work", "root"};
	ud_autoclose int m = ud_fs_new("tmpfs", opts, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, e);
	if (m < 0)
		return -1;
	ud_autoclose int mp = open(UD_SCRATCH, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (mp < 0)
		return ud_fail(e, UD_EXIT_MOUNT, errno, "opening %s", UD_SCRATCH);
	if (ud_fs_attach(m, mp, UD_SCRATCH, e) < 0)
		return -1;
	ls->scratch_fd = ud_steal_fd(&m);
	for (size_t i = 0; i < UD_ARRAY_SIZE(dirs); i++)
		if (mkdirat(ls->scratch_fd, dirs[i], 0755) < 0)
			return ud_fail(e, UD_EXIT_MOUNT, errno, "mkdir %s/%s", UD_SCRATCH, dirs[i]);
	if (init_files(p, ls->scratch_fd, e) < 0)
		return -1;
	if (p->rw == UD_RW_PATH)
		return ud_overlay_rw_probe(p->rw_path, ls, e);
	return 0;
}

/* Phase 4. The overlay root on the scratch's root/; returns an fd on the mounted root. */
static int mount_root(const struct ud_plan *p, const struct ud_overlay_layers *ls, ud_error *e)
{
	ud_autoclose int mp = openat(ls->scratch_fd, "root", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (mp < 0)
		return ud_fail(e, UD_EXIT_MOUNT, errno, "opening %s/root", UD_SCRATCH);
	if (ud_overlay_mount(ud_plan_overlay(p), p->mount_api, ls, mp, e) < 0)
		return -1;
	int rootfd = openat(ls->scratch_fd, "root", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0)
		return ud_fail(e, UD_EXIT_MOUNT, errno, "opening the new root");
	return rootfd;
}

/* Phase 6 (after the ops). pivot_root(".", "."), the man page's idiom and crun's do_pivot: the
 * old root ends up mounted on top of the new one, where "." now resolves; make it private
 * (already so, but a detach must never propagate) and detach it. */
static int switch_root(int rootfd, ud_error *e)
{
	if (fchdir(rootfd) < 0 || syscall(SYS_pivot_root, ".", ".") < 0)
		return ud_fail(e, UD_EXIT_MOUNT, errno, "pivot_root into the new root");
	if (mount(NULL, ".", NULL, MS_REC | MS_PRIVATE, NULL) < 0 || umount2(".", MNT_DETACH) < 0)
		return ud_fail(e, UD_EXIT_MOUNT, errno, "detaching the old root");
	if (chdir("/") < 0)
		return ud_fail(e, UD_EXIT_MOUNT, errno, "chdir /");
	return 0;
}

int ud_rootfs_enter(const struct ud_plan *p, struct ud_ns_fds *ns, ud_error *e)
{
	ud_autoclose int lock_fd = -1, rw_host = -1, rootfd = -1;
	struct sources src __attribute__((cleanup(sources_close))) = {
		.layers = UD_OVERLAY_LAYERS_INIT};
	mode_t old_umask = umask(0);

	memset(ns, 0, sizeof(*ns));
	ns->host_mnt = -1;
	int r = enter_namespaces(p, ns, &rw_host, &lock_fd, e) < 0 ||
			open_sources(p, rw_host, &src, e) < 0 ||
			mount_scratch(p, &src.layers, e) < 0 ||
			(rootfd = mount_root(p, &src.layers, e)) < 0 ||
			apply_ops(p, rootfd, src.bind_fds, src.layers.scratch_fd, e) < 0 ||
			switch_root(rootfd, e) < 0
		? -1
		: 0;
	umask(old_umask);
	if (r < 0)
		ud_ns_fds_close(ns);
	return r;
}
