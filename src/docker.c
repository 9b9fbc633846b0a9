/* Docker Engine API client over the daemon's unix socket (libcurl, json-c).
 *
 * Only /_ping and the image inspect are on the path every start takes: /info and /version cost
 * 5-10 times more on a real daemon, so they are asked only to explain a failure. */
#include "docker.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util.h"

#define DEFAULT_SOCKET "/var/run/docker.sock"
#define MAX_ANSWER (16 * 1024 * 1024)

static void free_strv(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

void ud_image_free(struct ud_image *img)
{
	free(img->ref);
	free(img->id);
	free(img->driver);
	free(img->storage_root);
	free_strv(img->layers, img->n_layers);
	free_strv(img->diff_ids, img->n_diff_ids);
	free_strv(img->env, img->n_env);
	free(img->workdir);
	memset(img, 0, sizeof(*img));
}

/* ---------------------------------------------------------------- references and versions */

static bool is_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!isxdigit((unsigned char)s[i]) || isupper((unsigned char)s[i]))
			return false;
	return true;
}

/* One path component of a repository name: [a-z0-9]+ joined by separators, each '.', '_', '__'
 * or a run of '-', and each followed by [a-z0-9] again (the distribution reference grammar). */
static bool component_valid(const char *s, size_t n)
{
	size_t i = 0;
	for (;;) {
		size_t start = i;
		while (i < n && (islower((unsigned char)s[i]) || isdigit((unsigned char)s[i])))
			i++;
		if (i == start)
			return false;
		if (i == n)
			return true;
		if (s[i] == '.')
			i++;
		else if (s[i] == '_')
			i += (i + 1 < n && s[i + 1] == '_') ? 2 : 1;
		else if (s[i] == '-')
			while (i < n && s[i] == '-')
				i++;
		else
			return false;
	}
}

/* Registry host: DNS labels ([A-Za-z0-9] runs joined by '-' inside a label) separated by '.',
 * then an optional :port. Upper case is allowed there, as docker allows it. */
static bool host_valid(const char *s, size_t n)
{
	const char *colon = memchr(s, ':', n);
	size_t hl = colon ? (size_t)(colon - s) : n;
	if (hl == 0)
		return false;
	for (size_t i = 0; i < hl;) {
		size_t start = i;
		while (i < hl && (isalnum((unsigned char)s[i]) || s[i] == '-'))
			i++;
		if (i == start || s[start] == '-' || s[i - 1] == '-')
			return false;
		if (i < hl) {
			if (s[i] != '.' || i + 1 == hl)
				return false;
			i++;
		}
	}
	if (colon) {
		if (hl + 1 == n)
			return false;
		for (size_t j = hl + 1; j < n; j++)
			if (!isdigit((unsigned char)s[j]))
				return false;
	}
	return true;
}

bool ud_reference_valid(const char *ref)
{
	if (!ref)
		return false;
	size_t len = strlen(ref);
	/* 255 is docker's limit on the name alone; a tag (128) and a digest (71) come on top. */
	if (len == 0 || len > 255 + 1 + 128 + 71)
		return false;

	/* A bare id ("sha256:<hex>") or an id prefix. */
	if (strncmp(ref, "sha256:", 7) == 0)
		return len > 7 && len <= 7 + 64 && is_hex(ref + 7, len - 7);

	char buf[255 + 1 + 128 + 71 + 1];
	memcpy(buf, ref, len + 1);

	char *digest = strchr(buf, '@');
	if (digest) {
		*digest++ = '\0';
		if (strncmp(digest, "sha256:", 7) != 0 || strlen(digest) != 7 + 64 ||
		    !is_hex(digest + 7, 64))
			return false;
	}
	/* A tag is after the last ':' that comes after the last '/'. */
	char *slash = strrchr(buf, '/');
	char *colon = strrchr(slash ? slash : buf, ':');
	if (colon) {
		*colon++ = '\0';
		size_t tl = strlen(colon);
		if (tl == 0 || tl > 128 || !(isalnum((unsigned char)colon[0]) || colon[0] == '_'))
			return false;
		for (size_t i = 0; i < tl; i++)
			if (!isalnum((unsigned char)colon[i]) && !strchr("_.-", colon[i]))
				return false;
	}
	if (buf[0] == '\0' || strlen(buf) > 255)
		return false;

	const char *p = buf;
	bool first = true;
	for (;;) {
		const char *end = strchr(p, '/');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		bool hostlike = first && end &&
				(memchr(p, '.', n) || memchr(p, ':', n) ||
				 (n == 9 && strncmp(p, "localhost", 9) == 0));
		if (hostlike ? !host_valid(p, n) : !component_valid(p, n))
			return false;
		if (!end)
			break;
		p = end + 1;
		first = false;
	}
	return true;
}

int ud_api_version_cmp(const char *a, const char *b)
{
	while (*a || *b) {
		char *ea, *eb;
		unsigned long x = strtoul(a, &ea, 10), y = strtoul(b, &eb, 10);
		if (x != y)
			return x < y ? -1 : 1;
		a = *ea == '.' ? ea + 1 : ea;
		b = *eb == '.' ? eb + 1 : eb;
		if (ea == a && eb == b && !*ea && !*eb)
			break;
		if (*ea && *ea != '.')
			break;
		if (*eb && *eb != '.')
			break;
	}
	return 0;
}

static bool api_version_wellformed(const char *v)
{
	/* "MAJOR.MINOR", digits only, small */
	size_t n = strlen(v);
	if (n == 0 || n > 10)
		return false;
	const char *dot = strchr(v, '.');
	if (!dot || dot == v || !dot[1] || strchr(dot + 1, '.'))
		return false;
	for (const char *p = v; *p; p++)
		if (!isdigit((unsigned char)*p) && *p != '.')
			return false;
	return true;
}

/* ---------------------------------------------------------------- JSON parsing */

static void json_putp(json_object **o)
{
	if (*o)
		json_object_put(*o);
}
#define autojson __attribute__((cleanup(json_putp)))

static json_object *parse_json(const char *json, size_t len, const char *what, ud_error *e)
{
	json_tokener *tok = json_tokener_new();
	if (!tok) {
		ud_fail(e, UD_EXIT_REFUSED, ENOMEM, "out of memory");
		return NULL;
	}
	json_object *o = json_tokener_parse_ex(tok, json, (int)len);
	enum json_tokener_error jerr = json_tokener_get_error(tok);
	size_t used = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	if (!o || jerr != json_tokener_success) {
		if (o)
			json_object_put(o);
		ud_fail(e, UD_EXIT_DAEMON, 0, "%s is not valid JSON (%s)", what,
			jerr == json_tokener_continue ? "truncated"
						      : json_tokener_error_desc(jerr));
		return NULL;
	}
	/* Trailing non-space garbage after the document is a broken answer too. */
	for (; used < len; used++)
		if (!isspace((unsigned char)json[used])) {
			json_object_put(o);
			ud_fail(e, UD_EXIT_DAEMON, 0, "%s has trailing data after its JSON", what);
			return NULL;
		}
	return o;
}

/* Gets obj[key] of the wanted type; absent or JSON null gives NULL without error when !required. */
static int get_field(json_object *obj, const char *key, json_type type, bool required,
		     json_object **out, const char *what, ud_error *e)
{
	json_object *v = NULL;
	*out = NULL;
	if (!json_object_is_type(obj, json_type_object))
		return ud_fail(e, UD_EXIT_DAEMON, 0, "%s: expected an object", what);
	if (!json_object_object_get_ex(obj, key, &v) || json_object_is_type(v, json_type_null)) {
		if (required)
			return ud_fail(e, UD_EXIT_DAEMON, 0, "%s: missing field '%s'", what, key);
		return 0;
	}
	if (!json_object_is_type(v, type))
		return ud_fail(e, UD_EXIT_DAEMON, 0, "%s: field '%s' has the wrong type", what, key);
	*out = v;
	return 0;
}

static int dup_string(json_object *s, char **out, ud_error *e)
{
	*out = strdup(s ? json_object_get_string(s) : "");
	if (!*out)
		return ud_fail(e, UD_EXIT_REFUSED, ENOMEM, "out of memory");
	return 0;
}

static int strv_push(char ***v, size_t *n, const char *s, ud_error *e)
{
	char **nv = realloc(*v, (*n + 2) * sizeof(char *));
	if (!nv)
		return ud_fail(e, UD_EXIT_REFUSED, ENOMEM, "out of memory");
	*v = nv;
	if (!(nv[*n] = strdup(s)))
		return ud_fail(e, UD_EXIT_REFUSED, ENOMEM, "out of memory");
	nv[++*n] = NULL;
	return 0;
}

static int string_array(json_object *arr, char ***v, size_t *n, const char *what, ud_error *e)
{
	if (!arr)
		return 0;
	size_t len = json_object_array_length(arr);
	for (size_t i = 0; i < len; i++) {
		json_object *s = json_object_array_get_idx(arr, i);
		if (!json_object_is_type(s, json_type_string))
			return ud_fail(e, UD_EXIT_DAEMON, 0, "%s: entry %zu is not a string", what, i);
		if (strv_push(v, n, json_object_get_string(s), e) < 0)
			return -1;
	}
	return 0;
}

int ud_parse_inspect(const char *json, size_t len, const char *ref, struct ud_image *img,
		     ud_error *e)
{
	memset(img, 0, sizeof(*img));
	autojson json_object *root = parse_json(json, len, "image inspect answer", e);
	if (!root)
		return -1;
	json_object *id, *config, *env, *wd, *gd, *name, *data, *upper, *lower, *rootfs, *diffs;
	const char *w = "image inspect answer";
	if (get_field(root, "Id", json_type_string, true, &id, w, e) < 0 ||
	    get_field(root, "Config", json_type_object, false, &config, w, e) < 0 ||
	    get_field(root, "GraphDriver", json_type_object, false, &gd, w, e) < 0 ||
	    get_field(root, "RootFS", json_type_object, false, &rootfs, w, e) < 0)
		return -1;
	env = wd = name = data = upper = lower = diffs = NULL;
	if (config && (get_field(config, "Env", json_type_array, false, &env, w, e) < 0 ||
		       get_field(config, "WorkingDir", json_type_string, false, &wd, w, e) < 0))
		return -1;
	if (gd && (get_field(gd, "Name", json_type_string, false, &name, w, e) < 0 ||
		   get_field(gd, "Data", json_type_object, false, &data, w, e) < 0))
		return -1;
	if (data && (get_field(data, "UpperDir", json_type_string, false, &upper, w, e) < 0 ||
		     get_field(data, "LowerDir", json_type_string, false, &lower, w, e) < 0))
		return -1;
	if (rootfs && get_field(rootfs, "Layers", json_type_array, false, &diffs, w, e) < 0)
		return -1;

	if (!(img->ref = strdup(ref ? ref : "")))
		return ud_fail(e, UD_EXIT_REFUSED, ENOMEM, "out of memory");
	if (dup_string(id, &img->id, e) < 0 || dup_string(name, &img->driver, e) < 0 ||
	    dup_string(wd, &img->workdir, e) < 0)
		return -1;
	if (string_array(env, &img->env, &img->n_env, "Config.Env", e) < 0 ||
	    string_array(diffs, &img->diff_ids, &img->n_diff_ids, "RootFS.Layers", e) < 0)
		return -1;

	/* Stack, top to bottom: UpperDir (the image's top read-only layer), then LowerDir. */
	if (upper && strv_push(&img->layers, &img->n_layers, json_object_get_string(upper), e) < 0)
		return -1;
	if (lower) {
		ud_autofree char *copy = strdup(json_object_get_string(lower));
		if (!copy)
			return ud_fail(e, UD_EXIT_REFUSED, ENOMEM, "out of memory");
		char *save = NULL;
		/* strtok_r would fold empty entries ("a::b"), which must be refused, not skipped. */
		for (char *p = copy;; p = save + 1) {
			save = strchr(p, ':');
			if (save)
				*save = '\0';
			if (img->n_layers > UD_MAX_LAYERS)
				break;
			if (strv_push(&img->layers, &img->n_layers, p, e) < 0)
				return -1;
			if (!save)
				break;
		}
	}
	return 0;
}

static bool is_overlay_driver(const char *d)
{
	return strcmp(d, "overlay2") == 0 || strcmp(d, "overlay") == 0;
}

int ud_validate_layers(struct ud_image *img, ud_error *e)
{
	if (!img->driver || !is_overlay_driver(img->driver)) {
		if (!img->driver || !*img->driver)
			return ud_fail(e, UD_EXIT_STORAGE, 0,
				       "image '%s': the daemon gives no layer directories "
				       "(no GraphDriver: containerd image store?); only overlay2 "
				       "and Podman's overlay are supported",
				       img->ref);
		return ud_fail(e, UD_EXIT_STORAGE, 0,
			       "image '%s': storage driver '%s' is not supported (only overlay2 and "
			       "Podman's overlay are)",
			       img->ref, img->driver);
	}
	if (img->n_layers == 0)
		return ud_fail(e, UD_EXIT_STORAGE, 0, "image '%s': driver %s gives no layer directories",
			       img->ref, img->driver);
	if (img->n_layers > UD_MAX_LAYERS)
		return ud_fail(e, UD_EXIT_STORAGE, 0,
			       "image '%s' has more than %d layers (overlayfs's limit)", img->ref,
			       UD_MAX_LAYERS);

	free(img->storage_root);
	img->storage_root = NULL;
	for (size_t i = 0; i < img->n_layers; i++) {
		const char *l = img->layers[i];
		size_t n = strlen(l);
		/* Overlay options are separated by ',' and ':' and escaped with '\': a path with one
		 * of them would change the meaning of the mount. */
		if (l[0] != '/' || strpbrk(l, ",:\\") || n > 1024 || strstr(l, "/../") ||
		    strstr(l, "/./") || strstr(l, "//"))
			return ud_fail(e, UD_EXIT_STORAGE, 0,
				       "image '%s': layer path '%s' is not a clean absolute path",
				       img->ref, l);
		/* <root>/<id>/diff with one <root> for all layers, so that every layer lies in the
		 * daemon's storage and Docker's l/ short names (relative to <root>) can be used. */
		if (n < 6 || strcmp(l + n - 5, "/diff") != 0)
			return ud_fail(e, UD_EXIT_STORAGE, 0,
				       "image '%s': layer path '%s' is not <storage>/<id>/diff",
				       img->ref, l);
		const char *id_end = l + n - 5, *id = id_end;
		while (id > l && id[-1] != '/')
			id--;
		size_t root_len = (size_t)(id - l) - 1;
		if (id == id_end || root_len == 0 || (id_end - id == 2 && id[0] == '.') ||
		    (id_end - id == 1 && id[0] == '.'))
			return ud_fail(e, UD_EXIT_STORAGE, 0,
				       "image '%s': layer path '%s' is not <storage>/<id>/diff",
				       img->ref, l);
		if (!img->storage_root) {
			img->storage_root = strndup(l, root_len);
			if (!img->storage_root)
				return ud_fail(e, UD_EXIT_REFUSED, ENOMEM, "out of memory");
		} else if (strlen(img->storage_root) != root_len ||
			   strncmp(img->storage_root, l, root_len) != 0) {
			return ud_fail(e, UD_EXIT_STORAGE, 0,
				       "image '%s': layer '%s' is not in the same storage as '%s'",
				       img->ref, l, img->layers[0]);
		}
	}
	return 0;
}

int ud_parse_info(const char *json, size_t len, char **driver_desc, char **root_dir, ud_error *e)
{
	*driver_desc = *root_dir = NULL;
	autojson json_object *root = parse_json(json, len, "/info answer", e);
	if (!root)
		return -1;
	json_object *driver, *dir, *status;
	const char *w = "/info answer";
	if (get_field(root, "Driver", json_type_string, true, &driver, w, e) < 0 ||
	    get_field(root, "DockerRootDir", json_type_string, false, &dir, w, e) < 0 ||
	    get_field(root, "DriverStatus", json_type_array, false, &status, w, e) < 0)
		return -1;
	const char *type = NULL;
	size_t n = status ? json_object_array_length(status) : 0;
	for (size_t i = 0; i < n; i++) {
		json_object *pair = json_object_array_get_idx(status, i);
		if (!json_object_is_type(pair, json_type_array) ||
		    json_object_array_length(pair) != 2)
			continue;
		const char *k = json_object_get_string(json_object_array_get_idx(pair, 0));
		if (k && strcmp(k, "driver-type") == 0)
			type = json_object_get_string(json_object_array_get_idx(pair, 1));
	}
	char buf[512];
	if (type && strstr(type, "containerd"))
		snprintf(buf, sizeof(buf), "%s (containerd image store, %s)",
			 json_object_get_string(driver), type);
	else
		snprintf(buf, sizeof(buf), "%s", json_object_get_string(driver));
	*driver_desc = strdup(buf);
	*root_dir = strdup(dir ? json_object_get_string(dir) : "");
	if (!*driver_desc || !*root_dir) {
		free(*driver_desc);
		free(*root_dir);
		*driver_desc = *root_dir = NULL;
		return ud_fail(e, UD_EXIT_REFUSED, ENOMEM, "out of memory");
	}
	return 0;
}

int ud_parse_version(const char *json, size_t len, char *api, size_t api_len, ud_error *e)
{
	return ud_parse_version_field(json, len, "ApiVersion", api, api_len, e);
}

int ud_parse_version_field(const char *json, size_t len, const char *field, char *api,
			   size_t api_len, ud_error *e)
{
	autojson json_object *root = parse_json(json, len, "/version answer", e);
	if (!root)
		return -1;
	json_object *v;
	if (get_field(root, field, json_type_string, true, &v, "/version answer", e) < 0)
		return -1;
	const char *s = json_object_get_string(v);
	if (!api_version_wellformed(s) || strlen(s) >= api_len)
		return ud_fail(e, UD_EXIT_DAEMON, 0, "/version answer: bad %s '%.32s'", field, s);
	snprintf(api, api_len, "%s", s);
	return 0;
}

/* ---------------------------------------------------------------- transport */

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
		return ud_fail(e, UD_EXIT_REFUSED, ENOMEM, "out of memory");
	if (curl_global_init(CURL_GLOBAL_NOTHING) != CURLE_OK || !(d->curl = curl_easy_init()))
		return ud_fail(e, UD_EXIT_REFUSED, 0, "cannot initialise libcurl");
	return 0;
}

void ud_docker_close(struct ud_docker *d)
{
	if (d->curl)
		curl_easy_cleanup(d->curl);
	free(d->socket_path);
	memset(d, 0, sizeof(*d));
}

/* One GET. path is absolute and already versioned (or not). Returns the HTTP status or -1. */
static long http_get(struct ud_docker *d, const char *path, struct answer *a, ud_error *e)
{
	CURL *c = d->curl;
	char url[2048];
	memset(a, 0, sizeof(*a));
	snprintf(url, sizeof(url), "http://docker%s", path);
	curl_easy_reset(c);
	curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, d->socket_path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, d->timeout_ms);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, d->timeout_ms);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, a);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, a);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http");
	curl_easy_setopt(c, CURLOPT_USERAGENT, "uwsgi-docker-rootfs/" UD_VERSION);
	CURLcode rc = curl_easy_perform(c);
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
			       d->socket_path, path, curl_easy_strerror(rc));
	}
	long status = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	if (!a->body) {
		a->body = strdup("");
		if (!a->body)
			return ud_fail(e, UD_EXIT_REFUSED, ENOMEM, "out of memory");
	}
	return status;
}

/* The daemon's {"message": "..."} on an error answer, sanitised to one line. */
static void error_message(const struct answer *a, char *out, size_t len)
{
	snprintf(out, len, "no message");
	autojson json_object *o = json_tokener_parse(a->body ? a->body : "");
	json_object *m;
	if (o && json_object_is_type(o, json_type_object) &&
	    json_object_object_get_ex(o, "message", &m) && json_object_is_type(m, json_type_string))
		snprintf(out, len, "%s", json_object_get_string(m));
	else if (a->len)
		snprintf(out, len, "%.200s", a->body);
	for (char *p = out; *p; p++)
		if ((unsigned char)*p < 0x20)
			*p = ' ';
}

int ud_docker_negotiate(struct ud_docker *d, ud_error *e)
{
	struct answer a;
	long st = http_get(d, "/_ping", &a, e);
	if (st < 0)
		return -1;
	free(a.body);
	char theirs[16] = "";
	if (st == 200 && api_version_wellformed(a.api_version)) {
		snprintf(theirs, sizeof(theirs), "%s", a.api_version);
	} else {
		/* Older or odd daemons: no header on /_ping; /version always says it. */
		st = http_get(d, "/version", &a, e);
		if (st < 0)
			return -1;
		if (st != 200) {
			free(a.body);
			return ud_fail(e, UD_EXIT_DAEMON, 0,
				       "daemon at unix://%s answered GET /version with HTTP %ld",
				       d->socket_path, st);
		}
		int r = ud_parse_version(a.body, a.len, theirs, sizeof(theirs), e);
		free(a.body);
		if (r < 0)
			return ud_context(e, "daemon at unix://%s", d->socket_path);
	}
	const char *use = ud_api_version_cmp(theirs, UD_API_VERSION) < 0 ? theirs : UD_API_VERSION;
	snprintf(d->api, sizeof(d->api), "%s", use);
	return 0;
}

int ud_docker_info(struct ud_docker *d, char **driver_desc, char **root_dir, ud_error *e)
{
	char path[64];
	struct answer a;
	snprintf(path, sizeof(path), "/v%s/info", d->api[0] ? d->api : "1.24");
	long st = http_get(d, path, &a, e);
	if (st < 0)
		return -1;
	if (st != 200) {
		char msg[256];
		error_message(&a, msg, sizeof(msg));
		free(a.body);
		return ud_fail(e, UD_EXIT_DAEMON, 0, "daemon at unix://%s: GET %s: HTTP %ld: %s",
			       d->socket_path, path, st, msg);
	}
	int r = ud_parse_info(a.body, a.len, driver_desc, root_dir, e);
	free(a.body);
	return r < 0 ? ud_context(e, "daemon at unix://%s", d->socket_path) : 0;
}

int ud_docker_inspect_raw(struct ud_docker *d, const char *ref, struct ud_image *img, ud_error *e)
{
	memset(img, 0, sizeof(*img));
	if (!ud_reference_valid(ref))
		return ud_fail(e, UD_EXIT_IMAGE, 0, "'%s' is not a valid image reference", ref);
	char path[512];
	struct answer a;
	bool retried = false;
again:
	/* The reference goes into the path unescaped, as the docker CLI sends it: the daemon routes
	 * /images/{name:.*}/json, and ud_reference_valid() allows no character that needs escaping. */
	snprintf(path, sizeof(path), "/v%s/images/%s/json", d->api, ref);
	long st = http_get(d, path, &a, e);
	if (st < 0)
		return ud_context(e, "image '%s'", ref);
	if (st == 404) {
		free(a.body);
		return ud_fail(e, UD_EXIT_IMAGE, 0, "image '%s' not found at unix://%s", ref,
			       d->socket_path);
	}
	if (st == 400 && !retried && strstr(a.body, "too old")) {
		/* A daemon newer than us that dropped our version: speak its minimum (the fields we
		 * read have not changed since API 1.24). */
		free(a.body);
		st = http_get(d, "/version", &a, e);
		if (st < 0)
			return ud_context(e, "image '%s'", ref);
		int r = st == 200 ? ud_parse_version_field(a.body, a.len, "MinAPIVersion", d->api,
							   sizeof(d->api), e)
				  : ud_fail(e, UD_EXIT_DAEMON, 0, "GET /version: HTTP %ld", st);
		free(a.body);
		if (r < 0)
			return ud_context(e, "image '%s': daemon at unix://%s rejects API v%s", ref,
					  d->socket_path, UD_API_VERSION);
		retried = true;
		goto again;
	}
	if (st != 200) {
		char msg[256];
		error_message(&a, msg, sizeof(msg));
		free(a.body);
		return ud_fail(e, UD_EXIT_DAEMON, 0,
			       "image '%s': daemon at unix://%s answered HTTP %ld: %s", ref,
			       d->socket_path, st, msg);
	}
	int r = ud_parse_inspect(a.body, a.len, ref, img, e);
	free(a.body);
	if (r < 0)
		return ud_context(e, "image '%s' at unix://%s", ref, d->socket_path);
	return 0;
}

int ud_docker_inspect(struct ud_docker *d, const char *ref, struct ud_image *img, ud_error *e)
{
	if (ud_docker_inspect_raw(d, ref, img, e) < 0)
		return -1;
	if (ud_validate_layers(img, e) < 0) {
		if (e && e->status == UD_EXIT_STORAGE && (!img->driver || !is_overlay_driver(img->driver))) {
			/* Name the storage as the daemon calls it; only on this failure path. */
			char *desc = NULL, *dir = NULL;
			ud_error ie = {0};
			if (ud_docker_info(d, &desc, &dir, &ie) == 0)
				ud_fail(e, UD_EXIT_STORAGE, 0,
					"image '%s': the daemon at unix://%s uses storage driver %s; "
					"only overlay2 and Podman's overlay are supported",
					ref, d->socket_path, desc);
			free(desc);
			free(dir);
		}
		return -1;
	}
	return 0;
}

/* ---------------------------------------------------------------- streaming */

struct ud_stream {
	struct ud_docker *d;
	CURLM *multi;
	CURL *easy;
	char path[512];
	char *buf; /* the chunk(s) curl gave since the last read */
	size_t len, cap;
	bool done, checked;
	CURLcode result;
	struct timespec last; /* when data last arrived */
	char errbody[512];
	size_t errlen;
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
	struct ud_stream *s = calloc(1, sizeof(*s));
	if (!s)
		return ud_fail(e, UD_EXIT_REFUSED, ENOMEM, "out of memory");
	s->d = d;
	snprintf(s->path, sizeof(s->path), "%s", path);
	char url[1024];
	snprintf(url, sizeof(url), "http://docker%s", path);
	s->multi = curl_multi_init();
	s->easy = curl_easy_init();
	if (!s->multi || !s->easy) {
		ud_stream_close(s);
		return ud_fail(e, UD_EXIT_REFUSED, 0, "cannot initialise libcurl");
	}
	CURL *c = s->easy;
	curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, d->socket_path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, d->timeout_ms);
	/* An export may take long; a stall may not: less than 1 byte/s for the timeout fails. */
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, (d->timeout_ms + 999) / 1000);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_stream);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, s);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http");
	curl_easy_setopt(c, CURLOPT_USERAGENT, "uwsgi-docker-rootfs/" UD_VERSION);
	curl_multi_add_handle(s->multi, c);
	clock_gettime(CLOCK_MONOTONIC, &s->last);
	*out = s;
	return 0;
}

long ud_stream_read(ud_stream *s, const void **buf, ud_error *e)
{
	s->len = 0;
	while (s->len == 0 && !s->done) {
		int running = 0;
		CURLMcode mc = curl_multi_perform(s->multi, &running);
		if (mc != CURLM_OK)
			return ud_fail(e, UD_EXIT_DAEMON, 0, "export stream: %s", curl_multi_strerror(mc));
		int left;
		CURLMsg *m;
		while ((m = curl_multi_info_read(s->multi, &left)))
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
				       "daemon at unix://%s: GET %s stalled for %ld ms",
				       s->d->socket_path, s->path, s->d->timeout_ms);
		long wait = s->d->timeout_ms - idle;
		if (!s->done &&
		    curl_multi_poll(s->multi, NULL, 0, (int)(wait < 1000 ? wait : 1000), NULL) != CURLM_OK)
			return ud_fail(e, UD_EXIT_DAEMON, 0, "export stream: poll failed");
	}
	if (!s->checked && (s->len || s->done)) {
		long status = 0;
		curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &status);
		s->checked = true;
		if (status != 200 && !(s->done && s->result != CURLE_OK)) {
			/* Gather the error body for the message. */
			struct answer a = {.body = s->buf, .len = s->len};
			char msg[256];
			if (s->len)
				s->buf[s->len < s->cap ? s->len : s->cap - 1] = '\0';
			error_message(&a, msg, sizeof(msg));
			return ud_fail(e, status == 404 ? UD_EXIT_IMAGE : UD_EXIT_DAEMON, 0,
				       "daemon at unix://%s answered GET %s with HTTP %ld: %s",
				       s->d->socket_path, s->path, status, msg);
		}
	}
	if (s->len) {
		*buf = s->buf;
		return (long)s->len;
	}
	if (s->result != CURLE_OK)
		return ud_fail(e, UD_EXIT_DAEMON, 0, "daemon at unix://%s: GET %s: %s",
			       s->d->socket_path, s->path,
			       s->result == CURLE_OPERATION_TIMEDOUT ? "stalled (timed out)"
								     : curl_easy_strerror(s->result));
	return 0;
}

void ud_stream_close(ud_stream *s)
{
	if (!s)
		return;
	if (s->multi && s->easy)
		curl_multi_remove_handle(s->multi, s->easy);
	if (s->easy)
		curl_easy_cleanup(s->easy);
	if (s->multi)
		curl_multi_cleanup(s->multi);
	free(s->buf);
	free(s);
}

int ud_docker_list_images(struct ud_docker *d, char ***ids, size_t *n, ud_error *e)
{
	*ids = NULL;
	*n = 0;
	char path[64];
	struct answer a;
	snprintf(path, sizeof(path), "/v%s/images/json?all=1", d->api);
	long st = http_get(d, path, &a, e);
	if (st < 0)
		return -1;
	if (st != 200) {
		free(a.body);
		return ud_fail(e, UD_EXIT_DAEMON, 0, "daemon at unix://%s: GET %s: HTTP %ld",
			       d->socket_path, path, st);
	}
	autojson json_object *root = parse_json(a.body, a.len, "image list", e);
	free(a.body);
	if (!root)
		return -1;
	if (!json_object_is_type(root, json_type_array))
		return ud_fail(e, UD_EXIT_DAEMON, 0, "image list is not an array");
	size_t len = json_object_array_length(root);
	for (size_t i = 0; i < len; i++) {
		json_object *id;
		if (get_field(json_object_array_get_idx(root, i), "Id", json_type_string, true, &id,
			      "image list", e) < 0 ||
		    strv_push(ids, n, json_object_get_string(id), e) < 0) {
			free_strv(*ids, *n);
			*ids = NULL;
			*n = 0;
			return -1;
		}
	}
	return 0;
}
