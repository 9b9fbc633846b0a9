/* libcrypto (SHA-256), loaded on first use like libcurl (cu.h): only an export checks digests,
 * and linked, OpenSSL's relocations and constructors cost every start. */
#ifndef UD_CR_H
#define UD_CR_H

#include <openssl/evp.h>

#include "error.h"

#define UD_CR_FUNCS(X)        \
	X(EVP_Digest)         \
	X(EVP_DigestFinal_ex) \
	X(EVP_DigestInit_ex)  \
	X(EVP_DigestUpdate)   \
	X(EVP_MD_CTX_free)    \
	X(EVP_MD_CTX_new)     \
	X(EVP_sha256)

/* The functions, valid after ud_cr_load() succeeded: ud_cr.EVP_sha256() etc. */
struct ud_cr {
#define UD_CR_FIELD(f) __typeof__(&f) f;
	UD_CR_FUNCS(UD_CR_FIELD)
#undef UD_CR_FIELD
};
extern struct ud_cr ud_cr;

/* dlopen()s libcrypto.so.3 once; -1 with UD_EXIT_STORAGE when it or a function is missing. */
int ud_cr_load(ud_error *e);

#endif
