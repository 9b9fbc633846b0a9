/* Executes a plan: new mount namespace (+ others), overlay root, special filesystems, binds,
 * pivot_root. After ud_rootfs_enter() succeeds the calling process lives in the new root. */
#ifndef UD_ROOTFS_H
#define UD_ROOTFS_H

#include "error.h"
#include "plan.h"

#define UD_MAX_NS 5

struct ud_ns_fds {
	int n;
	int types[UD_MAX_NS]; /* CLONE_NEW* */
	int fds[UD_MAX_NS];   /* O_CLOEXEC, opened on /proc/self/ns/... */
	int host_mnt;         /* the host's mount namespace (for --pin), or -1 */
};

int ud_rootfs_enter(const struct ud_plan *p, struct ud_ns_fds *ns, ud_error *e);
void ud_ns_fds_close(struct ud_ns_fds *ns);

#endif
