/* A reader thread ahead of a consumer: it pulls a source (the export's HTTP stream) into a
 * bounded ring while the caller's thread unpacks what is already there, so that the daemon's
 * sending and our unpacking and hashing overlap on two cores instead of taking turns.
 *
 * One producer (the thread), one consumer (the caller). The source's failure travels as its
 * ud_error to the consumer, after the bytes that came before it. The ring bounds the memory
 * whatever the daemon sends. */
#ifndef UD_PREFETCH_H
#define UD_PREFETCH_H

#include <stddef.h>

#include "error.h"

/* What the thread reads from. read: as ud_stream_read() (points *buf at the next chunk, valid
 * until the next call; its size, 0 at the end, -1 with e filled). interrupt: called from the
 * consumer's thread to make a read in progress, or the next one, fail at once (may be NULL if
 * every read returns soon). */
struct ud_prefetch_source {
	long (*read)(void *ctx, const void **buf, ud_error *e);
	void (*interrupt)(void *ctx);
	void *ctx;
};

typedef struct ud_prefetch ud_prefetch;

/* Starts the thread over src with a ring of ring_bytes (> 0). src must stay valid until
 * ud_prefetch_stop(), and nothing else may read it meanwhile. */
int ud_prefetch_start(const struct ud_prefetch_source *src, size_t ring_bytes, ud_prefetch **out,
		      ud_error *e);

/* The consumer's read, in the same form as the source's: points *buf at the next bytes in
 * order (valid until the next call), returns their number, 0 at the end, -1 with the source's
 * own error once every byte before it was read. Blocks while the ring is empty. */
long ud_prefetch_read(ud_prefetch *p, const void **buf, ud_error *e);

/* Stops the thread (interrupting the source if it is still reading), joins it and frees
 * everything. Safe on NULL and at any point: after the end, after an error, mid-stream. */
void ud_prefetch_stop(ud_prefetch *p);

#endif
