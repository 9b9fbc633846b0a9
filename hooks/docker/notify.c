/* systemd's readiness notification (Type=notify) for form 2.
 *
 * uWSGI reads NOTIFY_SOCKET at its start and sends every notification with sendmsg() to that
 * path by name (core/notify.c). In form 2 the master has entered the image by the time it says
 * READY=1, and the path is not there: systemd would never hear it and kill the unit at its start
 * timeout. So on the host, before entering, the plugin opens its own datagram socket connected
 * to NOTIFY_SOCKET (the address is resolved once, at connect(), and also permission is checked
 * then: as root) and puts its own two senders in uWSGI's notify and notify_ready, which write
 * uWSGI's own messages to that fd.
 *
 * The fd is CLOEXEC and only the master keeps it: a child of the master (a worker, and so the
 * app) gets it closed right after fork, and NOTIFY_SOCKET leaves the environment, so that the
 * app cannot speak for the instance (a READY=1 or STOPPING=1 of its own, a MAINPID=). Workers
 * live in their own PID namespace and cannot reach the master's fds through /proc either. With
 * NotifyAccess=main (systemd's default) systemd would ignore a worker's message anyway; with
 * NotifyAccess=all it would not, which is what this closes. uWSGI's own unconnected
 * notification socket stays in every process, but inside the image it names no reachable path. */
#include "plugin.h"

#include <pthread.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "util.h"

static int notify_fd = -1;

static void send_parts(const char *a, const char *b, const char *c)
{
	if (notify_fd < 0)
		return;
	struct iovec iov[3] = {
		{(void *)a, strlen(a)}, {(void *)b, strlen(b)}, {(void *)c, strlen(c)}};
	struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 3};
	if (sendmsg(notify_fd, &msg, MSG_NOSIGNAL) < 0)
		uwsgi_log(LOG_PREFIX "cannot notify systemd: %s\n", strerror(errno));
}

/* uWSGI's own messages (core/notify.c), on the connected fd. */
static void notify_status(char *message)
{
	send_parts("STATUS=", message, "\n");
}

static void notify_ready(void)
{
	send_parts("STATUS=uWSGI is ready\nREADY=1\n", "", "");
}

static void close_in_child(void)
{
	ud_closep(&notify_fd);
}

/* The address as uWSGI and sd_notify(3) read it: a path, or '@' for the abstract namespace. */
static int notify_addr(const char *name, struct sockaddr_un *sa, socklen_t *len)
{
	size_t n = strlen(name);
	if (n < 2 || n >= sizeof(sa->sun_path) || (name[0] != '/' && name[0] != '@'))
		return -1;
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	memcpy(sa->sun_path, name, n);
	if (sa->sun_path[0] == '@')
		sa->sun_path[0] = '\0';
	*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (name[0] == '/'));
	return 0;
}

/* Form 2, as root on the host, before entering the image. Without NOTIFY_SOCKET, or under an
 * Emperor (which takes notify_ready itself, later), nothing changes. */
void ud_notify_connect(void)
{
	const char *name = getenv("NOTIFY_SOCKET");
	if (!name || !uwsgi.notify_ready)
		return;
	struct sockaddr_un sa;
	socklen_t len;
	int fd = -1;
	if (notify_addr(name, &sa, &len) < 0)
		uwsgi_log(LOG_PREFIX "NOTIFY_SOCKET=%s is not a socket address: systemd will not "
				     "hear that the instance is ready\n",
			  name);
	else if ((fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0 ||
		 connect(fd, (struct sockaddr *)&sa, len) < 0 ||
		 (errno = pthread_atfork(NULL, NULL, close_in_child)) != 0) {
		uwsgi_log(LOG_PREFIX
			  "cannot connect to NOTIFY_SOCKET=%s (%s): systemd will not hear "
			  "that the instance is ready\n",
			  name, strerror(errno));
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	unsetenv("NOTIFY_SOCKET");
	if (fd < 0)
		return;
	notify_fd = fd;
	uwsgi.notify = notify_status;
	uwsgi.notify_ready = notify_ready;
}
