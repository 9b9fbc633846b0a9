/* The image's Env, for the app only: applied in each process that entered the image, never in
 * the master that stays on the host. */
#ifndef UD_APPENV_H
#define UD_APPENV_H

#include <stddef.h>

#include "error.h"

/* Sets each KEY=VALUE of env in this process's C environment (over what it inherited). */
int ud_appenv_apply(char *const *env, size_t n_env, ud_error *e);

/* Language runtimes that copied the environment once, at their start in the master, get the
 * process's current environment again. Python: os.environ (and os.environb). Returns 0 when no
 * such runtime is loaded. */
int ud_appenv_refresh_runtimes(ud_error *e);

/* The master: imports what every worker's runtime imports right after fork (Python's random
 * and threading), once, from the host's standard library. */
void ud_appenv_preload_runtimes(void);

#endif
