/* -- COMMAND: the process docker run would start, run inside the prepared root. */
#ifndef UD_COMMAND_H
#define UD_COMMAND_H

#include "docker.h"
#include "error.h"
#include "plan.h"
#include "userdb.h"

#define UD_COMMAND_DEFAULT_PATH "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/* --env over the image's Env, as docker run -e: each KEY=VALUE replaces the entry of that KEY
 * (in place) or is appended. img->env stays NULL-terminated. */
int ud_command_env_set(struct ud_image *img, char *const *kv, size_t n, ud_error *e);

/* Replaces the environment with the image's Env (kept by pointer: img must outlive it), the
 * default PATH when the image sets none, HOME from the user's passwd entry (home, when not NULL)
 * unless the image sets it, as docker run does, and the caller's TERM and HOSTNAME (hostname,
 * when not NULL, instead of the latter) unless the image sets them. */
int ud_command_environ(const struct ud_image *img, const char *hostname, const char *home,
		       ud_error *e);

/* chdir to the WorkingDir, the environment above, Docker's confinement unless o->no_confine,
 * the user's groups, gid and uid, then execvp. Returns only on failure (status 127 for a
 * missing COMMAND, else 126). */
int ud_command_exec(const struct ud_image *img, const struct ud_options *o,
		    const struct ud_user *user, char **command, ud_error *e);

#endif
