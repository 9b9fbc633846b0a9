/* Where the namespace goes when it is handed off: the socket of --send-to PATH, or the one uWSGI's
 * plugin left open for the helper ($UWSGI_DOCKER_FD); then the hand-off message itself. */
#ifndef UD_SOCKETS_H
#define UD_SOCKETS_H

#include <sys/types.h>

#include "docker.h"
#include "error.h"
#include "rootfs.h"

/* Connects to the unix socket at path (SOCK_SEQPACKET, else SOCK_STREAM), refusing one in a
 * directory others may write or whose listener is neither root nor allowed ((uid_t)-1: none). */
int ud_sockets_connect(const char *path, uid_t allowed, ud_error *e);

/* The socket whose number is in $UWSGI_DOCKER_FD, made O_CLOEXEC. */
int ud_sockets_inherited(ud_error *e);

/* Sends the namespaces in ns with what the receiver needs to know of img. */
int ud_sockets_hand_off(int s, const struct ud_image *img, const struct ud_ns_fds *ns,
			ud_error *e);

#endif
