/* libmount through dlopen(): see lm.h for why it is not linked. */
#include "lm.h"

#include "util.h"

struct ud_lm ud_lm;

int ud_lm_load(ud_error *e)
{
	static const char *const names[] = {
#define UD_LM_NAME(f) #f,
		UD_LM_FUNCS(UD_LM_NAME)
#undef UD_LM_NAME
	};
	return ud_dl_load("libmount.so.1", names, (void **)&ud_lm, UD_ARRAY_SIZE(names), e);
}
