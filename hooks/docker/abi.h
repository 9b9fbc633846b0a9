/* The uWSGI ABI check: the plugin runs only in the uWSGI whose uwsgi.h it was built against. */
#ifndef UD_ABI_H
#define UD_ABI_H

#include <stddef.h>

/* 0 when the running uwsgi binary's ABI (md5 of `uwsgi --dot-h`) is UD_UWSGI_ABI, the one
 * recorded at build time; otherwise -1 and one line in msg naming both and how to rebuild. */
int ud_abi_verify(char *msg, size_t len);

#endif
