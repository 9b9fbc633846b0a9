/* The daemon's answer to POST /images/create: a stream of JSON objects, one per progress event
 * ({"status","id","progressDetail":{"current","total"}}) or one error ({"error","errorDetail"}).
 * Pure: fed bytes as they arrive, so captured streams are unit-tested. Each top-level object is
 * gathered whole (its end found here, not by json-c) before json-c reads it: json-c's incremental
 * tokener takes extensions (comments, lenient numbers) whose outcome depends on where the
 * transport cut the stream. */
#ifndef UD_PULL_PROGRESS_H
#define UD_PULL_PROGRESS_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"

#define UD_PULL_MAX_LAYERS 256
/* One object's size at most: progress objects are a few hundred bytes, and an error quoting a
 * registry's whole answer (pull.c keeps 64 KiB of one) still fits, escaped, several times over. */
#define UD_PULL_MAX_OBJECT (1024 * 1024)

struct ud_pull_layer {
	char id[80];
	long long current, total; /* bytes downloaded (Downloading), of total */
	bool done;                /* "Pull complete" or "Already exists" */
	bool existed;             /* "Already exists": nothing downloaded */
};

struct ud_pull_progress {
	void *tok;		 /* json_tokener * */
	char *obj;		 /* the object being gathered (obj_len > 0: one has started) */
	size_t obj_len, obj_cap; /* its bytes so far; obj's size */
	size_t depth;		 /* of '{' and '[' in it, outside strings */
	bool in_string, escaped; /* inside a string; right after its backslash */
	struct ud_pull_layer layers[UD_PULL_MAX_LAYERS];
	size_t n_layers;
	size_t n_done;
	char error[512]; /* the daemon's or registry's words, one line; "" if none */
	char digest[80]; /* from "Digest: sha256:..." */
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
 * -1 only for a stream that is not a series of JSON objects (status 66): anything but JSON
 * whitespace between objects, an object json-c refuses, one past UD_PULL_MAX_OBJECT bytes.
 * The answer is the same wherever the stream is cut. An error object is no failure here: it
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
