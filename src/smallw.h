/* Writers that create a layer's small regular files on other threads.
 *
 * Why: a tree of small files (a Python or Node install) unpacks at a fraction of the daemon's
 * stream rate. Each file costs a create, a write into new page-cache pages, an fchown, an
 * fchmod and a futimens, all system calls on the one thread that also reads the tar: measured on
 * the bench's image, its layer of 12,000 files took 350-670 ms while the daemon sent its bytes in
 * under 200 ms, and the other core was half idle. Here the reading thread only parses and copies
 * each file's bytes; two writers make the files.
 *
 * The same files as libarchive's disk writer would make: the tar's numeric owner, its mode
 * (set-id bits only if the owner could be set), its times (the start time where the tar has none).
 * Safe on hostile names: a writer creates with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS) and
 * O_EXCL, so it never follows a symlink and never opens a file it did not create; a file of the
 * same name already there (a tar that names a path twice) is unlinked first, as libarchive does.
 *
 * Ordering is the caller's: a file queued here may not exist yet. The caller asks
 * ud_smallw_pending() before anything else touches a path, and waits (ud_smallw_wait()) before a
 * member libarchive writes could meet a queued file, before hard links, whiteouts and the
 * directories' final times. */
#ifndef UD_SMALLW_H
#define UD_SMALLW_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>
#include <time.h>

#include "error.h"

typedef struct ud_smallw ud_smallw;

struct ud_smallw_file {
	const char *name; /* relative to the root, checked by the caller (no "..", not absolute) */
	void *data;	  /* malloc()ed, taken by the writers */
	size_t len;
	uid_t uid;
	gid_t gid;
	mode_t mode;		  /* permission bits, set-id and sticky bits included */
	struct timespec times[2]; /* atime, mtime as futimens(2) takes them */
};

/* The writers of one layer, creating beneath rootfd (kept open by the caller until the stop). */
int ud_smallw_start(ud_smallw **out, int rootfd, ud_error *e);

/* Queues one file (its data is freed here, whatever happens); waits while the queue is full.
 * -1 when an earlier file failed: *e says which, and nothing more is queued. */
int ud_smallw_add(ud_smallw *w, const struct ud_smallw_file *f, ud_error *e);

/* Whether path, or a directory above it, is a file queued since the last wait. */
bool ud_smallw_pending(const ud_smallw *w, const char *path);

/* Every queued file made; -1 with the first failure. */
int ud_smallw_wait(ud_smallw *w, ud_error *e);

/* Waits, joins the writers and frees everything; safe on NULL. */
void ud_smallw_stop(ud_smallw *w);

#endif
