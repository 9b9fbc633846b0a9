/* Which mount namespaces are alive, for --gc: a namespace lives while a process is in it, a
 * process holds a descriptor on it, or an nsfs bind mount (a --pin) in any mount table pins it.
 * One pass over /proc gathers them all; the mount tables are read with libmount's parser. */
#ifndef UD_NSLIVE_H
#define UD_NSLIVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

struct ud_ns_key {
	unsigned long ino; /* the nsfs inode: reused once the namespace is gone */
	uint64_t id;       /* NS_GET_MNTNS_ID (Linux 6.8+), never reused; 0 where unknown */
};

struct ud_nslive {
	struct ud_ns_key *v;
	size_t n;
};

/* Fills *live (empty first). Processes that vanish meanwhile are skipped; -1 only when /proc
 * cannot be read at all (then nothing may be taken for dead). */
int ud_nslive_scan(struct ud_nslive *live, ud_error *e);
void ud_nslive_free(struct ud_nslive *live);

/* Is the namespace with this inode (and id, when both sides know one) alive? */
bool ud_nslive_has(const struct ud_nslive *live, unsigned long ino, uint64_t id);

/* The mount-namespace id of the nsfs file fd, 0 when the kernel has none. */
uint64_t ud_nslive_id(int fd);

#endif
