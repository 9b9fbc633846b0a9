/* --check (check.h). Failures speak as a pull's do: the registry's own words, and the same exit
 * statuses, since the daemon talks to the registry the same way for both. */
#include "check.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "lastgood.h"
#include "rootmemo.h"
#include "pull_progress.h"
#include "reference.h"
#include "util.h"

#define MAX_BODY (64 * 1024)
/* GET /distribution came with API 1.30 (Docker 17.06). */
#define DISTRIBUTION_API "1.30"

/* The whole answer, at most MAX_BODY bytes, NUL-terminated. */
static int read_body(ud_stream *s, char **body, size_t *len, ud_error *e)
{
	*body = calloc(1, MAX_BODY + 1);
	*len = 0;
	if (!*body)
		return ud_oom(e);
	const void *chunk;
	long n;
	while ((n = ud_stream_read(s, &chunk, e)) > 0) {
		size_t take = (size_t)n < MAX_BODY - *len ? (size_t)n : MAX_BODY - *len;
		memcpy(*body + *len, chunk, take);
		*len += take;
	}
	return n < 0 ? -1 : 0;
}

static int refused(long status, const char *body, const char *ref, const char *where,
		   ud_error *e)
{
	char msg[512], line[600];
	ud_parse_error_message(body, msg, sizeof(msg));
	ud_pull_one_line(msg, line, sizeof(line));
	return ud_fail(e, status == 404 ? UD_EXIT_IMAGE : ud_pull_error_status(msg), 0,
		       "check of '%s' at %s failed: %s (HTTP %ld)", ref, where, line, status);
}

static int registry_digest(struct ud_docker *d, const char *ref, const struct ud_ref_parts *p,
			   const char *config_dir, char *digest, ud_error *e)
{
	char path[1200], where[512];
	snprintf(where, sizeof(where), "%s through unix://%s", p->domain, d->socket_path);
	if (ud_api_version_cmp(d->api, DISTRIBUTION_API) < 0)
		return ud_fail(e, UD_EXIT_DAEMON, 0,
			       "check of '%s': the daemon at unix://%s speaks API %s; the "
			       "registry's digest needs %s",
			       ref, d->socket_path, d->api, DISTRIBUTION_API);
	snprintf(path, sizeof(path), "/v%s/distribution/%s/json", d->api, ref);
	char *line;
	if (ud_auth_line(p->domain, config_dir, d->timeout_ms, &line, e) < 0)
		return -1;
	struct ud_stream_req rq = {"GET", line, true};
	ud_stream *s = NULL;
	int r = ud_docker_stream_request(d, path, &rq, &s, e);
	ud_auth_line_free(line);
	ud_autofree char *body = NULL;
	size_t len = 0;
	if (r == 0)
		r = read_body(s, &body, &len, e);
	long status = s ? ud_stream_status(s) : 0;
	ud_stream_close(s);
	if (r < 0)
		return ud_context(e, "check of '%s' at %s", ref, where);
	if (status != 200)
		return refused(status, body, ref, where, e);
	if (ud_parse_distribution(body, len, digest, 72, e) < 0)
		return ud_context(e, "check of '%s' at %s", ref, where);
	return 0;
}

/* ---- answers shared between the checks of one host ---------------------------------------- */

/* One file per daemon socket and reference: "SOCKET REF" then the digest; its mtime is when
 * the registry was asked. Locked while a check asks, so that the others wait for its answer
 * instead of asking too. Root's alone, in /run: an answer is worth one interval. */
#define SHARED_DIR UD_ROOTMEMO_DIR "/checks"

static int shared_open(const char *socket_path, const char *ref)
{
	char name[32], path[sizeof(SHARED_DIR) + 40];
	if ((mkdir(UD_ROOTMEMO_DIR, 0755) < 0 && errno != EEXIST) ||
	    (mkdir(SHARED_DIR, 0700) < 0 && errno != EEXIST))
		return -1;
	ud_lastgood_name(socket_path, ref, name, sizeof(name));
	snprintf(path, sizeof(path), SHARED_DIR "/%s", name);
	int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	struct stat st;
	if (fd >= 0 && (flock(fd, LOCK_EX) < 0 || fstat(fd, &st) < 0 || st.st_uid != 0)) {
		close(fd);
		return -1;
	}
	return fd;
}

/* The kept answer if it is younger than max_age_ms. */
static bool shared_get(int fd, const char *key, long max_age_ms, char *digest)
{
	char buf[1400];
	struct stat st;
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	if (fd < 0 || fstat(fd, &st) < 0)
		return false;
	long long age_ms = (now.tv_sec - st.st_mtim.tv_sec) * 1000LL +
			   (now.tv_nsec - st.st_mtim.tv_nsec) / 1000000;
	if (age_ms < 0 || age_ms >= max_age_ms)
		return false;
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
	size_t klen = strlen(key);
	if (n <= 0 || (size_t)n < klen + 72 || memcmp(buf, key, klen) != 0)
		return false;
	buf[n] = '\0';
	return sscanf(buf + klen, "%71s", digest) == 1 && !strncmp(digest, "sha256:", 7) &&
	       strlen(digest) == 71;
}

static void shared_put(int fd, const char *key, const char *digest)
{
	char buf[1400];
	int n = snprintf(buf, sizeof(buf), "%s%s\n", key, digest);
	if (fd >= 0 && n > 0 && (size_t)n < sizeof(buf) && ftruncate(fd, 0) == 0)
		if (pwrite(fd, buf, (size_t)n, 0) == n)
			futimens(fd, NULL);
}

static int shared_registry_digest(struct ud_docker *d, const char *ref,
				  const struct ud_ref_parts *p, const char *config_dir,
				  long max_age_ms, char *digest, ud_error *e)
{
	if (max_age_ms <= 0 || geteuid() != 0)
		return registry_digest(d, ref, p, config_dir, digest, e);
	char key[1200];
	snprintf(key, sizeof(key), "%s %s\n", d->socket_path, ref);
	ud_autoclose int fd = shared_open(d->socket_path, ref);
	if (shared_get(fd, key, max_age_ms, digest))
		return 0;
	if (registry_digest(d, ref, p, config_dir, digest, e) < 0)
		return -1;
	shared_put(fd, key, digest);
	return 0;
}

/* The daemon's image under ref: its id, and the digest it recorded for ref's repository
 * (RepoDigests), each "" when it has none. Not found is not a failure. */
static int local_image(struct ud_docker *d, const char *ref, const char *repo, char *digest,
		       size_t dlen, char *id, size_t idlen, ud_error *e)
{
	struct ud_image img;
	ud_error ie = {0};
	digest[0] = id[0] = '\0';
	if (ud_docker_inspect_raw(d, ref, &img, &ie) < 0) {
		if (ie.status == UD_EXIT_IMAGE)
			return 0;
		if (e)
			*e = ie;
		return -1;
	}
	if (repo)
		ud_repo_digest(&img, repo, digest, dlen);
	snprintf(id, idlen, "%s", img.id);
	ud_image_free(&img);
	return 0;
}

int ud_check(struct ud_docker *d, const char *ref, const char *config_dir, long max_age_ms,
	     FILE *out, ud_error *e)
{
	struct ud_ref_parts parts;
	if (!ud_reference_parse(ref, &parts))
		return ud_fail(e, UD_EXIT_USAGE, 0,
			       "--check '%s': an image id names one image; give a name and tag", ref);
	if (parts.digest[0])
		return ud_fail(e, UD_EXIT_USAGE, 0,
			       "--check '%s': the reference names a digest, which cannot move", ref);
	char remote[72], local[72], id[80], pinned[sizeof(parts.name) + 80], unused[72],
		remote_id[80];
	if (shared_registry_digest(d, ref, &parts, config_dir, max_age_ms, remote, e) < 0 ||
	    local_image(d, ref, parts.name, local, sizeof(local), id, sizeof(id), e) < 0)
		return -1;
	/* The image the registry's digest names, if the daemon has it: a follower serving it is
	 * up to date even while the daemon's tag points elsewhere (someone tagged and is pushing
	 * another image, or untagged it). */
	snprintf(pinned, sizeof(pinned), "%s@%s", parts.name, remote);
	if (local_image(d, pinned, NULL, unused, sizeof(unused), remote_id, sizeof(remote_id),
			e) < 0)
		return -1;
	fprintf(out, "local %s", local[0] ? local : "none");
	if (id[0])
		fprintf(out, " (image %s)", id);
	fprintf(out, "\nregistry %s", remote);
	if (remote_id[0])
		fprintf(out, " (image %s)", remote_id);
	fprintf(out, "\n");
	return strcmp(local, remote) ? UD_CHECK_MOVED : 0;
}
