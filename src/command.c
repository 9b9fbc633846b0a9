/* The exec environment of -- COMMAND. */
#include "command.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "caps.h"
#include "handoff.h"
#include "user.h"
#include "util.h"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

int ud_command_env_set(struct ud_image *img, char *const *kv, size_t n, ud_error *e)
{
	for (size_t i = 0; i < n; i++) {
		size_t kl = (size_t)(strchr(kv[i], '=') - kv[i]) + 1; /* "KEY=" */
		char *copy = strdup(kv[i]), *end = NULL;
		if (!copy)
			return ud_oom(e);
		size_t j = 0;
		while (j < img->n_env && strncmp(img->env[j], kv[i], kl))
			j++;
		if (j < img->n_env) {
			free(img->env[j]);
			img->env[j] = copy;
			continue;
		}
		/* Appended, and NULL-terminated again. */
		if (ud_push(&img->env, &img->n_env, sizeof(copy), &copy) < 0) {
			free(copy);
			return ud_oom(e);
		}
		if (ud_push(&img->env, &img->n_env, sizeof(end), &end) < 0)
			return ud_oom(e);
		img->n_env--;
	}
	return 0;
}

int ud_command_environ(const struct ud_image *img, const char *hostname, const char *home,
		       ud_error *e)
{
	/* The image's Env, as docker run gives it; TERM and HOSTNAME from the caller (or
	 * --hostname) unless the image sets them, so a shell inside behaves. */
	const char *term = getenv("TERM"), *host = hostname ? hostname : getenv("HOSTNAME");
	ud_autofree char *term_copy = term ? strdup(term) : NULL;
	ud_autofree char *host_copy = host ? strdup(host) : NULL;
	clearenv();
	bool has_path = false;
	for (size_t i = 0; i < img->n_env; i++) {
		if (!strncmp(img->env[i], "PATH=", 5))
			has_path = true;
		/* putenv keeps the pointer: the image outlives the exec attempt. */
		if (strchr(img->env[i], '=') && putenv(img->env[i]) != 0)
			return ud_fail(e, UD_EXIT_REFUSED, errno, "setting the image's environment");
	}
	if (!has_path)
		putenv((char *)UD_COMMAND_DEFAULT_PATH);
	if (term_copy && !getenv("TERM"))
		setenv("TERM", term_copy, 1);
	if (host_copy && !getenv("HOSTNAME"))
		setenv("HOSTNAME", host_copy, 1);
	if (home && !getenv("HOME"))
		setenv("HOME", home, 1);
	return 0;
}

int ud_command_exec(const struct ud_image *img, const struct ud_options *o,
		    const struct ud_user *user, char **command, ud_error *e)
{
	if (ud_chdir_image(img->workdir, e) < 0 ||
	    ud_command_environ(img, o->hostname, user->home, e) < 0)
		return -1;
	/* What docker run gives a root process, no more: its 14 capabilities (no CAP_SYS_ADMIN to
	 * remount /sys or /proc/sys, no CAP_SYS_MODULE...), and no abstract unix sockets or signals
	 * of the host's (we share its network and PID namespaces). */
	if (!o->no_confine && (ud_caps_docker_default(e) < 0 || ud_landlock_scope(e) < 0))
		return -1;
	/* Last: the bounding set could not shrink without CAP_SETPCAP, which a uid other than 0
	 * loses here (along with every capability it had: docker run's non-root processes have
	 * none either). */
	if (ud_user_apply(user, e) < 0)
		return -1;
	/* Anything inherited (an UWSGI_DOCKER_FD, a caller's stray fd) stays outside. */
	syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC);
	fflush(NULL);
	execvp(command[0], command);
	int err = errno;
	return ud_fail(e, err == ENOENT ? UD_EXIT_NOT_FOUND : UD_EXIT_CANNOT_EXEC, err,
		       "cannot run '%s' inside image '%s'", command[0], img->ref);
}
