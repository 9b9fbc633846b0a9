/* libcurl, loaded on first use like libmount (lm.h). Linked, it costs every start of the helper
 * about 4 ms of CPU before main(): libcurl brings 30 shared libraries (OpenSSL, GnuTLS through
 * librtmp, Kerberos, LDAP, ...) whose relocations and constructors run whether or not a request
 * is made, and a start whose answer the daemon already gave (answers.h) makes none. Measured
 * with perf over an Emperor's 100 vassals: two thirds of the helper's CPU was the dynamic
 * loader. */
#ifndef UD_CU_H
#define UD_CU_H

/* typecheck-gcc.h makes curl_easy_setopt() a macro, which would expand inside ud_cu.X(). */
#define CURL_DISABLE_TYPECHECK 1
#include <curl/curl.h>

#include "error.h"

#define UD_CU_FUNCS(X)                                                                           \
	X(curl_easy_cleanup)                                                                     \
	X(curl_easy_getinfo)                                                                     \
	X(curl_easy_init)                                                                        \
	X(curl_easy_perform)                                                                     \
	X(curl_easy_reset)                                                                       \
	X(curl_easy_setopt)                                                                      \
	X(curl_easy_strerror)                                                                    \
	X(curl_global_init)                                                                      \
	X(curl_multi_add_handle)                                                                 \
	X(curl_multi_cleanup)                                                                    \
	X(curl_multi_info_read)                                                                  \
	X(curl_multi_init)                                                                       \
	X(curl_multi_perform)                                                                    \
	X(curl_multi_poll)                                                                       \
	X(curl_multi_remove_handle)                                                              \
	X(curl_multi_strerror)                                                                   \
	X(curl_multi_wakeup)                                                                     \
	X(curl_slist_append)                                                                     \
	X(curl_slist_free_all)

/* The functions, valid after ud_cu_load() succeeded: ud_cu.curl_easy_init() etc. */
struct ud_cu {
#define UD_CU_FIELD(f) __typeof__(&f) f;
	UD_CU_FUNCS(UD_CU_FIELD)
#undef UD_CU_FIELD
};
extern struct ud_cu ud_cu;

/* dlopen()s libcurl.so.4 and runs curl_global_init() once; -1 with UD_EXIT_REFUSED when the
 * library or a function is missing. */
int ud_cu_load(ud_error *e);

#endif
