/* Docker Engine API client: version negotiation and image resolution over the daemon's unix socket
 * (libcurl). The pure halves, tested without a daemon or libcurl, are reference.h (the reference
 * grammar, API versions) and docker_json.h (the answers). */
#ifndef UD_DOCKER_H
#define UD_DOCKER_H

#include <stdbool.h>
#include <stddef.h>

#include "docker_json.h"
#include "error.h"
#include "reference.h"

struct ud_docker {
	char *socket_path;    /* unix socket of the daemon */
	long timeout_ms;      /* per request */
	char api[16];         /* negotiated, e.g. "1.41" */
	void *curl;           /* CURL *, reused so the connection is kept */
	bool unreachable;     /* the last request failed in transport: no answer at all */
	char *inspect_body;   /* the last image inspect answer, as the daemon sent it */
	size_t inspect_len;
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
/* The same for any request: method "GET" or "POST", one extra header line (or NULL; the caller
 * may wipe its copy once this returns), and with any_status a non-200 answer is no error: its
 * body is read like any other, and ud_stream_status() tells the status. */
struct ud_stream_req {
	const char *method;
	const char *header;
	bool any_status;
};
int ud_docker_stream_request(struct ud_docker *d, const char *path, const struct ud_stream_req *rq,
			     ud_stream **s, ud_error *e);
/* The HTTP status, once the first ud_stream_read() returned (0 before). */
long ud_stream_status(const ud_stream *s);
/* Points *buf at the next chunk; returns its size, 0 at the end, -1 on error. */
long ud_stream_read(ud_stream *s, const void **buf, ud_error *e);
/* From any thread: a read in progress, and every later one, fails at once ("interrupted")
 * instead of waiting for the daemon. */
void ud_stream_interrupt(ud_stream *s);
void ud_stream_close(ud_stream *s);

/* GET /images/json: the ids of every image the daemon has (caller frees). */
int ud_docker_list_images(struct ud_docker *d, char ***ids, size_t *n, ud_error *e);

#endif
