/* docker pull, through the daemon: POST /images/create?fromImage=NAME&tag=TAG (or NAME@DIGEST,
 * which pulls exactly that manifest), X-Registry-Auth from auth.c. Errors come either as an HTTP
 * status with {"message"} (nothing pulled yet) or as an {"error"} object inside the stream. */
#include "pull.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "docker_json.h"
#include "lastgood.h"
#include "pull_progress.h"
#include "reference.h"
#include "rootmemo.h"

const struct ud_name ud_pull_policies[] = {
	{UD_PULL_MISSING, "missing"},
	{UD_PULL_ALWAYS, "always"},
	{UD_PULL_NEVER, "never"},
	{0, NULL},
};

#define MAX_ERROR_BODY (64 * 1024)

/* Query value: everything but unreserved characters percent-encoded. */
static void query_escape(const char *s, char *out, size_t len)
{
	size_t o = 0;
	for (; *s && o + 4 < len; s++) {
		unsigned char c = (unsigned char)*s;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    strchr("-._~", c))
			out[o++] = (char)c;
		else
			o += (size_t)snprintf(out + o, len - o, "%%%02X", c);
	}
	out[o] = '\0';
}

int ud_pull_path(const char *api, const char *ref, char *path, size_t len, ud_error *e)
{
	struct ud_ref_parts p;
	if (!ud_reference_parse(ref, &p))
		return ud_fail(e, UD_EXIT_IMAGE, 0, "'%s' is not an image name that can be pulled",
			       ref);
	char from[1024], tag[512], both[400];
	if (p.digest[0]) {
		snprintf(both, sizeof(both), "%s@%s", p.name, p.digest);
		query_escape(both, from, sizeof(from));
		snprintf(path, len, "/v%s/images/create?fromImage=%s", api, from);
	} else {
		query_escape(p.name, from, sizeof(from));
		query_escape(p.tag, tag, sizeof(tag));
		snprintf(path, len, "/v%s/images/create?fromImage=%s&tag=%s", api, from, tag);
	}
	return 0;
}

/* ---- the display ---------------------------------------------------------------------------- */

struct display {
	FILE *out;
	bool tty;
	const char *ref;
	struct timespec t0, drawn;
};

static double since(const struct timespec *t)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t->tv_sec) + (double)(now.tv_nsec - t->tv_nsec) / 1e9;
}

static void draw(struct display *dp, const struct ud_pull_progress *p)
{
	/* In double: the sizes are the registry's (through the daemon), and a long long sum of
	 * them can overflow; this is only shown. */
	double cur = 0, total = 0;
	for (size_t i = 0; i < p->n_layers; i++) {
		const struct ud_pull_layer *l = &p->layers[i];
		if (l->existed)
			continue;
		total += (double)l->total;
		cur += (double)(l->done ? l->total : l->current);
	}
	fprintf(dp->out, "\r\033[Kpulling %s: %zu/%zu layers, %.1f/%.1f MB", dp->ref, p->n_done,
		p->n_layers, cur / 1e6, total / 1e6);
	fflush(dp->out);
	clock_gettime(CLOCK_MONOTONIC, &dp->drawn);
}

static void on_event(void *ctx, const struct ud_pull_progress *p, enum ud_pull_event ev,
		     const struct ud_pull_layer *l)
{
	struct display *dp = ctx;
	if (dp->tty && (ev == UD_PULL_EV_LAYER_DONE || since(&dp->drawn) >= 0.1))
		draw(dp, p);
	else if (!dp->tty && ev == UD_PULL_EV_LAYER_DONE && !l->existed)
		fprintf(dp->out,
			"uwsgi-docker-rootfs: pulling %s: layer %s complete (%lld bytes)\n",
			dp->ref, l->id, l->total);
}

static void summary(struct display *dp, const struct ud_pull_progress *p, const char *domain)
{
	if (dp->tty)
		fputs("\r\033[K", dp->out);
	size_t fresh = 0;
	for (size_t i = 0; i < p->n_layers; i++)
		fresh += !p->layers[i].existed;
	if (p->n_layers == 0)
		fprintf(dp->out,
			"uwsgi-docker-rootfs: pulled %s from %s: up to date in %.1f s%s%s\n",
			dp->ref, domain, since(&dp->t0), p->digest[0] ? ", " : "", p->digest);
	else
		fprintf(dp->out,
			"uwsgi-docker-rootfs: pulled %s from %s: %zu new layer%s of %zu, %lld bytes in %.1f s%s%s\n",
			dp->ref, domain, fresh, fresh == 1 ? "" : "s", p->n_layers,
			ud_pull_progress_bytes(p), since(&dp->t0), p->digest[0] ? ", " : "",
			p->digest);
	fflush(dp->out);
}

/* ---- the request ---------------------------------------------------------------------------- */

/* One line: the image, the registry, and the registry's (or daemon's) own words. */
static int pull_failed(const char *ref, const char *domain, const char *words, int status,
		       ud_error *e)
{
	char line[512];
	ud_pull_one_line(words, line, sizeof(line));
	return ud_fail(e, status, 0, "pull of '%s' from %s failed: %s", ref, domain,
		       line[0] ? line : "no message");
}

/* A non-200 answer: its body (bounded) is the daemon's {"message"}; 404 is "not found". */
static int refused(ud_stream *s, const void *chunk, long n, const char *ref, const char *domain,
		   ud_error *e)
{
	long status = ud_stream_status(s);
	char *body = calloc(1, MAX_ERROR_BODY + 1);
	if (!body)
		return ud_oom(e);
	size_t len = 0;
	ud_error ignored = {0};
	while (n > 0) {
		size_t take = (size_t)n < MAX_ERROR_BODY - len ? (size_t)n : MAX_ERROR_BODY - len;
		memcpy(body + len, chunk, take);
		len += take;
		n = len < MAX_ERROR_BODY ? ud_stream_read(s, &chunk, &ignored) : 0;
	}
	char msg[512], words[600];
	ud_parse_error_message(body, msg, sizeof(msg));
	free(body);
	snprintf(words, sizeof(words), "%s (HTTP %ld)", msg, status);
	return pull_failed(ref, domain, words,
			   status == 404 ? UD_EXIT_IMAGE : ud_pull_error_status(msg), e);
}

static int read_progress(ud_stream *s, struct ud_pull_progress *p, struct display *dp,
			 const char *domain, ud_error *e)
{
	const void *chunk = NULL;
	long n;
	bool first = true;
	while ((n = ud_stream_read(s, &chunk, e)) > 0) {
		if (first && ud_stream_status(s) != 200)
			return refused(s, chunk, n, dp->ref, domain, e);
		first = false;
		if (ud_pull_progress_feed(p, chunk, (size_t)n, on_event, dp, e) < 0)
			return ud_context(e, "pull of '%s' from %s", dp->ref, domain);
		if (p->error[0])
			return pull_failed(dp->ref, domain, p->error,
					   ud_pull_error_status(p->error), e);
	}
	if (n < 0)
		return ud_context(e, "pull of '%s' from %s", dp->ref, domain);
	if (first && ud_stream_status(s) != 200)
		return refused(s, "", 0, dp->ref, domain, e);
	if (ud_pull_progress_end(p, e) < 0)
		return ud_context(e, "pull of '%s' from %s", dp->ref, domain);
	return 0;
}

/* Helpers of one host that pull the same reference through the same daemon at once (vassals
 * that follow one tag, told at the same moment that it moved) pull it once: the first takes the
 * lock, the others wait for it and take what it pulled. Root's alone, in /run; without it (not
 * root, no /run) every helper pulls, as the daemon would let them. */
#define PULL_LOCKS UD_ROOTMEMO_DIR "/pulls"

static int pull_lock(const struct ud_docker *d, const char *ref, bool *waited)
{
	char name[32], path[sizeof(PULL_LOCKS) + 40];
	*waited = false;
	if (geteuid() != 0 || (mkdir(UD_ROOTMEMO_DIR, 0755) < 0 && errno != EEXIST) ||
	    (mkdir(PULL_LOCKS, 0700) < 0 && errno != EEXIST))
		return -1;
	ud_lastgood_name(d->socket_path, ref, name, sizeof(name));
	snprintf(path, sizeof(path), PULL_LOCKS "/%s", name);
	int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) == 0)
		return fd;
	*waited = errno == EWOULDBLOCK;
	if (!*waited || flock(fd, LOCK_EX) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int pull_now(struct ud_docker *d, const char *ref, const char *config_dir, FILE *out,
		    ud_error *e)
{
	struct ud_ref_parts parts;
	char path[1200];
	if (ud_pull_path(d->api, ref, path, sizeof(path), e) < 0 ||
	    !ud_reference_parse(ref, &parts))
		return -1;
	char *line;
	if (ud_auth_line(parts.domain, config_dir, d->timeout_ms, &line, e) < 0)
		return -1;
	struct ud_stream_req rq = {"POST", line, true};
	ud_stream *s = NULL;
	int r = ud_docker_stream_request(d, path, &rq, &s, e);
	ud_auth_line_free(line);
	if (r < 0)
		return -1;
	struct display dp = {.out = out, .tty = isatty(fileno(out)), .ref = ref};
	clock_gettime(CLOCK_MONOTONIC, &dp.t0);
	struct ud_pull_progress p;
	r = ud_pull_progress_init(&p, e);
	/* Errors name the registry and the daemon that talked to it. */
	char where[512];
	snprintf(where, sizeof(where), "%s through unix://%s", parts.domain, d->socket_path);
	if (r == 0)
		r = read_progress(s, &p, &dp, where, e);
	if (r == 0)
		summary(&dp, &p, parts.domain);
	else if (dp.tty && p.n_layers)
		fputs("\r\033[K", out);
	ud_pull_progress_free(&p);
	ud_stream_close(s);
	return r;
}

int ud_pull(struct ud_docker *d, const char *ref, const char *config_dir, FILE *out,
	    const struct ud_pull_skip *skip, ud_error *e)
{
	bool waited;
	int lock = pull_lock(d, ref, &waited);
	/* Pulled by the helper we waited for, else by us while we hold the lock; or by one that
	 * released it between the caller's look and our lock. */
	bool done = waited || (lock >= 0 && skip && skip->done && skip->done(skip->arg));
	int r = done ? 0 : pull_now(d, ref, config_dir, out, e);
	ud_closep(&lock);
	return r;
}
