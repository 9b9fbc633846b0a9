/* Runs uwsgi-docker-rootfs for the plugin and receives the namespace it prepared. */
#include "plugin.h"

#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>

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
	if (!ud.layers || strcmp(ud.layers, "direct") != 0)
		s += 12 * t;
	return (int)s;
}

/* argv for the helper (form 1 and docker-image without master). */
char **ud_helper_argv(void)
{
	size_t n = 32;
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
	OPT("--mount-api", ud.mount_api);
	OPT("--layers", ud.layers);
	OPT("--cache-dir", ud.cache_dir);
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

/* The helper's stderr (one line on failure), without its program-name prefix and newline. */
static void read_helper_message(int fd, char *buf, size_t len)
{
	ssize_t n = read(fd, buf, len - 1);
	buf[n > 0 ? n : 0] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
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

/* Starts the helper and returns at once: it resolves the image and mounts while uWSGI goes on
 * with its own start (Python's initialisation takes about as long). Only stdio and the hand-off
 * socket (as fd 3) cross into it: uWSGI's listening sockets are not CLOEXEC (they survive
 * re-exec reloads). Its stderr comes back to us, so that a failure makes one log line, ours. */
int ud_helper_start(struct ud_helper_run *run, ud_error *e)
{
	int sv[2], errp[2];
	run->pid = -1;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return ud_fail(e, UD_EXIT_HANDOFF, errno, "socketpair");
	if (pipe2(errp, O_CLOEXEC | O_NONBLOCK) < 0) {
		int err = errno;
		close(sv[0]);
		close(sv[1]);
		return ud_fail(e, UD_EXIT_HANDOFF, err, "pipe");
	}
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, sv[1], 3);
	posix_spawn_file_actions_adddup2(&fa, errp[1], 2);
	posix_spawn_file_actions_addclosefrom_np(&fa, 4);
	char **envp = helper_envp(), **argv = ud_helper_argv();
	int err = posix_spawnp(&run->pid, argv[0], &fa, NULL, argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	free(argv);
	free(envp);
	close(sv[1]);
	close(errp[1]);
	run->sock = sv[0];
	run->err = errp[0];
	if (err) {
		ud_closep(&run->sock);
		ud_closep(&run->err);
		run->pid = -1;
		return ud_fail(e, UD_EXIT_HANDOFF, err, "cannot run %s for image '%s'",
			       ud.helper ? ud.helper : HELPER_NAME, ud.image);
	}
	return 0;
}

/* Receives the namespace, bounded in time (the helper's own requests time out, and it is killed
 * if it outlives that), and reaps the helper. */
int ud_helper_finish(struct ud_helper_run *run, struct ud_handoff *h, ud_error *e)
{
	const char *helper = ud.helper ? ud.helper : HELPER_NAME;
	ud_error re = {0};
	int r = ud_handoff_recv(run->sock, h, ud_helper_deadline_s() * 1000, &re);
	ud_closep(&run->sock);
	if (r < 0 && re.errnum == ETIMEDOUT)
		kill(run->pid, SIGKILL);
	int status = 0;
	while (waitpid(run->pid, &status, 0) < 0 && errno == EINTR)
		;
	run->pid = -1;
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
	return r;
}

