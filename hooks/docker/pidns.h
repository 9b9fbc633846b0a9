/* A PID namespace for the processes that live in the image, with a tiny init of our own as its
 * pid 1. Kept apart from uWSGI's headers: it only does syscalls. */
#ifndef UD_PIDNS_H
#define UD_PIDNS_H

#include <stdbool.h>
#include <sys/types.h>

#include "error.h"

struct ud_pidns {
	int host_fd; /* the caller's own PID namespace, to return to; -1 */
	int gen_fd;  /* the new namespace (pid_for_children), -1 */
	int life_fd; /* write end of the init's lifeline: the init ends when it closes; -1 */
	pid_t init_pid;
};

#define UD_PIDNS_INIT {.host_fd = -1, .gen_fd = -1, .life_fd = -1, .init_pid = 0}

/* Makes a new PID namespace and forks its init. On return the caller's children go into the
 * namespace (pid_for_children) until ud_pidns_leave(). The init ends, taking every process of
 * the namespace with it, when life_fd is closed in every process that holds it (the caller's
 * exit or exec). */
int ud_pidns_create(struct ud_pidns *p, ud_error *e);

/* Children of the caller go into the namespace (enter) or stay in the caller's own (leave). */
int ud_pidns_enter(const struct ud_pidns *p, ud_error *e);
int ud_pidns_leave(const struct ud_pidns *p, ud_error *e);

/* Closes the caller's fds (a forked worker keeps none of them). */
void ud_pidns_close(struct ud_pidns *p);

#endif
