/* Cleanup helpers: scope-bound fds and memory (__attribute__((cleanup))). */
#ifndef UD_UTIL_H
#define UD_UTIL_H

#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <unistd.h>

static inline void ud_closep(int *fd)
{
	if (*fd >= 0) {
		int saved = errno;
		close(*fd);
		errno = saved;
	}
	*fd = -1;
}

static inline void ud_freep(void *p)
{
	free(*(void **)p);
	*(void **)p = NULL;
}

#define ud_autoclose __attribute__((cleanup(ud_closep)))
#define ud_autofree __attribute__((cleanup(ud_freep)))

/* Hands ownership out of a cleanup variable. */
static inline int ud_steal_fd(int *fd)
{
	int r = *fd;
	*fd = -1;
	return r;
}

static inline void *ud_steal_ptr(void *p)
{
	void *r = *(void **)p;
	*(void **)p = NULL;
	return r;
}

#define UD_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* The environment variable through which uWSGI's plugin hands the helper its socket. */
#define UD_FD_ENV "UWSGI_DOCKER_FD"

/* openat2(2), which glibc 2.36 does not wrap. */
int ud_openat2(int dirfd, const char *path, int flags, unsigned long long resolve);

/* Appends *item (size bytes) to the malloc'ed array *arrp of *n elements; -1 with ENOMEM and
 * nothing changed when it cannot grow. */
int ud_push(void *arrp, size_t *n, size_t size, const void *item);

/* dlopen()s soname once per process (later calls return 0 at once) and fills slots[i] with
 * names[i]: slots is a struct of n function pointers in names' order. -1 with UD_EXIT_STORAGE
 * when the library or a function is missing. */
struct ud_error;
int ud_dl_load(const char *soname, const char *const *names, void **slots, size_t n,
	       struct ud_error *e);

/* A value <-> name table ending with {0, NULL}: one list serves parsing, --help and --print. */
struct ud_name {
	int value;
	const char *name;
};
const char *ud_name_of(const struct ud_name *table, int value); /* "?" when absent */
int ud_value_of(const struct ud_name *table, const char *name, int *value);

/* Namespace names as /proc/self/ns and the command line spell them: CLONE_NEWNS -> "mnt". */
const struct ud_name *ud_ns_names(void);
const char *ud_ns_name(int clone_flag);

/* mkdir -p for host paths the operator chose (--rw-path, --cache-dir); -1 with errno and the
 * failing prefix in failed (if not NULL). */
static inline int ud_mkdir_p(const char *path, mode_t mode, char *failed, size_t failed_len)
{
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s", path);
	for (char *s = tmp + 1;; s++) {
		if (*s != '/' && *s != '\0')
			continue;
		char c = *s;
		*s = '\0';
		if (mkdir(tmp, mode) < 0 && errno != EEXIST) {
			if (failed)
				snprintf(failed, failed_len, "%s", tmp);
			return -1;
		}
		*s = c;
		if (!c)
			return 0;
	}
}

#endif
