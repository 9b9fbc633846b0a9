/* Unit tests for the pure parts of pulling: config.json -> X-Registry-Auth, credential helper
 * answers, the progress stream (fed whole and byte by byte), error classification, references
 * and the request path. */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "auth.h"
#include "error.h"
#include "pull.h"
#include "pull_progress.h"
#include "reference.h"
#include "util.h"

/* ---- helpers ----------------------------------------------------------------------------------- */

/* base64url (with padding) -> parsed JSON object. */
static json_object *decode_header(const char *h)
{
	static const char abc[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t n = strlen(h);
	assert_int_equal(n % 4, 0);
	char *out = calloc(1, n);
	size_t o = 0;
	for (size_t i = 0; i < n; i += 4) {
		unsigned v = 0;
		int pad = 0;
		for (int k = 0; k < 4; k++) {
			const char *p = strchr(abc, h[i + k]);
			if (h[i + k] == '=')
				pad++;
			else
				assert_non_null(p);
			v = v << 6 | (h[i + k] == '=' ? 0 : (unsigned)(p - abc));
		}
		out[o++] = (char)(v >> 16);
		if (pad < 2)
			out[o++] = (char)(v >> 8 & 255);
		if (pad < 1)
			out[o++] = (char)(v & 255);
	}
	json_object *j = json_tokener_parse(out);
	free(out);
	assert_non_null(j);
	return j;
}

static const char *jstr(json_object *o, const char *key)
{
	json_object *v;
	return json_object_object_get_ex(o, key, &v) ? json_object_get_string(v) : NULL;
}

static void assert_header(const char *h, const char *user, const char *pass, const char *token,
			  const char *server)
{
	assert_non_null(h);
	assert_null(strchr(h, '+'));
	assert_null(strchr(h, '/'));
	json_object *j = decode_header(h);
	if (user)
		assert_string_equal(jstr(j, "username"), user);
	else
		assert_null(jstr(j, "username"));
	if (pass)
		assert_string_equal(jstr(j, "password"), pass);
	else
		assert_null(jstr(j, "password"));
	if (token)
		assert_string_equal(jstr(j, "identitytoken"), token);
	else
		assert_null(jstr(j, "identitytoken"));
	assert_string_equal(jstr(j, "serveraddress"), server);
	json_object_put(j);
}

static int from_config(const char *json, const char *key, struct ud_auth_source *src, ud_error *e)
{
	return ud_auth_from_config(json, strlen(json), key, src, e);
}

/* ---- config.json ------------------------------------------------------------------------------- */

static void test_encode_escapes(void **state)
{
	(void)state;
	char *h = NULL;
	ud_error e = {0};
	/* Characters that need JSON escaping, and bytes that give '+' and '/' in plain base64. */
	assert_int_equal(ud_auth_encode("u\"ser", "p\\a>>?ss\n", false, "reg:5000", &h, &e), 0);
	assert_header(h, "u\"ser", "p\\a>>?ss\n", NULL, "reg:5000");
	free(h);
	assert_int_equal(ud_auth_encode("ignored", "tok", true, "reg", &h, &e), 0);
	assert_header(h, NULL, NULL, "tok", "reg");
	free(h);
}

static void test_config_auths(void **state)
{
	(void)state;
	struct ud_auth_source src;
	ud_error e = {0};
	/* "dXNlcjpwYTpzcw==" is base64 of "user:pa:ss": the password keeps its colons. */
	const char *cfg = "{\"auths\":{\"reg.example:5000\":{\"auth\":\"dXNlcjpwYTpzcw==\"},"
			  "\"https://index.docker.io/v1/\":{\"auth\":\"aHViOmh1YnB3\"}}}";
	assert_int_equal(from_config(cfg, "reg.example:5000", &src, &e), 0);
	assert_string_equal(src.helper, "");
	assert_header(src.header, "user", "pa:ss", NULL, "reg.example:5000");
	free(src.header);
	assert_int_equal(from_config(cfg, ud_reference_registry_key("docker.io"), &src, &e), 0);
	assert_header(src.header, "hub", "hubpw", NULL, "https://index.docker.io/v1/");
	free(src.header);
	/* No entry: no credentials, no error. */
	assert_int_equal(from_config(cfg, "other:1", &src, &e), 0);
	assert_null(src.header);
	assert_string_equal(src.helper, "");
}

static void test_config_legacy_key_and_token(void **state)
{
	(void)state;
	struct ud_auth_source src;
	ud_error e = {0};
	const char *cfg = "{\"auths\":{\"http://reg.example/v1/\":{\"identitytoken\":\"idtok\","
			  "\"auth\":\"dXNlcjpwdw==\"}}}";
	assert_int_equal(from_config(cfg, "reg.example", &src, &e), 0);
	assert_header(src.header, NULL, NULL, "idtok", "http://reg.example/v1/");
	free(src.header);
}

static void test_config_helpers(void **state)
{
	(void)state;
	struct ud_auth_source src;
	ud_error e = {0};
	const char *cfg =
		"{\"credsStore\":\"pass\",\"credHelpers\":{\"reg.example\":\"ecr-login\"},"
		"\"auths\":{\"reg.example\":{\"auth\":\"dXNlcjpwdw==\"}}}";
	assert_int_equal(from_config(cfg, "reg.example", &src, &e), 0);
	assert_string_equal(src.helper, "ecr-login");
	assert_null(src.header);
	/* credsStore serves every other registry, auths entries notwithstanding. */
	assert_int_equal(from_config(cfg, "127.0.0.1:5000", &src, &e), 0);
	assert_string_equal(src.helper, "pass");
	assert_int_equal(from_config(cfg, "https://index.docker.io/v1/", &src, &e), 0);
	assert_string_equal(src.helper, "pass");
}

static void test_config_malformed(void **state)
{
	(void)state;
	struct ud_auth_source src;
	const char *bad[] = {
		"",
		"[]",
		"{\"auths\":",
		"not json",
		"{\"auths\":{\"r\":{\"auth\":\"!!notbase64\"}}}",
		"{\"auths\":{\"r\":{\"auth\":\"bm9jb2xvbg==\"}}}", /* "nocolon" */
		"{\"credsStore\":\"../../bin/sh\"}",
		"{\"credsStore\":\"a b\"}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ud_error e = {0};
		assert_int_equal(from_config(bad[i], "r", &src, &e), -1);
		assert_int_equal(e.status, UD_EXIT_USAGE);
		assert_null(src.header);
	}
	/* Wrong types are ignored, as absent. */
	ud_error e = {0};
	assert_int_equal(from_config("{\"auths\":[1],\"credsStore\":7}", "r", &src, &e), 0);
	assert_null(src.header);
	assert_string_equal(src.helper, "");
}

/* ---- credential helper answers ----------------------------------------------------------------- */

static void test_helper_answers(void **state)
{
	(void)state;
	char *h = NULL;
	ud_error e = {0};
	const char *ok = "{\"ServerURL\":\"reg\",\"Username\":\"bob\",\"Secret\":\"pw\"}\n";
	assert_int_equal(ud_auth_parse_helper(ok, strlen(ok), "reg", &h, &e), 0);
	assert_header(h, "bob", "pw", NULL, "reg");
	free(h);
	const char *tok = "{\"Username\":\"<token>\",\"Secret\":\"refresh\"}";
	assert_int_equal(ud_auth_parse_helper(tok, strlen(tok), "reg", &h, &e), 0);
	assert_header(h, NULL, NULL, "refresh", "reg");
	free(h);
	const char *empty = "{\"Username\":\"\",\"Secret\":\"\"}";
	assert_int_equal(ud_auth_parse_helper(empty, strlen(empty), "reg", &h, &e), 0);
	assert_null(h);
	const char *bad[] = {"", "credentials not found", "{\"Username\":\"x\"}", "[1]",
			     "{\"Username\":1,\"Secret\":\"s\"}"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(ud_auth_parse_helper(bad[i], strlen(bad[i]), "reg", &h, &e), -1);
		assert_null(h);
		assert_null(strstr(e.msg, "s\""));
	}
}

/* ---- progress stream --------------------------------------------------------------------------- */

static const char STREAM[] =
	"{\"status\":\"Pulling from udx/bb\",\"id\":\"v1\"}\r\n"
	"{\"status\":\"Already exists\",\"progressDetail\":{},\"id\":\"aaaaaaaaaaaa\"}\r\n"
	"{\"status\":\"Pulling fs layer\",\"progressDetail\":{},\"id\":\"ac983da110cb\"}\r\n"
	"{\"status\":\"Downloading\",\"progressDetail\":{\"current\":36445,\"total\":1064398},"
	"\"progress\":\"[=\\u003e   ]  36.45kB/1.064MB\",\"id\":\"ac983da110cb\"}\r\n"
	"{\"status\":\"Downloading\",\"progressDetail\":{\"current\":1064398,\"total\":1064398},"
	"\"id\":\"ac983da110cb\"}\r\n"
	"{\"status\":\"Download complete\",\"progressDetail\":{},\"id\":\"ac983da110cb\"}\r\n"
	"{\"status\":\"Extracting\",\"progressDetail\":{\"current\":32768,\"total\":1064398},"
	"\"id\":\"ac983da110cb\"}\r\n"
	"{\"status\":\"Pull complete\",\"progressDetail\":{},\"id\":\"ac983da110cb\"}\r\n"
	"{\"status\":\"Digest: sha256:cfc9bf794abf26424ecf20f655e6fda62b26481af3ccc8a0c1ef1dca604ad5e9\"}\r\n"
	"{\"status\":\"Status: Downloaded newer image for 127.0.0.1:45123/udx/bb:v1\"}\r\n";

struct seen {
	int done, bytes, errors;
};

static void count(void *ctx, const struct ud_pull_progress *p, enum ud_pull_event ev,
		  const struct ud_pull_layer *l)
{
	(void)p;
	struct seen *s = ctx;
	if (ev == UD_PULL_EV_LAYER_DONE) {
		assert_non_null(l);
		s->done++;
	}
	s->bytes += ev == UD_PULL_EV_BYTES;
	s->errors += ev == UD_PULL_EV_ERROR;
}

static void check_stream(size_t step)
{
	struct ud_pull_progress p;
	struct seen s = {0};
	ud_error e = {0};
	assert_int_equal(ud_pull_progress_init(&p, &e), 0);
	size_t len = strlen(STREAM);
	for (size_t i = 0; i < len; i += step) {
		size_t n = len - i < step ? len - i : step;
		assert_int_equal(ud_pull_progress_feed(&p, STREAM + i, n, count, &s, &e), 0);
	}
	assert_int_equal(ud_pull_progress_end(&p, &e), 0);
	assert_string_equal(p.error, "");
	assert_int_equal(p.n_layers, 2);
	assert_int_equal(p.n_done, 2);
	assert_int_equal(s.done, 2);
	assert_int_equal(s.bytes, 2);
	assert_true(p.layers[0].existed);
	assert_false(p.layers[1].existed);
	assert_int_equal(ud_pull_progress_bytes(&p), 1064398);
	assert_string_equal(
		p.digest,
		"sha256:cfc9bf794abf26424ecf20f655e6fda62b26481af3ccc8a0c1ef1dca604ad5e9");
	ud_pull_progress_free(&p);
}

static void test_stream_whole_and_split(void **state)
{
	(void)state;
	check_stream(sizeof(STREAM));
	check_stream(1);
	check_stream(7);
}

static void test_stream_error_object(void **state)
{
	(void)state;
	const char *s =
		"{\"status\":\"Pulling fs layer\",\"id\":\"abc\"}\n"
		"{\"errorDetail\":{\"message\":\"unauthorized: authentication required\\nmore\"},"
		"\"error\":\"ignored when the detail has a message\"}\n";
	struct ud_pull_progress p;
	struct seen seen = {0};
	ud_error e = {0};
	assert_int_equal(ud_pull_progress_init(&p, &e), 0);
	assert_int_equal(ud_pull_progress_feed(&p, s, strlen(s), count, &seen, &e), 0);
	assert_string_equal(p.error, "unauthorized: authentication required");
	assert_int_equal(seen.errors, 1);
	assert_int_equal(ud_pull_error_status(p.error), UD_EXIT_IMAGE);
	ud_pull_progress_free(&p);

	const char *plain = "{\"error\":\"manifest unknown\"}";
	assert_int_equal(ud_pull_progress_init(&p, &e), 0);
	assert_int_equal(ud_pull_progress_feed(&p, plain, strlen(plain), NULL, NULL, &e), 0);
	assert_string_equal(p.error, "manifest unknown");
	ud_pull_progress_free(&p);
}

/* Sizes come from a registry's manifest through the daemon: a sum past what a long long holds
 * stays at its largest value (it is only shown), never wraps round to a negative size. */
static void test_stream_huge_totals_saturate(void **state)
{
	(void)state;
	const char *s = "{\"status\":\"Downloading\",\"id\":\"a\",\"progressDetail\":"
			"{\"current\":1,\"total\":9223372036854775807}}\n"
			"{\"status\":\"Downloading\",\"id\":\"b\",\"progressDetail\":"
			"{\"current\":1,\"total\":1064398}}\n";
	struct ud_pull_progress p;
	ud_error e = {0};
	assert_int_equal(ud_pull_progress_init(&p, &e), 0);
	assert_int_equal(ud_pull_progress_feed(&p, s, strlen(s), NULL, NULL, &e), 0);
	assert_int_equal(p.n_layers, 2);
	assert_true(ud_pull_progress_bytes(&p) == LLONG_MAX);
	ud_pull_progress_free(&p);
}

static void test_stream_broken(void **state)
{
	(void)state;
	struct ud_pull_progress p;
	ud_error e = {0};
	const char *cut = "{\"status\":\"Downloading\",\"id\":\"ab";
	assert_int_equal(ud_pull_progress_init(&p, &e), 0);
	assert_int_equal(ud_pull_progress_feed(&p, cut, strlen(cut), NULL, NULL, &e), 0);
	assert_int_equal(ud_pull_progress_end(&p, &e), -1);
	assert_int_equal(e.status, UD_EXIT_DAEMON);
	ud_pull_progress_free(&p);

	const char *junk = "{\"status\":\"x\"}\n<html>";
	assert_int_equal(ud_pull_progress_init(&p, &e), 0);
	assert_int_equal(ud_pull_progress_feed(&p, junk, strlen(junk), NULL, NULL, &e), -1);
	assert_int_equal(e.status, UD_EXIT_DAEMON);
	ud_pull_progress_free(&p);

	/* Odd but valid objects are ignored; trailing whitespace is no pending object. */
	const char *scalars[] = {"[1,2]", "3 ", "{} 126.0", "\"s\""};
	for (size_t i = 0; i < sizeof(scalars) / sizeof(scalars[0]); i++) {
		assert_int_equal(ud_pull_progress_init(&p, &e), 0);
		assert_int_equal(ud_pull_progress_feed(&p, scalars[i], strlen(scalars[i]), NULL,
						       NULL, &e),
				 -1);
		ud_pull_progress_free(&p);
	}
	const char *odd = "{\"status\":5,\"id\":[]} {\"id\":\"x\"}\n\n  ";
	assert_int_equal(ud_pull_progress_init(&p, &e), 0);
	assert_int_equal(ud_pull_progress_feed(&p, odd, strlen(odd), NULL, NULL, &e), 0);
	assert_int_equal(ud_pull_progress_end(&p, &e), 0);
	assert_int_equal(p.n_layers, 0);
	ud_pull_progress_free(&p);
}

/* What one feeding left behind, to compare feedings cut at different places. */
struct outcome {
	int r;
	ud_error e;
	size_t n_layers, n_done;
	char error[512];
};

/* s fed in two chunks, cut after `cut` bytes, as the fuzz target pull_progress does. */
static struct outcome feed_cut(const char *s, size_t len, size_t cut)
{
	struct outcome o = {0};
	struct ud_pull_progress p;
	assert_int_equal(ud_pull_progress_init(&p, &o.e), 0);
	o.r = ud_pull_progress_feed(&p, s, cut, NULL, NULL, &o.e);
	if (o.r == 0)
		o.r = ud_pull_progress_feed(&p, s + cut, len - cut, NULL, NULL, &o.e);
	if (o.r == 0)
		o.r = ud_pull_progress_end(&p, &o.e);
	o.n_layers = p.n_layers;
	o.n_done = p.n_done;
	memcpy(o.error, p.error, sizeof(o.error));
	ud_pull_progress_free(&p);
	return o;
}

/* Every cut gives what the whole stream gives (r, status, message, state); returns that. */
static struct outcome same_at_every_cut(const char *s)
{
	size_t len = strlen(s);
	struct outcome whole = feed_cut(s, len, len);
	for (size_t cut = 0; cut < len; cut++) {
		struct outcome o = feed_cut(s, len, cut);
		if (o.r != whole.r || strcmp(o.e.msg, whole.e.msg) != 0)
			fail_msg("'%s' cut at %zu: %d '%s', whole: %d '%s'", s, cut, o.r, o.e.msg,
				 whole.r, whole.e.msg);
		assert_int_equal(o.e.status, whole.e.status);
		assert_int_equal(o.n_layers, whole.n_layers);
		assert_int_equal(o.n_done, whole.n_done);
		assert_string_equal(o.error, whole.error);
	}
	return whole;
}

/* The pull_progress fuzzer's findings (tests/fuzz/regressions/pull_progress/): json-c read a
 * comment after an object, and "1-" inside one, differently depending on the cut. */
static void test_stream_comment_every_cut(void **state)
{
	(void)state;
	const char *refused[] = {
		"{\"st\":\"\"}//xxxxxx\n",
		"{\"status\":\"Pull complete\",\"id\":\"a\"}\n// a comment\n{\"id\":\"b\"}\n",
		"{\"st\":\"\"}/* a comment */",
		"{\"st\":\"\"}/",
		"{\"d\":1-}",
		/* Inside an object json-c would take the comment; the scan ends the object at the
		 * brace in it, and json-c does not end there. */
		"{\"a\":1 /* } */}",
		"{'a':'}'}",
	};
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		struct outcome o = same_at_every_cut(refused[i]);
		assert_int_equal(o.r, -1);
		assert_int_equal(o.e.status, UD_EXIT_DAEMON);
	}
	struct outcome o = same_at_every_cut(STREAM);
	assert_int_equal(o.r, 0);
	assert_int_equal(o.n_done, 2);
}

/* A backslash-escaped quote (and braces) inside a string, cut anywhere, even between the
 * backslash and its quote: the object ends at its own last brace. */
static void test_stream_escaped_quote_split(void **state)
{
	(void)state;
	const char *s = "{\"status\":\"Downloading\",\"id\":\"x\\\"}{\",\"progressDetail\":"
			"{\"current\":5,\"total\":10}}\r\n"
			"{\"errorDetail\":{\"message\":\"say \\\"}\\\" \\\\\"}}\r\n";
	struct outcome o = same_at_every_cut(s);
	assert_int_equal(o.r, 0);
	assert_int_equal(o.n_layers, 1);
	assert_string_equal(o.error, "say \"}\" \\");

	/* Byte by byte, with the layer's fields checked. */
	struct ud_pull_progress p;
	ud_error e = {0};
	assert_int_equal(ud_pull_progress_init(&p, &e), 0);
	for (size_t i = 0; s[i]; i++)
		assert_int_equal(ud_pull_progress_feed(&p, s + i, 1, NULL, NULL, &e), 0);
	assert_int_equal(ud_pull_progress_end(&p, &e), 0);
	assert_string_equal(p.layers[0].id, "x\"}{");
	assert_int_equal(p.layers[0].current, 5);
	assert_int_equal(p.layers[0].total, 10);
	ud_pull_progress_free(&p);
}

/* Between objects only JSON whitespace: anything else is one error, after the objects before it
 * were taken. */
static void test_stream_garbage_between_objects(void **state)
{
	(void)state;
	const char *garbage[] = {
		"{\"id\":\"a\",\"status\":\"Pull complete\"}x{\"id\":\"b\"}",
		"{\"id\":\"a\",\"status\":\"Pull complete\"},{\"id\":\"b\"}",
		"{\"id\":\"a\",\"status\":\"Pull complete\"}\v{\"id\":\"b\"}",
		"{\"id\":\"a\",\"status\":\"Pull complete\"}]",
		"{\"id\":\"a\",\"status\":\"Pull complete\"}\n\"s\"",
	};
	for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++) {
		struct ud_pull_progress p;
		struct seen seen = {0};
		ud_error e = {0};
		assert_int_equal(ud_pull_progress_init(&p, &e), 0);
		assert_int_equal(ud_pull_progress_feed(&p, garbage[i], strlen(garbage[i]), count,
						       &seen, &e),
				 -1);
		assert_int_equal(e.status, UD_EXIT_DAEMON);
		assert_non_null(strstr(e.msg, "not a series of JSON objects"));
		assert_non_null(strstr(e.msg, "outside an object"));
		assert_int_equal(seen.done, 1);
		ud_pull_progress_free(&p);
		assert_int_equal(same_at_every_cut(garbage[i]).r, -1);
	}
	const char *spaces = " \t\r\n{\"id\":\"a\",\"status\":\"Pull complete\"} \t\r\n{}\r\n";
	struct outcome o = same_at_every_cut(spaces);
	assert_int_equal(o.r, 0);
	assert_int_equal(o.n_done, 1);
}

/* {"status":"aaa...a"}: n bytes in all. */
static char *object_of(size_t n)
{
	char *s = malloc(n + 1);
	assert_non_null(s);
	memset(s, 'a', n);
	memcpy(s, "{\"status\":\"", 11);
	memcpy(s + n - 2, "\"}", 3);
	return s;
}

/* Gathering stops at UD_PULL_MAX_OBJECT bytes however the object is cut: a stream that never
 * closes its object (braces inside an endless string) cannot make the parser buffer on. */
static void test_stream_object_too_long(void **state)
{
	(void)state;
	struct ud_pull_progress p;
	ud_error e = {0};
	ud_autofree char *max = object_of(UD_PULL_MAX_OBJECT);
	assert_int_equal(ud_pull_progress_init(&p, &e), 0);
	assert_int_equal(ud_pull_progress_feed(&p, max, UD_PULL_MAX_OBJECT, NULL, NULL, &e), 0);
	assert_int_equal(ud_pull_progress_end(&p, &e), 0);
	ud_pull_progress_free(&p);

	const size_t len = UD_PULL_MAX_OBJECT + 1;
	ud_autofree char *over = object_of(len);
	const size_t steps[] = {7, 4096, len};
	for (size_t k = 0; k < sizeof(steps) / sizeof(steps[0]); k++) {
		size_t step = steps[k];
		assert_int_equal(ud_pull_progress_init(&p, &e), 0);
		int r = 0;
		for (size_t i = 0; r == 0 && i < len; i += step) {
			size_t n = step < len - i ? step : len - i;
			r = ud_pull_progress_feed(&p, over + i, n, NULL, NULL, &e);
		}
		assert_int_equal(r, -1);
		assert_int_equal(e.status, UD_EXIT_DAEMON);
		assert_non_null(strstr(e.msg, "longer than"));
		ud_pull_progress_free(&p);
	}

	const char braces[] = "}}}}]]]]{{{{\\\"";
	assert_int_equal(ud_pull_progress_init(&p, &e), 0);
	assert_int_equal(ud_pull_progress_feed(&p, "{\"a\":\"", 6, NULL, NULL, &e), 0);
	size_t fed = 6;
	while (fed <= 2 * UD_PULL_MAX_OBJECT &&
	       ud_pull_progress_feed(&p, braces, sizeof(braces) - 1, NULL, NULL, &e) == 0)
		fed += sizeof(braces) - 1;
	assert_true(fed <= UD_PULL_MAX_OBJECT);
	assert_true(p.obj_cap <= UD_PULL_MAX_OBJECT);
	assert_non_null(strstr(e.msg, "longer than"));
	ud_pull_progress_free(&p);
}

static void test_error_status(void **state)
{
	(void)state;
	assert_int_equal(ud_pull_error_status("manifest for x:y not found: manifest unknown"),
			 UD_EXIT_IMAGE);
	assert_int_equal(
		ud_pull_error_status("pull access denied for x, repository does not exist"),
		UD_EXIT_IMAGE);
	assert_int_equal(ud_pull_error_status("Head \"http://r/v2/x\": no basic auth credentials"),
			 UD_EXIT_IMAGE);
	assert_int_equal(ud_pull_error_status("dial tcp 127.0.0.1:1: connect: connection refused"),
			 UD_EXIT_DAEMON);
	assert_int_equal(ud_pull_error_status("lookup registry-1.docker.io: no such host"),
			 UD_EXIT_DAEMON);
}

/* ---- references and the request path ----------------------------------------------------------- */

static void test_reference_parts(void **state)
{
	(void)state;
	struct ud_ref_parts p;
	assert_true(ud_reference_parse("busybox", &p));
	assert_string_equal(p.domain, "docker.io");
	assert_string_equal(p.name, "busybox");
	assert_string_equal(p.tag, "latest");
	assert_string_equal(p.digest, "");
	assert_true(ud_reference_parse("127.0.0.1:5000/a/b:v2", &p));
	assert_string_equal(p.domain, "127.0.0.1:5000");
	assert_string_equal(p.name, "127.0.0.1:5000/a/b");
	assert_string_equal(p.tag, "v2");
	assert_true(ud_reference_parse(
		"localhost/x@sha256:"
		"cfc9bf794abf26424ecf20f655e6fda62b26481af3ccc8a0c1ef1dca604ad5e9",
		&p));
	assert_string_equal(p.domain, "localhost");
	assert_string_equal(p.tag, "");
	assert_string_equal(
		p.digest,
		"sha256:cfc9bf794abf26424ecf20f655e6fda62b26481af3ccc8a0c1ef1dca604ad5e9");
	assert_true(ud_reference_parse("index.docker.io/library/debian:12", &p));
	assert_string_equal(p.domain, "docker.io");
	assert_true(ud_reference_parse("user/repo:tag", &p));
	assert_string_equal(p.domain, "docker.io");
	assert_string_equal(ud_reference_registry_key("docker.io"), "https://index.docker.io/v1/");
	assert_string_equal(ud_reference_registry_key("r:1"), "r:1");
	/* Ids are never pulled; invalid references are not parsed. */
	assert_false(ud_reference_parse("sha256:abcd", &p));
	assert_false(ud_reference_parse(
		"cfc9bf794abf26424ecf20f655e6fda62b26481af3ccc8a0c1ef1dca604ad5e9", &p));
	assert_false(ud_reference_parse("UPPER::bad", &p));
	assert_false(ud_reference_parse("a/../b", &p));
}

static void test_pull_path(void **state)
{
	(void)state;
	char path[1200];
	ud_error e = {0};
	assert_int_equal(ud_pull_path("1.41", "127.0.0.1:5000/a/b:v2", path, sizeof(path), &e), 0);
	assert_string_equal(path, "/v1.41/images/create?fromImage=127.0.0.1%3A5000%2Fa%2Fb&tag=v2");
	assert_int_equal(ud_pull_path("1.41", "busybox", path, sizeof(path), &e), 0);
	assert_string_equal(path, "/v1.41/images/create?fromImage=busybox&tag=latest");
	assert_int_equal(
		ud_pull_path("1.41",
			     "x:t@sha256:"
			     "cfc9bf794abf26424ecf20f655e6fda62b26481af3ccc8a0c1ef1dca604ad5e9",
			     path, sizeof(path), &e),
		0);
	assert_string_equal(path,
			    "/v1.41/images/create?fromImage=x%40sha256%3A"
			    "cfc9bf794abf26424ecf20f655e6fda62b26481af3ccc8a0c1ef1dca604ad5e9");
	assert_int_equal(ud_pull_path("1.41", "sha256:abc", path, sizeof(path), &e), -1);
	assert_int_equal(e.status, UD_EXIT_IMAGE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_encode_escapes),
		cmocka_unit_test(test_config_auths),
		cmocka_unit_test(test_config_legacy_key_and_token),
		cmocka_unit_test(test_config_helpers),
		cmocka_unit_test(test_config_malformed),
		cmocka_unit_test(test_helper_answers),
		cmocka_unit_test(test_stream_whole_and_split),
		cmocka_unit_test(test_stream_error_object),
		cmocka_unit_test(test_stream_huge_totals_saturate),
		cmocka_unit_test(test_stream_broken),
		cmocka_unit_test(test_stream_comment_every_cut),
		cmocka_unit_test(test_stream_escaped_quote_split),
		cmocka_unit_test(test_stream_garbage_between_objects),
		cmocka_unit_test(test_stream_object_too_long),
		cmocka_unit_test(test_error_status),
		cmocka_unit_test(test_reference_parts),
		cmocka_unit_test(test_pull_path),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
