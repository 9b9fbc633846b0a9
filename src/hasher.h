/* sha256 of a byte stream on a thread of its own. Checking a layer against its diffID means
 * hashing every uncompressed byte; here that runs beside the unpacking, on the second core,
 * instead of before each block is unpacked.
 *
 * One block at a time, in the caller's memory, no copy: the thread hashes a block while the
 * caller unpacks it, and the caller waits for the hash before it lets the block go (libarchive
 * frees or reuses a block at the next read). */
#ifndef UD_HASHER_H
#define UD_HASHER_H

#include <stddef.h>

#include "error.h"

typedef struct ud_hasher ud_hasher;

int ud_hasher_start(ud_hasher **out, ud_error *e);

/* Hands len bytes at data to the thread, once the block before is hashed. data must stay as it
 * is until ud_hasher_wait(), the next update, or ud_hasher_final(). */
void ud_hasher_update(ud_hasher *h, const void *data, size_t len);

/* Waits until the block handed last is hashed: its memory is the caller's again. */
void ud_hasher_wait(ud_hasher *h);

/* Waits for the last block; the digest of everything handed, in hex (64 digits and a NUL). */
void ud_hasher_final(ud_hasher *h, char hex[65]);

/* Joins the thread and frees everything; safe on NULL and at any point. */
void ud_hasher_stop(ud_hasher *h);

#endif
