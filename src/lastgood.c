/* The last good resolution of each reference (lastgood.h has the why).
 *
 * A record is one file: a first line naming its key ("SOCKET-PATH REF"), then the daemon's answer.
 * The file name is a hash of the key; the first line makes a collision a miss, not a wrong
 * image. */
#include "lastgood.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

void ud_lastgood_name(const char *socket_path, const char *ref, char *out, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a: a name, not a secret */
	for (const char *p = socket_path; *p; p++)
		h = (h ^ (unsigned char)*p) * 0x100000001b3ULL;
	h = (h ^ 0xff) * 0x100000001b3ULL;
	for (const char *p = ref; *p; p++)
		h = (h ^ (unsigned char)*p) * 0x100000001b3ULL;
	snprintf(out, len, "%016llx.json", (unsigned long long)h);
}

/* A stamp (answers.h) says what the answer was true of; a record without is only the last one. */
static char *key_line(const char *socket_path, const char *ref, const char *stamp)
{
	char *k = NULL;
	if ((stamp && strchr(stamp, '\n')) ||
	    asprintf(&k, "%s %s%s%s\n", socket_path, ref, stamp ? " " : "", stamp ? stamp : "") < 0)
		return NULL;
	return k;
}

/* The whole file, at most UD_LASTGOOD_MAX bytes, NUL-terminated; NULL if absent or larger. */
static char *read_all(int fd, size_t *len)
{
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > UD_LASTGOOD_MAX)
		return NULL;
	char *buf = malloc((size_t)st.st_size + 1);
	size_t got = 0;
	while (buf && got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	if (!buf || got != (size_t)st.st_size) {
		free(buf);
		return NULL;
	}
	buf[got] = '\0';
	*len = got;
	return buf;
}

static int open_dir(const char *dir, int create)
{
	if (create) {
		/* Root-only: the record decides which directories become an app's root. */
		char parent[4096];
		snprintf(parent, sizeof(parent), "%s", dir);
		char *slash = strrchr(parent, '/');
		if (slash && slash != parent) {
			*slash = '\0';
			mkdir(parent, 0755);
		}
		mkdir(dir, 0700);
	}
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	struct stat st;
	if (fd >= 0 && (fstat(fd, &st) < 0 || st.st_uid != 0 || (st.st_mode & 0077))) {
		close(fd);
		return -1;
	}
	return fd;
}

void ud_lastgood_save(const char *dir, const char *socket_path, const char *ref,
		      const char *stamp, const char *body, size_t len)
{
	char name[32], tmp[48];
	ud_autofree char *key = key_line(socket_path, ref, stamp);
	ud_autoclose int dfd = open_dir(dir, 1);
	if (!key || dfd < 0)
		return;
	ud_lastgood_name(socket_path, ref, name, sizeof(name));
	size_t klen = strlen(key), old_len = 0;
	ud_autoclose int old = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	ud_autofree char *prev = old >= 0 ? read_all(old, &old_len) : NULL;
	if (prev && old_len == klen + len && !memcmp(prev, key, klen) &&
	    !memcmp(prev + klen, body, len))
		return;
	snprintf(tmp, sizeof(tmp), ".%s.%d", name, (int)getpid());
	ud_autoclose int fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
				     0600);
	if (fd < 0)
		return;
	int ok = write(fd, key, klen) == (ssize_t)klen && write(fd, body, len) == (ssize_t)len;
	if (!ok || renameat(dfd, tmp, dfd, name) < 0)
		unlinkat(dfd, tmp, 0);
}

int ud_lastgood_load(const char *dir, const char *socket_path, const char *ref,
		     const char *stamp, char **body, size_t *len, time_t *when, ud_error *e)
{
	char name[32];
	ud_autofree char *key = key_line(socket_path, ref, stamp);
	ud_autoclose int dfd = open_dir(dir, 0);
	ud_lastgood_name(socket_path, ref, name, sizeof(name));
	ud_autoclose int fd = dfd >= 0 ? openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW) : -1;
	size_t n = 0;
	struct stat st;
	ud_autofree char *all = fd >= 0 ? read_all(fd, &n) : NULL;
	size_t klen = key ? strlen(key) : 0;
	if (!all || !key || n < klen || memcmp(all, key, klen) != 0 || fstat(fd, &st) < 0)
		return ud_fail(e, UD_EXIT_DAEMON, 0, "no earlier resolution of '%s' is kept", ref);
	*len = n - klen;
	*body = malloc(*len + 1);
	if (!*body)
		return ud_oom(e);
	memcpy(*body, all + klen, *len + 1);
	*when = st.st_mtime;
	return 0;
}

/* Every layer directory of the kept answer is still there (the daemon may have deleted an image
 * while it was down, or before). */
int ud_lastgood_layers_present(const struct ud_image *img, ud_error *e)
{
	for (size_t i = 0; i < img->n_layers; i++) {
		struct stat st;
		if (lstat(img->layers[i], &st) < 0 || !S_ISDIR(st.st_mode))
			return ud_fail(e, UD_EXIT_STORAGE, errno,
				       "layer directory %s of the kept resolution is gone",
				       img->layers[i]);
	}
	return 0;
}

int ud_lastgood_resolve(const char *dir, const char *socket_path, const char *ref,
			const char *stamp, struct ud_image *img, time_t *when, ud_error *e)
{
	ud_autofree char *body = NULL;
	size_t len = 0;
	if (ud_lastgood_load(dir, socket_path, ref, stamp, &body, &len, when, e) < 0)
		return -1;
	if (ud_parse_inspect(body, len, ref, img, e) < 0 || ud_validate_layers(img, e) < 0)
		return ud_context(e, "the kept resolution of '%s'", ref);
	return 0;
}
