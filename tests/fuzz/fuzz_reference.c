/* Image references: ud_reference_valid() is the only thing between a reference and the path of a
 * request to the daemon ("/v1.41/images/<ref>/json", not escaped), so what it accepts must be
 * safe in a URL path and unable to walk out of /images/. Also ud_api_version_cmp() on two
 * versions separated by the first newline: it orders what a daemon announces. */
#include <ctype.h>
#include <stdbool.h>

#include "docker_json.h"
#include "reference.h"
#include "fuzz.h"

static bool segment_is_dot(const char *s, size_t n)
{
	return (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.');
}

static void check_accepted(const char *ref)
{
	size_t len = strlen(ref);
	fuzz_require(len > 0 && len <= 255 + 1 + 128 + 71);
	/* Nothing that a URL path would need escaped, or that curl or the daemon would read as the
	 * start of a query, a fragment or an encoded byte. */
	for (const char *p = ref; *p; p++)
		fuzz_require(isalnum((unsigned char)*p) || strchr("._-/:@", *p));
	fuzz_require(ref[0] != '/' && ref[len - 1] != '/' && !strstr(ref, "//"));
	/* No "." or ".." segment: curl would fold it and the request would leave /images/. */
	for (const char *p = ref;;) {
		const char *end = strchr(p, '/');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		fuzz_require(!segment_is_dot(p, n));
		if (!end)
			break;
		p = end + 1;
	}
	fuzz_require(strchr(ref, '@') == strrchr(ref, '@'));
}

static int sign(int x)
{
	return (x > 0) - (x < 0);
}

static void check_versions(char *s)
{
	char *b = strchr(s, '\n');
	if (!b)
		return;
	*b++ = '\0';
	int ab = ud_api_version_cmp(s, b), ba = ud_api_version_cmp(b, s);
	fuzz_require(sign(ab) == -sign(ba));
	fuzz_require(ud_api_version_cmp(s, s) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = fuzz_cstr(data, size);
	if (ud_reference_valid(s))
		check_accepted(s);
	check_versions(s);
	free(s);
	return 0;
}
