/* Reads Docker's per-layer short names for the plan. The daemon's storage is trusted, but a
 * name still goes into mount(2)'s options: only plain names are taken. */
#include "lowers.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

/* <storage>/<id>/diff -> <id>/link, read relative to the storage root without following a
 * symlink at the end. 0 with *name set (NULL when absent or odd and !strict), -1 on failure. */
static int read_link(int storage_fd, const struct ud_image *img, const char *layer, bool strict,
		     char **name, ud_error *e)
{
	size_t rootlen = strlen(img->storage_root) + 1;
	char linkfile[1100], link[64];
	*name = NULL;
	snprintf(linkfile, sizeof(linkfile), "%.*s/link", (int)(strlen(layer) - rootlen - 5),
		 layer + rootlen);
	ud_autoclose int lf = storage_fd < 0 ? -1
					     : openat(storage_fd, linkfile,
						      O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	ssize_t n = lf >= 0 ? read(lf, link, sizeof(link) - 1) : -1;
	if (n <= 0)
		return strict ? ud_fail(e, UD_EXIT_STORAGE, n < 0 ? errno : 0,
					"reading the short name of layer %s (%s/%s)", layer,
					img->storage_root, linkfile)
			      : 0;
	link[n] = '\0';
	link[strcspn(link, "\n")] = '\0';
	if (!*link ||
	    strspn(link, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef0123456789") != strlen(link))
		return strict ? ud_fail(e, UD_EXIT_STORAGE, 0, "layer %s has a bad short name '%s'",
					layer, link)
			      : 0;
	if (!(*name = strdup(link)))
		return ud_oom(e);
	return 0;
}

int ud_lowers_read_links(const struct ud_image *img, enum ud_mount_api api, char ***links,
			 ud_error *e)
{
	*links = NULL;
	if (img->from_cache || (api != UD_API_AUTO && api != UD_API_LEGACY) || !img->n_layers)
		return 0;
	bool strict = api == UD_API_LEGACY;
	ud_autoclose int storage_fd = open(img->storage_root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (storage_fd < 0 && strict)
		return ud_fail(e, UD_EXIT_STORAGE, errno, "opening storage %s", img->storage_root);
	char **v = calloc(img->n_layers, sizeof(*v));
	if (!v)
		return ud_oom(e);
	for (size_t i = 0; i < img->n_layers; i++)
		if (read_link(storage_fd, img, img->layers[i], strict, &v[i], e) < 0) {
			ud_lowers_free_links(v, img->n_layers);
			return -1;
		}
	*links = v;
	return 0;
}

void ud_lowers_free_links(char **links, size_t n)
{
	for (size_t i = 0; links && i < n; i++)
		free(links[i]);
	free(links);
}

int ud_lowers_plan(const struct ud_options *o, const struct ud_image *img, struct ud_plan *p,
		   ud_error *e)
{
	char **links = NULL;
	if (ud_lowers_read_links(img, o->mount_api, &links, e) < 0)
		return -1;
	int r = ud_plan_build(o, img, links, p, e);
	ud_lowers_free_links(links, img->n_layers);
	return r;
}
