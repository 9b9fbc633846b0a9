/* A thread that puts the page-cache pages of the file being unpacked in place ahead of the
 * writes into it.
 *
 * Why: the first touch of a page the kernel has not used for a while can cost far more than the
 * copy into it. Under a hypervisor that takes back free guest memory (free page reporting, as
 * in Firecracker), every new page of the page cache is a fault on the host: writing 250 MB of
 * new files took 0.9-1.1 s of system time on the machine `make bench` runs on, against 0.05 s
 * for rewriting pages already cached. An unpacker that writes on one thread pays that on one
 * core while the second mostly waits. Here the second core pays for part of it: the file is
 * extended to its final size and readahead(2) over the hole makes the kernel allocate zeroed,
 * clean pages, which the write then only copies into.
 *
 * Never a write: readahead only reads, so whether it runs before or after a write at the same
 * offset, the file holds what was written. It stays at most UD_PREFAULT_AHEAD bytes ahead of
 * the writer, so a member whose header claims more than its data brings does not fill memory. */
#ifndef UD_PREFAULT_H
#define UD_PREFAULT_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

/* How far ahead of the writer the thread may go: a quarter of a second of the daemon's stream,
 * and little page cache beside what the file will hold anyway. */
#define UD_PREFAULT_AHEAD ((uint64_t)32 * 1024 * 1024)

typedef struct ud_prefault ud_prefault;

int ud_prefault_start(ud_prefault **out, ud_error *e);

/* Hands the thread fd (the caller's: it stays open until ud_prefault_end()), a file already
 * extended to size bytes. */
void ud_prefault_file(ud_prefault *p, int fd, uint64_t size);

/* The writer is at pos: the thread may go up to UD_PREFAULT_AHEAD beyond. */
void ud_prefault_progress(ud_prefault *p, uint64_t pos);

/* Waits until the thread no longer uses the file handed last. */
void ud_prefault_end(ud_prefault *p);

/* Joins the thread and frees everything; safe on NULL and at any point. */
void ud_prefault_stop(ud_prefault *p);

#endif
