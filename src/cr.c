/* libcrypto through dlopen(): see cr.h for why it is not linked. */
#include "cr.h"

#include "util.h"

struct ud_cr ud_cr;

int ud_cr_load(ud_error *e)
{
	static const char *const names[] = {
#define UD_CR_NAME(f) #f,
		UD_CR_FUNCS(UD_CR_NAME)
#undef UD_CR_NAME
	};
	return ud_dl_load("libcrypto.so.3", names, (void **)&ud_cr, UD_ARRAY_SIZE(names), e);
}
