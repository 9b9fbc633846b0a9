/* The daemon's JSON answers as the transport hands them over (bytes and a length, no NUL):
 * image inspect (then the layer checks that decide what gets mounted), /info and /version.
 * The daemon is trusted, but a broken, truncated or hostile answer (a compromised socket, a
 * proxy, a daemon bug) must give an error, never a crash or a layer path the checks let through
 * unclean. */
#include <stdbool.h>

#include "docker_json.h"
#include "reference.h"
#include "fuzz.h"

static void reset(ud_error *e)
{
	memset(e, 0, sizeof(*e));
}

static void check_strv(char **v, size_t n)
{
	fuzz_require(n == 0 || v);
	for (size_t i = 0; i < n; i++)
		fuzz_require(v[i]);
	fuzz_require(!v || !v[n]);
}

/* What ud_validate_layers() promises about a stack it accepts: overlay options cannot be
 * changed by a layer path, and every layer lies in one storage root. */
static void check_validated(const struct ud_image *img)
{
	fuzz_require(img->n_layers >= 1 && img->n_layers <= UD_MAX_LAYERS);
	fuzz_require(img->storage_root && img->storage_root[0] == '/');
	size_t rl = strlen(img->storage_root);
	for (size_t i = 0; i < img->n_layers; i++) {
		const char *l = img->layers[i];
		size_t n = strlen(l);
		fuzz_require(l[0] == '/' && !strpbrk(l, ",:\\"));
		fuzz_require(!strstr(l, "/../") && !strstr(l, "/./") && !strstr(l, "//"));
		fuzz_require(n > rl + 6 && !strncmp(l, img->storage_root, rl) && l[rl] == '/');
		fuzz_require(!strcmp(l + n - 5, "/diff"));
		const char *id = l + rl + 1;
		size_t idl = n - 5 - rl - 1;
		fuzz_require(idl > 0 && !memchr(id, '/', idl));
		fuzz_require(!(idl == 1 && id[0] == '.') && !(idl == 2 && !strncmp(id, "..", 2)));
	}
}

static void fuzz_inspect(const char *json, size_t len)
{
	struct ud_image img;
	ud_error e;
	reset(&e);
	if (ud_parse_inspect(json, len, "fuzz", &img, &e) == 0) {
		fuzz_require(img.ref && img.id && img.driver && img.workdir);
		fuzz_require(img.n_layers <= UD_MAX_LAYERS + 1);
		check_strv(img.layers, img.n_layers);
		check_strv(img.env, img.n_env);
		check_strv(img.diff_ids, img.n_diff_ids);
		check_strv(img.repo_digests, img.n_repo_digests);
		/* A digest taken from RepoDigests is always sha256:<64 hex>. */
		char d[80];
		for (size_t i = 0; i < img.n_repo_digests && i < 4; i++) {
			char name[300];
			const char *at = strrchr(img.repo_digests[i], '@');
			size_t nl = at ? (size_t)(at - img.repo_digests[i]) : 0;
			if (!at || nl >= sizeof(name))
				continue;
			memcpy(name, img.repo_digests[i], nl);
			name[nl] = '\0';
			if (ud_repo_digest(&img, name, d, sizeof(d)))
				fuzz_require(strlen(d) == 71 && !strncmp(d, "sha256:", 7) &&
					     strspn(d + 7, "0123456789abcdef") == 64);
		}
		reset(&e);
		if (ud_validate_layers(&img, &e) == 0)
			check_validated(&img);
		else
			fuzz_check_error(&e);
	} else {
		fuzz_check_error(&e);
	}
	ud_image_free(&img);
}

static void fuzz_info(const char *json, size_t len)
{
	char *desc = NULL, *root = NULL;
	ud_error e;
	reset(&e);
	if (ud_parse_info(json, len, &desc, &root, &e) == 0) {
		fuzz_require(desc && root);
	} else {
		fuzz_require(!desc && !root);
		fuzz_check_error(&e);
	}
	free(desc);
	free(root);
}

static void fuzz_distribution(const char *json, size_t len)
{
	char d[80];
	ud_error e;
	reset(&e);
	memset(d, 'x', sizeof(d));
	if (ud_parse_distribution(json, len, d, sizeof(d), &e) == 0)
		fuzz_require(strlen(d) == 71 && !strncmp(d, "sha256:", 7) &&
			     strspn(d + 7, "0123456789abcdef") == 64);
	else
		fuzz_check_error(&e);
}

static void fuzz_version(const char *json, size_t len, const char *field)
{
	char api[16];
	ud_error e;
	reset(&e);
	memset(api, 'x', sizeof(api));
	if (ud_parse_version_field(json, len, field, api, sizeof(api), &e) == 0) {
		size_t n = strnlen(api, sizeof(api));
		fuzz_require(n > 0 && n < sizeof(api) && strspn(api, "0123456789.") == n);
		/* What negotiation then does with it. */
		int c = ud_api_version_cmp(api, UD_API_VERSION),
		    r = ud_api_version_cmp(UD_API_VERSION, api);
		fuzz_require((c > 0) == (r < 0) && (c == 0) == (r == 0));
	} else {
		fuzz_check_error(&e);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *json = (const char *)data;
	fuzz_inspect(json, size);
	fuzz_info(json, size);
	fuzz_distribution(json, size);
	fuzz_version(json, size, "ApiVersion");
	fuzz_version(json, size, "MinAPIVersion");
	return 0;
}
