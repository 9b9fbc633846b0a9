/* sha256 of a byte stream on a thread of its own. Checking a layer against its diffID means
 * hashing every uncompressed byte; here that runs beside the unpacking, on the second core,
 * instead of before each block is unpacked.
 *
 * The caller fills buffers the hasher lends it, in order: a buffer handed back with
 * ud_hasher_submit() is only read while it is hashed, and is lent again no sooner than two
 * ud_hasher_buffer() calls later, so the caller may go on reading it until the next one, as a
 * libarchive read callback's block must stay valid until the next call. */
#ifndef UD_HASHER_H
#define UD_HASHER_H

#include <stddef.h>

#include "error.h"

typedef struct ud_hasher ud_hasher;

int ud_hasher_start(ud_hasher **out, ud_error *e);

/* The next buffer to fill (waits until it has been hashed); its size in *size. */
void *ud_hasher_buffer(ud_hasher *h, size_t *size);

/* The first len bytes of the buffer from the last ud_hasher_buffer() go into the hash. */
void ud_hasher_submit(ud_hasher *h, size_t len);

/* Waits for every submitted byte; the digest in hex (64 digits and a NUL). */
void ud_hasher_final(ud_hasher *h, char hex[65]);

/* Joins the thread and frees everything; safe on NULL and at any point. */
void ud_hasher_stop(ud_hasher *h);

#endif
