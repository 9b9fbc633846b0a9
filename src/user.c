/* Reading the image's /etc/passwd and /etc/group inside the new root, and becoming the user. */
#include "user.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "util.h"

/* One of the image's files, at most UD_USERDB_MAX_BYTES + 1 bytes of it (one more than allowed:
 * ud_userdb_check() then refuses it). *buf is malloc'ed (or NULL when the image has none). */
static int read_db(int rootfd, const char *path, char **buf, struct ud_userdb *db, ud_error *e)
{
	*db = (struct ud_userdb){.present = false};
	*buf = NULL;
	/* Nonblocking: a FIFO there must not hold the helper; it is refused below anyway. */
	ud_autoclose int fd = ud_openat2(rootfd, path + 1,
					 O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC,
					 RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS);
	if (fd < 0 && (errno == ENOENT || errno == ENOTDIR))
		return 0;
	struct stat st;
	struct statfs sf;
	if (fd < 0 || fstat(fd, &st) < 0 || fstatfs(fd, &sf) < 0)
		return ud_fail(e, UD_EXIT_USER, errno, "cannot open the image's %s", path);
	if (!S_ISREG(st.st_mode))
		return ud_fail(e, UD_EXIT_USER, 0,
			       "the image's %s is not a regular file: refusing it", path);
	/* /etc/passwd -> /proc/self/environ would read the helper's own environment. */
	if (sf.f_type == PROC_SUPER_MAGIC || sf.f_type == SYSFS_MAGIC)
		return ud_fail(e, UD_EXIT_USER, 0,
			       "the image's %s leads into /proc or /sys: refusing it", path);
	size_t cap = UD_USERDB_MAX_BYTES + 1, len = 0;
	ud_autofree char *b = malloc(cap);
	if (!b)
		return ud_oom(e);
	for (ssize_t n; len < cap; len += (size_t)n) {
		n = read(fd, b + len, cap - len);
		if (n < 0 && errno == EINTR)
			n = 0;
		else if (n < 0)
			return ud_fail(e, UD_EXIT_USER, errno, "reading the image's %s", path);
		else if (n == 0)
			break;
	}
	*db = (struct ud_userdb){.data = b, .len = len, .present = true};
	*buf = ud_steal_ptr(&b);
	return ud_userdb_check(db, path, e);
}

int ud_user_lookup(int rootfd, const char *spec, int spec_status, struct ud_user *u, ud_error *e)
{
	struct ud_user_spec s;
	memset(u, 0, sizeof(*u));
	if (ud_user_spec_parse(spec ? spec : "", spec_status, &s, e) < 0)
		return -1;
	ud_autofree char *pw_buf = NULL, *gr_buf = NULL;
	struct ud_userdb pw, gr = {.present = false};
	if (read_db(rootfd, "/etc/passwd", &pw_buf, &pw, e) < 0)
		return -1;
	if (read_db(rootfd, "/etc/group", &gr_buf, &gr, e) < 0)
		return -1;
	return ud_user_resolve(&s, &pw, &gr, u, e);
}

int ud_user_apply(const struct ud_user *u, ud_error *e)
{
	/* Groups first (they need CAP_SETGID, which setuid to non-root takes away). */
	if (setgroups(u->n_groups, u->groups) < 0)
		return ud_fail(e, UD_EXIT_REFUSED, errno, "setgroups (%zu groups)", u->n_groups);
	if (setgid(u->gid) < 0)
		return ud_fail(e, UD_EXIT_REFUSED, errno, "setgid(%u)", (unsigned)u->gid);
	if (setuid(u->uid) < 0)
		return ud_fail(e, UD_EXIT_REFUSED, errno, "setuid(%u)", (unsigned)u->uid);
	return 0;
}
