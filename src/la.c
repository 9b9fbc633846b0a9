/* libarchive through dlopen(): see la.h for why it is not linked. */
#include "la.h"

#include <dlfcn.h>

struct ud_la ud_la;

int ud_la_load(ud_error *e)
{
	static void *handle;
	if (handle)
		return 0;
	void *h = dlopen("libarchive.so.13", RTLD_NOW | RTLD_LOCAL);
	if (!h)
		return ud_fail(e, UD_EXIT_STORAGE, 0, "cannot load libarchive: %s", dlerror());
#define UD_LA_SYM(f)                                                              \
	if (!(*(void **)&ud_la.f = dlsym(h, #f))) {                               \
		dlclose(h);                                                       \
		return ud_fail(e, UD_EXIT_STORAGE, 0, "libarchive lacks %s", #f); \
	}
	UD_LA_FUNCS(UD_LA_SYM)
#undef UD_LA_SYM
	handle = h;
	return 0;
}
