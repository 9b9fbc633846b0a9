/* The plugin runs only in the uWSGI it was built for.
 *
 * uWSGI loads a plugin with dlsym() and checks nothing, yet the plugin reads and writes
 * `struct uwsgi_server` at the offsets its own uwsgi.h gave the compiler. That struct changes
 * between releases (2.0.25 removed a mutex from its middle: `mywid` is at 6520 in 2.0.21 and
 * 6480 in 2.0.30), so a plugin built for another uWSGI reads the wrong fields: measured, one
 * built for 2.0.21 in 2.0.30 took `chdir` from elsewhere and looped on errors.
 *
 * Every uWSGI binary carries the uwsgi.h it was compiled with (`uwsgi --dot-h` prints it, from
 * uwsgi_get_dot_h()), and Debian names a uWSGI's ABI by the md5 of that output: uwsgi-core
 * Provides uwsgi-abi-<md5>, and dh_uwsgi makes plugins depend on it. The build records that md5
 * of the header the plugin was compiled against (UD_UWSGI_ABI, from the Makefile or
 * uwsgiplugin.py); on_load, the first callback uWSGI makes into a plugin and before any field of
 * `uwsgi` is touched, compares it with the running binary's. Only functions are called here,
 * found by name: never a field at a guessed offset. */
#include <dlfcn.h>
#include <fcntl.h>
#include <link.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "abi.h"
#include "util.h"

#ifndef UD_UWSGI_ABI
#error "UD_UWSGI_ABI (the md5 of `uwsgi --dot-h`) must be defined by the build"
#endif

/* MD5 (RFC 1321), enough of it to hash one buffer: the plugin links nothing but libc. */
struct md5 {
	uint32_t h[4];
	unsigned char buf[64];
	uint64_t len;
};

static const uint32_t md5_k[64] = {
	0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613,
	0xfd469501, 0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193,
	0xa679438e, 0x49b40821, 0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d,
	0x02441453, 0xd8a1e681, 0xe7d3fbc8, 0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed,
	0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a, 0xfffa3942, 0x8771f681, 0x6d9d6122,
	0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70, 0x289b7ec6, 0xeaa127fa,
	0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665, 0xf4292244,
	0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
	0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb,
	0xeb86d391};
static const unsigned char md5_r[64] = {7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22,
					5, 9,  14, 20, 5, 9,  14, 20, 5, 9,  14, 20, 5, 9,  14, 20,
					4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
					6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21};

static void md5_block(struct md5 *m, const unsigned char *p)
{
	uint32_t w[16], a = m->h[0], b = m->h[1], c = m->h[2], d = m->h[3];
	for (int i = 0; i < 16; i++)
		w[i] = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 |
		       (uint32_t)p[4 * i + 2] << 16 | (uint32_t)p[4 * i + 3] << 24;
	for (int i = 0; i < 64; i++) {
		uint32_t f;
		int g;
		if (i < 16)
			f = (b & c) | (~b & d), g = i;
		else if (i < 32)
			f = (d & b) | (~d & c), g = (5 * i + 1) % 16;
		else if (i < 48)
			f = b ^ c ^ d, g = (3 * i + 5) % 16;
		else
			f = c ^ (b | ~d), g = (7 * i) % 16;
		uint32_t t = a + f + md5_k[i] + w[g];
		a = d;
		d = c;
		c = b;
		b += (t << md5_r[i]) | (t >> (32 - md5_r[i]));
	}
	m->h[0] += a;
	m->h[1] += b;
	m->h[2] += c;
	m->h[3] += d;
}

static void md5_update(struct md5 *m, const void *data, size_t n)
{
	const unsigned char *p = data;
	while (n) {
		size_t used = m->len % 64, take = 64 - used < n ? 64 - used : n;
		memcpy(m->buf + used, p, take);
		m->len += take;
		p += take;
		n -= take;
		if (m->len % 64 == 0)
			md5_block(m, m->buf);
	}
}

#define MD5_INIT {.h = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476}}

/* hex: 33 bytes, the md5 in lowercase hex as md5sum prints it. */
static void md5_finish(struct md5 *m, char *hex)
{
	uint64_t bits = m->len * 8;
	unsigned char pad[72] = {0x80}, len_le[8];
	md5_update(m, pad, (m->len % 64 < 56 ? 56 : 120) - m->len % 64);
	for (int i = 0; i < 8; i++)
		len_le[i] = (unsigned char)(bits >> (8 * i));
	md5_update(m, len_le, 8);
	for (int i = 0; i < 16; i++)
		snprintf(hex + 2 * i, 3, "%02x", (unsigned)(m->h[i / 4] >> (8 * (i % 4))) & 0xffU);
}

static void md5_hex(const void *data, size_t n, const void *tail, size_t tail_n, char *hex)
{
	struct md5 m = MD5_INIT;
	md5_update(&m, data, n);
	md5_update(&m, tail, tail_n);
	md5_finish(&m, hex);
}

/* ---------------------------------------------------------------- the running uwsgi.h
 *
 * uwsgi_get_dot_h() decodes the hex string the binary carries (uwsgi_dot_h) with one sscanf()
 * per byte: about 10 ms of CPU at every load of the plugin, which every vassal of an Emperor
 * pays. The same bytes are hashed here as they are decoded and inflated, a few KB at a time, by
 * the zlib the binary links (uWSGI built with zlib, as Debian's is, stores the header deflated;
 * without, the hex is the header itself): no copy of the header is made. Anything unexpected,
 * and uwsgi_get_dot_h() answers after all. */
static int hex_val(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
					      : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Up to cap bytes of hex[*pos..n) into buf: their count, -1 at a character that is no digit. */
static long unhex(const char *hex, size_t n, size_t *pos, unsigned char *buf, size_t cap)
{
	size_t k = 0;
	for (; *pos + 1 < n && k < cap; *pos += 2) {
		int hi = hex_val(hex[*pos]), lo = hex_val(hex[*pos + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		buf[k++] = (unsigned char)(hi << 4 | lo);
	}
	return (long)k;
}

struct zlib_api {
	int (*init)(z_streamp, const char *, int);
	int (*inflate)(z_streamp, int);
	int (*end)(z_streamp);
};

/* in[0..k) through inflate() into the md5: Z_OK while more may come, Z_STREAM_END, or an error. */
static int inflate_into(const struct zlib_api *z, z_stream *zs, unsigned char *in, long k,
			struct md5 *m)
{
	unsigned char out[16384];
	int r;
	zs->next_in = in;
	zs->avail_in = (uInt)k;
	do {
		zs->next_out = out;
		zs->avail_out = sizeof(out);
		r = z->inflate(zs, Z_NO_FLUSH);
		if (r != Z_OK && r != Z_STREAM_END && r != Z_BUF_ERROR)
			return r;
		md5_update(m, out, sizeof(out) - zs->avail_out);
	} while (zs->avail_out == 0 && r != Z_STREAM_END);
	return r == Z_BUF_ERROR ? Z_OK : r;
}

/* The md5 of what `uwsgi --dot-h` prints (the header, a newline) into running: 0, or -1. */
static int dot_h_md5(char *running)
{
	char **hex = dlsym(RTLD_DEFAULT, "uwsgi_dot_h");
	struct zlib_api z;
	*(void **)&z.init = dlsym(RTLD_DEFAULT, "inflateInit_");
	*(void **)&z.inflate = dlsym(RTLD_DEFAULT, "inflate");
	*(void **)&z.end = dlsym(RTLD_DEFAULT, "inflateEnd");
	size_t n = hex && *hex ? strlen(*hex) : 0, pos = 0;
	unsigned char in[4096];
	long k = n >= 4 && n % 2 == 0 ? unhex(*hex, n, &pos, in, sizeof(in)) : -1;
	/* A zlib stream starts with CMF 0x78 and a check (RFC 1950); a header starts with text. */
	bool deflated = k >= 2 && in[0] == 0x78 && (in[0] << 8 | in[1]) % 31 == 0;
	z_stream zs = {0};
	if (k < 2 || (deflated && (!z.init || !z.inflate || !z.end ||
				   z.init(&zs, ZLIB_VERSION, (int)sizeof(zs)) != Z_OK)))
		return -1;
	struct md5 m = MD5_INIT;
	int r = Z_OK;
	for (; k > 0 && r == Z_OK; k = unhex(*hex, n, &pos, in, sizeof(in))) {
		if (deflated)
			r = inflate_into(&z, &zs, in, k, &m);
		else
			md5_update(&m, in, (size_t)k);
	}
	if (deflated)
		z.end(&zs);
	if (k < 0 || (deflated && r != Z_STREAM_END))
		return -1;
	md5_update(&m, "\n", 1);
	md5_finish(&m, running);
	return 0;
}

/* ---------------------------------------------------------------- the cache of that md5
 *
 * Even hashed as it is decoded, the header costs about 1 ms of CPU at every load, and an
 * Emperor's vassals, all one binary, would each compute the same md5. It is kept in
 * /run/uwsgi-docker/uwsgi-abi, one line per binary, newest first, at most ABI_CACHE_LINES:
 *	DEV INO SIZE MTIME_SEC.NSEC CTIME_SEC.NSEC MD5
 * the key from fstat() of /proc/self/exe. The ctime makes the key safe: the kernel sets it at
 * every change of the inode (a write, a chmod, a utimes() that puts an old mtime back) and no
 * system call sets it to a chosen value, so a binary modified in place is a new key; one replaced
 * (a package upgrade renames a new file over it) is a new inode; and /run, emptied at every boot,
 * keeps no device or inode number past the boot that gave it.
 *
 * A line found is believed instead of the computation, so it decides whether the plugin reads
 * `struct uwsgi_server` at its offsets: it is trusted only if root can have written it (the
 * directory and the file root's, writable by no one else), and only root writes it. A failure
 * ("exports no uwsgi.h") is never stored: it is computed, and reported, at every load. */
#define ABI_CACHE_DIR "/run/uwsgi-docker"
#define ABI_CACHE_FILE "uwsgi-abi"
#define ABI_CACHE_LINES 16
#define ABI_CACHE_MAX 8192

struct abi_cache {
	char key[160]; /* "DEV INO SIZE MTIME CTIME ", its trailing space included */
	size_t key_len; /* 0: no key this binary can be trusted by */
	char text[ABI_CACHE_MAX]; /* the file, when trusted: text_len bytes, then a NUL */
	size_t text_len;
};

struct in_exe {
	uintptr_t addr;
	bool found;
};

/* dl_iterate_phdr() visits the main program first: whether addr is in one of its segments, and
 * the main program is the file the kernel executed (its program headers are AT_PHDR's). */
static int first_object_holds(struct dl_phdr_info *info, size_t size, void *data)
{
	struct in_exe *q = data;
	(void)size;
	if ((uintptr_t)info->dlpi_phdr != getauxval(AT_PHDR))
		return 1;
	for (ElfW(Half) i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		uintptr_t start = info->dlpi_addr + ph->p_vaddr;
		if (ph->p_type == PT_LOAD && q->addr >= start && q->addr - start < ph->p_memsz)
			q->found = true;
	}
	return 1;
}

/* The running binary's key into c (c->key_len 0 when none). Only when uwsgi_dot_h is in the
 * file /proc/self/exe names: not so when uWSGI is a library (pyuwsgi, in a python binary) or
 * ld.so was run by name, and then the key would name a file other than the header's. */
static void exe_key(struct abi_cache *c)
{
	c->key_len = 0;
	struct in_exe q = {.addr = (uintptr_t)dlsym(RTLD_DEFAULT, "uwsgi_dot_h")};
	if (!q.addr)
		return;
	dl_iterate_phdr(first_object_holds, &q);
	ud_autoclose int fd = q.found ? open("/proc/self/exe", O_RDONLY | O_CLOEXEC) : -1;
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0)
		return;
	int n = snprintf(c->key, sizeof(c->key), "%llu %llu %lld %lld.%09ld %lld.%09ld ",
			 (unsigned long long)st.st_dev, (unsigned long long)st.st_ino,
			 (long long)st.st_size, (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec,
			 (long long)st.st_ctim.tv_sec, st.st_ctim.tv_nsec);
	if (n > 0 && (size_t)n < sizeof(c->key))
		c->key_len = (size_t)n;
}

/* Root's and writable by no one else, of the type asked (a file small enough to read whole):
 * only root can have written what it holds. */
static bool root_only(int fd, mode_t type)
{
	struct stat st;
	return fd >= 0 && fstat(fd, &st) == 0 && (st.st_mode & S_IFMT) == type && st.st_uid == 0 &&
	       !(st.st_mode & (S_IWGRP | S_IWOTH)) && (type != S_IFREG || st.st_size < ABI_CACHE_MAX);
}

/* The cache's directory opened, or -1 when it is not root_only(); made when missing and create
 * (0700, as the helper makes it for its own files). */
static int cache_dir(bool create)
{
	ud_autoclose int fd = open(ABI_CACHE_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT && create && (mkdir(ABI_CACHE_DIR, 0700) == 0 || errno == EEXIST))
		fd = open(ABI_CACHE_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	return root_only(fd, S_IFDIR) ? ud_steal_fd(&fd) : -1;
}

/* The cache file into c->text when it is trusted; c->text_len 0 otherwise. O_NONBLOCK: a FIFO
 * put there must not hang the load (root_only() then refuses it). */
static void cache_read(struct abi_cache *c)
{
	c->text_len = 0;
	ud_autoclose int dir = cache_dir(false);
	ud_autoclose int fd =
		dir < 0 ? -1
			: openat(dir, ABI_CACHE_FILE, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (!root_only(fd, S_IFREG))
		return;
	size_t n = 0;
	while (n < sizeof(c->text) - 1) {
		ssize_t r = read(fd, c->text + n, sizeof(c->text) - 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return;
		if (r == 0)
			break;
		n += (size_t)r;
	}
	c->text[n] = '\0';
	c->text_len = n;
}

/* The next line of c->text from *pos (its length into *n, no newline), *pos past it; NULL at
 * the end. */
static const char *next_line(const struct abi_cache *c, size_t *pos, size_t *n)
{
	if (*pos >= c->text_len)
		return NULL;
	const char *s = c->text + *pos, *nl = memchr(s, '\n', c->text_len - *pos);
	*n = nl ? (size_t)(nl - s) : c->text_len - *pos;
	*pos += *n + 1;
	return s;
}

/* How many digits s[*i..n) starts with, *i past them. */
static size_t digits(const char *s, size_t n, size_t *i)
{
	size_t from = *i;
	while (*i < n && s[*i] >= '0' && s[*i] <= '9')
		(*i)++;
	return *i - from;
}

/* The length of line s[0..n)'s key (its trailing space included) when the line has the shape
 * exe_key() and cache_store() give it; 0, a miss, for anything else. */
static size_t line_key_len(const char *s, size_t n)
{
	size_t i = 0;
	for (int f = 0; f < 5; f++) {
		bool stamp = f >= 3; /* MTIME and CTIME: SEC (maybe negative) . 9 digits */
		if (stamp && i < n && s[i] == '-')
			i++;
		size_t d = digits(s, n, &i);
		if (d == 0 || d > 20)
			return 0;
		if (stamp && (i >= n || s[i++] != '.' || digits(s, n, &i) != 9))
			return 0;
		if (i >= n || s[i++] != ' ')
			return 0;
	}
	if (n - i != 32)
		return 0;
	for (size_t k = i; k < n; k++)
		if (hex_val(s[k]) < 0 || (s[k] >= 'A' && s[k] <= 'F'))
			return 0;
	return i;
}

/* The md5 on the running binary's line into running: true, or false for a miss. */
static bool cache_lookup(const struct abi_cache *c, char *running)
{
	size_t pos = 0, n;
	for (const char *s; c->key_len && (s = next_line(c, &pos, &n));) {
		size_t k = line_key_len(s, n);
		if (k == c->key_len && !memcmp(s, c->key, k)) {
			memcpy(running, s + k, 32);
			running[32] = '\0';
			return true;
		}
	}
	return false;
}

/* text[0..len) as the cache file: written to a file of its own (O_EXCL: two writers never share
 * one) and renamed over the old, so that a reader sees one file or the other, whole. */
static void cache_write(const char *text, size_t len)
{
	ud_autoclose int dir = cache_dir(true);
	if (dir < 0)
		return;
	/* Vassals in pid namespaces of their own may share a pid: the clock tells them apart. */
	struct timespec now = {0};
	clock_gettime(CLOCK_MONOTONIC, &now);
	char tmp[64];
	snprintf(tmp, sizeof(tmp), "." ABI_CACHE_FILE ".%d.%ld", (int)getpid(), now.tv_nsec);
	ud_autoclose int fd =
		openat(dir, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return;
	size_t done = 0;
	/* 0600 whatever the umask: a mode 0000 file is unreadable to a root without CAP_DAC_OVERRIDE. */
	bool ok = fchmod(fd, 0600) == 0;
	while (ok && done < len) {
		ssize_t r = write(fd, text + done, len - done);
		if (r < 0 && errno == EINTR)
			continue;
		ok = r > 0;
		done += ok ? (size_t)r : 0;
	}
	if (!ok || close(ud_steal_fd(&fd)) < 0 || renameat(dir, tmp, dir, ABI_CACHE_FILE) < 0)
		unlinkat(dir, tmp, 0);
}

/* The running binary's line first, then the other binaries' valid lines, ABI_CACHE_LINES in
 * all. Root only, as lookups trust only root's word; best effort: a write that fails only
 * means the md5 is computed again at the next load. */
static void cache_store(const struct abi_cache *c, const char *running)
{
	if (!c->key_len || geteuid() != 0)
		return;
	char text[ABI_CACHE_MAX];
	int first = snprintf(text, sizeof(text), "%s%s\n", c->key, running);
	if (first < 0 || (size_t)first >= sizeof(text))
		return;
	size_t len = (size_t)first, pos = 0, n, lines = 1;
	for (const char *s; lines < ABI_CACHE_LINES && (s = next_line(c, &pos, &n));) {
		size_t k = line_key_len(s, n);
		if (!k || (k == c->key_len && !memcmp(s, c->key, k)) || len + n + 1 >= sizeof(text))
			continue;
		memcpy(text + len, s, n);
		text[len + n] = '\n';
		len += n + 1;
		lines++;
	}
	cache_write(text, len);
}

/* The md5 of what `uwsgi --dot-h` prints into running: 0, or -1 when the binary exports no
 * uwsgi.h. */
static int running_md5(char *running)
{
	if (dot_h_md5(running) == 0)
		return 0;
	/* uWSGI's own prototype (uwsgi.h) lacks (void): looked up, not declared. */
	char *(*get_dot_h)(void);
	*(void **)&get_dot_h = dlsym(RTLD_DEFAULT, "uwsgi_get_dot_h");
	ud_autofree char *dot_h = get_dot_h ? get_dot_h() : NULL;
	if (!dot_h || !*dot_h)
		return -1;
	/* `uwsgi --dot-h` prints the header and a newline: what Debian hashes. */
	md5_hex(dot_h, strlen(dot_h), "\n", 1, running);
	return 0;
}

/* 0 when the running uwsgi's ABI is the one this plugin was built for; otherwise -1 with one
 * line in msg. */
int ud_abi_verify(char *msg, size_t len)
{
	static const char how[] =
		"rebuild the plugin against this uwsgi (make UWSGI=PATH-OF-UWSGI, "
		"or uwsgi --build-plugin hooks/docker)";
	char running[33];
	struct abi_cache c;
	exe_key(&c);
	c.text_len = 0;
	if (c.key_len)
		cache_read(&c);
	if (!cache_lookup(&c, running)) {
		if (running_md5(running) < 0) {
			snprintf(msg, len,
				 "this uwsgi binary exports no uwsgi.h: cannot check that it is the "
				 "uWSGI this plugin was built for (ABI %s); %s",
				 UD_UWSGI_ABI, how);
			return -1;
		}
		cache_store(&c, running);
	}
	if (!strcmp(running, UD_UWSGI_ABI))
		return 0;
	snprintf(msg, len,
		 "this plugin was built for uWSGI ABI %s but this uwsgi binary has ABI %s (md5 of "
		 "uwsgi --dot-h): %s",
		 UD_UWSGI_ABI, running, how);
	return -1;
}
