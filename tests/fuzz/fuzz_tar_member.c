/* Layer tar members as layer.c classifies them before anything touches the disk: the member
 * name (after the leading "./" are stripped, as extract_tar() does), a hard link's target, and
 * whiteouts. The input is "NAME\0LINKTARGET" (the target is optional). Also the cache path of a
 * diffID, which comes from the image config and names a directory under the cache.
 * Each answer is checked against an independent reading of what the function promises. */
#include <ctype.h>
#include <stdbool.h>

#include "cache.h"
#include "layer.h"
#include "fuzz.h"

#define CACHE "/var/lib/uwsgi-docker/layers"

/* As extract_tar() does before checking a name. */
static const char *strip_dot_slash(const char *p)
{
	while (p[0] == '.' && p[1] == '/')
		p += 2;
	return p;
}

/* Relative, not empty, no ".." component. */
static bool oracle_safe(const char *name)
{
	if (!*name || *name == '/')
		return false;
	char *copy = strdup(name);
	if (!copy)
		abort();
	bool ok = true;
	for (char *save = NULL, *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save))
		if (!strcmp(c, ".."))
			ok = false;
	free(copy);
	return ok;
}

static void check_whiteout(const char *name)
{
	size_t off = (size_t)-1;
	int kind = ud_layer_whiteout_kind(name, &off);
	const char *slash = strrchr(name, '/');
	const char *base = slash ? slash + 1 : name;
	int want = !strcmp(base, ".wh..wh..opq")	  ? 2 :
		   (!strncmp(base, ".wh.", 4) && base[4]) ? 1 :
							    0;
	fuzz_require(kind == want);
	if (kind != 1)
		return;
	/* The hidden name: in the same directory as the whiteout, one component. extract_tar()
	 * builds "<dir>/<NAME>" from it; the unpacker refuses NAME "." or ".." as hostile. */
	fuzz_require(off == (size_t)(base - name) + 4 && off < strlen(name));
	fuzz_require(!strchr(name + off, '/'));
	size_t dl = off - 4;
	fuzz_require(dl == 0 || name[dl - 1] == '/');
	if (dl > 0) {
		char *dir = strndup(name, dl - 1);
		if (!dir)
			abort();
		/* "a//.wh.x" leaves "a/" as the directory: still safe. */
		fuzz_require(!*dir || ud_layer_member_name_safe(dir));
		free(dir);
	}
}

static void check_cache_path(const char *diff_id)
{
	char buf[256];
	if (ud_cache_layer_path(CACHE, diff_id, buf, sizeof(buf)) < 0)
		return;
	const char *hex = diff_id + 7;
	fuzz_require(!strncmp(diff_id, "sha256:", 7) && strlen(hex) == 64);
	for (const char *p = hex; *p; p++)
		fuzz_require(isdigit((unsigned char)*p) || (*p >= 'a' && *p <= 'f'));
	fuzz_require(!strncmp(buf, CACHE "/sha256/", sizeof(CACHE "/sha256/") - 1));
	fuzz_require(!strcmp(buf + sizeof(CACHE "/sha256/") - 1, hex));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = fuzz_cstr(data, size);
	size_t nl = strlen(s);
	const char *link = nl < size ? s + nl + 1 : NULL;

	const char *name = strip_dot_slash(s);
	if (*name && strcmp(name, ".") && strcmp(name, "./")) {
		bool safe = ud_layer_member_name_safe(name);
		fuzz_require(safe == oracle_safe(name));
		if (safe)
			check_whiteout(name);
	}
	if (link) {
		const char *ln = strip_dot_slash(link);
		fuzz_require(ud_layer_member_name_safe(ln) == oracle_safe(ln));
	}
	fuzz_require(!ud_layer_member_name_safe(NULL));
	check_cache_path(s);
	free(s);
	return 0;
}
