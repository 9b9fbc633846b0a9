/* Pulling an image through the daemon (POST /images/create), with the credentials auth.c finds,
 * the progress stream read as it comes (a stall of --timeout ends it), and a display on stderr. */
#ifndef UD_PULL_H
#define UD_PULL_H

#include <stdbool.h>
#include <stdio.h>

#include "docker.h"
#include "error.h"
#include "util.h"

enum ud_pull_policy {
	UD_PULL_MISSING, /* pull when the daemon does not have the image (the default) */
	UD_PULL_ALWAYS,  /* pull first, every time */
	UD_PULL_NEVER,   /* never pull: not found is exit status 65 */
};

extern const struct ud_name ud_pull_policies[];

/* Pulls ref (a name, not an id: status 65 otherwise) with credentials from config_dir (NULL:
 * $DOCKER_CONFIG or ~/.docker). Progress goes to out: a line redrawn in place when out is a
 * terminal, else one line per completed layer; a summary line at the end either way. */
struct ud_pull_skip {
	/* Asked once the helper holds the host's pull lock for ref: true when the pull is no
	 * longer needed (another helper pulled what this one wants just before). May be NULL. */
	bool (*done)(void *arg);
	void *arg;
};
int ud_pull(struct ud_docker *d, const char *ref, const char *config_dir, FILE *out,
	    const struct ud_pull_skip *skip, ud_error *e);

/* The request path for ref's parts (pure, for the unit tests): fromImage, and tag or digest. */
int ud_pull_path(const char *api, const char *ref, char *path, size_t len, ud_error *e);

#endif
