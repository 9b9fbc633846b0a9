/* Image references and Engine API versions: pure string grammar, no daemon, no libcurl. */
#ifndef UD_REFERENCE_H
#define UD_REFERENCE_H

#include <stdbool.h>

#define UD_API_VERSION "1.47" /* the newest API version we speak; min(ours, daemon's) is used */

/* Accepts what the docker CLI accepts: [host[:port]/]path[:tag][@digest], ids and id prefixes.
 * What it accepts goes unescaped into a request path, so it allows nothing that needs escaping. */
bool ud_reference_valid(const char *ref);

/* Integer comparison per component: "1.9" < "1.41". Returns <0, 0, >0. */
int ud_api_version_cmp(const char *a, const char *b);

/* "MAJOR.MINOR", digits only, at most 10 characters: what a daemon may announce. */
bool ud_api_version_valid(const char *v);

#endif
