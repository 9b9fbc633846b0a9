/* The new mount API in small steps shared by the executor's modules. */
#include "fs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

#include "util.h"

int ud_fs_fail(ud_error *e, int fsfd, int err, const char *what)
{
	char log[512] = "", line[256];
	size_t used = 0;
	for (int i = 0; i < 8 && fsfd >= 0; i++) {
		ssize_t n = read(fsfd, line, sizeof(line) - 1);
		if (n <= 0)
			break;
		line[n] = '\0';
		if (line[n - 1] == '\n')
			line[n - 1] = '\0';
		int w = snprintf(log + used, sizeof(log) - used, "%s%s", used ? "; " : " (kernel: ",
				 line);
		if (w < 0 || (size_t)w >= sizeof(log) - used)
			break;
		used += (size_t)w;
	}
	if (used && used + 1 < sizeof(log))
		strcat(log, ")");
	return ud_fail(e, UD_EXIT_MOUNT, err, "%s%s", what, log);
}

int ud_fs_new(const char *type, const char *const *opts, unsigned attrs, ud_error *e)
{
	ud_autoclose int fsfd = fsopen(type, FSOPEN_CLOEXEC);
	char what[128];
	if (fsfd < 0)
		return ud_fail(e, UD_EXIT_MOUNT, errno, "fsopen(%s)", type);
	for (size_t i = 0; opts && opts[i]; i += 2) {
		int r = opts[i + 1] ? fsconfig(fsfd, FSCONFIG_SET_STRING, opts[i], opts[i + 1], 0)
				    : fsconfig(fsfd, FSCONFIG_SET_FLAG, opts[i], NULL, 0);
		if (r < 0) {
			snprintf(what, sizeof(what), "%s option %s", type, opts[i]);
			return ud_fs_fail(e, fsfd, errno, what);
		}
	}
	if (fsconfig(fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0) {
		snprintf(what, sizeof(what), "creating a %s filesystem", type);
		return ud_fs_fail(e, fsfd, errno, what);
	}
	int mfd = fsmount(fsfd, FSMOUNT_CLOEXEC, attrs);
	if (mfd < 0) {
		snprintf(what, sizeof(what), "fsmount(%s)", type);
		return ud_fs_fail(e, fsfd, errno, what);
	}
	return mfd;
}

int ud_fs_attach(int mfd, int target_fd, const char *where, ud_error *e)
{
	if (move_mount(mfd, "", target_fd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
		return ud_fail(e, UD_EXIT_MOUNT, errno, "mounting on %s", where);
	return 0;
}
