/* The export stream's pure part: what a member of a docker-archive or OCI export is, by name. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "export.h"

#define HEX "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static void classified(const char *name, enum ud_export_member want, const char *named_want)
{
	char named[65] = "junk";
	enum ud_export_member got = ud_export_classify(name, named);
	if (got != want || strcmp(named, named_want))
		fail_msg("'%s': kind %d named '%s', expected %d '%s'", name ? name : "(null)", got,
			 named, want, named_want);
}

static void test_classify(void **state)
{
	(void)state;
	/* docker-archive (Docker, Podman) */
	classified(HEX ".json", UD_EXPORT_HEX_JSON, HEX);
	classified("./" HEX ".json", UD_EXPORT_HEX_JSON, HEX);
	classified(HEX ".tar", UD_EXPORT_HEX_TAR, HEX);
	classified("abc/layer.tar", UD_EXPORT_LAYER_TAR, "");
	classified("layer.tar", UD_EXPORT_LAYER_TAR, "");
	classified("./" HEX "/layer.tar", UD_EXPORT_LAYER_TAR, "");
	classified("manifest.json", UD_EXPORT_OTHER, "");
	classified("repositories", UD_EXPORT_OTHER, "");
	classified("abc/json", UD_EXPORT_OTHER, "");
	/* OCI layout */
	classified("blobs/sha256/" HEX, UD_EXPORT_BLOB, HEX);
	classified("./blobs/sha256/" HEX, UD_EXPORT_BLOB, HEX);
	classified("index.json", UD_EXPORT_OTHER, "");
	classified("oci-layout", UD_EXPORT_OTHER, "");
	/* Near misses */
	classified("blobs/sha256/" HEX "0", UD_EXPORT_OTHER, "");
	classified("blobs/sha256/0123", UD_EXPORT_OTHER, "");
	classified("blobs/sha512/" HEX, UD_EXPORT_OTHER, "");
	classified("dir/" HEX ".json", UD_EXPORT_OTHER, "");
	classified("dir/" HEX ".tar", UD_EXPORT_OTHER, "");
	classified("0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef.json",
		   UD_EXPORT_OTHER, "");
	classified(HEX ".jsonx", UD_EXPORT_OTHER, "");
	classified("xlayer.tar", UD_EXPORT_OTHER, "");
	classified("abc/xlayer.tar", UD_EXPORT_OTHER, "");
	classified("layer.tar/x", UD_EXPORT_OTHER, "");
	classified("", UD_EXPORT_OTHER, "");
	classified(NULL, UD_EXPORT_OTHER, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_classify),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
