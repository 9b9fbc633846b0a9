/* The limits on what one layer may put on the disk, and their options (--cache-max-*). */
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "layer.h"

struct ud_layer_limits ud_layer_limits = {
	.max_files = UD_DEFAULT_MAX_FILES,
	.max_bytes = UD_DEFAULT_MAX_BYTES,
	.max_apparent = UD_DEFAULT_MAX_APPARENT,
};

int ud_layer_parse_size(const char *s, uint64_t *out)
{
	if (!isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -1;
	static const char units[] = "KMGTP";
	const char *u = *end ? strchr(units, toupper((unsigned char)*end)) : NULL;
	if (*end && (!u || (end[1] && strcmp(end + 1, "iB") && strcmp(end + 1, "B"))))
		return -1;
	for (int i = 0; u && i <= u - units; i++) {
		if (v > UINT64_MAX / 1024)
			return -1;
		v *= 1024;
	}
	if (v == 0)
		return -1;
	*out = v;
	return 0;
}

int ud_layer_limit_option(const char *option, const char *arg, ud_error *e)
{
	uint64_t v;
	bool files = !strcmp(option, "cache-max-files");
	if (ud_layer_parse_size(arg, &v) < 0 ||
	    (files && !isdigit((unsigned char)arg[strlen(arg) - 1])))
		return ud_fail(e, UD_EXIT_USAGE, 0, "--%s '%s': expected %s, more than 0", option,
			       arg, files ? "a number" : "a size (bytes, or with K, M, G, T, P)");
	if (files)
		ud_layer_limits.max_files = v;
	else if (!strcmp(option, "cache-max-bytes"))
		ud_layer_limits.max_bytes = v;
	else
		ud_layer_limits.max_apparent = v;
	return 0;
}
