/* The pull's progress stream, which the daemon (and through it the registry) writes: fed whole and
 * split at a point the input chooses, the state must be the same (the transport hands over chunks
 * cut anywhere); counts stay within the table, the error stays one printable line. Also
 * ud_reference_parse() on the input: the parts of an accepted reference are parts of it. */
#include <ctype.h>
#include <stdbool.h>

#include "pull_progress.h"
#include "reference.h"
#include "fuzz.h"

static int run(const uint8_t *data, size_t size, size_t cut, struct ud_pull_progress *p)
{
	ud_error e = {0};
	if (ud_pull_progress_init(p, &e) < 0)
		abort();
	int r = ud_pull_progress_feed(p, (const char *)data, cut, NULL, NULL, &e);
	if (r == 0)
		r = ud_pull_progress_feed(p, (const char *)data + cut, size - cut, NULL, NULL, &e);
	if (r == 0)
		r = ud_pull_progress_end(p, &e);
	if (r < 0)
		fuzz_check_error(&e);
	return r;
}

static void check_state(const struct ud_pull_progress *p)
{
	fuzz_require(p->n_layers <= UD_PULL_MAX_LAYERS && p->n_done <= p->n_layers);
	for (const char *c = p->error; *c; c++)
		fuzz_require(!iscntrl((unsigned char)*c));
	fuzz_require(ud_pull_progress_bytes(p) >= 0);
}

static void check_reference(const uint8_t *data, size_t size)
{
	char *s = fuzz_cstr(data, size);
	struct ud_ref_parts parts;
	if (ud_reference_parse(s, &parts)) {
		fuzz_require(ud_reference_valid(s));
		fuzz_require(strncmp(s, parts.name, strlen(parts.name)) == 0);
		fuzz_require(!parts.digest[0] || strstr(s, parts.digest));
		fuzz_require(!parts.tag[0] != !parts.digest[0]);
		fuzz_require(parts.domain[0] && !strchr(parts.domain, '/'));
	}
	free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t cut = size ? data[0] % (size + 1) : 0;
	struct ud_pull_progress whole, split;
	int a = run(data, size, size, &whole), b = run(data, size, cut, &split);
	fuzz_require(a == b);
	if (a == 0) {
		check_state(&whole);
		fuzz_require(whole.n_layers == split.n_layers && whole.n_done == split.n_done);
		fuzz_require(strcmp(whole.error, split.error) == 0);
		fuzz_require(strcmp(whole.digest, split.digest) == 0);
	}
	ud_pull_progress_free(&whole);
	ud_pull_progress_free(&split);
	check_reference(data, size);
	return 0;
}
