/* Docker Engine API client over the daemon's unix socket (libcurl); docker_json.c reads the answers.
 *
 * Only /_ping and the image inspect are on the path every start takes: /info and /version cost
 * 5-10 times more on a real daemon, so they are asked only to explain a failure. */
#include "docker.h"

#include <ctype.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cu.h"
#include "util.h"

#define DEFAULT_SOCKET "/var/run/docker.sock"
#define MAX_ANSWER (16 * 1024 * 1024)

struct answer {
	char *body;
	size_t len;
	bool too_big;
	char api_version[16]; /* the Api-Version header, if any */
};

static size_t on_body(char *data, size_t size, size_t nmemb, void *userp)
{
	struct answer *a = userp;
	size_t n = size * nmemb;
	if (a->len + n > MAX_ANSWER) {
		a->too_big = true;
		return 0; /* aborts the transfer */
	}
	char *nb = realloc(a->body, a->len + n + 1);
	if (!nb)
		return 0;
	memcpy(nb + a->len, data, n);
	a->body = nb;
	a->len += n;
	a->body[a->len] = '\0';
	return n;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *userp)
{
	struct answer *a = userp;
	size_t n = size * nmemb;
	static const char key[] = "api-version:";
	if (n > sizeof(key) - 1 && strncasecmp(data, key, sizeof(key) - 1) == 0) {
		const char *v = data + sizeof(key) - 1;
		size_t vl = n - (sizeof(key) - 1);
		while (vl && (*v == ' ' || *v == '\t'))
			v++, vl--;
		while (vl && isspace((unsigned char)v[vl - 1]))
			vl--;
		if (vl < sizeof(a->api_version)) {
			memcpy(a->api_version, v, vl);
			a->api_version[vl] = '\0';
		}
	}
	return n;
}

int ud_docker_open(struct ud_docker *d, const char *host, long timeout_ms, ud_error *e)
{
	memset(d, 0, sizeof(*d));
	if (!host || !*host) {
		/* Only a unix:// DOCKER_HOST is ours to follow; a tcp:// one is for the CLI. */
		const char *env = getenv("DOCKER_HOST");
		host = env && !strncmp(env, "unix://", 7) ? env : DEFAULT_SOCKET;
	}
	if (strncmp(host, "unix://", 7) == 0)
		host += 7;
	if (host[0] != '/')
		return ud_fail(e, UD_EXIT_USAGE, 0,
			       "docker host '%s' is not supported: use unix:///PATH or /PATH", host);
	if (strlen(host) >= 108)
		return ud_fail(e, UD_EXIT_USAGE, 0, "docker socket path '%s' is too long", host);
	d->socket_path = strdup(host);
	d->timeout_ms = timeout_ms > 0 ? timeout_ms : 10000;
	if (!d->socket_path)
		return ud_oom(e);
	return 0;
}

/* libcurl is loaded by the first request, not by ud_docker_open(): see cu.h. */
static int curl_ready(struct ud_docker *d, ud_error *e)
{
	if (d->curl)
		return 0;
	if (ud_cu_load(e) < 0)
		return -1;
	if (!(d->curl = ud_cu.curl_easy_init()))
		return ud_fail(e, UD_EXIT_REFUSED, 0, "cannot initialise libcurl");
	return 0;
}

void ud_docker_close(struct ud_docker *d)
{
	if (d->curl)
		ud_cu.curl_easy_cleanup(d->curl);
	free(d->socket_path);
	free(d->inspect_body);
	memset(d, 0, sizeof(*d));
}

/* The options every request shares: the daemon's socket, plain HTTP only, no signals. */
/* libcurl makes its sockets without SOCK_CLOEXEC; the helper execs COMMAND and must never
 * leak the daemon's socket into it, not even for the moment before close_range. */
static curl_socket_t open_cloexec_socket(void *userp, curlsocktype purpose,
					 struct curl_sockaddr *addr)
{
	(void)userp;
	(void)purpose;
	return socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
}

static void setup_curl(CURL *c, const struct ud_docker *d, const char *path,
		       curl_write_callback on_data, void *userp)
{
	ud_cu.curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, open_cloexec_socket);
	char url[2048];
	snprintf(url, sizeof(url), "http://docker%s", path);
	ud_cu.curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, d->socket_path);
	ud_cu.curl_easy_setopt(c, CURLOPT_URL, url); /* libcurl keeps its own copy */
	ud_cu.curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, d->timeout_ms);
	ud_cu.curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	ud_cu.curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	ud_cu.curl_easy_setopt(c, CURLOPT_WRITEDATA, userp);
	ud_cu.curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http");
	ud_cu.curl_easy_setopt(c, CURLOPT_USERAGENT, "uwsgi-docker-rootfs/" UD_VERSION);
}

/* A status other than 200, with the daemon's own message. */
static int refused(const struct ud_docker *d, const char *path, long status, const char *body,
		   int exit_status, ud_error *e)
{
	char msg[256];
	ud_parse_error_message(body, msg, sizeof(msg));
	return ud_fail(e, exit_status, 0, "daemon at unix://%s answered GET %s with HTTP %ld: %s",
		       d->socket_path, path, status, msg);
}

/* Non-200: free the body, fail. */
static int http_refused(const struct ud_docker *d, const char *path, long status, struct answer *a,
			ud_error *e)
{
	refused(d, path, status, a->body, UD_EXIT_DAEMON, e);
	free(a->body);
	a->body = NULL;
	return -1;
}

/* One GET. path is absolute and already versioned (or not). Returns the HTTP status or -1. */
static long http_get(struct ud_docker *d, const char *path, struct answer *a, ud_error *e)
{
	memset(a, 0, sizeof(*a));
	if (curl_ready(d, e) < 0)
		return -1;
	CURL *c = d->curl;
	ud_cu.curl_easy_reset(c);
	setup_curl(c, d, path, on_body, a);
	ud_cu.curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, d->timeout_ms);
	ud_cu.curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	ud_cu.curl_easy_setopt(c, CURLOPT_HEADERDATA, a);
	CURLcode rc = ud_cu.curl_easy_perform(c);
	d->unreachable = rc != CURLE_OK && !a->too_big;
	if (rc != CURLE_OK) {
		free(a->body);
		a->body = NULL;
		if (a->too_big)
			return ud_fail(e, UD_EXIT_DAEMON, 0,
				       "daemon at unix://%s: answer to GET %s is larger than %d MiB",
				       d->socket_path, path, MAX_ANSWER >> 20);
		if (rc == CURLE_OPERATION_TIMEDOUT)
			return ud_fail(e, UD_EXIT_DAEMON, 0,
				       "daemon at unix://%s did not answer GET %s within %ld ms",
				       d->socket_path, path, d->timeout_ms);
		return ud_fail(e, UD_EXIT_DAEMON, 0, "daemon at unix://%s unreachable (GET %s): %s",
			       d->socket_path, path, ud_cu.curl_easy_strerror(rc));
	}
	long status = 0;
	ud_cu.curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	if (!a->body && !(a->body = strdup("")))
		return ud_oom(e);
	return status;
}

/* A GET that must answer 200; the caller parses and frees a->body. */
static int get_ok(struct ud_docker *d, const char *path, struct answer *a, ud_error *e)
{
	long st = http_get(d, path, a, e);
	if (st < 0)
		return -1;
	return st == 200 ? 0 : http_refused(d, path, st, a, e);
}

/* GET /version's field (ApiVersion, MinAPIVersion): unversioned, every daemon answers it. */
static int version_field(struct ud_docker *d, const char *field, char *api, size_t api_len,
			 ud_error *e)
{
	struct answer a;
	if (get_ok(d, "/version", &a, e) < 0)
		return -1;
	int r = ud_parse_version_field(a.body, a.len, field, api, api_len, e);
	free(a.body);
	return r < 0 ? ud_context(e, "daemon at unix://%s", d->socket_path) : 0;
}

int ud_docker_negotiate(struct ud_docker *d, ud_error *e)
{
	struct answer a;
	long st = http_get(d, "/_ping", &a, e);
	if (st < 0)
		return -1;
	free(a.body);
	char theirs[16] = "";
	if (st == 200 && ud_api_version_valid(a.api_version))
		snprintf(theirs, sizeof(theirs), "%s", a.api_version);
	/* Older or odd daemons: no header on /_ping; /version always says it. */
	else if (version_field(d, "ApiVersion", theirs, sizeof(theirs), e) < 0)
		return -1;
	const char *use = ud_api_version_cmp(theirs, UD_API_VERSION) < 0 ? theirs : UD_API_VERSION;
	snprintf(d->api, sizeof(d->api), "%s", use);
	return 0;
}

int ud_docker_info(struct ud_docker *d, char **driver_desc, char **root_dir, ud_error *e)
{
	char path[64];
	struct answer a;
	*driver_desc = *root_dir = NULL;
	snprintf(path, sizeof(path), "/v%s/info", d->api[0] ? d->api : "1.24");
	if (get_ok(d, path, &a, e) < 0)
		return -1;
	int r = ud_parse_info(a.body, a.len, driver_desc, root_dir, e);
	free(a.body);
	return r < 0 ? ud_context(e, "daemon at unix://%s", d->socket_path) : 0;
}

/* GET /images/{ref}/json into a; a daemon that dropped our API version is asked in its minimum. */
static int inspect_get(struct ud_docker *d, const char *ref, struct answer *a, ud_error *e)
{
	char path[512];
	for (bool retried = false;; retried = true) {
		/* The reference goes into the path unescaped, as the docker CLI sends it: the daemon
		 * routes /images/{name:.*}/json, and ud_reference_valid() allows no character that
		 * needs escaping. */
		snprintf(path, sizeof(path), "/v%s/images/%s/json", d->api, ref);
		long st = http_get(d, path, a, e);
		if (st < 0)
			return -1;
		if (st == 200)
			return 0;
		if (st == 404) {
			free(a->body);
			return ud_fail(e, UD_EXIT_IMAGE, 0, "not found at unix://%s", d->socket_path);
		}
		if (st != 400 || retried || !strstr(a->body, "too old"))
			return http_refused(d, path, st, a, e);
		free(a->body);
		/* A daemon newer than us: the fields we read have not changed since API 1.24. */
		if (version_field(d, "MinAPIVersion", d->api, sizeof(d->api), e) < 0)
			return ud_context(e, "the daemon rejects API v%s", UD_API_VERSION);
	}
}

int ud_docker_inspect_raw(struct ud_docker *d, const char *ref, struct ud_image *img, ud_error *e)
{
	memset(img, 0, sizeof(*img));
	if (!ud_reference_valid(ref))
		return ud_fail(e, UD_EXIT_IMAGE, 0, "'%s' is not a valid image reference", ref);
	struct answer a;
	if (inspect_get(d, ref, &a, e) < 0)
		return ud_context(e, "image '%s'", ref);
	int r = ud_parse_inspect(a.body, a.len, ref, img, e);
	free(d->inspect_body);
	d->inspect_body = a.body;
	d->inspect_len = a.len;
	if (r < 0)
		return ud_context(e, "image '%s' at unix://%s", ref, d->socket_path);
	return 0;
}

int ud_docker_inspect(struct ud_docker *d, const char *ref, struct ud_image *img, ud_error *e)
{
	if (ud_docker_inspect_raw(d, ref, img, e) < 0)
		return -1;
	if (ud_validate_layers(img, e) == 0)
		return 0;
	if (e && e->status == UD_EXIT_STORAGE && (!img->driver || !ud_overlay_driver(img->driver))) {
		/* Name the storage as the daemon calls it; only on this failure path. */
		char *desc = NULL, *dir = NULL;
		ud_error ie = {0};
		int known = ud_docker_info(d, &desc, &dir, &ie) == 0;
		if (known)
			ud_fail(e, UD_EXIT_STORAGE, 0,
				"image '%s': the daemon at unix://%s uses storage driver %s; only "
				"overlay2 and Podman's overlay are supported",
				ref, d->socket_path, desc);
		free(desc);
		free(dir);
		if (known)
			return -1;
	}
	return ud_context(e, "image '%s'", ref);
}

int ud_docker_list_images(struct ud_docker *d, char ***ids, size_t *n, ud_error *e)
{
	char path[64];
	struct answer a;
	*ids = NULL;
	*n = 0;
	snprintf(path, sizeof(path), "/v%s/images/json?all=1", d->api);
	if (get_ok(d, path, &a, e) < 0)
		return -1;
	int r = ud_parse_image_list(a.body, a.len, ids, n, e);
	free(a.body);
	return r < 0 ? ud_context(e, "daemon at unix://%s", d->socket_path) : 0;
}

/* ---------------------------------------------------------------- streaming */

struct ud_stream {
	struct ud_docker *d;
	CURLM *multi;
	CURL *easy;
	char path[512];
	const char *method;
	struct curl_slist *headers;
	bool any_status;
	long status;
	char *buf; /* the chunk(s) curl gave since the last read */
	size_t len, cap;
	bool done, checked;
	CURLcode result;
	struct timespec last;	 /* when data last arrived */
	atomic_bool interrupted; /* set by ud_stream_interrupt(), from any thread */
};

static size_t on_stream(char *data, size_t size, size_t nmemb, void *userp)
{
	struct ud_stream *s = userp;
	size_t n = size * nmemb;
	if (s->len + n > s->cap) {
		size_t ncap = (s->len + n) * 2;
		char *nb = realloc(s->buf, ncap);
		if (!nb)
			return 0;
		s->buf = nb;
		s->cap = ncap;
	}
	memcpy(s->buf + s->len, data, n);
	s->len += n;
	return n;
}
int ud_docker_stream_open(struct ud_docker *d, const char *path, ud_stream **out, ud_error *e)
{
	const struct ud_stream_req get = {"GET", NULL, false};
	return ud_docker_stream_request(d, path, &get, out, e);
}

int ud_docker_stream_request(struct ud_docker *d, const char *path, const struct ud_stream_req *rq,
			     ud_stream **out, ud_error *e)
{
	if (ud_cu_load(e) < 0)
		return -1;
	struct ud_stream *s = calloc(1, sizeof(*s));
	if (!s)
		return ud_oom(e);
	s->d = d;
	s->method = rq->method;
	s->any_status = rq->any_status;
	snprintf(s->path, sizeof(s->path), "%s", path);
	s->multi = ud_cu.curl_multi_init();
	s->easy = ud_cu.curl_easy_init();
	if (rq->header && !(s->headers = ud_cu.curl_slist_append(NULL, rq->header))) {
		ud_stream_close(s);
		return ud_oom(e);
	}
	if (!s->multi || !s->easy) {
		ud_stream_close(s);
		return ud_fail(e, UD_EXIT_REFUSED, 0, "cannot initialise libcurl");
	}
	setup_curl(s->easy, d, path, on_stream, s);
	if (strcmp(rq->method, "POST") == 0) {
		ud_cu.curl_easy_setopt(s->easy, CURLOPT_POST, 1L);
		ud_cu.curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, "");
		ud_cu.curl_easy_setopt(s->easy, CURLOPT_POSTFIELDSIZE, 0L);
	}
	ud_cu.curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, s->headers);
	/* An export may take long; a stall may not: less than 1 byte/s for the timeout fails. */
	ud_cu.curl_easy_setopt(s->easy, CURLOPT_LOW_SPEED_LIMIT, 1L);
	ud_cu.curl_easy_setopt(s->easy, CURLOPT_LOW_SPEED_TIME, (d->timeout_ms + 999) / 1000);
	ud_cu.curl_multi_add_handle(s->multi, s->easy);
	clock_gettime(CLOCK_MONOTONIC, &s->last);
	*out = s;
	return 0;
}

/* Runs the transfer until a chunk arrives, it ends, or the daemon stalls for the timeout. */
static int stream_pump(ud_stream *s, ud_error *e)
{
	while (s->len == 0 && !s->done) {
		if (atomic_load(&s->interrupted))
			return ud_fail(e, UD_EXIT_DAEMON, 0, "%s %s: interrupted", s->method,
				       s->path);
		int running = 0;
		CURLMcode mc = ud_cu.curl_multi_perform(s->multi, &running);
		if (mc != CURLM_OK)
			return ud_fail(e, UD_EXIT_DAEMON, 0, "%s %s: %s", s->method, s->path,
				       ud_cu.curl_multi_strerror(mc));
		int left;
		CURLMsg *m;
		while ((m = ud_cu.curl_multi_info_read(s->multi, &left)))
			if (m->msg == CURLMSG_DONE) {
				s->done = true;
				s->result = m->data.result;
			}
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (s->len) {
			s->last = now;
			break;
		}
		/* curl's own low-speed check averages over seconds; a stall ends at the timeout. */
		long idle = (now.tv_sec - s->last.tv_sec) * 1000 +
			    (now.tv_nsec - s->last.tv_nsec) / 1000000;
		if (!s->done && idle >= s->d->timeout_ms)
			return ud_fail(e, UD_EXIT_DAEMON, 0,
				       "daemon at unix://%s: %s %s stalled for %ld ms",
				       s->d->socket_path, s->method, s->path, s->d->timeout_ms);
		long wait = s->d->timeout_ms - idle;
		if (!s->done &&
		    ud_cu.curl_multi_poll(s->multi, NULL, 0, (int)(wait < 1000 ? wait : 1000), NULL) != CURLM_OK)
			return ud_fail(e, UD_EXIT_DAEMON, 0, "%s %s: poll failed", s->method, s->path);
	}
	return 0;
}

long ud_stream_read(ud_stream *s, const void **buf, ud_error *e)
{
	s->len = 0;
	if (stream_pump(s, e) < 0)
		return -1;
	if (!s->checked && (s->len || s->done)) {
		long status = 0;
		ud_cu.curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &status);
		s->checked = true;
		s->status = status;
		if (status != 200 && !s->any_status && !(s->done && s->result != CURLE_OK)) {
			/* What came so far is the error body, for the message. */
			if (s->len)
				s->buf[s->len < s->cap ? s->len : s->cap - 1] = '\0';
			return refused(s->d, s->path, status, s->len ? s->buf : "",
				       status == 404 ? UD_EXIT_IMAGE : UD_EXIT_DAEMON, e);
		}
	}
	if (s->len) {
		*buf = s->buf;
		return (long)s->len;
	}
	if (s->result != CURLE_OK)
		return ud_fail(e, UD_EXIT_DAEMON, 0, "daemon at unix://%s: %s %s: %s",
			       s->d->socket_path, s->method, s->path,
			       s->result == CURLE_OPERATION_TIMEDOUT ? "stalled (timed out)"
								     : ud_cu.curl_easy_strerror(s->result));
	return 0;
}

void ud_stream_interrupt(ud_stream *s)
{
	atomic_store(&s->interrupted, true);
	ud_cu.curl_multi_wakeup(s->multi); /* ends a ud_cu.curl_multi_poll() in progress at once */
}

long ud_stream_status(const ud_stream *s)
{
	return s->status;
}

void ud_stream_close(ud_stream *s)
{
	if (!s)
		return;
	if (s->multi && s->easy)
		ud_cu.curl_multi_remove_handle(s->multi, s->easy);
	if (s->easy)
		ud_cu.curl_easy_cleanup(s->easy);
	if (s->multi)
		ud_cu.curl_multi_cleanup(s->multi);
	/* The extra header may carry credentials (X-Registry-Auth): wiped, not just freed. */
	for (struct curl_slist *h = s->headers; h; h = h->next)
		explicit_bzero(h->data, strlen(h->data));
	ud_cu.curl_slist_free_all(s->headers);
	free(s->buf);
	free(s);
}

