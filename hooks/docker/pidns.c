/* A PID namespace for the processes that run in the image.
 *
 * Why: in the host's PID namespace a worker (uid nobody, say) can open /proc/<pid>/root, cwd,
 * environ and fds of every dumpable host process with its uid (an nginx worker, another
 * instance's subprocess): the host's filesystem, whatever mount namespace the worker is in. It
 * can also list every host process and signal the same-uid ones. In a PID namespace of its own
 * (with a procfs of that namespace on /proc, which the helper mounts because it runs inside) it
 * sees only the processes of its instance.
 *
 * A PID namespace needs a pid 1 that stays: when pid 1 exits the kernel kills everything in the
 * namespace and no process can be created in it any more. Workers come and go, so pid 1 is a
 * small init of our own, forked first. It reaps orphans (an app's subprocess whose worker died)
 * and exits when its lifeline pipe reports EOF: the master exited or re-executed itself (every
 * copy of the write end is O_CLOEXEC), and the kernel then ends the namespace's processes.
 *
 * unshare(CLONE_NEWPID) does not move the caller; it sets where its children go
 * (/proc/self/ns/pid_for_children). setns(fd, CLONE_NEWPID) moves that back and forth, so the
 * master can put only some of its children (the workers, the helper) in the namespace. */
#include "pidns.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util.h"

/* The init's own root: an empty read-only tmpfs, never attached anywhere (chroot into a
 * detached mount needs no mount namespace of its own), so that its /proc/1/root and cwd lead
 * nowhere even for a process allowed to follow them. */
static int init_jail(void)
{
	ud_autoclose int fs = fsopen("tmpfs", FSOPEN_CLOEXEC);
	if (fs < 0 || fsconfig(fs, FSCONFIG_SET_STRING, "size", "4k", 0) < 0 ||
	    fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
		return -1;
	ud_autoclose int m = fsmount(fs, FSMOUNT_CLOEXEC,
				     MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV |
					     MOUNT_ATTR_NOEXEC);
	if (m < 0 || fchdir(m) < 0 || chroot(".") < 0)
		return -1;
	return 0;
}

static void reap_all(void)
{
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
}

/* pid 1 of the namespace. A forked copy of the uWSGI master: it must never return into uWSGI,
 * run atexit handlers or keep the master's fds. */
static __attribute__((noreturn)) void run_init(int lifeline)
{
	sigset_t all;
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, NULL);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	prctl(PR_SET_NAME, "uwsgi-docker-init");
	prctl(PR_SET_DUMPABLE, 0);
	if (lifeline != 3 && (dup3(lifeline, 3, O_CLOEXEC) < 0))
		_exit(1);
	syscall(SYS_close_range, 4U, ~0U, 0U);
	if (init_jail() < 0)
		_exit(1);
	sigset_t chld;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0)
		_exit(1);
	struct pollfd pf[2] = {{.fd = 3, .events = POLLIN}, {.fd = sfd, .events = POLLIN}};
	for (;;) {
		if (poll(pf, 2, -1) < 0 && errno != EINTR)
			_exit(1);
		if (pf[0].revents)
			_exit(0); /* EOF (or anything): the master is gone */
		struct signalfd_siginfo si;
		while (read(sfd, &si, sizeof(si)) == sizeof(si))
			;
		reap_all();
	}
}

/* No child keeps the master's copies: a worker or gateway holding the lifeline's write end
 * would keep the init (and with it the namespace) alive after the master is gone. */
static struct ud_pidns *forked_copy;

static void close_in_child(void)
{
	if (forked_copy)
		ud_pidns_close(forked_copy);
}

int ud_pidns_create(struct ud_pidns *p, ud_error *e)
{
	if (!forked_copy && pthread_atfork(NULL, NULL, close_in_child) != 0)
		return ud_fail(e, UD_EXIT_MOUNT, ENOMEM, "pthread_atfork");
	forked_copy = p;
	p->host_fd = open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC);
	if (p->host_fd < 0)
		return ud_fail(e, UD_EXIT_MOUNT, errno, "opening /proc/self/ns/pid");
	/* After a re-exec our children may still be headed for the previous generation's
	 * namespace; unshare() refuses to stack a new one on that. */
	if (setns(p->host_fd, CLONE_NEWPID) < 0 || unshare(CLONE_NEWPID) < 0)
		return ud_fail(e, UD_EXIT_MOUNT, errno, "creating a PID namespace for the workers");
	int life[2];
	if (pipe2(life, O_CLOEXEC) < 0) {
		int err = errno;
		ud_pidns_leave(p, NULL);
		return ud_fail(e, UD_EXIT_MOUNT, err, "pipe");
	}
	pid_t pid = fork();
	if (pid == 0)
		run_init(life[0]);
	int err = errno;
	close(life[0]);
	if (pid < 0) {
		close(life[1]);
		ud_pidns_leave(p, NULL);
		return ud_fail(e, UD_EXIT_MOUNT, err, "forking the PID namespace's init");
	}
	p->life_fd = life[1];
	p->init_pid = pid;
	/* Only now: the kernel shows pid_for_children once the namespace has its init. */
	p->gen_fd = open("/proc/self/ns/pid_for_children", O_RDONLY | O_CLOEXEC);
	if (p->gen_fd < 0)
		return ud_fail(e, UD_EXIT_MOUNT, errno, "opening /proc/self/ns/pid_for_children");
	return 0;
}

int ud_pidns_enter(const struct ud_pidns *p, ud_error *e)
{
	if (setns(p->gen_fd, CLONE_NEWPID) < 0)
		return ud_fail(e, UD_EXIT_MOUNT, errno, "setns into the workers' PID namespace");
	return 0;
}

int ud_pidns_leave(const struct ud_pidns *p, ud_error *e)
{
	if (setns(p->host_fd, CLONE_NEWPID) < 0)
		return ud_fail(e, UD_EXIT_MOUNT, errno, "setns back to the master's PID namespace");
	return 0;
}

void ud_pidns_close(struct ud_pidns *p)
{
	ud_closep(&p->host_fd);
	ud_closep(&p->gen_fd);
	ud_closep(&p->life_fd);
}
