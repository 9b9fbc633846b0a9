/* --check IMAGE: has the tag moved in the registry? The daemon asks the registry for the manifest
 * it serves now (GET /distribution/{name}/json: no pull, nothing downloaded but the manifest's
 * descriptor) and the answer is compared with the digest the daemon recorded for the image it
 * has (RepoDigests). For scripts and cron, and for the plugin's docker-follow. */
#ifndef UD_CHECK_H
#define UD_CHECK_H

#include <stdio.h>

#include "docker.h"
#include "error.h"

/* The exit status of a check whose registry has a manifest the daemon's image is not. */
#define UD_CHECK_MOVED 1

/* Prints "local DIGEST (image ID)" (DIGEST "none" when the daemon's image of ref has no digest
 * from that repository; no "(image ID)" when the daemon has no such image) and "registry DIGEST
 * (image ID)" (no "(image ID)" when the daemon has no image of that digest) on out. Returns 0 when the digests are the same, UD_CHECK_MOVED when not, -1 with *e otherwise
 * (a digest-pinned reference: 64; an unknown repository or tag, refused credentials: 65;
 * registry or daemon unreachable: 66). max_age_ms > 0: the registry's answer to another check
 * of this host (the same daemon socket and reference) is taken if it is younger than that;
 * concurrent checks wait for the one that asks. */
int ud_check(struct ud_docker *d, const char *ref, const char *config_dir, long max_age_ms,
	     FILE *out, ud_error *e);

#endif
