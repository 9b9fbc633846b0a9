/* The Engine API's JSON answers (json-c): image inspect and its layer stack, /info, /version,
 * the image list, error bodies. Nothing here talks to the daemon. */
#include "docker_json.h"

#include <ctype.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reference.h"
#include "util.h"

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
	free_strv(img->repo_digests, img->n_repo_digests);
	free(img->workdir);
	free(img->user);
	memset(img, 0, sizeof(*img));
}

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
		ud_oom(e);
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
	return *out ? 0 : ud_oom(e);
}

/* Appends a copy of s; the array stays NULL-terminated (Config.Env becomes an envp). */
static int strv_push(char ***v, size_t *n, const char *s, ud_error *e)
{
	char *copy = strdup(s), *end = NULL;
	if (!copy || ud_push(v, n, sizeof(copy), &copy) < 0) {
		free(copy);
		return ud_oom(e);
	}
	if (ud_push(v, n, sizeof(end), &end) < 0)
		return ud_oom(e);
	(*n)--;
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

/* ---------------------------------------------------------------- image inspect */

struct inspect_fields {
	json_object *id, *env, *wd, *user, *name, *upper, *lower, *diffs, *digests;
};

static int inspect_fields(json_object *root, struct inspect_fields *f, ud_error *e)
{
	json_object *config, *gd, *data, *rootfs;
	const char *w = "image inspect answer";
	memset(f, 0, sizeof(*f));
	if (get_field(root, "Id", json_type_string, true, &f->id, w, e) < 0 ||
	    get_field(root, "RepoDigests", json_type_array, false, &f->digests, w, e) < 0 ||
	    get_field(root, "Config", json_type_object, false, &config, w, e) < 0 ||
	    get_field(root, "GraphDriver", json_type_object, false, &gd, w, e) < 0 ||
	    get_field(root, "RootFS", json_type_object, false, &rootfs, w, e) < 0)
		return -1;
	data = NULL;
	if (config && (get_field(config, "Env", json_type_array, false, &f->env, w, e) < 0 ||
		       get_field(config, "WorkingDir", json_type_string, false, &f->wd, w, e) < 0 ||
		       get_field(config, "User", json_type_string, false, &f->user, w, e) < 0))
		return -1;
	if (gd && (get_field(gd, "Name", json_type_string, false, &f->name, w, e) < 0 ||
		   get_field(gd, "Data", json_type_object, false, &data, w, e) < 0))
		return -1;
	if (data && (get_field(data, "UpperDir", json_type_string, false, &f->upper, w, e) < 0 ||
		     get_field(data, "LowerDir", json_type_string, false, &f->lower, w, e) < 0))
		return -1;
	if (rootfs && get_field(rootfs, "Layers", json_type_array, false, &f->diffs, w, e) < 0)
		return -1;
	return 0;
}

/* LowerDir "a:b:c", top to bottom, stopping one past the limit (refused later). */
static int push_lower_dirs(struct ud_image *img, const char *lower, ud_error *e)
{
	ud_autofree char *copy = strdup(lower);
	if (!copy)
		return ud_oom(e);
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
	return 0;
}

int ud_parse_inspect(const char *json, size_t len, const char *ref, struct ud_image *img,
		     ud_error *e)
{
	memset(img, 0, sizeof(*img));
	autojson json_object *root = parse_json(json, len, "image inspect answer", e);
	struct inspect_fields f;
	if (!root || inspect_fields(root, &f, e) < 0)
		return -1;
	if (!(img->ref = strdup(ref ? ref : "")))
		return ud_oom(e);
	if (dup_string(f.id, &img->id, e) < 0 || dup_string(f.name, &img->driver, e) < 0 ||
	    dup_string(f.wd, &img->workdir, e) < 0 || dup_string(f.user, &img->user, e) < 0)
		return -1;
	if (string_array(f.env, &img->env, &img->n_env, "Config.Env", e) < 0 ||
	    string_array(f.diffs, &img->diff_ids, &img->n_diff_ids, "RootFS.Layers", e) < 0 ||
	    string_array(f.digests, &img->repo_digests, &img->n_repo_digests, "RepoDigests", e) < 0)
		return -1;
	/* Stack, top to bottom: UpperDir (the image's top read-only layer), then LowerDir. */
	if (f.upper &&
	    strv_push(&img->layers, &img->n_layers, json_object_get_string(f.upper), e) < 0)
		return -1;
	return f.lower ? push_lower_dirs(img, json_object_get_string(f.lower), e) : 0;
}

/* ---------------------------------------------------------------- distribution, RepoDigests */

static bool is_digest(const char *s)
{
	if (strncmp(s, "sha256:", 7) != 0 || strlen(s) != 7 + 64)
		return false;
	for (const char *p = s + 7; *p; p++)
		if (!strchr("0123456789abcdef", *p))
			return false;
	return true;
}

int ud_parse_distribution(const char *json, size_t len, char *digest, size_t dlen, ud_error *e)
{
	const char *w = "distribution answer";
	autojson json_object *root = parse_json(json, len, w, e);
	json_object *desc, *dg;
	if (!root || get_field(root, "Descriptor", json_type_object, true, &desc, w, e) < 0 ||
	    get_field(desc, "digest", json_type_string, true, &dg, w, e) < 0)
		return -1;
	const char *d = json_object_get_string(dg);
	if (!is_digest(d) || dlen < 72)
		return ud_fail(e, UD_EXIT_DAEMON, 0, "%s: Descriptor.digest is not sha256:<64 hex>", w);
	snprintf(digest, dlen, "%s", d);
	return 0;
}

/* The daemon's short form of a repository name: Docker Hub's "docker.io/" and "library/" go. */
static const char *short_name(const char *name)
{
	if (!strncmp(name, "docker.io/", 10))
		name += 10;
	else if (!strncmp(name, "index.docker.io/", 16))
		name += 16;
	if (!strncmp(name, "library/", 8) && !strchr(name + 8, '/'))
		name += 8;
	return name;
}

bool ud_repo_digest(const struct ud_image *img, const char *name, char *out, size_t len)
{
	const char *want = short_name(name);
	for (size_t i = 0; i < img->n_repo_digests; i++) {
		const char *rd = img->repo_digests[i], *at = strrchr(rd, '@');
		if (!at || !is_digest(at + 1))
			continue;
		size_t n = (size_t)(at - rd);
		char repo[512];
		if (n >= sizeof(repo))
			continue;
		memcpy(repo, rd, n);
		repo[n] = '\0';
		if (!strcmp(short_name(repo), want)) {
			snprintf(out, len, "%s", at + 1);
			return true;
		}
	}
	return false;
}

bool ud_overlay_driver(const char *d)
{
	return strcmp(d, "overlay2") == 0 || strcmp(d, "overlay") == 0;
}

static int check_driver(const struct ud_image *img, ud_error *e)
{
	if (!img->driver || !*img->driver)
		return ud_fail(e, UD_EXIT_STORAGE, 0,
			       "the daemon gives no layer directories (no GraphDriver: containerd "
			       "image store?); only overlay2 and Podman's overlay are supported");
	if (!ud_overlay_driver(img->driver))
		return ud_fail(e, UD_EXIT_STORAGE, 0,
			       "storage driver '%s' is not supported (only overlay2 and Podman's "
			       "overlay are)",
			       img->driver);
	if (img->n_layers == 0)
		return ud_fail(e, UD_EXIT_STORAGE, 0, "driver %s gives no layer directories",
			       img->driver);
	if (img->n_layers > UD_MAX_LAYERS)
		return ud_fail(e, UD_EXIT_STORAGE, 0, "more than %d layers (overlayfs's limit)",
			       UD_MAX_LAYERS);
	return 0;
}

/* One layer path: clean, absolute, <root>/<id>/diff; *root_len is the length of <root>. */
static int check_layer(const char *l, size_t *root_len, ud_error *e)
{
	size_t n = strlen(l);
	/* Overlay options are separated by ',' and ':' and escaped with '\': a path with one of
	 * them would change the meaning of the mount. */
	if (l[0] != '/' || strpbrk(l, ",:\\") || n > 1024 || strstr(l, "/../") ||
	    strstr(l, "/./") || strstr(l, "//"))
		return ud_fail(e, UD_EXIT_STORAGE, 0, "layer path '%s' is not a clean absolute path",
			       l);
	/* <root>/<id>/diff with one <root> for all layers, so that every layer lies in the
	 * daemon's storage and Docker's l/ short names (relative to <root>) can be used. */
	if (n < 6 || strcmp(l + n - 5, "/diff") != 0)
		return ud_fail(e, UD_EXIT_STORAGE, 0, "layer path '%s' is not <storage>/<id>/diff",
			       l);
	const char *id_end = l + n - 5, *id = id_end;
	while (id > l && id[-1] != '/')
		id--;
	*root_len = (size_t)(id - l) - 1;
	if (id == id_end || *root_len == 0 || (id_end - id == 2 && id[0] == '.') ||
	    (id_end - id == 1 && id[0] == '.'))
		return ud_fail(e, UD_EXIT_STORAGE, 0, "layer path '%s' is not <storage>/<id>/diff",
			       l);
	return 0;
}

int ud_validate_layers(struct ud_image *img, ud_error *e)
{
	if (check_driver(img, e) < 0)
		return -1;
	free(img->storage_root);
	img->storage_root = NULL;
	for (size_t i = 0; i < img->n_layers; i++) {
		const char *l = img->layers[i];
		size_t root_len = 0;
		if (check_layer(l, &root_len, e) < 0)
			return -1;
		if (!img->storage_root) {
			if (!(img->storage_root = strndup(l, root_len)))
				return ud_oom(e);
		} else if (strlen(img->storage_root) != root_len ||
			   strncmp(img->storage_root, l, root_len) != 0) {
			return ud_fail(e, UD_EXIT_STORAGE, 0,
				       "layer '%s' is not in the same storage as '%s'", l,
				       img->layers[0]);
		}
	}
	return 0;
}

/* ---------------------------------------------------------------- other answers */

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
		return ud_oom(e);
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
	if (!ud_api_version_valid(s) || strlen(s) >= api_len)
		return ud_fail(e, UD_EXIT_DAEMON, 0, "/version answer: bad %s '%.32s'", field, s);
	snprintf(api, api_len, "%s", s);
	return 0;
}

int ud_parse_image_list(const char *json, size_t len, char ***ids, size_t *n, ud_error *e)
{
	*ids = NULL;
	*n = 0;
	autojson json_object *root = parse_json(json, len, "image list", e);
	if (!root)
		return -1;
	if (!json_object_is_type(root, json_type_array))
		return ud_fail(e, UD_EXIT_DAEMON, 0, "image list is not an array");
	size_t count = json_object_array_length(root);
	for (size_t i = 0; i < count; i++) {
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

void ud_parse_error_message(const char *body, char *out, size_t len)
{
	snprintf(out, len, "no message");
	autojson json_object *o = json_tokener_parse(body ? body : "");
	json_object *m;
	if (o && json_object_is_type(o, json_type_object) &&
	    json_object_object_get_ex(o, "message", &m) && json_object_is_type(m, json_type_string))
		snprintf(out, len, "%s", json_object_get_string(m));
	else if (body && body[0])
		snprintf(out, len, "%.200s", body);
	for (char *p = out; *p; p++)
		if ((unsigned char)*p < 0x20)
			*p = ' ';
}
