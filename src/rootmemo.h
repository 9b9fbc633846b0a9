/* The daemon's DockerRootDir, remembered between runs: the layers must lie in it, and /info costs
 * 5 ms or more (half a start). One small file in /run, a line per daemon socket:
 *
 *   SOCKET-PATH INODE CTIME-SEC.NSEC ROOT
 *
 * (a restarted daemon makes a new socket, so a new key), the newest first, at most
 * UD_ROOTMEMO_MAX lines. A stale line can only cost a fresh /info, asked again before refusing. */
#ifndef UD_ROOTMEMO_H
#define UD_ROOTMEMO_H

#include <stdbool.h>
#include <stddef.h>

#include "docker.h"
#include "error.h"

#define UD_ROOTMEMO_DIR "/run/uwsgi-docker"
#define UD_ROOTMEMO_FILE UD_ROOTMEMO_DIR "/docker-roots"
#define UD_ROOTMEMO_MAX 16

/* Refuses an image whose layers (img->storage_root) are outside the daemon's DockerRootDir,
 * from the memory when it vouches for them, else from /info (then remembered). */
int ud_rootmemo_check(struct ud_docker *d, const struct ud_image *img, ud_error *e);

/* ---- pure parts and the file, unit-tested ---- */

/* path lies strictly below the absolute directory root. */
bool ud_rootmemo_under(const char *path, const char *root);

/* The key of the daemon's socket into key ("" when it cannot be had or stand in a line). */
void ud_rootmemo_key(const char *socket_path, char *key, size_t len);

/* The root a line of file names under key, into root: false when none (or it does not fit). */
bool ud_rootmemo_root(const char *file, const char *key, char *root, size_t len);

/* A line of file (in dir) under key names a root that storage_root lies below. */
bool ud_rootmemo_vouches(const char *file, const char *key, const char *storage_root);

/* Puts "key root" first in file (in dir, created 0700), keeping at most UD_ROOTMEMO_MAX lines
 * and one per key. Best effort: a user running --print cannot write there. */
void ud_rootmemo_remember(const char *dir, const char *file, const char *key, const char *root);

#endif
