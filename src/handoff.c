/* The hand-off protocol (see handoff.h for the wire format). This file is compiled into the uWSGI
 * plugin as well: it never exits, prints or leaves an fd behind on failure. */
#include "handoff.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/nsfs.h>
#include <linux/openat2.h>
#include <poll.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <linux/magic.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

#define HEADER_FIXED 16
#define VALID_TYPES (CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET | CLONE_NEWCGROUP)

void ud_handoff_init(struct ud_handoff *h)
{
	memset(h, 0, sizeof(*h));
	for (int i = 0; i < UD_HANDOFF_MAX_FDS; i++)
		h->fds[i] = -1;
}

void ud_handoff_free(struct ud_handoff *h)
{
	for (int i = 0; i < UD_HANDOFF_MAX_FDS; i++)
		if (h->fds[i] >= 0)
			close(h->fds[i]);
	free(h->image);
	free(h->id);
	free(h->workdir);
	free(h->user_error);
	for (size_t i = 0; i < h->n_env; i++)
		free(h->env[i]);
	free(h->env);
	ud_handoff_init(h);
}

static void put16(unsigned char *p, uint16_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
}

static void put32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint16_t get16(const unsigned char *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get32(const unsigned char *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
	       ((uint32_t)p[3] << 24);
}

/* Appends "key=value\0" to the payload. */
static int add_kv(unsigned char **buf, size_t *len, size_t *cap, const char *key, const char *val,
		  ud_error *e)
{
	size_t kl = strlen(key), vl = strlen(val), need = kl + 1 + vl + 1;
	if (*len + need > HEADER_FIXED + 4 * UD_HANDOFF_MAX_FDS + UD_HANDOFF_MAX_PAYLOAD)
		return ud_fail(e, UD_EXIT_HANDOFF, E2BIG, "hand-off payload too large");
	if (*len + need > *cap) {
		size_t ncap = (*len + need) * 2;
		unsigned char *nb = realloc(*buf, ncap);
		if (!nb)
			return ud_oom(e);
		*buf = nb;
		*cap = ncap;
	}
	memcpy(*buf + *len, key, kl);
	(*buf)[*len + kl] = '=';
	memcpy(*buf + *len + kl + 1, val, vl + 1);
	*len += need;
	return 0;
}

/* user=UID:GID or user_error=TEXT, when there is either. */
static int add_user(const struct ud_handoff *h, unsigned char **buf, size_t *len, size_t *cap,
		    ud_error *e)
{
	if (h->has_user) {
		if (h->uid > UD_HANDOFF_MAX_ID || h->gid > UD_HANDOFF_MAX_ID)
			return ud_fail(e, UD_EXIT_HANDOFF, EINVAL,
				       "hand-off: user %u:%u out of range", h->uid, h->gid);
		char ids[32];
		snprintf(ids, sizeof(ids), "%u:%u", h->uid, h->gid);
		return add_kv(buf, len, cap, "user", ids, e);
	}
	return h->user_error ? add_kv(buf, len, cap, "user_error", h->user_error, e) : 0;
}

int ud_handoff_encode(const struct ud_handoff *h, unsigned char **out, size_t *out_len, ud_error *e)
{
	*out = NULL;
	*out_len = 0;
	if (h->n_fds < 1 || h->n_fds > UD_HANDOFF_MAX_FDS)
		return ud_fail(e, UD_EXIT_HANDOFF, EINVAL, "hand-off needs 1 to %d namespace fds",
			       UD_HANDOFF_MAX_FDS);
	size_t hdr = HEADER_FIXED + 4 * (size_t)h->n_fds, cap = hdr + 256, len = hdr;
	ud_autofree unsigned char *buf = calloc(1, cap);
	if (!buf)
		return ud_oom(e);
	char layers[16];
	snprintf(layers, sizeof(layers), "%u", h->layers);
	if (add_kv(&buf, &len, &cap, "image", h->image ? h->image : "", e) < 0 ||
	    add_kv(&buf, &len, &cap, "id", h->id ? h->id : "", e) < 0 ||
	    add_kv(&buf, &len, &cap, "layers", layers, e) < 0 ||
	    add_kv(&buf, &len, &cap, "workdir", h->workdir ? h->workdir : "", e) < 0)
		return -1;
	for (size_t i = 0; i < h->n_env; i++)
		if (add_kv(&buf, &len, &cap, "env", h->env[i], e) < 0)
			return -1;
	if (add_user(h, &buf, &len, &cap, e) < 0)
		return -1;
	/* add_kv() bounds the whole message; the receiver bounds the payload alone. */
	if (len - hdr > UD_HANDOFF_MAX_PAYLOAD)
		return ud_fail(e, UD_EXIT_HANDOFF, E2BIG, "hand-off payload too large");
	memcpy(buf, UD_HANDOFF_MAGIC, 4);
	put16(buf + 4, UD_HANDOFF_VERSION);
	put16(buf + 6, (uint16_t)h->n_fds);
	put32(buf + 8, (uint32_t)(len - hdr));
	put32(buf + 12, 0);
	for (int i = 0; i < h->n_fds; i++)
		put32(buf + HEADER_FIXED + 4 * i, (uint32_t)h->types[i]);
	*out = ud_steal_ptr(&buf);
	*out_len = len;
	return 0;
}

static char **env_push(char ***env, size_t *n, const char *s)
{
	char **nv = realloc(*env, (*n + 2) * sizeof(char *));
	if (!nv)
		return NULL;
	*env = nv;
	if (!(nv[*n] = strdup(s)))
		return NULL;
	nv[++*n] = NULL;
	return nv;
}

/* One of each known type at most, a mount namespace among them. */
static int decode_types(const unsigned char *p, unsigned n, struct ud_handoff *h, ud_error *e)
{
	int seen = 0;
	for (unsigned i = 0; i < n; i++) {
		uint32_t t = get32(p + 4 * i);
		if (t == 0 || (t & (t - 1)) || !(t & VALID_TYPES))
			return ud_fail(e, UD_EXIT_HANDOFF, 0,
				       "hand-off message names an unknown namespace type 0x%x", t);
		if (seen & (int)t)
			return ud_fail(e, UD_EXIT_HANDOFF, 0,
				       "hand-off message names a namespace type twice");
		seen |= (int)t;
		h->types[i] = (int)t;
	}
	if (!(seen & CLONE_NEWNS))
		return ud_fail(e, UD_EXIT_HANDOFF, 0, "hand-off message has no mount namespace");
	return 0;
}

/* The fixed header and the namespace types; returns the header's length, or -1. */
static long decode_header(const unsigned char *buf, size_t len, int n_fds_received,
			  struct ud_handoff *h, uint32_t *payload_len, ud_error *e)
{
	if (len < HEADER_FIXED)
		return ud_fail(e, UD_EXIT_HANDOFF, 0, "hand-off message truncated (%zu bytes)", len);
	if (memcmp(buf, UD_HANDOFF_MAGIC, 4) != 0)
		return ud_fail(e, UD_EXIT_HANDOFF, 0, "hand-off message has a bad magic");
	uint16_t version = get16(buf + 4), n = get16(buf + 6);
	uint32_t plen = get32(buf + 8), flags = get32(buf + 12);
	if (version != UD_HANDOFF_VERSION)
		return ud_fail(e, UD_EXIT_HANDOFF, 0,
			       "hand-off protocol version %u, expected %u (helper and plugin from "
			       "different releases?)",
			       (unsigned)version, (unsigned)UD_HANDOFF_VERSION);
	if (flags != 0)
		return ud_fail(e, UD_EXIT_HANDOFF, 0, "hand-off message has unknown flags 0x%x",
			       flags);
	if (n < 1 || n > UD_HANDOFF_MAX_FDS)
		return ud_fail(e, UD_EXIT_HANDOFF, 0, "hand-off message declares %u namespaces", n);
	if (plen > UD_HANDOFF_MAX_PAYLOAD)
		return ud_fail(e, UD_EXIT_HANDOFF, 0, "hand-off payload too large (%u bytes)", plen);
	size_t hdr = HEADER_FIXED + 4 * (size_t)n;
	if (len != hdr + plen)
		return ud_fail(e, UD_EXIT_HANDOFF, 0,
			       "hand-off message is %zu bytes, its header says %zu", len, hdr + plen);
	if (n_fds_received != n)
		return ud_fail(e, UD_EXIT_HANDOFF, 0,
			       "hand-off message declares %u namespaces but carries %d fds", n,
			       n_fds_received);
	if (decode_types(buf + HEADER_FIXED, n, h, e) < 0)
		return -1;
	h->n_fds = n;
	*payload_len = plen;
	return (long)hdr;
}

/* A decimal id: digits only, at most UD_HANDOFF_MAX_ID. */
static int parse_id(const char *s, size_t n, unsigned *out)
{
	unsigned long long v = 0;
	if (n == 0 || n > 10)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v > UD_HANDOFF_MAX_ID)
		return -1;
	*out = (unsigned)v;
	return 0;
}

/* user=UID:GID and user_error=TEXT: each once, never both. The text is logged by the master:
 * printable ASCII only. */
static int decode_user(bool ids, const char *v, struct ud_handoff *h, ud_error *e)
{
	if (h->has_user || h->user_error)
		return ud_fail(e, UD_EXIT_HANDOFF, 0, "hand-off payload repeats the user");
	if (ids) {
		const char *colon = strchr(v, ':');
		if (!colon || parse_id(v, (size_t)(colon - v), &h->uid) < 0 ||
		    parse_id(colon + 1, strlen(colon + 1), &h->gid) < 0)
			return ud_fail(e, UD_EXIT_HANDOFF, 0, "hand-off payload: bad user");
		h->has_user = 1;
		return 0;
	}
	for (const char *c = v; *c; c++)
		if (*c < 0x20 || *c > 0x7e)
			return ud_fail(e, UD_EXIT_HANDOFF, 0,
				       "hand-off payload: user_error is not printable text");
	if (!*v)
		return ud_fail(e, UD_EXIT_HANDOFF, 0, "hand-off payload: empty user_error");
	return (h->user_error = strdup(v)) ? 0 : ud_oom(e);
}

/* NUL-terminated key=value entries; unknown keys are ignored (a newer helper may say more
 * within version 1). */
static int decode_payload(const unsigned char *buf, size_t hdr, uint32_t plen,
			  struct ud_handoff *h, ud_error *e)
{
	const char *p = (const char *)buf + hdr, *end = p + plen;
	if (plen && end[-1] != '\0')
		return ud_fail(e, UD_EXIT_HANDOFF, 0, "hand-off payload is not NUL-terminated");
	while (p < end) {
		size_t sl = strlen(p);
		const char *eq = strchr(p, '=');
		if (!eq)
			return ud_fail(e, UD_EXIT_HANDOFF, 0, "hand-off payload entry without '='");
		size_t kl = (size_t)(eq - p);
		const char *v = eq + 1;
		char **slot = NULL;
		if (kl == 5 && !strncmp(p, "image", 5))
			slot = &h->image;
		else if (kl == 2 && !strncmp(p, "id", 2))
			slot = &h->id;
		else if (kl == 7 && !strncmp(p, "workdir", 7))
			slot = &h->workdir;
		if (slot) {
			if (*slot)
				return ud_fail(e, UD_EXIT_HANDOFF, 0,
					       "hand-off payload repeats '%.*s'", (int)kl, p);
			if (!(*slot = strdup(v)))
				return ud_oom(e);
		} else if (kl == 6 && !strncmp(p, "layers", 6)) {
			char *num_end;
			errno = 0;
			unsigned long l = strtoul(v, &num_end, 10);
			if (!*v || *num_end || errno || l > 100000)
				return ud_fail(e, UD_EXIT_HANDOFF, 0, "hand-off payload: bad layers");
			h->layers = (unsigned)l;
		} else if (kl == 3 && !strncmp(p, "env", 3)) {
			if (!strchr(v, '=') || v[0] == '=')
				return ud_fail(e, UD_EXIT_HANDOFF, 0,
					       "hand-off payload: env entry is not KEY=VALUE");
			if (!env_push(&h->env, &h->n_env, v))
				return ud_oom(e);
		} else if ((kl == 4 && !strncmp(p, "user", 4)) ||
			   (kl == 10 && !strncmp(p, "user_error", 10))) {
			if (decode_user(kl == 4, v, h, e) < 0)
				return -1;
		}
		/* Unknown keys are ignored: a newer helper may say more within version 1. */
		p += sl + 1;
	}
	if (!h->image || !h->id)
		return ud_fail(e, UD_EXIT_HANDOFF, 0, "hand-off payload lacks image or id");
	if (!h->workdir && !(h->workdir = strdup("")))
		return ud_oom(e);
	return 0;
}

int ud_handoff_decode(const unsigned char *buf, size_t len, int n_fds_received,
		      struct ud_handoff *h, ud_error *e)
{
	uint32_t plen = 0;
	long hdr = decode_header(buf, len, n_fds_received, h, &plen, e);
	return hdr < 0 ? -1 : decode_payload(buf, (size_t)hdr, plen, h, e);
}

int ud_handoff_send(int sock, const struct ud_handoff *h, ud_error *e)
{
	ud_autofree unsigned char *buf = NULL;
	size_t len;
	if (ud_handoff_encode(h, &buf, &len, e) < 0)
		return -1;
	union {
		char buf[CMSG_SPACE(sizeof(int) * UD_HANDOFF_MAX_FDS)];
		struct cmsghdr align;
	} ctl;
	memset(&ctl, 0, sizeof(ctl));
	struct iovec iov = {.iov_base = buf, .iov_len = len};
	struct msghdr msg = {.msg_iov = &iov,
			     .msg_iovlen = 1,
			     .msg_control = ctl.buf,
			     .msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)h->n_fds)};
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)h->n_fds);
	memcpy(CMSG_DATA(c), h->fds, sizeof(int) * (size_t)h->n_fds);
	/* The fds travel with the first byte; on a stream socket the rest follows without them. */
	size_t off = 0;
	while (off < len) {
		ssize_t r = sendmsg(sock, &msg, MSG_NOSIGNAL);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return ud_fail(e, UD_EXIT_HANDOFF, errno, "cannot send the hand-off message");
		}
		off += (size_t)r;
		iov.iov_base = buf + off;
		iov.iov_len = len - off;
		msg.msg_control = NULL;
		msg.msg_controllen = 0;
	}
	return 0;
}

static void close_fds(int *fds, int n)
{
	for (int i = 0; i < n; i++)
		if (fds[i] >= 0) {
			close(fds[i]);
			fds[i] = -1;
		}
}

/* Takes every fd out of every SCM_RIGHTS cmsg (so none leaks whatever else is wrong). Returns the
 * count taken into fds[] (at most max), or -1 if the control data is malformed; surplus fds are
 * closed and counted in *surplus. */
static int collect_fds(struct msghdr *msg, int *fds, int max, int *surplus, bool *bad)
{
	int n = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR(msg, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS ||
		    c->cmsg_len < CMSG_LEN(0)) {
			*bad = true;
			continue;
		}
		size_t data = c->cmsg_len - CMSG_LEN(0);
		if (data % sizeof(int))
			*bad = true;
		int cnt = (int)(data / sizeof(int));
		for (int i = 0; i < cnt; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (n < max)
				fds[n++] = fd;
			else {
				close(fd);
				(*surplus)++;
			}
		}
	}
	return n;
}

static int check_peer(int sock, ud_error *e)
{
	struct ucred cred;
	socklen_t cl = sizeof(cred);
	if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0)
		return ud_fail(e, UD_EXIT_HANDOFF, errno, "hand-off socket: SO_PEERCRED");
	if (cred.uid != 0 && cred.uid != geteuid())
		return ud_fail(e, UD_EXIT_HANDOFF, 0,
			       "hand-off peer runs as uid %u, expected root or uid %u", cred.uid,
			       geteuid());
	return 0;
}

/* What has arrived so far of one message. */
struct rx {
	unsigned char *buf;
	size_t cap, len, want;
	int fds[UD_HANDOFF_MAX_FDS];
	int n_fds, surplus;
	bool bad, truncated;
	int type; /* SO_TYPE */
};

/* 1 when readable, 0 to look again (EINTR), -1 on the deadline or an error. One deadline
 * covers the whole message, however it is split. */
static int wait_readable(int sock, const struct timespec *t0, int timeout_ms, ud_error *e)
{
	if (timeout_ms <= 0)
		return 1;
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	long left = timeout_ms - ((now.tv_sec - t0->tv_sec) * 1000 +
				  (now.tv_nsec - t0->tv_nsec) / 1000000);
	struct pollfd pfd = {.fd = sock, .events = POLLIN};
	int pr = left > 0 ? poll(&pfd, 1, (int)left) : 0;
	if (pr == 0)
		return ud_fail(e, UD_EXIT_HANDOFF, ETIMEDOUT, "no hand-off message within %d ms",
			       timeout_ms);
	if (pr < 0 && errno != EINTR)
		return ud_fail(e, UD_EXIT_HANDOFF, errno, "hand-off socket: poll");
	return pr > 0;
}

/* One recvmsg: bytes and fds (received CLOEXEC). 1 after data, 0 to retry, -1 on failure. */
static int recv_chunk(int sock, struct rx *rx, ud_error *e)
{
	union {
		char b[CMSG_SPACE(sizeof(int) * UD_HANDOFF_MAX_FDS)];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = {.iov_base = rx->buf + rx->len, .iov_len = rx->cap + 1 - rx->len};
	struct msghdr msg = {
		.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b, .msg_controllen = sizeof(ctl.b)};
	ssize_t got = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
	if (got < 0)
		return errno == EINTR || errno == EAGAIN
			       ? 0
			       : ud_fail(e, UD_EXIT_HANDOFF, errno,
					 "cannot receive the hand-off message");
	rx->n_fds += collect_fds(&msg, rx->fds + rx->n_fds, UD_HANDOFF_MAX_FDS - rx->n_fds,
				 &rx->surplus, &rx->bad);
	if (msg.msg_flags & (MSG_CTRUNC | MSG_TRUNC))
		rx->truncated = true;
	if (got == 0)
		return ud_fail(e, UD_EXIT_HANDOFF, 0,
			       rx->len ? "hand-off message truncated (peer closed after %zu bytes)"
				       : "the helper closed the hand-off socket without a message "
					 "(%zu bytes)",
			       rx->len);
	rx->len += (size_t)got;
	if (rx->len > rx->cap)
		return ud_fail(e, UD_EXIT_HANDOFF, 0, "hand-off message too large");
	if (rx->len >= HEADER_FIXED && rx->want == HEADER_FIXED) {
		uint16_t n = get16(rx->buf + 6);
		uint32_t plen = get32(rx->buf + 8);
		if (n <= UD_HANDOFF_MAX_FDS && plen <= UD_HANDOFF_MAX_PAYLOAD)
			rx->want = HEADER_FIXED + 4 * (size_t)n + plen;
	}
	return 1;
}

static int receive(int sock, struct rx *rx, int timeout_ms, ud_error *e)
{
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (rx->len < rx->want) {
		int r = wait_readable(sock, &t0, timeout_ms, e);
		if (r > 0)
			r = recv_chunk(sock, rx, e);
		if (r < 0)
			return -1;
		/* A datagram-like socket delivers the message whole or not at all. */
		if (r > 0 && rx->type != SOCK_STREAM)
			break;
	}
	if (rx->truncated || rx->bad)
		return ud_fail(e, UD_EXIT_HANDOFF, 0,
			       rx->truncated ? "hand-off message or its fds were truncated (MSG_CTRUNC)"
					     : "hand-off message carries unexpected control data");
	if (rx->surplus)
		return ud_fail(e, UD_EXIT_HANDOFF, 0, "hand-off message carries too many fds (%d)",
			       rx->n_fds + rx->surplus);
	return 0;
}

/* Each fd is a namespace of the type its header declares. Only on nsfs is NS_GET_NSTYPE asked:
 * an ioctl number means something else to another file. */
static int check_types(const int *fds, const struct ud_handoff *h, ud_error *e)
{
	for (int i = 0; i < h->n_fds; i++) {
		struct statfs sf;
		int nstype = fstatfs(fds[i], &sf) == 0 && sf.f_type == NSFS_MAGIC
				     ? ioctl(fds[i], NS_GET_NSTYPE)
				     : -1;
		if (nstype < 0)
			return ud_fail(e, UD_EXIT_HANDOFF, 0, "hand-off fd %d is not a namespace", i);
		if (nstype != h->types[i])
			return ud_fail(e, UD_EXIT_HANDOFF, 0,
				       "hand-off fd %d is namespace type 0x%x, its header declares "
				       "0x%x",
				       i, (unsigned)nstype, (unsigned)h->types[i]);
	}
	return 0;
}

int ud_handoff_recv(int sock, struct ud_handoff *h, int timeout_ms, ud_error *e)
{
	ud_handoff_init(h);
	if (check_peer(sock, e) < 0)
		return -1;
	struct rx rx = {.cap = HEADER_FIXED + 4 * UD_HANDOFF_MAX_FDS + UD_HANDOFF_MAX_PAYLOAD,
			.want = HEADER_FIXED};
	socklen_t tl = sizeof(rx.type);
	if (getsockopt(sock, SOL_SOCKET, SO_TYPE, &rx.type, &tl) < 0)
		return ud_fail(e, UD_EXIT_HANDOFF, errno, "hand-off socket");
	ud_autofree unsigned char *buf = rx.buf = malloc(rx.cap + 1);
	if (!buf)
		return ud_oom(e);
	int r = receive(sock, &rx, timeout_ms, e);
	if (r == 0)
		r = ud_handoff_decode(buf, rx.len, rx.n_fds, h, e);
	if (r == 0)
		r = check_types(rx.fds, h, e);
	if (r == 0) {
		memcpy(h->fds, rx.fds, sizeof(int) * (size_t)rx.n_fds);
		return 0;
	}
	close_fds(rx.fds, rx.n_fds);
	int saved_status = e ? e->status : 0;
	ud_handoff_free(h);
	if (e)
		e->status = saved_status;
	return -1;
}

int ud_handoff_check_foreign(const struct ud_handoff *h, ud_error *e)
{
	struct stat own, got;
	if (stat("/proc/self/ns/mnt", &own) < 0)
		return ud_fail(e, UD_EXIT_HANDOFF, errno, "stat /proc/self/ns/mnt");
	for (int i = 0; i < h->n_fds; i++) {
		if (h->types[i] != CLONE_NEWNS)
			continue;
		if (fstat(h->fds[i], &got) < 0)
			return ud_fail(e, UD_EXIT_HANDOFF, errno, "fstat of the mount namespace");
		if (got.st_dev == own.st_dev && got.st_ino == own.st_ino)
			return ud_fail(e, UD_EXIT_HANDOFF, 0,
				       "the helper handed over this process's own mount namespace, "
				       "not one with the image as its root: refusing");
	}
	return 0;
}

int ud_handoff_enter(struct ud_handoff *h, ud_error *e)
{
	/* The mount namespace goes last: the others need nothing from the filesystem, and entering
	 * it first would be harmless too, but keeping it last keeps the host's /proc usable for as
	 * long as possible (useful in error messages). */
	for (int pass = 0; pass < 2; pass++) {
		for (int i = 0; i < h->n_fds; i++) {
			if ((h->types[i] == CLONE_NEWNS) != (pass == 1) || h->fds[i] < 0)
				continue;
			if (setns(h->fds[i], h->types[i]) < 0) {
				int err = errno;
				return ud_fail(e, UD_EXIT_HANDOFF, err, "setns into namespace type 0x%x",
					       (unsigned)h->types[i]);
			}
			close(h->fds[i]);
			h->fds[i] = -1;
		}
	}
	return 0;
}

int ud_chdir_image(const char *workdir, ud_error *e)
{
	const char *dir = workdir && *workdir ? workdir : "/";
	ud_autoclose int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (root < 0)
		return ud_fail(e, UD_EXIT_MOUNT, errno, "opening /");
	/* The image's WorkingDir is hostile like any image path: /proc/1/root/... is a magic link
	 * to the host's root (the pid namespace is the host's), so resolve inside / without magic
	 * links. */
	ud_autoclose int fd = ud_openat2(root, dir, O_PATH | O_DIRECTORY | O_CLOEXEC,
					 RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS);
	if (fd < 0)
		return ud_fail(e, UD_EXIT_MOUNT, errno, "working directory %s", dir);
	if (fchdir(fd) < 0)
		return ud_fail(e, UD_EXIT_MOUNT, errno, "chdir to working directory %s", dir);
	return 0;
}
