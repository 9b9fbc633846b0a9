/* Where the namespace goes when it is handed off: the socket of --send-to PATH, or the one uWSGI's
 * plugin left open for the helper ($UWSGI_DOCKER_FD); then the hand-off message itself. */
#ifndef UD_SOCKETS_H
#define UD_SOCKETS_H

#include <stdbool.h>
#include <sys/types.h>

#include "docker.h"
#include "error.h"
#include "rootfs.h"

/* Connects to the unix socket at path (SOCK_SEQPACKET, else SOCK_STREAM), refusing one in a
 * directory others may write or whose listener is neither root nor allowed ((uid_t)-1: none). */
int ud_sockets_connect(const char *path, uid_t allowed, ud_error *e);

/* The socket whose number is in $UWSGI_DOCKER_FD, made O_CLOEXEC. */
int ud_sockets_inherited(ud_error *e);

/* What the image's User (or --user) came to: the numbers, why there are none, or neither. */
struct ud_handoff_user {
	bool has;
	unsigned uid, gid;
	const char *error;
};

/* Sends the namespaces in ns with what the receiver needs to know of img, and the user. */
int ud_sockets_hand_off(int s, const struct ud_image *img, const struct ud_ns_fds *ns,
			const struct ud_handoff_user *user, ud_error *e);

#endif
