/* The pull's progress stream: objects gathered whole, then read by json-c; layer states, the error
 * object, the digest. */
#include "pull_progress.h"

#include <ctype.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
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
	free(p->obj);
	p->obj = NULL;
	p->obj_len = p->obj_cap = 0;
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
	if (strcmp(status, "Downloading") != 0 ||
	    !json_object_object_get_ex(o, "progressDetail", &detail))
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

/* JSON's whitespace, not isspace()'s: a vertical tab or form feed is no separator in JSON. */
static bool json_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* How many of the len bytes belong to the object being gathered; *closed once its last '}' is
 * among them. Strings, escapes and depth live in p, so an object cut anywhere (inside a string,
 * between a backslash and the quote it escapes) ends at the same byte as one fed whole. */
static size_t scan_object(struct ud_pull_progress *p, const char *data, size_t len, bool *closed)
{
	*closed = false;
	for (size_t i = 0; i < len; i++) {
		char c = data[i];
		if (p->in_string) {
			if (p->escaped)
				p->escaped = false;
			else if (c == '\\')
				p->escaped = true;
			else if (c == '"')
				p->in_string = false;
		} else if (c == '"') {
			p->in_string = true;
		} else if (c == '{' || c == '[') {
			p->depth++;
		} else if ((c == '}' || c == ']') && --p->depth == 0) {
			*closed = true;
			return i + 1;
		}
	}
	return len;
}

static int gather(struct ud_pull_progress *p, const char *data, size_t n, ud_error *e)
{
	/* Checked before growing: a stream that never closes its object costs at most this much. */
	if (n > UD_PULL_MAX_OBJECT - p->obj_len)
		return ud_fail(e, UD_EXIT_DAEMON, 0,
			       "the pull's progress stream has an object longer than %d bytes",
			       UD_PULL_MAX_OBJECT);
	if (p->obj_len + n > p->obj_cap) {
		size_t cap = p->obj_cap ? p->obj_cap : 4096;
		while (cap < p->obj_len + n)
			cap *= 2;
		char *grown = realloc(p->obj, cap);
		if (!grown)
			return ud_oom(e);
		p->obj = grown;
		p->obj_cap = cap;
	}
	memcpy(p->obj + p->obj_len, data, n);
	p->obj_len += n;
	return 0;
}

/* One whole object in one call: json-c's answer then depends on the object's bytes alone. */
static int parse_object(struct ud_pull_progress *p, ud_pull_cb *cb, void *ctx, ud_error *e)
{
	json_tokener *tok = p->tok;
	json_tokener_reset(tok);
	json_object *o = json_tokener_parse_ex(tok, p->obj, (int)p->obj_len);
	enum json_tokener_error jerr = json_tokener_get_error(tok);
	/* Where json-c and the scan disagree on the end (a '}' in a comment or a single-quoted
	 * string, extensions a daemon never writes), the object is refused, not guessed at. */
	if (!o || jerr != json_tokener_success || json_tokener_get_parse_end(tok) != p->obj_len) {
		const char *why = json_tokener_error_desc(jerr);
		if (jerr == json_tokener_continue)
			why = "an unfinished object";
		else if (jerr == json_tokener_success)
			why = "an object that ends before its last brace";
		json_object_put(o);
		json_tokener_reset(tok);
		return ud_fail(e, UD_EXIT_DAEMON, 0, "the pull's progress stream is not JSON (%s)",
			       why);
	}
	take_object(p, o, cb, ctx);
	json_object_put(o);
	p->obj_len = 0;
	return 0;
}

int ud_pull_progress_feed(struct ud_pull_progress *p, const char *data, size_t len, ud_pull_cb *cb,
			  void *ctx, ud_error *e)
{
	/* JSON text never holds a NUL byte; json-c stops at one and loses what it was building. */
	if (memchr(data, '\0', len))
		return ud_fail(e, UD_EXIT_DAEMON, 0,
			       "the pull's progress stream is not JSON (a NUL byte)");
	while (len) {
		/* Between objects: only whitespace, then '{'. A top-level scalar (a number cut at a
		 * chunk's end) or a json-c comment would be read differently depending on where the
		 * transport cut the stream. */
		if (!p->obj_len) {
			while (len && json_space(*data))
				data++, len--;
			if (!len)
				break;
			if (*data != '{')
				return ud_fail(e, UD_EXIT_DAEMON, 0,
					       "the pull's progress stream is not a series of JSON "
					       "objects (byte 0x%02x outside an object)",
					       (unsigned char)*data);
		}
		bool closed;
		size_t n = scan_object(p, data, len, &closed);
		if (gather(p, data, n, e) < 0 || (closed && parse_object(p, cb, ctx, e) < 0))
			return -1;
		data += n;
		len -= n;
	}
	return 0;
}

int ud_pull_progress_end(const struct ud_pull_progress *p, ud_error *e)
{
	if (p->obj_len)
		return ud_fail(e, UD_EXIT_DAEMON, 0,
			       "the pull's progress stream ended inside an object");
	return 0;
}

long long ud_pull_progress_bytes(const struct ud_pull_progress *p)
{
	long long sum = 0;
	for (size_t i = 0; i < p->n_layers; i++)
		if (!p->layers[i].existed && __builtin_add_overflow(sum, p->layers[i].total, &sum))
			return LLONG_MAX;
	return sum;
}

int ud_pull_error_status(const char *msg)
{
	static const char *const gone[] = {
		"not found",
		"manifest unknown",
		"name unknown",
		"does not exist",
		"unauthorized",
		"authentication required",
		"denied",
		"no basic auth credentials",
		"incorrect username",
	};
	for (size_t i = 0; i < sizeof(gone) / sizeof(gone[0]); i++)
		if (strcasestr(msg, gone[i]))
			return UD_EXIT_IMAGE;
	return UD_EXIT_DAEMON;
}
