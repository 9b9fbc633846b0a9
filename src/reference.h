/* Image references and Engine API versions: pure string grammar, no daemon, no libcurl. */
#ifndef UD_REFERENCE_H
#define UD_REFERENCE_H

#include <stdbool.h>

#define UD_API_VERSION "1.47" /* the newest API version we speak; min(ours, daemon's) is used */

/* Accepts what the docker CLI accepts: [host[:port]/]path[:tag][@digest], ids and id prefixes.
 * What it accepts goes unescaped into a request path, so it allows nothing that needs escaping. */
bool ud_reference_valid(const char *ref);

/* A reference split the way the daemon normalises it for a pull: "busybox" is docker.io,
 * library/busybox, tag latest. */
struct ud_ref_parts {
	char domain[256]; /* "docker.io", "127.0.0.1:5000", "localhost" */
	char name[256];   /* the name as written, without tag or digest: what fromImage gets */
	char tag[129];    /* "latest" when neither tag nor digest was given; "" with a digest */
	char digest[72];  /* "sha256:<64 hex>" or "" */
};

/* Splits a valid reference (ud_reference_valid) into its parts. Fails (false) on ids and id
 * prefixes ("sha256:..." or 64 hex digits): those name a local image and are never pulled. */
bool ud_reference_parse(const char *ref, struct ud_ref_parts *p);

/* The key that docker's config.json and credential helpers use for the domain:
 * "https://index.docker.io/v1/" for Docker Hub, else the domain itself. */
const char *ud_reference_registry_key(const char *domain);

/* Integer comparison per component: "1.9" < "1.41". Returns <0, 0, >0. */
int ud_api_version_cmp(const char *a, const char *b);

/* "MAJOR.MINOR", digits only, at most 10 characters: what a daemon may announce. */
bool ud_api_version_valid(const char *v);

#endif
