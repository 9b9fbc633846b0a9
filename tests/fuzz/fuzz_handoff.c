/* The hand-off decoder: the plugin (inside the uWSGI master, as root) decodes what arrives on its
 * socket. The input is one wire message (handoff.h); the fd count that came with it is taken from
 * the header, so that the payload parser is reached, and once more off by one, which must fail.
 * A message that decodes must survive encode + decode unchanged. */
#include <sched.h>
#include <stdbool.h>

#include "fuzz.h"
#include "handoff.h"

#define VALID_TYPES (CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET | CLONE_NEWCGROUP)

static void check_decoded(const struct ud_handoff *h)
{
	fuzz_require(h->image && h->id && h->workdir);
	fuzz_require(h->n_fds >= 1 && h->n_fds <= UD_HANDOFF_MAX_FDS);
	fuzz_require(h->layers <= 100000);
	int seen = 0;
	for (int i = 0; i < h->n_fds; i++) {
		int t = h->types[i];
		fuzz_require(t > 0 && !(t & (t - 1)) && (t & VALID_TYPES) && !(seen & t));
		seen |= t;
	}
	fuzz_require(seen & CLONE_NEWNS);
	for (int i = 0; i < UD_HANDOFF_MAX_FDS; i++)
		fuzz_require(h->fds[i] == -1); /* decoding never makes up an fd */
	fuzz_require(h->n_env == 0 || h->env);
	for (size_t i = 0; i < h->n_env; i++)
		fuzz_require(h->env[i] && h->env[i][0] != '=' && strchr(h->env[i], '='));
	/* The image's User: numbers in range, or a printable reason, never both. */
	fuzz_require(!h->has_user || (h->uid <= UD_HANDOFF_MAX_ID && h->gid <= UD_HANDOFF_MAX_ID));
	fuzz_require(h->has_user || (!h->uid && !h->gid));
	fuzz_require(!(h->has_user && h->user_error));
	for (const char *c = h->user_error; c && *c; c++)
		fuzz_require(*c >= 0x20 && *c <= 0x7e);
	fuzz_require(!h->user_error || h->user_error[0]);
}

static void check_same(const struct ud_handoff *a, const struct ud_handoff *b)
{
	fuzz_require(!strcmp(a->image, b->image) && !strcmp(a->id, b->id));
	fuzz_require(!strcmp(a->workdir, b->workdir) && a->layers == b->layers);
	fuzz_require(a->n_fds == b->n_fds &&
		     !memcmp(a->types, b->types, sizeof(a->types[0]) * (size_t)a->n_fds));
	fuzz_require(a->has_user == b->has_user && a->uid == b->uid && a->gid == b->gid);
	fuzz_require(!a->user_error == !b->user_error &&
		     (!a->user_error || !strcmp(a->user_error, b->user_error)));
	fuzz_require(a->n_env == b->n_env);
	for (size_t i = 0; i < a->n_env; i++)
		fuzz_require(!strcmp(a->env[i], b->env[i]));
}

static void round_trip(const struct ud_handoff *h)
{
	unsigned char *buf = NULL;
	size_t len = 0;
	ud_error e;
	memset(&e, 0, sizeof(e));
	if (ud_handoff_encode(h, &buf, &len, &e) < 0) {
		/* Only a message grown past the limit by the keys encode always writes. */
		fuzz_check_error(&e);
		fuzz_require(e.status == UD_EXIT_HANDOFF && !buf);
		return;
	}
	struct ud_handoff again;
	ud_handoff_init(&again);
	memset(&e, 0, sizeof(e));
	int r = ud_handoff_decode(buf, len, h->n_fds, &again, &e);
	if (r < 0)
		fprintf(stderr, "re-decoding an encoded message failed: %s\n", e.msg);
	fuzz_require(r == 0);
	check_same(h, &again);
	ud_handoff_free(&again);
	free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int declared = size >= 8 ? data[6] | (data[7] << 8) : 1;
	struct ud_handoff h;
	ud_error e;
	for (int pass = 0; pass < 2; pass++) {
		int n_fds = pass == 0 ? declared : declared + 1;
		ud_handoff_init(&h);
		memset(&e, 0, sizeof(e));
		if (ud_handoff_decode(data, size, n_fds, &h, &e) == 0) {
			fuzz_require(pass == 0);
			check_decoded(&h);
			round_trip(&h);
		} else {
			fuzz_check_error(&e);
		}
		ud_handoff_free(&h);
	}
	return 0;
}
