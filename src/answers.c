/* Reusing the daemon's answers while they hold (answers.h has the why). */
#include "answers.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "lastgood.h"
#include "rootmemo.h"
#include "util.h"

/* Larger stores are read for a hash at every start: past this, asking the daemon is cheaper. */
#define STORE_MAX (4 << 20)

void ud_answers_stamp_of(const char *daemon_key, const char *data, size_t n,
			 unsigned long long ino, long long mtime_s, long mtime_ns, char *stamp,
			 size_t len)
{
	/* Not a secret, and no one untrusted writes the store: FNV-1a, with the file's identity
	 * beside it. The daemon key's path part is already in the record's key. */
	uint64_t h = 0xcbf29ce484222325ULL;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)data[i]) * 0x100000001b3ULL;
	const char *sp = strchr(daemon_key, ' ');
	snprintf(stamp, len, "%s store %llu %zu %lld.%09ld %016llx", sp ? sp + 1 : daemon_key, ino,
		 n, mtime_s, mtime_ns, (unsigned long long)h);
}

/* The whole store, or NULL: absent, not a regular file of root's, or too large. */
static char *read_store(const char *path, struct stat *st)
{
	ud_autoclose int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 || fstat(fd, st) < 0 || !S_ISREG(st->st_mode) || st->st_uid != 0 ||
	    st->st_size > STORE_MAX)
		return NULL;
	ud_autofree char *buf = malloc((size_t)st->st_size + 1);
	size_t got = 0;
	while (buf && got < (size_t)st->st_size) {
		ssize_t r = read(fd, buf + got, (size_t)st->st_size - got);
		if (r <= 0)
			return NULL;
		got += (size_t)r;
	}
	return ud_steal_ptr(&buf);
}

bool ud_answers_stamp(const char *socket_path, char *stamp, size_t len)
{
	char key[400], root[2048], path[2100];
	stamp[0] = '\0';
	if (geteuid() != 0)
		return false;
	ud_rootmemo_key(socket_path, key, sizeof(key));
	if (!ud_rootmemo_root(UD_ROOTMEMO_FILE, key, root, sizeof(root)) ||
	    snprintf(path, sizeof(path), "%s/image/overlay2/repositories.json", root) >=
		    (int)sizeof(path))
		return false;
	struct stat st;
	ud_autofree char *data = read_store(path, &st);
	if (!data)
		return false;
	ud_answers_stamp_of(key, data, (size_t)st.st_size, (unsigned long long)st.st_ino,
			    (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec, stamp, len);
	return true;
}

/* Someone listens on the socket (connect() alone: no request). A daemon that is down must take
 * the path that tells the operator so, even when its answers would still hold. */
static bool listening(const char *socket_path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(socket_path) >= sizeof(sa.sun_path))
		return false;
	memcpy(sa.sun_path, socket_path, strlen(socket_path) + 1);
	ud_autoclose int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	/* EAGAIN: a full backlog, a daemon that is there but busy. */
	return fd >= 0 && (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 || errno == EAGAIN);
}

int ud_answers_use(const char *socket_path, const char *ref, const char *stamp,
		   struct ud_image *img)
{
	char key[400];
	time_t when;
	ud_error e = {0};
	ud_rootmemo_key(socket_path, key, sizeof(key));
	if (ud_lastgood_resolve(UD_ANSWERS_DIR, socket_path, ref, stamp, img, &when, &e) < 0)
		return -1;
	/* The layers were validated as paths; rmi may have taken them since. */
	if (!img->driver || strcmp(img->driver, "overlay2") != 0 ||
	    !ud_rootmemo_vouches(UD_ROOTMEMO_FILE, key, img->storage_root) ||
	    ud_lastgood_layers_present(img, &e) < 0 || !listening(socket_path)) {
		ud_image_free(img);
		memset(img, 0, sizeof(*img));
		return -1;
	}
	return 0;
}

void ud_answers_keep(const char *socket_path, const char *ref, const char *stamp,
		     const char *body, size_t len)
{
	ud_lastgood_save(UD_ANSWERS_DIR, socket_path, ref, stamp, body, len);
}
