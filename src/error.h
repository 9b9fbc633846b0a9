/* Error objects: every fallible function fills one and returns -1, so that code which also runs
 * inside the uWSGI master (handoff.c) never exits or prints on its own. One place prints them. */
#ifndef UD_ERROR_H
#define UD_ERROR_H

#include <stdarg.h>
#include <stddef.h>

/* Exit statuses of uwsgi-docker-rootfs, one per kind of failure (listed in the man page). */
enum ud_status {
	UD_OK = 0,
	UD_EXIT_USAGE = 64,    /* bad command line */
	UD_EXIT_IMAGE = 65,    /* image not found, or not a valid reference */
	UD_EXIT_DAEMON = 66,   /* daemon unreachable, timed out, or answered with an error or garbage */
	UD_EXIT_STORAGE = 67,  /* the daemon's storage is not usable (driver, layer paths) */
	UD_EXIT_MOUNT = 68,    /* namespace or mount failure, hostile image refused */
	UD_EXIT_HANDOFF = 69,  /* hand-off socket or message failure */
	UD_EXIT_REFUSED = 70,  /* refused to run (setuid/setgid install, not root) or internal error */
	UD_EXIT_USER = 71,     /* the user or group is not in the image, or its passwd/group refused */
	UD_EXIT_CANNOT_EXEC = 126,
	UD_EXIT_NOT_FOUND = 127,
};

typedef struct ud_error {
	int status; /* enum ud_status */
	int errnum; /* errno at the failure, 0 if none */
	char msg[1024];
} ud_error;

/* Fills *e (if e is not NULL) and returns -1. errnum may be 0. */
int ud_fail(ud_error *e, int status, int errnum, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* The out-of-memory failure (status 70), in one place. */
int ud_oom(ud_error *e);

/* Prefixes context to an error already set ("while X: <old message>"), keeps status and errnum;
 * returns -1. */
int ud_context(ud_error *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* "msg: strerror(errnum)" into buf. */
const char *ud_error_text(const ud_error *e, char *buf, size_t len);

#endif
