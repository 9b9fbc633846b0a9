/* What `docker run` denies a root process by default, applied to the calling process. Shared by
 * the helper (for -- COMMAND) and the uWSGI plugin; never exits or prints. */
#ifndef UD_CAPS_H
#define UD_CAPS_H

#include "error.h"

/* Docker's default 14 capabilities: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP
 * NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP. */
#define UD_DOCKER_CAPS 0x00000000a80425fbULL

/* Drops every capability outside UD_DOCKER_CAPS from the bounding set and from the effective,
 * permitted and inheritable sets, and clears the ambient set. Needs CAP_SETPCAP to shrink the
 * bounding set; a process without it keeps its (already smaller) sets. */
int ud_caps_docker_default(ud_error *e);

/* Landlock scoping (ABI 6, Linux 6.12): no connecting to abstract unix sockets and no signals to
 * processes outside the calling process's domain. Sets no_new_privs first (Landlock needs it,
 * or CAP_SYS_ADMIN). Returns 0 and does nothing where the kernel lacks it. */
int ud_landlock_scope(ud_error *e);

#endif
