/* The daemon's answer for a reference, reused while it cannot have changed.
 *
 * Which image a reference names is the daemon's reference store, and Docker's overlay2 daemon
 * keeps that store in one file, DockerRootDir/image/overlay2/repositories.json, rewritten
 * (written to a new file, renamed over) before `docker tag`, `rmi`, `pull` or `load` returns.
 * What an image id stands for never changes. So an inspect answer stays true while that file is
 * byte for byte what it was before the answer was asked, under the same daemon (its socket's
 * inode and ctime: rootmemo.h), and its layer directories are still there. A start that finds
 * such an answer asks the daemon nothing, which saves it loading libcurl (cu.h), the daemon's own
 * work, and about half of its CPU time: what an Emperor of a hundred vassals on one image pays a
 * hundred times.
 *
 * The records live in UD_ANSWERS_DIR, on tmpfs (a reboot is a new daemon anyway), root-only, in
 * lastgood's format with the stamp in the key, and are read back through the same parser and
 * checks as an answer off the socket. The daemon must still be listening: a daemon that is down
 * takes the path that says so (lastgood.h). */
#ifndef UD_ANSWERS_H
#define UD_ANSWERS_H

#include <stdbool.h>
#include <stddef.h>

#include "docker_json.h"

#define UD_ANSWERS_DIR "/run/uwsgi-docker/answers"
#define UD_ANSWERS_STAMP_MAX 256

/* What the answers of the daemon at socket_path are true of right now, into stamp; false when
 * that cannot be known (not root, no remembered DockerRootDir, no overlay2 reference store):
 * then nothing is reused or kept. Taken before the daemon is asked. */
bool ud_answers_stamp(const char *socket_path, char *stamp, size_t len);

/* The answer kept for ref under stamp, parsed and checked as a fresh one, its layers present and
 * in the daemon's root; and the daemon listening. 0, or -1 (a miss: img is left empty). */
int ud_answers_use(const char *socket_path, const char *ref, const char *stamp,
		   struct ud_image *img);

/* Keeps the daemon's answer (body) for ref under stamp. Best effort. */
void ud_answers_keep(const char *socket_path, const char *ref, const char *stamp,
		     const char *body, size_t len);

/* ---- pure part, unit-tested ---- */

/* The stamp of a reference store's contents and of the file that held them. */
void ud_answers_stamp_of(const char *daemon_key, const char *data, size_t n,
			 unsigned long long ino, long long mtime_s, long mtime_ns, char *stamp,
			 size_t len);

#endif
