/* Capabilities and Landlock scoping by raw syscalls: no libcap, so that the plugin (loaded into
 * uWSGI) and the helper share this without another library. */
#include "caps.h"

#include <errno.h>
#include <linux/capability.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Debian 12's headers predate Landlock ABI 6: the constants and the grown ruleset attribute are
 * spelled out here (include/uapi/linux/landlock.h). */
#define UD_LANDLOCK_CREATE_RULESET_VERSION (1U << 0)
#define UD_LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET (1ULL << 0)
#define UD_LANDLOCK_SCOPE_SIGNAL (1ULL << 1)

struct ud_landlock_ruleset_attr {
	uint64_t handled_access_fs;
	uint64_t handled_access_net;
	uint64_t scoped;
};

int ud_caps_docker_default(ud_error *e)
{
	/* PR_CAPBSET_READ answers EINVAL past the kernel's last capability. */
	for (unsigned long cap = 0; cap < 64; cap++) {
		int in = prctl(PR_CAPBSET_READ, cap, 0, 0, 0);
		if (in < 0)
			break;
		if (in == 1 && !(UD_DOCKER_CAPS & (1ULL << cap)) &&
		    prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
			return ud_fail(e, UD_EXIT_REFUSED, errno,
				       "dropping capability %lu from the bounding set", cap);
	}
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	struct __user_cap_data_struct data[2];
	if (syscall(SYS_capget, &hdr, data) < 0)
		return ud_fail(e, UD_EXIT_REFUSED, errno, "capget");
	for (int i = 0; i < 2; i++) {
		uint32_t keep = (uint32_t)(UD_DOCKER_CAPS >> (32 * i));
		data[i].effective &= keep;
		data[i].permitted &= keep;
		data[i].inheritable &= keep;
	}
	if (syscall(SYS_capset, &hdr, data) < 0)
		return ud_fail(e, UD_EXIT_REFUSED, errno, "capset");
	/* Ambient capabilities survive exec of unprivileged programs; none are wanted. EINVAL:
	 * a kernel before 4.3 has none to clear. */
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
		return ud_fail(e, UD_EXIT_REFUSED, errno, "clearing the ambient capabilities");
	return 0;
}

int ud_landlock_scope(ud_error *e)
{
	long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, UD_LANDLOCK_CREATE_RULESET_VERSION);
	if (abi < 0) {
		if (errno == ENOSYS || errno == EOPNOTSUPP)
			return 0; /* not built in, or disabled at boot */
		return ud_fail(e, UD_EXIT_REFUSED, errno, "querying the Landlock ABI");
	}
	if (abi < 6)
		return 0;
	struct ud_landlock_ruleset_attr attr = {
		.scoped = UD_LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | UD_LANDLOCK_SCOPE_SIGNAL,
	};
	int fd = (int)syscall(SYS_landlock_create_ruleset, &attr, sizeof(attr), 0U);
	if (fd < 0)
		return ud_fail(e, UD_EXIT_REFUSED, errno, "creating a Landlock ruleset");
	int r = 0;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		r = ud_fail(e, UD_EXIT_REFUSED, errno, "setting no_new_privs");
	else if (syscall(SYS_landlock_restrict_self, fd, 0U) < 0)
		r = ud_fail(e, UD_EXIT_REFUSED, errno, "applying the Landlock scope");
	close(fd);
	return r;
}
