/* Runs uwsgi-docker-rootfs for the plugin and receives the namespace it prepared. */
#include "plugin.h"

#include <linux/sched.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#include "util.h"

int ud_helper_deadline_s(void)
{
	double t = ud.timeout ? atof(ud.timeout) : 10.0;
	if (!(t > 0) || t > 3600)
		t = 10.0;
	/* A safety net only: the helper bounds each Docker API request, and any stall of an
	 * export, by this timeout itself. Resolving takes at most four requests; an export gets
	 * twelve timeouts more of steady progress (two minutes at the default). */
	double s = 4 * t + 5;
	if (!ud.layers || strcmp(ud.layers, "direct") != 0 || (ud.pull && strcmp(ud.pull, "never")))
		s += 12 * t; /* an export, or a pull asked for */
	return (int)s;
}

/* argv for the helper (form 1 and docker-image without master). */
char **ud_helper_argv(const char *pull, const char *pull_if_not)
{
	size_t n = 40;
	struct uwsgi_string_list *usl;
	uwsgi_foreach(usl, ud.binds) n += 2;
	uwsgi_foreach(usl, ud.ro_binds) n += 2;
	uwsgi_foreach(usl, ud.tmpfs) n += 2;
	char **argv = uwsgi_calloc(sizeof(char *) * n);
	size_t i = 0;
#define ARG(s) argv[i++] = (s)
#define OPT(flag, val)                                                                             \
	do {                                                                                       \
		if (val) {                                                                         \
			ARG(flag);                                                                 \
			ARG(val);                                                                  \
		}                                                                                  \
	} while (0)
	ARG(ud.helper ? ud.helper : HELPER_NAME);
	OPT("--docker-host", ud.host);
	OPT("--timeout", ud.timeout);
	OPT("--rw-path", ud.rwpath);
	if (ud.read_only)
		ARG("--read-only");
	if (ud.no_confine)
		ARG("--no-confine");
	if (ud.no_network_files)
		ARG("--no-network-files");
	OPT("--shm-size", ud.shm_size);
	OPT("--user", ud.user);
	OPT("--mount-api", ud.mount_api);
	OPT("--layers", ud.layers);
	OPT("--pull", pull ? (char *)pull : ud.pull);
	OPT("--pull-if-not", (char *)pull_if_not);
	OPT("--cache-dir", ud.cache_dir);
	OPT("--gc-interval", ud.gc_interval);
	uwsgi_foreach(usl, ud.binds) OPT("--bind", usl->value);
	uwsgi_foreach(usl, ud.ro_binds) OPT("--ro-bind", usl->value);
	uwsgi_foreach(usl, ud.tmpfs) OPT("--tmpfs", usl->value);
	OPT("--unshare", ud.unshare);
	OPT("--hostname", ud.hostname);
	ARG(ud.image);
#undef OPT
#undef ARG
	return argv;
}

/* The helper's stderr: its last line (the one error line comes after any pull progress), without
 * its program-name prefix and newline. The pipe is non-blocking and the helper has exited. */
static void read_helper_message(int fd, char *buf, size_t len)
{
	char all[65536];
	size_t n = 0;
	ssize_t r;
	while (n < sizeof(all) - 1 && (r = read(fd, all + n, sizeof(all) - 1 - n)) > 0)
		n += (size_t)r;
	while (n && all[n - 1] == '\n')
		n--;
	all[n] = '\0';
	const char *last = strrchr(all, '\n');
	last = last ? last + 1 : all;
	size_t l = strnlen(last, len - 1);
	memcpy(buf, last, l);
	buf[l] = '\0';
	static const char prefix[] = HELPER_NAME ": ";
	if (!strncmp(buf, prefix, sizeof(prefix) - 1))
		memmove(buf, buf + sizeof(prefix) - 1, strlen(buf) - (sizeof(prefix) - 1) + 1);
}

/* What the master's environment is: the host's (the image's Env never enters it), and the
 * helper's socket as fd 3. */
static char **helper_envp(void)
{
	size_t n_env = 0;
	while (environ[n_env])
		n_env++;
	char **envp = uwsgi_calloc(sizeof(char *) * (n_env + 2));
	size_t j = 0;
	for (size_t i = 0; i < n_env; i++)
		if (strncmp(environ[i], UD_FD_ENV "=", sizeof(UD_FD_ENV)) != 0)
			envp[j++] = environ[i];
	envp[j] = UD_FD_ENV "=3";
	return envp;
}

/* PATH lookup in the parent: the child between clone and exec may only make async-signal-safe
 * calls (the master may have other threads holding malloc's locks). */
static char *find_helper(const char *name)
{
	if (strchr(name, '/'))
		return uwsgi_str((char *)name);
	const char *path = getenv("PATH");
	if (!path || !*path)
		path = "/usr/local/bin:/usr/bin:/bin";
	while (*path) {
		size_t n = strcspn(path, ":");
		char *cand = uwsgi_concat4n((char *)(n ? path : "."), n ? n : 1, "/", 1,
					    (char *)name, strlen(name), "", 0);
		if (access(cand, X_OK) == 0)
			return cand;
		free(cand);
		path += n + (path[n] == ':');
	}
	return NULL;
}

/* The helper's process: stdio, the hand-off socket as fd 3, the error pipe as stderr, and
 * nothing else. It dies with its parent (the keeper below), whatever kills that. */
static __attribute__((noreturn)) void exec_helper(const char *path, char **argv, char **envp,
						  int sock, int errw, int outw)
{
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || dup2(errw, 2) < 0 || dup2(sock, 3) < 0 ||
	    (outw >= 0 && dup2(outw, 1) < 0))
		_exit(UD_EXIT_CANNOT_EXEC);
	syscall(SYS_close_range, 4U, ~0U, 0U);
	execve(path, argv, envp);
	static const char msg[] = HELPER_NAME ": cannot execute the helper\n";
	ssize_t w = write(2, msg, sizeof(msg) - 1);
	(void)w;
	_exit(UD_EXIT_CANNOT_EXEC);
}

/* The keeper: a copy of the master that runs no code of the master's (every handler reset,
 * every signal unblocked), starts the helper and exits with its status, or 128 + the signal
 * that killed it. It never executes anything itself: see spawn_quiet(). */
static __attribute__((noreturn)) void keeper(const char *path, char **argv, char **envp, int sock,
					     int errw, int outw, int nice)
{
	if (nice)
		setpriority(PRIO_PROCESS, 0, nice);
	struct sigaction dfl = {.sa_handler = SIG_DFL};
	for (int sig = 1; sig < NSIG; sig++)
		sigaction(sig, &dfl, NULL);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	pid_t pid = vfork();
	if (pid == 0)
		exec_helper(path, argv, envp, sock, errw, outw);
	if (pid < 0)
		_exit(UD_EXIT_CANNOT_EXEC);
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			_exit(UD_EXIT_CANNOT_EXEC);
	_exit(WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status));
}

/* uWSGI's master reaps every child with waitpid(-1): it would take the helper's exit status
 * from us (and log it as a stray subprocess). waitpid(-1) without __WALL skips a "clone child",
 * one whose exit_signal is not SIGCHLD; but the kernel turns exit_signal back to SIGCHLD when
 * such a child executes a program (exit_notify(): a changed self_exec_id). So the clone child
 * (exit_signal 0, reaped through its pidfd) is a keeper that never executes anything and runs
 * the helper as its own child. */
static pid_t spawn_quiet(const char *path, char **argv, char **envp, int sock, int errw,
			 int outw, int nice, int *pidfd)
{
	/* fds above 3 first: dup2 onto 1, 2 and 3 must not clobber one with another. */
	ud_autoclose int s = fcntl(sock, F_DUPFD_CLOEXEC, 10);
	ud_autoclose int w = fcntl(errw, F_DUPFD_CLOEXEC, 10);
	ud_autoclose int o = outw >= 0 ? fcntl(outw, F_DUPFD_CLOEXEC, 10) : -1;
	if (s < 0 || w < 0 || (outw >= 0 && o < 0))
		return -1;
	struct clone_args ca = {.flags = CLONE_PIDFD, .pidfd = (uint64_t)(uintptr_t)pidfd};
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pid_t pid = syscall(SYS_clone3, &ca, sizeof(ca));
	if (pid == 0)
		keeper(path, argv, envp, s, w, o, nice);
	int err = errno;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	errno = err;
	return pid;
}

/* Starts the helper and returns at once: it resolves the image and mounts while uWSGI goes on
 * with its own start (Python's initialisation takes about as long), or while the master serves
 * (a rollout). uWSGI's listening sockets are not CLOEXEC (they survive re-exec reloads): none
 * crosses. Its stderr comes back to us, so that a failure makes one log line, ours. */
/* The helper's stderr (non-blocking) and, for a run with its own argv, its stdout. */
static int helper_pipes(struct ud_helper_run *run, int *errw, int *outw, ud_error *e)
{
	int errp[2], outp[2] = {-1, -1};
	if (pipe2(errp, O_CLOEXEC | O_NONBLOCK) < 0)
		return ud_fail(e, UD_EXIT_HANDOFF, errno, "pipe");
	if (run->argv && pipe2(outp, O_CLOEXEC | O_NONBLOCK) < 0) {
		int err = errno;
		close(errp[0]);
		close(errp[1]);
		return ud_fail(e, UD_EXIT_HANDOFF, err, "pipe");
	}
	run->err = errp[0];
	run->out = outp[0];
	*errw = errp[1];
	*outw = outp[1];
	return 0;
}

int ud_helper_start(struct ud_helper_run *run, ud_error *e)
{
	int sv[2], errw = -1, outw = -1;
	run->pid = -1;
	const char *name = ud.helper ? ud.helper : HELPER_NAME;
	ud_autofree char *path = find_helper(name);
	if (!path)
		return ud_fail(e, UD_EXIT_HANDOFF, ENOENT, "cannot run %s for image '%s'", name,
			       ud.image);
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return ud_fail(e, UD_EXIT_HANDOFF, errno, "socketpair");
	if (helper_pipes(run, &errw, &outw, e) < 0) {
		close(sv[0]);
		close(sv[1]);
		return -1;
	}
	char **envp = helper_envp(), **argv = run->argv ? run->argv : ud_helper_argv(run->pull, run->pull_if_not);
	run->pid = spawn_quiet(path, argv, envp, sv[1], errw, outw, run->nice, &run->pidfd);
	int err = errno;
	if (argv != run->argv)
		free(argv);
	free(envp);
	close(sv[1]);
	close(errw);
	if (outw >= 0)
		close(outw);
	run->sock = sv[0];
	run->deadline_ms = ud_now_ms() + ud_helper_deadline_s() * 1000LL;
	if (run->pid < 0) {
		ud_closep(&run->sock);
		ud_closep(&run->err);
		ud_closep(&run->out);
		return ud_fail(e, UD_EXIT_HANDOFF, err, "cannot run %s for image '%s'", name,
			       ud.image);
	}
	return 0;
}

int ud_helper_done(const struct ud_helper_run *run)
{
	struct pollfd pf[2] = {{.fd = run->sock, .events = POLLIN}, {.fd = run->pidfd, .events = POLLIN}};
	return poll(pf, 2, 0) > 0 || ud_now_ms() >= run->deadline_ms;
}

long long ud_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

static int reap(struct ud_helper_run *run)
{
	siginfo_t si = {0};
	while (waitid(P_PIDFD, run->pidfd, &si, WEXITED | __WALL) < 0 && errno == EINTR)
		;
	ud_closep(&run->pidfd);
	run->pid = -1;
	/* As a wait status: the keeper reports a signal that killed the helper as 128 + it. */
	if (si.si_code == CLD_EXITED && si.si_status > 128)
		return si.si_status - 128;
	if (si.si_code == CLD_EXITED)
		return si.si_status << 8;
	return si.si_status & 0x7f;
}

int ud_helper_finish_plain(struct ud_helper_run *run, char *out, size_t out_len, char *msg,
			   size_t msg_len)
{
	if (ud_now_ms() >= run->deadline_ms)
		kill(run->pid, SIGKILL);
	int status = reap(run);
	ud_closep(&run->sock);
	ssize_t n = run->out >= 0 ? read(run->out, out, out_len - 1) : -1;
	out[n > 0 ? n : 0] = '\0';
	ud_closep(&run->out);
	read_helper_message(run->err, msg, msg_len);
	ud_closep(&run->err);
	return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
}

/* Receives the namespace, bounded in time (the helper's own requests time out, and it is killed
 * if it outlives that), and reaps the helper. */
int ud_helper_finish(struct ud_helper_run *run, struct ud_handoff *h, ud_error *e)
{
	const char *helper = ud.helper ? ud.helper : HELPER_NAME;
	ud_error re = {0};
	long long left = run->deadline_ms - ud_now_ms();
	int r = ud_handoff_recv(run->sock, h, left > 0 ? (int)left : 1, &re);
	ud_closep(&run->sock);
	if (r < 0 && re.errnum == ETIMEDOUT)
		kill(run->pid, SIGKILL);
	int status = reap(run);
	run->status = WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
	char msg[1024];
	read_helper_message(run->err, msg, sizeof(msg));
	ud_closep(&run->err);
	if (WIFSIGNALED(status) || WEXITSTATUS(status) != 0) {
		ud_handoff_free(h);
		if (WIFSIGNALED(status))
			return ud_fail(e, UD_EXIT_HANDOFF, 0, "%s was killed by signal %d%s", helper,
				       WTERMSIG(status),
				       re.errnum == ETIMEDOUT ? " (timed out)" : "");
		return ud_fail(e, UD_EXIT_HANDOFF, 0, "%s failed (exit status %d): %s", helper,
			       WEXITSTATUS(status), msg[0] ? msg : "no message");
	}
	if (r < 0)
		*e = re;
	else if (msg[0]) /* a warning of a run that succeeded (e.g. the daemon was down) */
		uwsgi_log(LOG_PREFIX "%s\n", msg);
	return r;
}
