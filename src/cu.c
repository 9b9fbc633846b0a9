/* libcurl through dlopen(): see cu.h for why it is not linked. */
#include "cu.h"

#include <stdbool.h>

#include "util.h"

struct ud_cu ud_cu;

int ud_cu_load(ud_error *e)
{
	static const char *const names[] = {
#define UD_CU_NAME(f) #f,
		UD_CU_FUNCS(UD_CU_NAME)
#undef UD_CU_NAME
	};
	static bool ready;
	if (ready)
		return 0;
	if (ud_dl_load("libcurl.so.4", names, (void **)&ud_cu, UD_ARRAY_SIZE(names), e) < 0) {
		if (e)
			e->status = UD_EXIT_REFUSED;
		return -1;
	}
	/* Not thread-safe: the first request is made before any thread of ours exists. */
	if (ud_cu.curl_global_init(CURL_GLOBAL_NOTHING) != CURLE_OK)
		return ud_fail(e, UD_EXIT_REFUSED, 0, "cannot initialise libcurl");
	ready = true;
	return 0;
}
