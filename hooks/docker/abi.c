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
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "abi.h"

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

/* 0 when the running uwsgi's ABI is the one this plugin was built for; otherwise -1 with one
 * line in msg. */
int ud_abi_verify(char *msg, size_t len)
{
	static const char how[] =
		"rebuild the plugin against this uwsgi (make UWSGI=PATH-OF-UWSGI, "
		"or uwsgi --build-plugin hooks/docker)";
	char running[33];
	if (dot_h_md5(running) < 0) {
		/* uWSGI's own prototype (uwsgi.h) lacks (void): looked up, not declared. */
		char *(*get_dot_h)(void);
		*(void **)&get_dot_h = dlsym(RTLD_DEFAULT, "uwsgi_get_dot_h");
		char *dot_h = get_dot_h ? get_dot_h() : NULL;
		if (!dot_h || !*dot_h) {
			snprintf(msg, len,
				 "this uwsgi binary exports no uwsgi.h: cannot check that it is the "
				 "uWSGI this plugin was built for (ABI %s); %s",
				 UD_UWSGI_ABI, how);
			return -1;
		}
		/* `uwsgi --dot-h` prints the header and a newline: what Debian hashes. */
		md5_hex(dot_h, strlen(dot_h), "\n", 1, running);
		free(dot_h);
	}
	if (!strcmp(running, UD_UWSGI_ABI))
		return 0;
	snprintf(msg, len,
		 "this plugin was built for uWSGI ABI %s but this uwsgi binary has ABI %s (md5 of "
		 "uwsgi --dot-h): %s",
		 UD_UWSGI_ABI, running, how);
	return -1;
}
