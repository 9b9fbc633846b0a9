/* The export: GET /images/{id}/get, read as it arrives through libarchive (docker-archive or
 * OCI layout). Each member is classified by its name alone; the config must hash to the image
 * id, and each layer blob is unpacked (layer.c) into the cache (cache.c), which keeps it only if
 * its digest is a diffID the config names and the cache still lacks. */
#include "export.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cr.h"
#include "la.h"
#include "prefetch.h"
#include "util.h"

const struct ud_name ud_export_layers_modes[] = {
	{UD_LAYERS_AUTO, "auto"},
	{UD_LAYERS_DIRECT, "direct"},
	{UD_LAYERS_EXPORT, "export"},
	{0, NULL},
};

#define HEX_LEN 64
#define MAX_CONFIG (16 * 1024 * 1024)
/* How far the reader thread may run ahead of the unpacking: enough to ride out a run of small
 * files (each costs system calls, not bytes), little beside the RSS the export may take. While
 * the ring is full the thread does not read: the socket's buffer fills and the daemon waits, so
 * data is there at once when it reads again, and the stream's stall check (the daemon's silence
 * since the last chunk) does not take a slow unpacking for a stalled daemon. */
#define EXPORT_RING ((size_t)8 * 1024 * 1024)

static const char *strip_dot_slash(const char *p)
{
	while (p[0] == '.' && p[1] == '/')
		p += 2;
	return p;
}

static bool ends_with(const char *s, size_t n, const char *tail)
{
	size_t tl = strlen(tail);
	return n >= tl && !strcmp(s + n - tl, tail);
}

enum ud_export_member ud_export_classify(const char *name, char named[65])
{
	named[0] = '\0';
	if (!name)
		return UD_EXPORT_OTHER;
	name = strip_dot_slash(name);
	size_t nl = strlen(name);
	bool top = !strchr(name, '/');
	enum ud_export_member kind = UD_EXPORT_OTHER;
	if (!strncmp(name, "blobs/sha256/", 13) && nl == 13 + HEX_LEN && ud_cache_is_hex(name + 13))
		kind = UD_EXPORT_BLOB;
	else if (top && nl == HEX_LEN + 5 && ud_cache_is_hex(name) && ends_with(name, nl, ".json"))
		kind = UD_EXPORT_HEX_JSON;
	else if (top && nl == HEX_LEN + 4 && ud_cache_is_hex(name) && ends_with(name, nl, ".tar"))
		kind = UD_EXPORT_HEX_TAR;
	else if (ends_with(name, nl, "layer.tar") && (nl == 9 || name[nl - 10] == '/'))
		return UD_EXPORT_LAYER_TAR;
	if (kind != UD_EXPORT_OTHER)
		snprintf(named, 65, "%.64s", kind == UD_EXPORT_BLOB ? name + 13 : name);
	return kind;
}

/* ---------------------------------------------------------------- the stream */

struct outer_src {
	ud_stream *s;
	ud_prefetch *p; /* the thread that reads s */
	ud_error se;	/* the stream's own error: it wins over what libarchive makes of it */
	bool failed;
};

static long stream_read(void *s, const void **buf, ud_error *e)
{
	return ud_stream_read(s, buf, e);
}

static void stream_interrupt(void *s)
{
	ud_stream_interrupt(s);
}

static la_ssize_t outer_read(struct archive *a, void *client, const void **buf)
{
	struct outer_src *o = client;
	long n = ud_prefetch_read(o->p, buf, &o->se);
	if (n < 0) {
		o->failed = true;
		ud_la.archive_set_error(a, EIO, "export stream failed");
		return -1;
	}
	return n;
}

/* Reads a small entry whole (configs). */
static char *read_small(struct archive *a, size_t *len)
{
	size_t cap = 4096, n = 0;
	ud_autofree char *buf = malloc(cap);
	while (buf) {
		if (n == cap) {
			char *nb = cap < MAX_CONFIG ? realloc(buf, cap * 2) : NULL;
			if (!nb)
				return NULL;
			buf = nb;
			cap *= 2;
		}
		la_ssize_t r = ud_la.archive_read_data(a, buf + n, cap - n);
		if (r < 0)
			return NULL;
		if (r == 0)
			break;
		n += (size_t)r;
	}
	*len = n;
	return ud_steal_ptr(&buf);
}

static bool sha256_is(const char *data, size_t len, const char *hex)
{
	unsigned char md[32];
	char got[HEX_LEN + 1];
	unsigned int mdlen = 0;
	ud_cr.EVP_Digest(data, len, md, &mdlen, ud_cr.EVP_sha256(), NULL);
	for (int i = 0; i < 32; i++)
		snprintf(got + 2 * i, 3, "%02x", md[i]);
	return strcmp(got, hex) == 0;
}

/* One export being read into the cache. */
struct export
{
	const struct ud_image *img;
	const char *id_hex;
	struct archive *outer;
	struct ud_cache *c;
	struct ud_cache_want *w;
	bool config_ok;
};

static int check_config(struct export *x, ud_error *e)
{
	size_t len;
	ud_autofree char *cfg = read_small(x->outer, &len);
	if (!cfg || !sha256_is(cfg, len, x->id_hex))
		return ud_fail(e, UD_EXIT_STORAGE, 0,
			       "the exported config does not match the image id %s", x->img->id);
	x->config_ok = true;
	return 0;
}

static int export_member(struct export *x, struct archive_entry *ent, ud_error *e)
{
	if (ud_la.archive_entry_filetype(ent) != AE_IFREG)
		return 0;
	const char *name = ud_la.archive_entry_pathname(ent);
	char named[HEX_LEN + 1];
	enum ud_export_member kind = ud_export_classify(name, named);
	bool by_digest = kind == UD_EXPORT_BLOB || kind == UD_EXPORT_HEX_TAR;
	if ((kind == UD_EXPORT_BLOB || kind == UD_EXPORT_HEX_JSON) && !strcmp(named, x->id_hex))
		return check_config(x, e);
	if (ud_cache_want_all_done(x->w) || kind == UD_EXPORT_HEX_JSON || kind == UD_EXPORT_OTHER)
		return 0;
	bool must = kind != UD_EXPORT_BLOB;
	if (by_digest) {
		/* Named by a digest: a diffID we have needs no reading. Otherwise it may be a
		 * layer (compressed blobs are named by another digest) or JSON. */
		int idx = ud_cache_want_index(x->w, named);
		if (idx >= 0 ? x->w->done[idx] : ud_cache_has(x->c, named))
			return 0;
		must = must || idx >= 0;
	}
	char what[160];
	snprintf(what, sizeof(what), "member %.100s", strip_dot_slash(name));
	return ud_cache_unpack_entry(x->c, x->w, x->outer, what, must, e);
}

static int read_export(struct export *x, struct outer_src *src, ud_error *e)
{
	if (ud_la.archive_read_open(x->outer, src, NULL, outer_read, NULL) != ARCHIVE_OK)
		return src->failed ? -1 :
				     ud_fail(e, UD_EXIT_DAEMON, 0,
					     "the export is not a tar archive: %s",
					     ud_la.archive_error_string(x->outer));
	for (;;) {
		struct archive_entry *ent;
		int h = ud_la.archive_read_next_header(x->outer, &ent);
		if (h == ARCHIVE_EOF)
			break;
		if (h < ARCHIVE_WARN)
			return src->failed ? -1 :
					     ud_fail(e, UD_EXIT_DAEMON, 0,
						     "broken export archive: %s",
						     ud_la.archive_error_string(x->outer));
		if (export_member(x, ent, e) < 0)
			return -1;
	}
	for (size_t i = 0; i < x->w->n; i++)
		if (!x->w->done[i])
			return ud_fail(e, UD_EXIT_STORAGE, 0,
				       "no layer in the export has diffID sha256:%s "
				       "(digest mismatch or missing layer)",
				       x->w->hex[i]);
	if (!x->config_ok)
		return ud_fail(e, UD_EXIT_STORAGE, 0,
			       "the export carries no config matching the image id %s", x->img->id);
	return 0;
}

static int export_layers(struct ud_docker *d, const struct ud_image *img, struct ud_cache *c,
			 struct ud_cache_want *w, ud_error *e)
{
	struct export x = {.img = img, .id_hex = ud_cache_digest_hex(img->id), .c = c, .w = w};
	if (!x.id_hex)
		return ud_fail(e, UD_EXIT_STORAGE, 0, "image '%s' has an unexpected id '%s'",
			       img->ref, img->id);
	/* A start that reused the daemon's answer (answers.h) has asked it nothing yet. */
	if (ud_la_load(e) < 0 || (!d->api[0] && ud_docker_negotiate(d, e) < 0))
		return -1;
	char path[256];
	snprintf(path, sizeof(path), "/v%s/images/%s/get", d->api, img->id);
	struct outer_src src = {0};
	if (ud_docker_stream_open(d, path, &src.s, e) < 0)
		return -1;
	/* A thread pulls the stream while this one unpacks: see prefetch.h. */
	const struct ud_prefetch_source from = {stream_read, stream_interrupt, src.s};
	int r = ud_prefetch_start(&from, EXPORT_RING, &src.p, e);
	if (r == 0 && !(x.outer = ud_la.archive_read_new()))
		r = ud_oom(e);
	if (r == 0) {
		ud_la.archive_read_support_format_tar(x.outer);
		r = read_export(&x, &src, e);
		if (r < 0 && src.failed && e)
			*e = src.se;
		else if (r < 0) /* once, for every failure of the export */
			ud_context(e, "image '%s'", img->ref);
		ud_la.archive_read_free(x.outer);
	}
	/* On every path, and before the stream goes: the thread is the one using it. */
	ud_prefetch_stop(src.p);
	ud_stream_close(src.s);
	return r;
}

int ud_export_prepare(struct ud_docker *d, struct ud_image *img, const char *cache, bool dry_run,
		      int *cache_lock, ud_error *e)
{
	*cache_lock = -1;
	if (img->n_diff_ids == 0)
		return ud_fail(e, UD_EXIT_STORAGE, 0, "image '%s' lists no layers (RootFS.Layers)",
			       img->ref);
	if (img->n_diff_ids > UD_MAX_LAYERS)
		return ud_fail(e, UD_EXIT_STORAGE, 0, "image '%s' has more than %d layers",
			       img->ref, UD_MAX_LAYERS);
	if (cache[0] != '/' || strpbrk(cache, ",:\\") || strlen(cache) > 1024)
		return ud_fail(e, UD_EXIT_USAGE, 0,
			       "--cache-dir must be an absolute path without ',' ':' or '\\'");
	if (ud_cache_point_image(img, cache, e) < 0)
		return -1;
	if (dry_run)
		return 0;
	struct ud_cache c;
	struct ud_cache_want w = {0};
	int r = -1;
	if (ud_cache_open(&c, cache, e) == 0 &&
	    ud_cache_lock_prune(&c, false, cache_lock, e) == 0 &&
	    ud_cache_want_missing(&c, img, &w, e) == 0)
		r = !w.n ? 0 : ud_cr_load(e) < 0 ? -1 : export_layers(d, img, &c, &w, e);
	ud_cache_want_release(&w);
	ud_cache_close(&c);
	if (r < 0)
		ud_closep(cache_lock);
	return r;
}
