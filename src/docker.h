/* Docker Engine API client: version negotiation and image resolution over the daemon's unix socket.
 * Parsing is split from transport so that captured answers can be unit-tested without a daemon. */
#ifndef UD_DOCKER_H
#define UD_DOCKER_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"

#define UD_API_VERSION "1.47"   /* the newest API version we speak; min(ours, daemon's) is used */
#define UD_MAX_LAYERS 500       /* overlayfs's limit on lower layers */

/* What the helper needs to know about one image. Layers are ordered top (newest) to bottom. */
struct ud_image {
	char *ref;            /* as the user wrote it */
	char *id;             /* "sha256:..." */
	char *driver;         /* GraphDriver.Name: "overlay2" (Docker) or "overlay" (Podman) */
	char *storage_root;   /* derived: the directory that holds the layer dirs and l/ */
	char **layers;        /* absolute ".../diff" directories, top to bottom */
	size_t n_layers;
	char **diff_ids;      /* RootFS.Layers, bottom to top as the API lists them */
	size_t n_diff_ids;
	char **env;           /* Config.Env, "KEY=VALUE" */
	size_t n_env;
	char *workdir;        /* Config.WorkingDir, "" if unset */
	bool from_cache;      /* layers are ours (export + layer cache), not the daemon's dirs */
};

void ud_image_free(struct ud_image *img);

struct ud_docker {
	char *socket_path;    /* unix socket of the daemon */
	long timeout_ms;      /* per request */
	char api[16];         /* negotiated, e.g. "1.41" */
	void *curl;           /* CURL *, reused so the connection is kept */
};

/* host: NULL (DOCKER_HOST or /var/run/docker.sock), "unix:///path" or "/path". */
int ud_docker_open(struct ud_docker *d, const char *host, long timeout_ms, ud_error *e);
void ud_docker_close(struct ud_docker *d);

/* GET /_ping and take its Api-Version header (falls back to GET /version). */
int ud_docker_negotiate(struct ud_docker *d, ud_error *e);

/* GET /images/{ref}/json, then validate (driver, layer paths). */
int ud_docker_inspect(struct ud_docker *d, const char *ref, struct ud_image *img, ud_error *e);

/* GET /info: storage driver description for messages ("overlay2", "overlayfs (containerd image
 * store, io.containerd.snapshotter.v1)") and DockerRootDir. Not on the hot path. */
int ud_docker_info(struct ud_docker *d, char **driver_desc, char **root_dir, ud_error *e);

/* Splits inspect from validation for --layers auto: inspect without validating the layer dirs. */
int ud_docker_inspect_raw(struct ud_docker *d, const char *ref, struct ud_image *img, ud_error *e);

/* A streamed GET (image export): read chunk by chunk as the daemon sends it, never held whole.
 * A daemon that stalls for timeout_ms fails the read. */
typedef struct ud_stream ud_stream;
int ud_docker_stream_open(struct ud_docker *d, const char *path, ud_stream **s, ud_error *e);
/* Points *buf at the next chunk; returns its size, 0 at the end, -1 on error. */
long ud_stream_read(ud_stream *s, const void **buf, ud_error *e);
void ud_stream_close(ud_stream *s);

/* GET /images/json: the ids of every image the daemon has (caller frees). */
int ud_docker_list_images(struct ud_docker *d, char ***ids, size_t *n, ud_error *e);

/* ---- pure parts, unit-tested ---- */

/* Accepts what the docker CLI accepts: [host[:port]/]path[:tag][@digest], ids and id prefixes. */
bool ud_reference_valid(const char *ref);

/* Integer comparison per component: "1.9" < "1.41". Returns <0, 0, >0. */
int ud_api_version_cmp(const char *a, const char *b);

/* Parses an image inspect answer (status already 200). */
int ud_parse_inspect(const char *json, size_t len, const char *ref, struct ud_image *img,
		     ud_error *e);

/* Checks the layer stack of a parsed image: supported driver, each path absolute, free of
 * ',' ':' '\\', of the form <root>/<id>/diff with one common <root>. Sets img->storage_root.
 * Does not touch the filesystem. */
int ud_validate_layers(struct ud_image *img, ud_error *e);

/* Parses /info into a driver description and DockerRootDir. */
int ud_parse_info(const char *json, size_t len, char **driver_desc, char **root_dir, ud_error *e);

/* Parses /version's ApiVersion (or another version field, e.g. MinAPIVersion). */
int ud_parse_version(const char *json, size_t len, char *api, size_t api_len, ud_error *e);
int ud_parse_version_field(const char *json, size_t len, const char *field, char *api,
			   size_t api_len, ud_error *e);

#endif
