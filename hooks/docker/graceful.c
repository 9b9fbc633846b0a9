/* A worker's graceful end (SIGHUP: full reloads, chain reloads, rollouts) without resetting a
 * client's connection.
 *
 * uWSGI 2.0's handler (gracefully_kill in core/uwsgi.c) exits at once when the worker has no
 * request in progress, and "in progress" (cores[0].in_request) is set by wsgi_req_recv(), after
 * wsgi_req_accept() has returned the accepted connection. A SIGHUP that lands between the two
 * ends the process with a connection accepted and its request unread, and the kernel answers
 * such a close with RST: the client sees "connection reset by peer". Plain uWSGI does this too;
 * it is rare per signal (the window is a few syscalls wide) and certain over enough reloads.
 *
 * This handler only stops the loop (manage_next_request = 0, what uWSGI's sets too) and never
 * exits from the signal: a worker blocked in epoll_wait gets EINTR there and leaves its loop
 * (uWSGI's loop checks the flag before every accept), and one past accept() serves the request
 * first. The one case it leaves: a signal that lands between the loop's check and epoll_wait;
 * then the worker waits for the next connection, serves it and goes. The master nudges such a
 * worker again (ud_graceful_nudge) once it is idle, so an idle instance is not held up.
 *
 * Only for uWSGI's default loop (one thread, no async, no loop engine): the others have their
 * own ways to wait for their cores. */
#include "plugin.h"

#include <sys/resource.h>

static int applies(void)
{
	return uwsgi.threads <= 1 && uwsgi.async <= 1 && !uwsgi.loop;
}

static void graceful_sighup(int sig)
{
	(void)sig;
	uwsgi.workers[uwsgi.mywid].manage_next_request = 0;
}

/* A worker, after uWSGI installed its own handlers (uwsgi_worker_run) and before it accepts. */
void ud_graceful_install(void)
{
	if (!applies())
		return;
	struct sigaction sa = {.sa_handler = graceful_sighup};
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGHUP, &sa, NULL) < 0)
		uwsgi_error("sigaction(SIGHUP)");
}

/* The master, each cycle: a worker cursed with SIGHUP at least two seconds ago, alive and idle
 * (no request in progress) missed it in the window above; the signal interrupts its wait now.
 * Never a worker with a request in progress: a signal interrupts its poll() with EINTR. */
void ud_graceful_nudge(void)
{
	static time_t last;
	time_t now = uwsgi_now();
	if (!applies() || now == last)
		return;
	last = now;
	for (int i = 1; i <= uwsgi.numproc; i++) {
		struct uwsgi_worker *w = &uwsgi.workers[i];
		if (w->pid > 0 && w->cursed_at && now - w->cursed_at >= 2 && !w->cores[0].in_request &&
		    !w->manage_next_request)
			kill(w->pid, SIGHUP);
	}
}

/* A worker that comes while the others serve (a rollout's, a max-requests or crash respawn; not
 * those of a start) loads its app at nice +10: on a small machine importing a framework takes a
 * core for a few hundred milliseconds, the serving workers' requests wait behind it. Called as
 * root, before the privileges drop: RLIMIT_NICE lets the process go back to where it was (and no
 * further) once the app is loaded. */
static int nice_before = INT_MIN;

void ud_graceful_load_gently(void)
{
	if (uwsgi.workers[uwsgi.mywid].respawn_count <= 1)
		return;
	errno = 0;
	int before = getpriority(PRIO_PROCESS, 0);
	struct rlimit rl;
	if ((before == -1 && errno) || getrlimit(RLIMIT_NICE, &rl) < 0)
		return;
	rlim_t need = (rlim_t)(20 - before);
	if (rl.rlim_cur < need) {
		rl.rlim_cur = need;
		if (rl.rlim_max < need)
			rl.rlim_max = need;
		if (setrlimit(RLIMIT_NICE, &rl) < 0)
			return;
	}
	if (setpriority(PRIO_PROCESS, 0, before + 10 > 19 ? 19 : before + 10) == 0)
		nice_before = before;
}

void ud_graceful_loaded(void)
{
	if (nice_before != INT_MIN)
		setpriority(PRIO_PROCESS, 0, nice_before);
	nice_before = INT_MIN;
}
