/* The hand-off protocol between uwsgi-docker-rootfs and the uWSGI docker plugin: one message with
 * a versioned header, a payload and the namespace fds (SCM_RIGHTS). Compiled into both. The wire
 * format is documented in man/uwsgi-docker-rootfs.1 (HAND-OFF PROTOCOL).
 *
 *   header (little-endian, 16 + 4*n bytes):
 *     char     magic[4] = "UDNS"
 *     uint16_t version  = 1
 *     uint16_t n_fds    (1..UD_HANDOFF_MAX_FDS)
 *     uint32_t payload_len
 *     uint32_t flags    = 0
 *     uint32_t types[n_fds]   CLONE_NEW* of each fd, in the order they are sent
 *   payload: payload_len bytes of NUL-terminated "key=value" strings:
 *     image=REF, id=sha256:..., layers=N, workdir=PATH, env=KEY=VALUE (repeated),
 *     user=UID:GID (the image's User or --user, resolved inside the image; optional),
 *     user_error=TEXT (why that User could not be resolved; optional, never with user=)
 * Receivers ignore keys they do not know: a newer helper may say more within version 1.
 */
#ifndef UD_HANDOFF_H
#define UD_HANDOFF_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define UD_HANDOFF_MAGIC "UDNS"
#define UD_HANDOFF_VERSION 1
#define UD_HANDOFF_MAX_FDS 5
#define UD_HANDOFF_MAX_PAYLOAD (256 * 1024)
#define UD_HANDOFF_MAX_ID 2147483647U /* uids and gids, as docker run bounds them */

struct ud_handoff {
	char *image;
	char *id;
	char *workdir;
	unsigned layers;
	char **env;
	size_t n_env;
	int has_user;	   /* user= present: the numbers the image's User resolved to */
	unsigned uid, gid; /* at most UD_HANDOFF_MAX_ID */
	char *user_error;  /* user_error=: printable ASCII only, or NULL */
	int n_fds;
	int types[UD_HANDOFF_MAX_FDS];
	int fds[UD_HANDOFF_MAX_FDS];  /* -1 when absent; O_CLOEXEC once received */
};

void ud_handoff_init(struct ud_handoff *h);
/* Closes any fds still held and frees the strings. */
void ud_handoff_free(struct ud_handoff *h);

/* Encodes and sends in one sendmsg (SOCK_SEQPACKET or SOCK_STREAM). */
int ud_handoff_send(int sock, const struct ud_handoff *h, ud_error *e);

/* Receives one message. Checks: SO_PEERCRED uid is 0 or ours, MSG_CTRUNC/MSG_TRUNC, cmsg level,
 * type and length, fd count = header count, NS_GET_NSTYPE of each fd = its declared type, no
 * duplicate types, CLONE_NEWNS present, payload well-formed. timeout_ms bounds the wait (0: none). */
int ud_handoff_recv(int sock, struct ud_handoff *h, int timeout_ms, ud_error *e);

/* Refuses a mount namespace that is the caller's own: entering it would leave the caller on
 * the files it already has (the host's), not the image's. */
int ud_handoff_check_foreign(const struct ud_handoff *h, ud_error *e);

/* setns() into each fd with its explicit type (mnt last), closing each fd right after. */
int ud_handoff_enter(struct ud_handoff *h, ud_error *e);

/* chdir to the image's WorkingDir ("" → "/"), resolved inside / without following magic links. */
int ud_chdir_image(const char *workdir, ud_error *e);

/* Pure encode/decode used by send/recv; exposed for unit tests. buf is malloc'ed. */
int ud_handoff_encode(const struct ud_handoff *h, unsigned char **buf, size_t *len, ud_error *e);
int ud_handoff_decode(const unsigned char *buf, size_t len, int n_fds_received,
		      struct ud_handoff *h, ud_error *e);

#endif
