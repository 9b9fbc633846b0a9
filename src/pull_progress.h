/* The daemon's answer to POST /images/create: a stream of JSON objects, one per progress event
 * ({"status","id","progressDetail":{"current","total"}}) or one error ({"error","errorDetail"}).
 * Pure: fed bytes as they arrive, split at object boundaries by json-c's incremental tokener, so
 * captured streams are unit-tested. */
#ifndef UD_PULL_PROGRESS_H
#define UD_PULL_PROGRESS_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"

#define UD_PULL_MAX_LAYERS 256

struct ud_pull_layer {
	char id[80];
	long long current, total; /* bytes downloaded (Downloading), of total */
	bool done;                /* "Pull complete" or "Already exists" */
	bool existed;             /* "Already exists": nothing downloaded */
};

struct ud_pull_progress {
	void *tok;                /* json_tokener * */
	bool pending;             /* an object has started and not ended */
	struct ud_pull_layer layers[UD_PULL_MAX_LAYERS];
	size_t n_layers;
	size_t n_done;
	char error[512];          /* the daemon's or registry's words, one line; "" if none */
	char digest[80];          /* from "Digest: sha256:..." */
};

/* What one object changed, for the display. */
enum ud_pull_event {
	UD_PULL_EV_NONE,
	UD_PULL_EV_BYTES,     /* a layer's current/total moved */
	UD_PULL_EV_LAYER_DONE,
	UD_PULL_EV_ERROR,
};

typedef void ud_pull_cb(void *ctx, const struct ud_pull_progress *p, enum ud_pull_event ev,
			const struct ud_pull_layer *layer);

int ud_pull_progress_init(struct ud_pull_progress *p, ud_error *e);
void ud_pull_progress_free(struct ud_pull_progress *p);

/* Feeds the next bytes of the stream; cb (may be NULL) is called once per complete object.
 * -1 only for a stream that is not JSON (status 66). An error object is no failure here: it
 * fills p->error (check after feeding). */
int ud_pull_progress_feed(struct ud_pull_progress *p, const char *data, size_t len, ud_pull_cb *cb,
			  void *ctx, ud_error *e);

/* At the end of the stream: -1 (status 66) if it stopped inside an object. */
int ud_pull_progress_end(const struct ud_pull_progress *p, ud_error *e);

/* Sum of the layers' totals that were downloaded (not "Already exists"). */
long long ud_pull_progress_bytes(const struct ud_pull_progress *p);

/* The exit status an error message of a pull means: 65 when the registry says the image is not
 * there or will not give it (unknown repository, tag or manifest, authentication required or
 * denied), 66 otherwise (registry unreachable, daemon errors). */
int ud_pull_error_status(const char *msg);

/* The first line of msg, control characters replaced, into out. */
void ud_pull_one_line(const char *msg, char *out, size_t len);

#endif
