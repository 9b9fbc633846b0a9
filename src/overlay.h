/* The overlay root: its layers, opened while the host's paths are still in sight, and the
 * mount itself by the best form the kernel takes (lowerdir+ by fd, by path, or mount(2) with
 * short names). */
#ifndef UD_OVERLAY_H
#define UD_OVERLAY_H

#include <stddef.h>

#include "error.h"
#include "plan.h"

/* The scratch tmpfs the executor mounts on /tmp of the new namespace: init/ upper/ work/ root/. */
#define UD_SCRATCH "/tmp"

/* Everything the overlay stacks, owned here and released by ud_overlay_layers_close(). */
struct ud_overlay_layers {
	int *fds;                 /* each lower (new mount API only), opened before the scratch
				   * tmpfs may hide it */
	size_t n_fds;
	int storage_fd;           /* the overlay op's src: short names resolve against it */
	int scratch_fd;           /* the scratch tmpfs (set by the executor once mounted) */
	int rw_fd;                /* --rw-path DIR, or -1 */
	char upper[64], work[64]; /* "" for a read-only root */
};

#define UD_OVERLAY_LAYERS_INIT {.storage_fd = -1, .scratch_fd = -1, .rw_fd = -1}

/* In the new mount namespace (a mount of another namespace cannot be a layer): opens the
 * storage root, each lower, and --rw-path DIR again (rw_host: the fd rwpath.c prepared). */
int ud_overlay_layers_open(const struct ud_plan *p, int rw_host, struct ud_overlay_layers *ls,
			   ud_error *e);
void ud_overlay_layers_close(struct ud_overlay_layers *ls);

/* Refuses an --rw-path DIR that another live namespace uses (needs the scratch tmpfs). */
int ud_overlay_rw_probe(const char *dir, const struct ud_overlay_layers *ls, ud_error *e);

/* Mounts the overlay op ov onto target (UD_SCRATCH/root): init layer, then ov's lowers, then
 * the rw layer; nosuid, nodev, redirect_dir=nofollow, metacopy=off. */
int ud_overlay_mount(const struct ud_op *ov, enum ud_mount_api api,
		     const struct ud_overlay_layers *ls, int target, ud_error *e);

#endif
