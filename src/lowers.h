/* The overlay's lower layers, read before planning: Docker keeps each layer's short name in a
 * <layer>/link file, and reading it is I/O that plan.c (pure) must not do. */
#ifndef UD_LOWERS_H
#define UD_LOWERS_H

#include "docker.h"
#include "error.h"
#include "plan.h"

/* Docker's short name of each of img's layers (a NULL array for the layer cache, whose names
 * plan.c computes, and for a mount API that never uses them). With --mount-api legacy a name
 * that cannot be read or is not a plain name fails (status 67); with auto, mount(2) is only a
 * fallback, so such a layer gets NULL (as for --print without the rights to read them). */
int ud_lowers_read_links(const struct ud_image *img, enum ud_mount_api api, char ***links,
			 ud_error *e);
void ud_lowers_free_links(char **links, size_t n);

/* Reads the short names and builds the plan: what the command line calls. */
int ud_lowers_plan(const struct ud_options *o, const struct ud_image *img, struct ud_plan *p,
		   ud_error *e);

#endif
