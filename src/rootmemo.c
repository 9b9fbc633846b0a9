/* The DockerRootDir memory (rootmemo.h has its file format). */
#include "rootmemo.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

bool ud_rootmemo_under(const char *path, const char *root)
{
	size_t rl = strlen(root);
	while (rl > 1 && root[rl - 1] == '/')
		rl--;
	return rl > 0 && root[0] == '/' && !strncmp(path, root, rl) && path[rl] == '/';
}

void ud_rootmemo_key(const char *socket_path, char *key, size_t len)
{
	struct stat st;
	if (len)
		key[0] = '\0';
	if (stat(socket_path, &st) == 0 && !strpbrk(socket_path, " \n"))
		snprintf(key, len, "%s %lu %lld.%09ld", socket_path, (unsigned long)st.st_ino,
			 (long long)st.st_ctim.tv_sec, st.st_ctim.tv_nsec);
}

bool ud_rootmemo_root(const char *file, const char *key, char *root, size_t len)
{
	if (!key[0] || !len)
		return false;
	FILE *in = fopen(file, "re");
	char line[2048];
	size_t kl = strlen(key);
	bool hit = false;
	while (in && !hit && fgets(line, sizeof(line), in)) {
		line[strcspn(line, "\n")] = '\0';
		hit = !strncmp(line, key, kl) && line[kl] == ' ' && line[kl + 1] == '/' &&
		      strlen(line + kl + 1) < len;
		if (hit)
			snprintf(root, len, "%s", line + kl + 1);
	}
	if (in)
		fclose(in);
	return hit;
}

bool ud_rootmemo_vouches(const char *file, const char *key, const char *storage_root)
{
	char root[2048];
	return ud_rootmemo_root(file, key, root, sizeof(root)) &&
	       ud_rootmemo_under(storage_root, root);
}

void ud_rootmemo_remember(const char *dir, const char *file, const char *key, const char *root)
{
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return;
	char tmp[4096];
	if (snprintf(tmp, sizeof(tmp), "%s.%d", file, (int)getpid()) >= (int)sizeof(tmp))
		return;
	FILE *out = fopen(tmp, "wxe");
	if (!out)
		return;
	fprintf(out, "%s %s\n", key, root);
	FILE *in = fopen(file, "re");
	char line[2048];
	size_t kl = strlen(key);
	for (int n = 1; in && n < UD_ROOTMEMO_MAX && fgets(line, sizeof(line), in);)
		if (strncmp(line, key, kl) || line[kl] != ' ') {
			fputs(line, out);
			n++;
		}
	if (in)
		fclose(in);
	/* Best effort, but never a stray docker-roots.<pid> left behind. */
	if (fclose(out) != 0 || rename(tmp, file) != 0)
		unlink(tmp);
}

int ud_rootmemo_check(struct ud_docker *d, const struct ud_image *img, ud_error *e)
{
	char key[400];
	ud_rootmemo_key(d->socket_path, key, sizeof(key));
	if (ud_rootmemo_vouches(UD_ROOTMEMO_FILE, key, img->storage_root))
		return 0;
	char *desc = NULL, *root = NULL;
	if (ud_docker_info(d, &desc, &root, e) < 0)
		return -1;
	free(desc);
	bool ok = ud_rootmemo_under(img->storage_root, root);
	if (ok && key[0] && !strchr(root, '\n'))
		ud_rootmemo_remember(UD_ROOTMEMO_DIR, UD_ROOTMEMO_FILE, key, root);
	else if (!ok)
		ud_fail(e, UD_EXIT_STORAGE, 0,
			"image '%s': layers in %s, outside the daemon's root directory %s", img->ref,
			img->storage_root, root);
	free(root);
	return ok ? 0 : -1;
}
