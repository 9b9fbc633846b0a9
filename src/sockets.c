/* Socket discovery for the hand-off. */
#include "sockets.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "handoff.h"
#include "util.h"

/* The payload carries the image's Env (secrets, often): only a listener of root's, or of the one
 * uid the operator names, in a directory nobody else may write (where a socket could be
 * swapped), receives it. */
static int check_send_dir(const char *path, uid_t allowed, ud_error *e)
{
	char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == dir)
		dir[1] = '\0'; /* "/sock": the directory is "/" */
	else
		*slash = '\0';
	struct stat st;
	if (stat(dir, &st) < 0)
		return ud_fail(e, UD_EXIT_HANDOFF, errno, "--send-to %s: its directory %s", path, dir);
	if ((st.st_uid != 0 && st.st_uid != allowed) || (st.st_mode & 022))
		return ud_fail(e, UD_EXIT_HANDOFF, 0,
			       "--send-to %s: refusing a socket in %s (owner %u, mode %04o): its "
			       "directory must be writable by its owner only, root or --send-to-uid",
			       path, dir, (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777));
	return 0;
}

static int check_listener(int s, const char *path, uid_t allowed, ud_error *e)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	if (getsockopt(s, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return ud_fail(e, UD_EXIT_HANDOFF, errno, "--send-to %s: SO_PEERCRED", path);
	if (cred.uid != 0 && cred.uid != allowed)
		return ud_fail(e, UD_EXIT_HANDOFF, 0,
			       "--send-to %s: the listener runs as uid %u, not root%s: refusing to "
			       "send it the namespace and the image's Env",
			       path, (unsigned)cred.uid,
			       allowed != (uid_t)-1 ? " nor --send-to-uid" : " (see --send-to-uid)");
	return 0;
}

int ud_sockets_connect(const char *path, uid_t allowed, ud_error *e)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sa.sun_path))
		return ud_fail(e, UD_EXIT_HANDOFF, ENAMETOOLONG, "--send-to %s", path);
	strcpy(sa.sun_path, path);
	if (check_send_dir(path, allowed, e) < 0)
		return -1;
	static const int types[] = {SOCK_SEQPACKET, SOCK_STREAM};
	int err = 0;
	for (size_t i = 0; i < UD_ARRAY_SIZE(types); i++) {
		ud_autoclose int s = socket(AF_UNIX, types[i] | SOCK_CLOEXEC, 0);
		if (s < 0)
			return ud_fail(e, UD_EXIT_HANDOFF, errno, "socket");
		if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			return check_listener(s, path, allowed, e) < 0 ? -1 : ud_steal_fd(&s);
		err = errno;
		if (err != EPROTOTYPE)
			break;
	}
	return ud_fail(e, UD_EXIT_HANDOFF, err, "connecting to --send-to %s", path);
}

int ud_sockets_inherited(ud_error *e)
{
	const char *v = getenv(UD_FD_ENV);
	if (!v)
		v = "";
	char *end;
	errno = 0;
	long fd = strtol(v, &end, 10);
	struct stat st;
	if (!*v || *end || errno || fd < 0 || fd > INT_MAX || fstat((int)fd, &st) < 0 ||
	    !S_ISSOCK(st.st_mode))
		return ud_fail(e, UD_EXIT_HANDOFF, 0,
			       UD_FD_ENV "='%s' is not an open socket inherited from uWSGI", v);
	fcntl((int)fd, F_SETFD, FD_CLOEXEC);
	return (int)fd;
}

int ud_sockets_hand_off(int s, const struct ud_image *img, const struct ud_ns_fds *ns,
			const struct ud_handoff_user *user, ud_error *e)
{
	struct ud_handoff h;
	ud_handoff_init(&h);
	h.image = img->ref;
	h.id = img->id;
	h.workdir = img->workdir;
	h.layers = (unsigned)img->n_layers;
	h.env = img->env;
	h.n_env = img->n_env;
	h.has_user = user->has;
	h.uid = user->uid;
	h.gid = user->gid;
	h.user_error = (char *)user->error;
	h.n_fds = ns->n;
	memcpy(h.types, ns->types, sizeof(int) * (size_t)ns->n);
	memcpy(h.fds, ns->fds, sizeof(int) * (size_t)ns->n);
	return ud_handoff_send(s, &h, e);
}
