/* --gc, and the same collection now and then on its own: what only dead namespaces held goes
 * (layers of the export's cache and of the daemon's snapshot store that no image of the daemon
 * refers to and no live namespace uses, records of dead namespaces, stale half layers). */
#ifndef UD_GC_H
#define UD_GC_H

#include <stdio.h>

#include "docker.h"
#include "error.h"

#define UD_STATE_DIR "/var/lib/uwsgi-docker"
/* Its mtime: when the last collection began. Locked while one runs. */
#define UD_GC_STAMP UD_STATE_DIR "/gc.stamp"
/* What the last background collection printed. */
#define UD_GC_REPORT UD_STATE_DIR "/gc.last"
#define UD_GC_DEFAULT_INTERVAL 3600L

/* Collects the layer cache cache_dir and the snapshot store of the daemon d (negotiated), each
 * removal on out, then one line with the total. */
int ud_gc_run(struct ud_docker *d, const char *cache_dir, FILE *out, ud_error *e);

/* When the last collection began at least interval seconds ago (interval < 0: never), starts
 * one in a process of its own that waits for this one to end (exit, or exec of COMMAND) before
 * it begins: no start ever waits for a collection. Best effort, silent; call it before any
 * thread or descriptor of the run exists. */
void ud_gc_schedule(const char *docker_host, long timeout_ms, const char *cache_dir,
		    long interval);

#endif
