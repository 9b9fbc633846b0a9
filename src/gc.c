/* Garbage collection (gc.h). The background one is a grandchild of no one: it holds none of the
 * run's descriptors, lives in the host's mount namespace (it is forked before the run unshares),
 * runs at the lowest CPU and I/O priority, and can be killed at any point: a layer leaves its
 * store by one rename before it is deleted (cache.c). */
#include "gc.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cache.h"
#include "snapshot.h"
#include "util.h"

/* The snapshot store of the daemon's storage: <DockerRootDir>/<driver>/uwsgi-docker, for the
 * drivers whose layers are snapshotted (Docker's overlay2, Podman's overlay). */
static int collect_stores(struct ud_docker *d, FILE *out, struct ud_cache_freed *freed,
			  ud_error *e)
{
	static const char *const drivers[] = {"overlay2", "overlay"};
	ud_autofree char *desc = NULL, *root = NULL;
	if (ud_docker_info(d, &desc, &root, e) < 0)
		return -1;
	for (size_t i = 0; root && i < UD_ARRAY_SIZE(drivers); i++) {
		char store[1200];
		struct stat st;
		snprintf(store, sizeof(store), "%s/%s/" UD_SNAPSHOT_STORE, root, drivers[i]);
		if (lstat(store, &st) == 0 && S_ISDIR(st.st_mode) &&
		    ud_cache_prune(d, store, out, freed, e) < 0)
			return -1;
	}
	return 0;
}

int ud_gc_run(struct ud_docker *d, const char *cache_dir, FILE *out, ud_error *e)
{
	struct ud_cache_freed freed = {0};
	if (ud_cache_prune(d, cache_dir, out, &freed, e) < 0 ||
	    collect_stores(d, out, &freed, e) < 0)
		return -1;
	fprintf(out, "freed %lld bytes in %zu layers\n", freed.bytes, freed.layers);
	return 0;
}

/* ---------------------------------------------------------------- in the background */

static bool due(long interval)
{
	struct stat st;
	return interval >= 0 &&
	       (stat(UD_GC_STAMP, &st) < 0 || time(NULL) - st.st_mtime >= interval);
}

/* fd as to, close-on-exec (nothing here executes anything). */
static void put_fd(int fd, int to)
{
	if (fd != to && dup3(fd, to, O_CLOEXEC) < 0)
		_exit(1);
}

/* Descriptors 0-2 on /dev/null, the lifeline as 3, nothing else; lowest priorities. */
static void detach(int lifeline)
{
	put_fd(lifeline, 3);
	syscall(SYS_close_range, 4U, ~0U, 0U);
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null < 0)
		_exit(1);
	for (int fd = 0; fd < 3; fd++)
		put_fd(null, fd);
	if (null > 3)
		close(null);
	setsid();
	setpriority(PRIO_PROCESS, 0, 19);
	/* IOPRIO_CLASS_IDLE (3) << IOPRIO_CLASS_SHIFT (13), for this process (IOPRIO_WHO_PROCESS). */
	syscall(SYS_ioprio_set, 1, 0, 3 << 13);
	signal(SIGPIPE, SIG_IGN);
	alarm(3600); /* whatever happens, it ends */
}

static void collect(const char *docker_host, long timeout_ms, const char *cache_dir,
		    long interval)
{
	ud_autoclose int stamp =
		open(UD_GC_STAMP, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	/* One at a time, and not twice in a row: the one before may just have finished. */
	if (stamp < 0 || flock(stamp, LOCK_EX | LOCK_NB) < 0 || !due(interval))
		return;
	futimens(stamp, NULL);
	char tmp[] = UD_GC_REPORT ".XXXXXX";
	ud_autoclose int rfd = mkostemp(tmp, O_CLOEXEC);
	FILE *out = rfd >= 0 ? fdopen(ud_steal_fd(&rfd), "w") : NULL;
	if (!out)
		return;
	struct ud_docker d;
	ud_error e = {0};
	char buf[1400];
	if (ud_docker_open(&d, docker_host, timeout_ms, &e) < 0 ||
	    ud_docker_negotiate(&d, &e) < 0 || ud_gc_run(&d, cache_dir, out, &e) < 0)
		fprintf(out, "gc failed: %s\n", ud_error_text(&e, buf, sizeof(buf)));
	ud_docker_close(&d);
	if (fclose(out) == 0)
		rename(tmp, UD_GC_REPORT);
	else
		unlink(tmp);
}

void ud_gc_schedule(const char *docker_host, long timeout_ms, const char *cache_dir,
		    long interval)
{
	int pipefd[2];
	if (!due(interval) || geteuid() != 0)
		return;
	if ((mkdir(UD_STATE_DIR, 0755) < 0 && errno != EEXIST) || pipe2(pipefd, O_CLOEXEC) < 0)
		return;
	pid_t pid = fork();
	if (pid == 0) {
		close(pipefd[1]);
		detach(pipefd[0]);
		/* Wait for the run's end: its end of the pipe closes at exit or exec. A second
		 * fork leaves the run's parent nothing to reap of ours. */
		char c;
		if (fork() != 0)
			_exit(0);
		while (read(3, &c, 1) < 0 && errno == EINTR)
			;
		collect(docker_host, timeout_ms, cache_dir, interval);
		_exit(0);
	}
	close(pipefd[0]);
	if (pid < 0) {
		close(pipefd[1]);
		return;
	}
	/* The intermediate child exits at once; reap it so the run leaves no zombie. Its own
	 * child keeps the read end. The write end stays open in this process until it ends. */
	waitpid(pid, NULL, 0);
}
