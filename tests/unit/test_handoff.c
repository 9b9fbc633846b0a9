/* Unit tests for handoff.c: encode/decode, a real round trip over socketpairs with real
 * /proc/self/ns fds, and forged or truncated messages sent by a raw sendmsg() helper. After every
 * refused message no received fd may stay open (counted in /proc/self/fd). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <setjmp.h>
#include <grp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "error.h"
#include "handoff.h"

#define RECV_TIMEOUT_MS 2000

/* ---- helpers ----------------------------------------------------------------------------------- */

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	assert_non_null(d);
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static bool fd_is_open(int fd)
{
	return fcntl(fd, F_GETFD) != -1;
}

static int open_ns(const char *name)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/ns/%s", name);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		fail_msg("open %s: %s", path, strerror(errno));
	return fd;
}

static ino_t fd_ino(int fd)
{
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	return st.st_ino;
}

static void on_alarm(int sig)
{
	(void)sig;
	static const char msg[] = "test_handoff: a receive hung (timeout_ms not honoured?)\n";
	ssize_t r = write(2, msg, sizeof(msg) - 1);
	(void)r;
	_exit(99);
}

static void put16(unsigned char *p, uint16_t v)
{
	p[0] = v & 0xff;
	p[1] = v >> 8;
}

static void put32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (v >> (8 * i)) & 0xff;
}

static uint32_t get32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint16_t get16(const unsigned char *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static const char good_payload[] = "image=busybox:latest\0id=sha256:0123456789abcdef\0layers=3\0"
				   "workdir=/srv\0env=PATH=/bin\0env=FOO=bar=baz\0";
#define GOOD_PAYLOAD_LEN (sizeof(good_payload) - 1) /* the literal's own final NUL not counted */

/* Builds a message: header fields as given (magic 4 bytes), n_types types, then payload bytes.
 * payload_len_field is written as is (may lie). Returns malloc'ed buffer. */
static unsigned char *forge(const char *magic, uint16_t version, uint16_t n_fds_field,
			    uint32_t payload_len_field, uint32_t flags, const uint32_t *types,
			    size_t n_types, const void *payload, size_t payload_size, size_t *len)
{
	size_t n = 16 + 4 * n_types + payload_size;
	unsigned char *b = calloc(1, n ? n : 1);
	assert_non_null(b);
	memcpy(b, magic, 4);
	put16(b + 4, version);
	put16(b + 6, n_fds_field);
	put32(b + 8, payload_len_field);
	put32(b + 12, flags);
	for (size_t i = 0; i < n_types; i++)
		put32(b + 16 + 4 * i, types[i]);
	if (payload_size)
		memcpy(b + 16 + 4 * n_types, payload, payload_size);
	*len = n;
	return b;
}

/* Sends arbitrary bytes and arbitrary fds in one sendmsg. */
static void raw_send(int sock, const void *buf, size_t len, const int *fds, int nfds)
{
	struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
	struct msghdr m;
	memset(&m, 0, sizeof(m));
	m.msg_iov = &iov;
	m.msg_iovlen = 1;
	union {
		char buf[CMSG_SPACE(sizeof(int) * 16)];
		struct cmsghdr align;
	} u;
	memset(&u, 0, sizeof(u));
	if (nfds > 0) {
		assert_true(nfds <= 16);
		m.msg_control = u.buf;
		m.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		struct cmsghdr *c = CMSG_FIRSTHDR(&m);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
	}
	ssize_t r = sendmsg(sock, &m, MSG_NOSIGNAL);
	if (r != (ssize_t)len)
		fail_msg("raw sendmsg: %zd: %s", r, strerror(errno));
}

struct pair {
	int tx, rx;
	int type;
};

static struct pair make_pair(int type)
{
	int sv[2];
	if (socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv) != 0)
		fail_msg("socketpair: %s", strerror(errno));
	struct pair p = {sv[0], sv[1], type};
	return p;
}

static void close_pair(struct pair *p)
{
	if (p->tx >= 0)
		close(p->tx);
	if (p->rx >= 0)
		close(p->rx);
	p->tx = p->rx = -1;
}

/* The sender's namespace fds, opened once per test. */
struct nsset {
	int mnt, uts, ipc, net, cgroup, pid;
};

static struct nsset open_all(void)
{
	struct nsset s = {open_ns("mnt"), open_ns("uts"), open_ns("ipc"),
			  open_ns("net"), open_ns("cgroup"), open_ns("pid")};
	return s;
}

static void close_all(struct nsset *s)
{
	close(s->mnt);
	close(s->uts);
	close(s->ipc);
	close(s->net);
	close(s->cgroup);
	close(s->pid);
}

static void assert_all_open(const struct nsset *s)
{
	assert_true(fd_is_open(s->mnt));
	assert_true(fd_is_open(s->uts));
	assert_true(fd_is_open(s->ipc));
	assert_true(fd_is_open(s->net));
	assert_true(fd_is_open(s->cgroup));
	assert_true(fd_is_open(s->pid));
}

/* Sends the forged message over a fresh pair of the given type and expects ud_handoff_recv to
 * refuse it with UD_EXIT_HANDOFF, leaving no fd behind, and ud_handoff_free to be harmless. */
static void expect_refused_on(int socktype, const char *what, const void *msg, size_t len,
			      const int *fds, int nfds)
{
	struct nsset ns = open_all();
	struct pair p = make_pair(socktype);
	int before = count_fds();

	raw_send(p.tx, msg, len, fds, nfds);
	if (socktype == SOCK_STREAM)
		shutdown(p.tx, SHUT_WR); /* EOF after the message: a short one cannot be waited for */

	struct ud_handoff h;
	ud_handoff_init(&h);
	ud_error e;
	memset(&e, 0, sizeof(e));
	alarm(10);
	int r = ud_handoff_recv(p.rx, &h, RECV_TIMEOUT_MS, &e);
	alarm(0);
	const char *tname = socktype == SOCK_STREAM ? "SOCK_STREAM" : "SOCK_SEQPACKET";
	if (r != -1) {
		ud_handoff_free(&h);
		fail_msg("%s (%s): accepted, expected refusal", what, tname);
	}
	if (e.status != UD_EXIT_HANDOFF)
		fail_msg("%s (%s): status %d (\"%s\"), expected %d", what, tname, e.status, e.msg,
			 UD_EXIT_HANDOFF);
	if (e.msg[0] == '\0')
		fail_msg("%s (%s): empty message", what, tname);
	int after = count_fds();
	if (after != before)
		fail_msg("%s (%s): %d fds open after the refused receive, %d before (leak) [%s]",
			 what, tname, after, before, e.msg);
	ud_handoff_free(&h);
	if (count_fds() != before)
		fail_msg("%s (%s): ud_handoff_free after a refusal changed the fd count (%d -> %d)",
			 what, tname, before, count_fds());
	assert_all_open(&ns); /* nothing of ours was closed by mistake */
	close_pair(&p);
	close_all(&ns);
}

static void expect_refused(const char *what, const void *msg, size_t len, const int *fds, int nfds)
{
	expect_refused_on(SOCK_SEQPACKET, what, msg, len, fds, nfds);
}

/* A well-formed message with the given types and fds (types may lie about the fds). */
static void send_forged_types(const char *what, const uint32_t *types, size_t n_types,
			      const int *fds, int nfds)
{
	size_t len;
	unsigned char *m = forge(UD_HANDOFF_MAGIC, UD_HANDOFF_VERSION, (uint16_t)n_types,
				 GOOD_PAYLOAD_LEN, 0, types, n_types, good_payload, GOOD_PAYLOAD_LEN,
				 &len);
	expect_refused(what, m, len, fds, nfds);
	free(m);
}

static char **strv(size_t n, ...)
{
	char **v = calloc(n + 1, sizeof(char *));
	assert_non_null(v);
	va_list ap;
	va_start(ap, n);
	for (size_t i = 0; i < n; i++)
		v[i] = strdup(va_arg(ap, const char *));
	va_end(ap);
	return v;
}

/* A complete handoff for sending: strings owned (freed by ud_handoff_free). */
static void fill_handoff(struct ud_handoff *h)
{
	ud_handoff_init(h);
	h->image = strdup("busybox:latest");
	h->id = strdup("sha256:2a0b4576c85416566f0af65a73cad2ee4d20861e1158721ae78491641b9db432");
	h->workdir = strdup("/srv");
	h->layers = 3;
	h->env = strv(3, "PATH=/usr/bin:/bin", "FOO=bar=baz", "EMPTY=");
	h->n_env = 3;
}

static void check_payload_fields(const struct ud_handoff *got, const struct ud_handoff *want)
{
	assert_non_null(got->image);
	assert_string_equal(got->image, want->image);
	assert_non_null(got->id);
	assert_string_equal(got->id, want->id);
	assert_non_null(got->workdir);
	assert_string_equal(got->workdir, want->workdir);
	assert_int_equal(got->layers, want->layers);
	assert_int_equal(got->n_env, want->n_env);
	for (size_t i = 0; i < want->n_env; i++) {
		assert_non_null(got->env[i]);
		assert_string_equal(got->env[i], want->env[i]);
	}
	assert_int_equal(got->has_user, want->has_user);
	assert_int_equal(got->uid, want->uid);
	assert_int_equal(got->gid, want->gid);
	if (want->user_error)
		assert_string_equal(got->user_error, want->user_error);
	else
		assert_null(got->user_error);
}

/* ---- init / free ------------------------------------------------------------------------------- */

static void test_init_free(void **state)
{
	(void)state;
	struct ud_handoff h;
	memset(&h, 0x5a, sizeof(h));
	ud_handoff_init(&h);
	assert_null(h.image);
	assert_null(h.id);
	assert_null(h.workdir);
	assert_null(h.env);
	assert_int_equal(h.n_env, 0);
	assert_int_equal(h.n_fds, 0);
	for (int i = 0; i < UD_HANDOFF_MAX_FDS; i++)
		assert_int_equal(h.fds[i], -1);
	int before = count_fds();
	ud_handoff_free(&h);
	assert_int_equal(count_fds(), before);

	/* free closes the fds it holds */
	fill_handoff(&h);
	h.n_fds = 2;
	h.types[0] = CLONE_NEWNS;
	h.fds[0] = open_ns("mnt");
	h.types[1] = CLONE_NEWUTS;
	h.fds[1] = open_ns("uts");
	assert_int_equal(count_fds(), before + 2);
	ud_handoff_free(&h);
	assert_int_equal(count_fds(), before);
}

/* ---- encode / decode --------------------------------------------------------------------------- */

static void test_encode_layout(void **state)
{
	(void)state;
	struct ud_handoff h;
	fill_handoff(&h);
	h.n_fds = 2;
	h.types[0] = CLONE_NEWNS;
	h.types[1] = CLONE_NEWUTS;
	unsigned char *buf = NULL;
	size_t len = 0;
	ud_error e;
	if (ud_handoff_encode(&h, &buf, &len, &e) != 0)
		fail_msg("encode: %s", e.msg);
	assert_non_null(buf);
	assert_true(len >= 24);
	assert_memory_equal(buf, "UDNS", 4);
	assert_int_equal(get16(buf + 4), 1);
	assert_int_equal(get16(buf + 6), 2);
	uint32_t plen = get32(buf + 8);
	assert_int_equal(get32(buf + 12), 0);
	assert_int_equal(get32(buf + 16), CLONE_NEWNS);
	assert_int_equal(get32(buf + 20), CLONE_NEWUTS);
	assert_int_equal(len, 16 + 4 * 2 + plen);

	/* payload: NUL-terminated key=value strings, the last one terminated too */
	const char *pl = (const char *)buf + 24;
	assert_true(plen > 0);
	assert_int_equal(pl[plen - 1], '\0');
	int seen_image = 0, seen_id = 0, seen_layers = 0, seen_wd = 0, n_env = 0;
	for (size_t off = 0; off < plen; off += strlen(pl + off) + 1) {
		const char *kv = pl + off;
		assert_non_null(strchr(kv, '='));
		if (!strcmp(kv, "image=busybox:latest"))
			seen_image++;
		else if (!strcmp(kv, "id=sha256:2a0b4576c85416566f0af65a73cad2ee4d20861e1158721ae78491641b9db432"))
			seen_id++;
		else if (!strcmp(kv, "layers=3"))
			seen_layers++;
		else if (!strcmp(kv, "workdir=/srv"))
			seen_wd++;
		else if (!strncmp(kv, "env=", 4)) {
			assert_true(n_env < 3);
			assert_string_equal(kv + 4, h.env[n_env]); /* in order */
			n_env++;
		} else
			fail_msg("unexpected payload entry \"%s\"", kv);
	}
	assert_int_equal(seen_image, 1);
	assert_int_equal(seen_id, 1);
	assert_int_equal(seen_layers, 1);
	assert_int_equal(seen_wd, 1);
	assert_int_equal(n_env, 3);
	free(buf);
	ud_handoff_free(&h);
}

static void test_encode_decode_round_trip(void **state)
{
	(void)state;
	struct ud_handoff h;
	fill_handoff(&h);
	h.n_fds = 3;
	h.types[0] = CLONE_NEWNS;
	h.types[1] = CLONE_NEWIPC;
	h.types[2] = CLONE_NEWNET;
	unsigned char *buf = NULL;
	size_t len = 0;
	ud_error e;
	if (ud_handoff_encode(&h, &buf, &len, &e) != 0)
		fail_msg("encode: %s", e.msg);

	struct ud_handoff d;
	ud_handoff_init(&d);
	if (ud_handoff_decode(buf, len, 3, &d, &e) != 0)
		fail_msg("decode: status %d: %s", e.status, e.msg);
	check_payload_fields(&d, &h);
	assert_int_equal(d.n_fds, 3);
	assert_int_equal(d.types[0], CLONE_NEWNS);
	assert_int_equal(d.types[1], CLONE_NEWIPC);
	assert_int_equal(d.types[2], CLONE_NEWNET);
	for (int i = 0; i < UD_HANDOFF_MAX_FDS; i++)
		assert_int_equal(d.fds[i], -1); /* decode does not invent fds */
	int before = count_fds();
	ud_handoff_free(&d);
	assert_int_equal(count_fds(), before);

	/* decode does not read past len: the same message in an exactly-sized copy */
	unsigned char *exact = malloc(len);
	memcpy(exact, buf, len);
	ud_handoff_init(&d);
	assert_int_equal(ud_handoff_decode(exact, len, 3, &d, &e), 0);
	ud_handoff_free(&d);
	free(exact);
	free(buf);
	ud_handoff_free(&h);
}

static void test_encode_decode_empty_env(void **state)
{
	(void)state;
	struct ud_handoff h;
	ud_handoff_init(&h);
	h.image = strdup("a");
	h.id = strdup("sha256:00");
	h.workdir = strdup("/");
	h.layers = 1;
	h.n_fds = 1;
	h.types[0] = CLONE_NEWNS;
	unsigned char *buf = NULL;
	size_t len = 0;
	ud_error e;
	assert_int_equal(ud_handoff_encode(&h, &buf, &len, &e), 0);
	struct ud_handoff d;
	ud_handoff_init(&d);
	if (ud_handoff_decode(buf, len, 1, &d, &e) != 0)
		fail_msg("decode: %s", e.msg);
	assert_int_equal(d.n_env, 0);
	assert_string_equal(d.image, "a");
	assert_string_equal(d.workdir, "/");
	assert_int_equal(d.layers, 1);
	ud_handoff_free(&d);
	free(buf);
	ud_handoff_free(&h);
}

static void test_encode_too_big(void **state)
{
	(void)state;
	struct ud_handoff h;
	fill_handoff(&h);
	h.n_fds = 1;
	h.types[0] = CLONE_NEWNS;
	size_t big = UD_HANDOFF_MAX_PAYLOAD + 16;
	char *v = malloc(big + 1);
	memset(v, 'x', big);
	memcpy(v, "BIG=", 4);
	v[big] = '\0';
	free(h.env[2]);
	h.env[2] = v;
	unsigned char *buf = NULL;
	size_t len = 0;
	ud_error e;
	memset(&e, 0, sizeof(e));
	int r = ud_handoff_encode(&h, &buf, &len, &e);
	if (r == 0) {
		free(buf);
		fail_msg("a payload over UD_HANDOFF_MAX_PAYLOAD was encoded (%zu bytes)", len);
	}
	assert_int_equal(e.status, UD_EXIT_HANDOFF);
	ud_handoff_free(&h);
}

static void expect_decode_fails(const char *what, const unsigned char *buf, size_t len, int n_recv)
{
	struct ud_handoff d;
	ud_handoff_init(&d);
	ud_error e;
	memset(&e, 0, sizeof(e));
	int r = ud_handoff_decode(buf, len, n_recv, &d, &e);
	if (r != -1) {
		ud_handoff_free(&d);
		fail_msg("decode accepted: %s", what);
	}
	if (e.status != UD_EXIT_HANDOFF)
		fail_msg("decode %s: status %d (\"%s\"), expected %d", what, e.status, e.msg,
			 UD_EXIT_HANDOFF);
	ud_handoff_free(&d);
}

static void test_decode_forged(void **state)
{
	(void)state;
	uint32_t t1[] = {CLONE_NEWNS};
	uint32_t t6[] = {CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWCGROUP,
			 CLONE_NEWPID};
	size_t len;
	unsigned char *m;

	/* control: the forge helper makes a valid message */
	m = forge("UDNS", 1, 1, GOOD_PAYLOAD_LEN, 0, t1, 1, good_payload, GOOD_PAYLOAD_LEN, &len);
	struct ud_handoff d;
	ud_handoff_init(&d);
	ud_error e;
	if (ud_handoff_decode(m, len, 1, &d, &e) != 0)
		fail_msg("valid forged message refused: %s", e.msg);
	assert_string_equal(d.image, "busybox:latest");
	assert_string_equal(d.workdir, "/srv");
	assert_int_equal(d.layers, 3);
	assert_int_equal(d.n_env, 2);
	assert_string_equal(d.env[1], "FOO=bar=baz");
	ud_handoff_free(&d);

	expect_decode_fails("header count != fds received (1 vs 2)", m, len, 2);
	expect_decode_fails("header count != fds received (1 vs 0)", m, len, 0);
	for (size_t cut = 0; cut < len; cut++) {
		char what[64];
		snprintf(what, sizeof(what), "truncated to %zu of %zu bytes", cut, len);
		expect_decode_fails(what, m, cut, 1);
	}
	free(m);

	m = forge("XDNS", 1, 1, GOOD_PAYLOAD_LEN, 0, t1, 1, good_payload, GOOD_PAYLOAD_LEN, &len);
	expect_decode_fails("wrong magic", m, len, 1);
	free(m);
	m = forge("udns", 1, 1, GOOD_PAYLOAD_LEN, 0, t1, 1, good_payload, GOOD_PAYLOAD_LEN, &len);
	expect_decode_fails("lower-case magic", m, len, 1);
	free(m);
	m = forge("UDNS", 2, 1, GOOD_PAYLOAD_LEN, 0, t1, 1, good_payload, GOOD_PAYLOAD_LEN, &len);
	expect_decode_fails("version 2", m, len, 1);
	free(m);
	m = forge("UDNS", 0, 1, GOOD_PAYLOAD_LEN, 0, t1, 1, good_payload, GOOD_PAYLOAD_LEN, &len);
	expect_decode_fails("version 0", m, len, 1);
	free(m);
	m = forge("UDNS", 0x100, 1, GOOD_PAYLOAD_LEN, 0, t1, 1, good_payload, GOOD_PAYLOAD_LEN, &len);
	expect_decode_fails("version 1 big-endian", m, len, 1);
	free(m);
	m = forge("UDNS", 1, 0, GOOD_PAYLOAD_LEN, 0, NULL, 0, good_payload, GOOD_PAYLOAD_LEN, &len);
	expect_decode_fails("n_fds 0", m, len, 0);
	free(m);
	m = forge("UDNS", 1, 6, GOOD_PAYLOAD_LEN, 0, t6, 6, good_payload, GOOD_PAYLOAD_LEN, &len);
	expect_decode_fails("n_fds 6 > max", m, len, 6);
	free(m);
	m = forge("UDNS", 1, 0xffff, GOOD_PAYLOAD_LEN, 0, t1, 1, good_payload, GOOD_PAYLOAD_LEN, &len);
	expect_decode_fails("n_fds 65535", m, len, 1);
	free(m);
	m = forge("UDNS", 1, 1, GOOD_PAYLOAD_LEN + 100, 0, t1, 1, good_payload, GOOD_PAYLOAD_LEN, &len);
	expect_decode_fails("payload_len larger than sent", m, len, 1);
	free(m);
	m = forge("UDNS", 1, 1, 0xffffffffu, 0, t1, 1, good_payload, GOOD_PAYLOAD_LEN, &len);
	expect_decode_fails("payload_len 4 GiB", m, len, 1);
	free(m);
	m = forge("UDNS", 1, 1, 0xfffffff0u, 0, t1, 1, good_payload, GOOD_PAYLOAD_LEN, &len);
	expect_decode_fails("payload_len near UINT32_MAX (overflow)", m, len, 1);
	free(m);
	m = forge("UDNS", 1, 1, GOOD_PAYLOAD_LEN - 1, 0, t1, 1, good_payload, GOOD_PAYLOAD_LEN - 1, &len);
	expect_decode_fails("payload not NUL-terminated", m, len, 1);
	free(m);
	static const char no_eq[] = "image=a\0garbage\0";
	m = forge("UDNS", 1, 1, sizeof(no_eq) - 1, 0, t1, 1, no_eq, sizeof(no_eq) - 1, &len);
	expect_decode_fails("payload entry without '='", m, len, 1);
	free(m);

	/* payload over the maximum, even if complete */
	size_t big = UD_HANDOFF_MAX_PAYLOAD + 8;
	char *bp = calloc(1, big);
	memcpy(bp, "env=A=", 6);
	memset(bp + 6, 'a', big - 7);
	m = forge("UDNS", 1, 1, (uint32_t)big, 0, t1, 1, bp, big, &len);
	expect_decode_fails("payload over UD_HANDOFF_MAX_PAYLOAD", m, len, 1);
	free(m);
	free(bp);

	/* duplicate types, no CLONE_NEWNS and unknown types are recv checks: see test_forged_fds */
}

/* Unknown keys: handoff.h does not say whether they are ignored or refused. Either is accepted
 * here; if accepted, the known fields must still be right; in both cases nothing leaks. */
static void test_decode_unknown_key(void **state)
{
	(void)state;
	static const char pl[] = "image=a\0future=thing\0id=sha256:00\0layers=1\0workdir=/\0";
	uint32_t t1[] = {CLONE_NEWNS};
	size_t len;
	unsigned char *m = forge("UDNS", 1, 1, sizeof(pl) - 1, 0, t1, 1, pl, sizeof(pl) - 1, &len);
	struct ud_handoff d;
	ud_handoff_init(&d);
	ud_error e;
	memset(&e, 0, sizeof(e));
	int r = ud_handoff_decode(m, len, 1, &d, &e);
	if (r == 0) {
		assert_string_equal(d.image, "a");
		assert_string_equal(d.id, "sha256:00");
		assert_string_equal(d.workdir, "/");
		assert_int_equal(d.layers, 1);
		assert_int_equal(d.n_env, 0);
	} else {
		assert_int_equal(e.status, UD_EXIT_HANDOFF);
	}
	print_message("    (unknown payload key: %s)\n", r == 0 ? "ignored" : "refused");
	ud_handoff_free(&d);
	free(m);
}

/* ---- the image's User: user=UID:GID or user_error=TEXT ----------------------------------------- */

static void round_trip_user(struct ud_handoff *h)
{
	h->n_fds = 1;
	h->types[0] = CLONE_NEWNS;
	unsigned char *buf = NULL;
	size_t len = 0;
	ud_error e;
	if (ud_handoff_encode(h, &buf, &len, &e) != 0)
		fail_msg("encode: %s", e.msg);
	struct ud_handoff d;
	ud_handoff_init(&d);
	if (ud_handoff_decode(buf, len, 1, &d, &e) != 0)
		fail_msg("decode: %s", e.msg);
	check_payload_fields(&d, h);
	ud_handoff_free(&d);
	free(buf);
}

static void test_user_round_trip(void **state)
{
	(void)state;
	struct ud_handoff h;
	fill_handoff(&h);
	round_trip_user(&h); /* none: an older helper's message, or an image without User */
	h.has_user = 1;
	h.uid = 65534;
	h.gid = 0;
	round_trip_user(&h);
	h.uid = h.gid = UD_HANDOFF_MAX_ID;
	round_trip_user(&h);
	h.has_user = 0;
	h.uid = h.gid = 0;
	h.user_error = strdup("no user 'ghost' in the image's /etc/passwd");
	round_trip_user(&h);
	/* Out of range is refused when encoding, never sent. */
	free(h.user_error);
	h.user_error = NULL;
	h.has_user = 1;
	h.uid = UD_HANDOFF_MAX_ID + 1U;
	unsigned char *buf = NULL;
	size_t len;
	ud_error e;
	assert_int_equal(ud_handoff_encode(&h, &buf, &len, &e), -1);
	assert_null(buf);
	ud_handoff_free(&h);
}

static void test_user_forged(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"user=1",
		"user=1:",
		"user=:1",
		"user=1:2:3",
		"user=-1:0",
		"user=+1:0",
		"user= 1:0",
		"user=2147483648:0",
		"user=0:99999999999",
		"user=0x1:0",
		"user_error=",
		"user_error=line\nbreak",
		"user_error=\x1b[31m",
		"user_error=\xc3\xa9",
	};
	static const char head[] = "image=a\0id=b\0";
	uint32_t t1[] = {CLONE_NEWNS};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char pl[128];
		size_t n = sizeof(head) - 1;
		memcpy(pl, head, n);
		size_t l = strlen(bad[i]);
		memcpy(pl + n, bad[i], l);
		n += l;
		pl[n++] = '\0';
		size_t len;
		unsigned char *m = forge("UDNS", 1, 1, (uint32_t)n, 0, t1, 1, pl, n, &len);
		expect_decode_fails(bad[i], m, len, 1);
		free(m);
	}
	static const char twice[] = "image=a\0id=b\0user=1:1\0user=2:2\0";
	static const char both[] = "image=a\0id=b\0user=1:1\0user_error=x\0";
	static const char *const pls[] = {twice, both};
	static const size_t lens[] = {sizeof(twice) - 1, sizeof(both) - 1};
	for (size_t i = 0; i < 2; i++) {
		size_t len;
		unsigned char *m =
			forge("UDNS", 1, 1, (uint32_t)lens[i], 0, t1, 1, pls[i], lens[i], &len);
		expect_decode_fails(i ? "user and user_error" : "user twice", m, len, 1);
		free(m);
	}
}

/* ---- real round trip over socketpairs ---------------------------------------------------------- */

static void round_trip(int socktype)
{
	static const char *names[] = {"mnt", "uts", "ipc", "net", "cgroup"};
	static const int types[] = {CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWNET,
				    CLONE_NEWCGROUP};
	struct pair p = make_pair(socktype);
	int base = count_fds();

	struct ud_handoff h;
	fill_handoff(&h);
	h.n_fds = 5;
	for (int i = 0; i < 5; i++) {
		h.types[i] = types[i];
		h.fds[i] = open_ns(names[i]);
	}
	ud_error e;
	if (ud_handoff_send(p.tx, &h, &e) != 0)
		fail_msg("send: status %d: %s", e.status, e.msg);
	for (int i = 0; i < 5; i++)
		assert_true(fd_is_open(h.fds[i])); /* send does not consume the caller's fds */

	struct ud_handoff r;
	ud_handoff_init(&r);
	alarm(10);
	if (ud_handoff_recv(p.rx, &r, RECV_TIMEOUT_MS, &e) != 0)
		fail_msg("recv: status %d: %s", e.status, e.msg);
	alarm(0);
	check_payload_fields(&r, &h);
	assert_int_equal(r.n_fds, 5);
	assert_int_equal(count_fds(), base + 10);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(r.types[i], types[i]);
		int fd = r.fds[i];
		assert_true(fd >= 0);
		for (int j = 0; j < 5; j++)
			assert_int_not_equal(fd, h.fds[j]);
		int fl = fcntl(fd, F_GETFD);
		assert_true(fl >= 0);
		if (!(fl & FD_CLOEXEC))
			fail_msg("received %s fd %d has no FD_CLOEXEC", names[i], fd);
		assert_int_equal(ioctl(fd, NS_GET_NSTYPE), types[i]);
		assert_int_equal(fd_ino(fd), fd_ino(h.fds[i])); /* the same namespace */
	}
	ud_handoff_free(&r);
	assert_int_equal(count_fds(), base + 5);
	ud_handoff_free(&h);
	assert_int_equal(count_fds(), base);
	close_pair(&p);
}

static void test_round_trip_seqpacket(void **state)
{
	(void)state;
	round_trip(SOCK_SEQPACKET);
}

static void test_round_trip_stream(void **state)
{
	(void)state;
	round_trip(SOCK_STREAM);
}

/* Only the mount namespace, a large env: still one message. */
static void test_round_trip_mnt_only_big_env(void **state)
{
	(void)state;
	for (int pass = 0; pass < 2; pass++) {
		struct pair p = make_pair(pass ? SOCK_STREAM : SOCK_SEQPACKET);
		int bufsz = 1 << 20;
		setsockopt(p.tx, SOL_SOCKET, SO_SNDBUF, &bufsz, sizeof(bufsz));
		setsockopt(p.rx, SOL_SOCKET, SO_RCVBUF, &bufsz, sizeof(bufsz));
		struct ud_handoff h;
		ud_handoff_init(&h);
		h.image = strdup("localhost:5000/a/b:tag");
		h.id = strdup("sha256:ff");
		h.workdir = strdup("/");
		h.layers = 120;
		h.n_env = 1000;
		h.env = calloc(h.n_env + 1, sizeof(char *));
		for (size_t i = 0; i < h.n_env; i++) {
			char kv[64];
			snprintf(kv, sizeof(kv), "VAR_%zu=value number %zu", i, i);
			h.env[i] = strdup(kv);
		}
		h.n_fds = 1;
		h.types[0] = CLONE_NEWNS;
		h.fds[0] = open_ns("mnt");
		ud_error e;
		if (ud_handoff_send(p.tx, &h, &e) != 0)
			fail_msg("send: %s", e.msg);
		struct ud_handoff r;
		ud_handoff_init(&r);
		alarm(10);
		if (ud_handoff_recv(p.rx, &r, RECV_TIMEOUT_MS, &e) != 0)
			fail_msg("recv (pass %d): %s", pass, e.msg);
		alarm(0);
		check_payload_fields(&r, &h);
		assert_int_equal(r.n_fds, 1);
		assert_int_equal(ioctl(r.fds[0], NS_GET_NSTYPE), CLONE_NEWNS);
		ud_handoff_free(&r);
		ud_handoff_free(&h);
		close_pair(&p);
	}
}

/* ---- forged messages over a real socket -------------------------------------------------------- */

static void test_forged_header(void **state)
{
	(void)state;
	struct nsset ns = open_all();
	uint32_t t1[] = {CLONE_NEWNS};
	size_t len;
	unsigned char *m;

	/* control: a valid forged message is accepted, so the refusals below are meaningful */
	{
		m = forge("UDNS", 1, 1, GOOD_PAYLOAD_LEN, 0, t1, 1, good_payload, GOOD_PAYLOAD_LEN, &len);
		struct pair p = make_pair(SOCK_SEQPACKET);
		raw_send(p.tx, m, len, &ns.mnt, 1);
		struct ud_handoff h;
		ud_handoff_init(&h);
		ud_error e;
		alarm(10);
		if (ud_handoff_recv(p.rx, &h, RECV_TIMEOUT_MS, &e) != 0)
			fail_msg("valid raw message refused: %s", e.msg);
		alarm(0);
		assert_int_equal(h.n_fds, 1);
		assert_string_equal(h.image, "busybox:latest");
		ud_handoff_free(&h);
		close_pair(&p);
		free(m);
	}

	m = forge("XDNS", 1, 1, GOOD_PAYLOAD_LEN, 0, t1, 1, good_payload, GOOD_PAYLOAD_LEN, &len);
	expect_refused("wrong magic", m, len, &ns.mnt, 1);
	expect_refused_on(SOCK_STREAM, "wrong magic", m, len, &ns.mnt, 1);
	free(m);

	m = forge("UDNS", 2, 1, GOOD_PAYLOAD_LEN, 0, t1, 1, good_payload, GOOD_PAYLOAD_LEN, &len);
	expect_refused("wrong version", m, len, &ns.mnt, 1);
	expect_refused_on(SOCK_STREAM, "wrong version", m, len, &ns.mnt, 1);
	free(m);

	m = forge("UDNS", 1, 0, GOOD_PAYLOAD_LEN, 0, NULL, 0, good_payload, GOOD_PAYLOAD_LEN, &len);
	expect_refused("n_fds 0 (one fd sent)", m, len, &ns.mnt, 1);
	expect_refused("n_fds 0 (no fd sent)", m, len, NULL, 0);
	free(m);

	int six[] = {ns.mnt, ns.uts, ns.ipc, ns.net, ns.cgroup, ns.pid};
	uint32_t t6[] = {CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWCGROUP,
			 CLONE_NEWPID};
	m = forge("UDNS", 1, 6, GOOD_PAYLOAD_LEN, 0, t6, 6, good_payload, GOOD_PAYLOAD_LEN, &len);
	expect_refused("n_fds 6 > max, 6 fds sent", m, len, six, 6);
	expect_refused_on(SOCK_STREAM, "n_fds 6 > max, 6 fds sent", m, len, six, 6);
	free(m);

	/* 6 fds sent with a header declaring 5: more fds than the receiver makes room for */
	m = forge("UDNS", 1, 5, GOOD_PAYLOAD_LEN, 0, t6, 5, good_payload, GOOD_PAYLOAD_LEN, &len);
	expect_refused("5 declared, 6 fds sent (MSG_CTRUNC)", m, len, six, 6);
	expect_refused_on(SOCK_STREAM, "5 declared, 6 fds sent (MSG_CTRUNC)", m, len, six, 6);
	free(m);

	/* 12 fds: well past any control buffer sized for the maximum */
	int twelve[12];
	for (int i = 0; i < 12; i++)
		twelve[i] = six[i % 6];
	m = forge("UDNS", 1, 1, GOOD_PAYLOAD_LEN, 0, t1, 1, good_payload, GOOD_PAYLOAD_LEN, &len);
	expect_refused("1 declared, 12 fds sent", m, len, twelve, 12);
	free(m);

	m = forge("UDNS", 1, 1, GOOD_PAYLOAD_LEN + 100, 0, t1, 1, good_payload, GOOD_PAYLOAD_LEN, &len);
	expect_refused("payload_len larger than sent", m, len, &ns.mnt, 1);
	expect_refused_on(SOCK_STREAM, "payload_len larger than sent", m, len, &ns.mnt, 1);
	free(m);

	m = forge("UDNS", 1, 1, 0xffffffffu, 0, t1, 1, good_payload, GOOD_PAYLOAD_LEN, &len);
	expect_refused("payload_len 4 GiB", m, len, &ns.mnt, 1);
	expect_refused_on(SOCK_STREAM, "payload_len 4 GiB", m, len, &ns.mnt, 1);
	free(m);

	m = forge("UDNS", 1, 1, GOOD_PAYLOAD_LEN - 1, 0, t1, 1, good_payload, GOOD_PAYLOAD_LEN - 1,
		  &len);
	expect_refused("payload not NUL-terminated", m, len, &ns.mnt, 1);
	expect_refused_on(SOCK_STREAM, "payload not NUL-terminated", m, len, &ns.mnt, 1);
	free(m);

	/* cut inside the types array: header says 2 types, 1 type + nothing else follows */
	uint32_t t2[] = {CLONE_NEWNS, CLONE_NEWUTS};
	m = forge("UDNS", 1, 2, 0, 0, t2, 1, NULL, 0, &len);
	int two[] = {ns.mnt, ns.uts};
	expect_refused("cut inside the types array", m, len, two, 2);
	expect_refused_on(SOCK_STREAM, "cut inside the types array", m, len, two, 2);
	free(m);

	/* short garbage, and a lone 10-byte piece of a header */
	expect_refused("5 bytes of garbage", "hello", 5, &ns.mnt, 1);
	expect_refused_on(SOCK_STREAM, "10 header bytes then EOF", "UDNS\x01\x00\x01\x00\x00\x00", 10,
			  &ns.mnt, 1);

	close_all(&ns);
}

static void test_forged_fds(void **state)
{
	(void)state;
	struct nsset ns = open_all();

	uint32_t tmnt[] = {CLONE_NEWNS};
	send_forged_types("uts fd declared as mnt", tmnt, 1, &ns.uts, 1);
	send_forged_types("net fd declared as mnt", tmnt, 1, &ns.net, 1);

	int pfd[2];
	assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
	send_forged_types("a pipe declared as mnt", tmnt, 1, &pfd[0], 1);
	int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	send_forged_types("/dev/null declared as mnt", tmnt, 1, &devnull, 1);
	int procself = open("/proc/self/ns", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	send_forged_types("the /proc/self/ns directory declared as mnt", tmnt, 1, &procself, 1);
	uint32_t tmnt_uts[] = {CLONE_NEWNS, CLONE_NEWUTS};
	int mnt_pipe[] = {ns.mnt, pfd[1]};
	send_forged_types("a pipe declared as uts after a good mnt", tmnt_uts, 2, mnt_pipe, 2);
	int mnt_ipc[] = {ns.mnt, ns.ipc};
	send_forged_types("ipc fd declared as uts", tmnt_uts, 2, mnt_ipc, 2);
	int uts_mnt[] = {ns.uts, ns.mnt};
	send_forged_types("mnt and uts fds swapped", tmnt_uts, 2, uts_mnt, 2);

	int two[] = {ns.mnt, ns.uts};
	send_forged_types("more fds sent (2) than declared (1)", tmnt, 1, two, 2);
	send_forged_types("fewer fds sent (1) than declared (2)", tmnt_uts, 2, &ns.mnt, 1);
	send_forged_types("no fds at all (1 declared)", tmnt, 1, NULL, 0);
	send_forged_types("no fds at all (2 declared)", tmnt_uts, 2, NULL, 0);

	uint32_t tuts[] = {CLONE_NEWUTS};
	send_forged_types("no CLONE_NEWNS (uts only)", tuts, 1, &ns.uts, 1);
	uint32_t tuts_ipc[] = {CLONE_NEWUTS, CLONE_NEWIPC};
	int uts_ipc[] = {ns.uts, ns.ipc};
	send_forged_types("no CLONE_NEWNS (uts, ipc)", tuts_ipc, 2, uts_ipc, 2);

	uint32_t tdup[] = {CLONE_NEWNS, CLONE_NEWNS};
	int mnt_mnt[] = {ns.mnt, ns.mnt};
	send_forged_types("duplicate types (mnt twice)", tdup, 2, mnt_mnt, 2);
	uint32_t tdup2[] = {CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWUTS};
	int mnt_uts_uts[] = {ns.mnt, ns.uts, ns.uts};
	send_forged_types("duplicate types (uts twice)", tdup2, 3, mnt_uts_uts, 3);

	uint32_t tpid[] = {CLONE_NEWNS, CLONE_NEWPID};
	int mnt_pid[] = {ns.mnt, ns.pid};
	send_forged_types("a pid namespace (not offered)", tpid, 2, mnt_pid, 2);
	uint32_t tbogus[] = {CLONE_NEWNS, 0x40};
	send_forged_types("an unknown type value", tbogus, 2, mnt_pid, 2);

	close(pfd[0]);
	close(pfd[1]);
	close(devnull);
	close(procself);
	close_all(&ns);
}

/* Unknown payload keys over a real socket: accepted or refused (header does not say), never a
 * leak. */
static void test_forged_unknown_key(void **state)
{
	(void)state;
	struct nsset ns = open_all();
	static const char pl[] = "image=a\0x-future=1\0id=sha256:00\0layers=1\0workdir=/\0";
	uint32_t t1[] = {CLONE_NEWNS};
	size_t len;
	unsigned char *m = forge("UDNS", 1, 1, sizeof(pl) - 1, 0, t1, 1, pl, sizeof(pl) - 1, &len);
	struct pair p = make_pair(SOCK_SEQPACKET);
	int before = count_fds();
	raw_send(p.tx, m, len, &ns.mnt, 1);
	struct ud_handoff h;
	ud_handoff_init(&h);
	ud_error e;
	memset(&e, 0, sizeof(e));
	alarm(10);
	int r = ud_handoff_recv(p.rx, &h, RECV_TIMEOUT_MS, &e);
	alarm(0);
	if (r == 0) {
		assert_int_equal(count_fds(), before + 1);
		assert_string_equal(h.image, "a");
	} else {
		assert_int_equal(e.status, UD_EXIT_HANDOFF);
		assert_int_equal(count_fds(), before);
	}
	ud_handoff_free(&h);
	assert_int_equal(count_fds(), before);
	close_pair(&p);
	free(m);
	close_all(&ns);
}

/* An empty datagram, a closed peer, silence: refused, within the timeout. */
static void test_recv_eof_and_timeout(void **state)
{
	(void)state;
	struct ud_handoff h;
	ud_error e;
	int before;

	/* peer closed without sending */
	for (int pass = 0; pass < 2; pass++) {
		struct pair p = make_pair(pass ? SOCK_STREAM : SOCK_SEQPACKET);
		close(p.tx);
		p.tx = -1;
		before = count_fds();
		ud_handoff_init(&h);
		memset(&e, 0, sizeof(e));
		alarm(10);
		assert_int_equal(ud_handoff_recv(p.rx, &h, RECV_TIMEOUT_MS, &e), -1);
		alarm(0);
		assert_int_equal(e.status, UD_EXIT_HANDOFF);
		ud_handoff_free(&h);
		assert_int_equal(count_fds(), before);
		close_pair(&p);
	}

	/* a zero-length datagram */
	{
		struct pair p = make_pair(SOCK_SEQPACKET);
		assert_int_equal(send(p.tx, "", 0, 0), 0);
		ud_handoff_init(&h);
		memset(&e, 0, sizeof(e));
		alarm(10);
		assert_int_equal(ud_handoff_recv(p.rx, &h, RECV_TIMEOUT_MS, &e), -1);
		alarm(0);
		assert_int_equal(e.status, UD_EXIT_HANDOFF);
		ud_handoff_free(&h);
		close_pair(&p);
	}

	/* nothing arrives: the timeout bounds the wait */
	for (int pass = 0; pass < 2; pass++) {
		struct pair p = make_pair(pass ? SOCK_STREAM : SOCK_SEQPACKET);
		if (pass)
			raw_send(p.tx, "UDNS\x01\x00", 6, NULL, 0); /* a partial header, then silence */
		ud_handoff_init(&h);
		memset(&e, 0, sizeof(e));
		struct timespec t0, t1;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		alarm(10);
		assert_int_equal(ud_handoff_recv(p.rx, &h, 300, &e), -1);
		alarm(0);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		double el = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
		assert_int_equal(e.status, UD_EXIT_HANDOFF);
		if (el < 0.2 || el > 3.0)
			fail_msg("timeout_ms=300 returned after %.3f s", el);
		ud_handoff_free(&h);
		close_pair(&p);
	}
}

/* A message that arrives after a while, within the timeout, is received. */
static void test_recv_late_message(void **state)
{
	(void)state;
	struct pair p = make_pair(SOCK_SEQPACKET);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(p.rx);
		usleep(150 * 1000);
		struct ud_handoff h;
		ud_handoff_init(&h);
		h.image = strdup("late");
		h.id = strdup("sha256:00");
		h.workdir = strdup("/");
		h.layers = 1;
		h.n_fds = 1;
		h.types[0] = CLONE_NEWNS;
		h.fds[0] = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
		ud_error ce;
		_exit(ud_handoff_send(p.tx, &h, &ce) == 0 ? 0 : 1);
	}
	close(p.tx);
	p.tx = -1;
	struct ud_handoff h;
	ud_handoff_init(&h);
	ud_error e;
	alarm(10);
	int r = ud_handoff_recv(p.rx, &h, 3000, &e);
	alarm(0);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (r != 0)
		fail_msg("a message sent after 150 ms was refused (timeout 3000 ms): %s", e.msg);
	assert_string_equal(h.image, "late");
	assert_int_equal(ioctl(h.fds[0], NS_GET_NSTYPE), CLONE_NEWNS);
	ud_handoff_free(&h);
	close_pair(&p);
}

/* timeout_ms bounds the whole wait, not each read: a peer that trickles a valid message one byte
 * every 100 ms must not keep the receiver (the uWSGI master) waiting 3 s past a 500 ms timeout. */
static void test_recv_timeout_total(void **state)
{
	(void)state;
	static const char pl[] = "image=a\0id=b\0";
	uint32_t tmnt[] = {CLONE_NEWNS};
	size_t len;
	unsigned char *m = forge("UDNS", 1, 1, sizeof(pl) - 1, 0, tmnt, 1, pl, sizeof(pl) - 1, &len);
	struct pair p = make_pair(SOCK_STREAM);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(p.rx);
		int mnt = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
		union {
			char buf[CMSG_SPACE(sizeof(int))];
			struct cmsghdr align;
		} u;
		memset(&u, 0, sizeof(u));
		struct iovec iov = {.iov_base = m, .iov_len = 1};
		struct msghdr mh;
		memset(&mh, 0, sizeof(mh));
		mh.msg_iov = &iov;
		mh.msg_iovlen = 1;
		mh.msg_control = u.buf;
		mh.msg_controllen = sizeof(u.buf);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &mnt, sizeof(int));
		if (sendmsg(p.tx, &mh, MSG_NOSIGNAL) != 1)
			_exit(1);
		for (size_t i = 1; i < len; i++) {
			usleep(100 * 1000);
			if (send(p.tx, m + i, 1, MSG_NOSIGNAL) != 1)
				_exit(0); /* the receiver gave up: fine */
		}
		_exit(0);
	}
	close(p.tx);
	p.tx = -1;
	int before = count_fds();
	struct ud_handoff h;
	ud_handoff_init(&h);
	ud_error e;
	memset(&e, 0, sizeof(e));
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	alarm(20);
	int r = ud_handoff_recv(p.rx, &h, 500, &e);
	alarm(0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double el = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	ud_handoff_free(&h);
	int after = count_fds();
	close_pair(&p); /* the child then stops at its next send (EPIPE) */
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	free(m);
	assert_int_equal(after, before);
	if (r == 0 || el > 2.0)
		fail_msg("timeout_ms=500 with a trickling peer (%zu bytes, 1 per 100 ms): %s after "
			 "%.2f s; expected a refusal within ~0.5 s",
			 len, r == 0 ? "accepted" : "refused", el);
	assert_int_equal(e.status, UD_EXIT_HANDOFF);
}

/* SO_PEERCRED: a sender that is neither root nor us is refused (needs root to switch uid). */
static void test_peercred_refused(void **state)
{
	(void)state;
	if (geteuid() != 0) {
		print_message("    skipped: needs root\n");
		return;
	}
	char dir[] = "/tmp/udunit-handoff-XXXXXX";
	assert_non_null(mkdtemp(dir));
	assert_int_equal(chmod(dir, 0755), 0);
	struct sockaddr_un sa;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/sock", dir);
	int ls = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	assert_true(ls >= 0);
	assert_int_equal(bind(ls, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(chmod(sa.sun_path, 0777), 0);
	assert_int_equal(listen(ls, 1), 0);

	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int mnt = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
		if (mnt < 0 || setgroups(0, NULL) || setgid(65534) || setuid(65534))
			_exit(2);
		int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
		if (s < 0 || connect(s, (struct sockaddr *)&sa, sizeof(sa)))
			_exit(3);
		struct ud_handoff h;
		ud_handoff_init(&h);
		h.image = strdup("a");
		h.id = strdup("sha256:00");
		h.workdir = strdup("/");
		h.layers = 1;
		h.n_fds = 1;
		h.types[0] = CLONE_NEWNS;
		h.fds[0] = mnt;
		ud_error ce;
		/* may fail with EPIPE: the receiver can refuse on SO_PEERCRED before reading */
		(void)ud_handoff_send(s, &h, &ce);
		char c;
		(void)!read(s, &c, 1); /* wait for the parent to finish */
		_exit(0);
	}
	int cs = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
	assert_true(cs >= 0);
	int before = count_fds();
	struct ud_handoff h;
	ud_handoff_init(&h);
	ud_error e;
	memset(&e, 0, sizeof(e));
	alarm(10);
	int r = ud_handoff_recv(cs, &h, RECV_TIMEOUT_MS, &e);
	alarm(0);
	int after = count_fds();
	ud_handoff_free(&h);
	close(cs);
	close(ls);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	unlink(sa.sun_path);
	rmdir(dir);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	if (r != -1)
		fail_msg("a message from uid 65534 was accepted by uid 0");
	assert_int_equal(e.status, UD_EXIT_HANDOFF);
	assert_int_equal(after, before);
}

/* ud_handoff_enter: setns into our own namespaces (a no-op move) in a child; every fd is closed
 * right after. */
static void test_enter_own_namespaces(void **state)
{
	(void)state;
	if (geteuid() != 0) {
		print_message("    skipped: needs root\n");
		return;
	}
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int before = count_fds();
		struct ud_handoff h;
		ud_handoff_init(&h);
		h.n_fds = 3;
		h.types[0] = CLONE_NEWNS;
		h.fds[0] = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
		h.types[1] = CLONE_NEWUTS;
		h.fds[1] = open("/proc/self/ns/uts", O_RDONLY | O_CLOEXEC);
		h.types[2] = CLONE_NEWIPC;
		h.fds[2] = open("/proc/self/ns/ipc", O_RDONLY | O_CLOEXEC);
		ud_error e;
		if (ud_handoff_enter(&h, &e) != 0) {
			fprintf(stderr, "ud_handoff_enter: %s\n", e.msg);
			_exit(10);
		}
		if (count_fds() != before) {
			fprintf(stderr, "ud_handoff_enter left %d fds open\n", count_fds() - before);
			_exit(11);
		}
		for (int i = 0; i < 3; i++)
			if (h.fds[i] != -1)
				_exit(12);
		ud_handoff_free(&h);
		_exit(0);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status) != 0)
		fail_msg("child failed with %d (10: enter failed, 11: fds left open, 12: fds not reset "
			 "to -1)", WEXITSTATUS(status));
}

static int setup_alarm(void **state)
{
	(void)state;
	signal(SIGALRM, on_alarm);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_init_free),
		cmocka_unit_test(test_encode_layout),
		cmocka_unit_test(test_encode_decode_round_trip),
		cmocka_unit_test(test_encode_decode_empty_env),
		cmocka_unit_test(test_encode_too_big),
		cmocka_unit_test(test_decode_forged),
		cmocka_unit_test(test_decode_unknown_key),
		cmocka_unit_test(test_user_round_trip),
		cmocka_unit_test(test_user_forged),
		cmocka_unit_test(test_round_trip_seqpacket),
		cmocka_unit_test(test_round_trip_stream),
		cmocka_unit_test(test_round_trip_mnt_only_big_env),
		cmocka_unit_test(test_forged_header),
		cmocka_unit_test(test_forged_fds),
		cmocka_unit_test(test_forged_unknown_key),
		cmocka_unit_test(test_recv_eof_and_timeout),
		cmocka_unit_test(test_recv_late_message),
		cmocka_unit_test(test_recv_timeout_total),
		cmocka_unit_test(test_peercred_refused),
		cmocka_unit_test(test_enter_own_namespaces),
	};
	return cmocka_run_group_tests(tests, setup_alarm, NULL);
}
