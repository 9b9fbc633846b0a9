/* The pull's progress stream (json-c, incremental): layer states, the error object, the digest. */
#include "pull_progress.h"

#include <ctype.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

int ud_pull_progress_init(struct ud_pull_progress *p, ud_error *e)
{
	memset(p, 0, sizeof(*p));
	p->tok = json_tokener_new();
	return p->tok ? 0 : ud_oom(e);
}

void ud_pull_progress_free(struct ud_pull_progress *p)
{
	if (p->tok)
		json_tokener_free(p->tok);
	p->tok = NULL;
}

void ud_pull_one_line(const char *msg, char *out, size_t len)
{
	if (!len)
		return;
	size_t i = 0;
	for (; msg && msg[i] && msg[i] != '\n' && i + 1 < len; i++)
		out[i] = iscntrl((unsigned char)msg[i]) ? ' ' : msg[i];
	out[i] = '\0';
	while (i && out[i - 1] == ' ')
		out[--i] = '\0';
}

static const char *str_field(json_object *o, const char *key)
{
	json_object *v;
	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

static long long num_field(json_object *o, const char *key)
{
	json_object *v;
	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
		return 0;
	long long n = json_object_get_int64(v);
	return n > 0 ? n : 0;
}

/* The layer the object names, added on first sight (NULL past the table's size). */
static struct ud_pull_layer *layer_of(struct ud_pull_progress *p, const char *id)
{
	for (size_t i = 0; i < p->n_layers; i++)
		if (strcmp(p->layers[i].id, id) == 0)
			return &p->layers[i];
	if (p->n_layers == UD_PULL_MAX_LAYERS)
		return NULL;
	struct ud_pull_layer *l = &p->layers[p->n_layers++];
	memset(l, 0, sizeof(*l));
	snprintf(l->id, sizeof(l->id), "%s", id);
	return l;
}

/* {"errorDetail":{"message":...},"error":...}: the detail's message when there is one. */
static bool take_error(struct ud_pull_progress *p, json_object *o)
{
	json_object *detail;
	const char *msg = NULL;
	if (json_object_object_get_ex(o, "errorDetail", &detail) &&
	    json_object_is_type(detail, json_type_object))
		msg = str_field(detail, "message");
	if (!msg)
		msg = str_field(o, "error");
	if (!msg)
		return false;
	ud_pull_one_line(*msg ? msg : "unknown error", p->error, sizeof(p->error));
	return true;
}

/* A layer's progress: Downloading moves its bytes; Pull complete / Already exists end it. */
static enum ud_pull_event layer_event(struct ud_pull_layer *l, const char *status, json_object *o)
{
	if (l->done)
		return UD_PULL_EV_NONE;
	if (strcmp(status, "Pull complete") == 0 || strcmp(status, "Already exists") == 0) {
		l->done = true;
		l->existed = status[0] == 'A';
		return UD_PULL_EV_LAYER_DONE;
	}
	json_object *detail;
	if (strcmp(status, "Downloading") != 0 || !json_object_object_get_ex(o, "progressDetail", &detail))
		return UD_PULL_EV_NONE;
	l->current = num_field(detail, "current");
	long long total = num_field(detail, "total");
	if (total)
		l->total = total;
	return UD_PULL_EV_BYTES;
}

static void take_object(struct ud_pull_progress *p, json_object *o, ud_pull_cb *cb, void *ctx)
{
	if (!json_object_is_type(o, json_type_object))
		return;
	if (take_error(p, o)) {
		if (cb)
			cb(ctx, p, UD_PULL_EV_ERROR, NULL);
		return;
	}
	const char *status = str_field(o, "status"), *id = str_field(o, "id");
	if (!status)
		return;
	if (strncmp(status, "Digest: ", 8) == 0)
		snprintf(p->digest, sizeof(p->digest), "%s", status + 8);
	/* Layer ids are short hex; "Pulling from x" carries the tag as its id. */
	if (!id || strncmp(status, "Pulling from", 12) == 0)
		return;
	struct ud_pull_layer *l = layer_of(p, id);
	enum ud_pull_event ev = l ? layer_event(l, status, o) : UD_PULL_EV_NONE;
	if (ev == UD_PULL_EV_LAYER_DONE)
		p->n_done++;
	if (ev != UD_PULL_EV_NONE && cb)
		cb(ctx, p, ev, l);
}

int ud_pull_progress_feed(struct ud_pull_progress *p, const char *data, size_t len, ud_pull_cb *cb,
			  void *ctx, ud_error *e)
{
	json_tokener *tok = p->tok;
	/* JSON text never holds a NUL byte; json-c stops at one and loses what it was building. */
	if (memchr(data, '\0', len))
		return ud_fail(e, UD_EXIT_DAEMON, 0, "the pull's progress stream is not JSON (a NUL byte)");
	while (len) {
		/* Between objects: only whitespace, then '{'. A top-level scalar (a number cut at a
		 * chunk's end) would parse differently depending on where the transport cut it. */
		if (!p->pending) {
			while (len && isspace((unsigned char)*data))
				data++, len--;
			if (!len)
				break;
			if (*data != '{')
				return ud_fail(e, UD_EXIT_DAEMON, 0,
					       "the pull's progress stream is not a series of JSON objects");
		}
		int chunk = len > 1 << 30 ? 1 << 30 : (int)len;
		json_object *o = json_tokener_parse_ex(tok, data, chunk);
		enum json_tokener_error jerr = json_tokener_get_error(tok);
		size_t used = json_tokener_get_parse_end(tok);
		if (jerr == json_tokener_continue) {
			p->pending = true;
		} else if (jerr != json_tokener_success || !o) {
			json_tokener_reset(tok);
			return ud_fail(e, UD_EXIT_DAEMON, 0, "the pull's progress stream is not JSON (%s)",
				       json_tokener_error_desc(jerr));
		} else {
			p->pending = false;
			take_object(p, o, cb, ctx);
			json_object_put(o);
		}
		if (used == 0 || used > (size_t)chunk)
			used = (size_t)chunk;
		data += used;
		len -= used;
	}
	return 0;
}

int ud_pull_progress_end(const struct ud_pull_progress *p, ud_error *e)
{
	if (p->pending)
		return ud_fail(e, UD_EXIT_DAEMON, 0, "the pull's progress stream ended inside an object");
	return 0;
}

long long ud_pull_progress_bytes(const struct ud_pull_progress *p)
{
	long long sum = 0;
	for (size_t i = 0; i < p->n_layers; i++)
		if (!p->layers[i].existed)
			sum += p->layers[i].total;
	return sum;
}

int ud_pull_error_status(const char *msg)
{
	static const char *const gone[] = {
		"not found", "manifest unknown", "name unknown", "does not exist", "unauthorized",
		"authentication required", "denied", "no basic auth credentials", "incorrect username",
	};
	for (size_t i = 0; i < sizeof(gone) / sizeof(gone[0]); i++)
		if (strcasestr(msg, gone[i]))
			return UD_EXIT_IMAGE;
	return UD_EXIT_DAEMON;
}
