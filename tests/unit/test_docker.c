/* Unit tests for the pure parts of docker.c: image inspect, /info and /version parsing on captured
 * real answers (tests/fixtures/README), layer validation, references, API version comparison. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "docker_json.h"
#include "reference.h"
#include "error.h"

#ifndef FIXTURES
#error "FIXTURES must be defined"
#endif

/* ---- helpers ----------------------------------------------------------------------------------- */

static char *read_fixture(const char *name, size_t *len)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", FIXTURES, name);
	FILE *f = fopen(path, "rb");
	if (!f)
		fail_msg("cannot open fixture %s", path);
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap + 1);
	assert_non_null(buf);
	size_t r;
	while ((r = fread(buf + n, 1, cap - n, f)) > 0) {
		n += r;
		if (n == cap) {
			cap *= 2;
			buf = realloc(buf, cap + 1);
			assert_non_null(buf);
		}
	}
	fclose(f);
	buf[n] = '\0';
	*len = n;
	return buf;
}

/* Expected values are read from the fixture itself with json-c, so that a re-capture (new ids)
 * does not need test edits. */
static json_object *fixture_json(const char *name)
{
	size_t len;
	char *s = read_fixture(name, &len);
	json_object *o = json_tokener_parse(s);
	free(s);
	assert_non_null(o);
	return o;
}

static const char *jget_str(json_object *o, const char *k1, const char *k2, const char *k3)
{
	json_object *v = o;
	const char *ks[] = {k1, k2, k3};
	for (size_t i = 0; i < 3 && ks[i]; i++) {
		json_object *next;
		if (!json_object_object_get_ex(v, ks[i], &next))
			return NULL;
		v = next;
	}
	return json_object_get_string(v);
}

/* UpperDir then each ':'-separated LowerDir entry. Returns count; *out malloc'ed, entries too. */
static size_t expected_layers(json_object *o, char ***out)
{
	const char *upper = jget_str(o, "GraphDriver", "Data", "UpperDir");
	const char *lower = jget_str(o, "GraphDriver", "Data", "LowerDir");
	assert_non_null(upper);
	size_t n = 1, cap = 1;
	if (lower)
		for (const char *p = lower; *p; p++)
			cap += (*p == ':');
	cap += 1;
	char **v = calloc(cap + 1, sizeof(char *));
	assert_non_null(v);
	v[0] = strdup(upper);
	if (lower) {
		char *copy = strdup(lower), *save = NULL;
		for (char *t = strtok_r(copy, ":", &save); t; t = strtok_r(NULL, ":", &save))
			v[n++] = strdup(t);
		free(copy);
	}
	*out = v;
	return n;
}

static void free_strv(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static int parse_fixture(const char *name, const char *ref, struct ud_image *img, ud_error *e)
{
	size_t len;
	char *s = read_fixture(name, &len);
	memset(img, 0, sizeof(*img));
	memset(e, 0, sizeof(*e));
	int r = ud_parse_inspect(s, len, ref, img, e);
	free(s);
	return r;
}

/* Parse then validate; the whole chain must fail with one of the given statuses and a message.
 * (Which of the two steps refuses is the implementation's business.) */
static void expect_inspect_fails2(const char *name, int status1, int status2)
{
	struct ud_image img;
	ud_error e;
	int r = parse_fixture(name, "udunit-fixture", &img, &e);
	if (r == 0) {
		memset(&e, 0, sizeof(e));
		r = ud_validate_layers(&img, &e);
	}
	if (r != -1)
		fail_msg("%s: accepted (r=%d), expected failure with status %d", name, r, status1);
	if (e.status != status1 && e.status != status2)
		fail_msg("%s: status %d (\"%s\"), expected %d", name, e.status, e.msg, status1);
	if (e.msg[0] == '\0')
		fail_msg("%s: failed with an empty message", name);
	ud_image_free(&img);
}

static void expect_inspect_fails(const char *name, int status)
{
	expect_inspect_fails2(name, status, status);
}

static void expect_inspect_str_fails(const char *json, size_t len, int status, const char *what)
{
	struct ud_image img;
	ud_error e;
	memset(&img, 0, sizeof(img));
	memset(&e, 0, sizeof(e));
	int r = ud_parse_inspect(json, len, "x", &img, &e);
	if (r == 0) {
		r = ud_validate_layers(&img, &e);
	}
	if (r != -1)
		fail_msg("%s: accepted, expected failure with status %d", what, status);
	if (e.status != status)
		fail_msg("%s: status %d (\"%s\"), expected %d", what, e.status, e.msg, status);
	ud_image_free(&img);
}

/* Parses the fixture, validates it and compares everything with what json-c reads from it. */
static void check_good_inspect(const char *name, const char *driver, const char *storage_root,
			       size_t n_layers_expected)
{
	struct ud_image img;
	ud_error e;
	if (parse_fixture(name, "my-ref:latest", &img, &e) != 0)
		fail_msg("%s: ud_parse_inspect failed: status %d: %s", name, e.status, e.msg);
	if (ud_validate_layers(&img, &e) != 0)
		fail_msg("%s: ud_validate_layers failed: status %d: %s", name, e.status, e.msg);

	json_object *o = fixture_json(name);
	char **want;
	size_t n = expected_layers(o, &want);
	assert_int_equal(n, n_layers_expected);

	assert_non_null(img.ref);
	assert_string_equal(img.ref, "my-ref:latest");
	assert_non_null(img.id);
	assert_string_equal(img.id, jget_str(o, "Id", NULL, NULL));
	assert_true(strncmp(img.id, "sha256:", 7) == 0);
	assert_non_null(img.driver);
	assert_string_equal(img.driver, driver);
	assert_non_null(img.storage_root);
	assert_string_equal(img.storage_root, storage_root);

	/* top to bottom: UpperDir, then LowerDir entries in their order */
	assert_int_equal(img.n_layers, n);
	assert_non_null(img.layers);
	for (size_t i = 0; i < n; i++) {
		assert_non_null(img.layers[i]);
		assert_string_equal(img.layers[i], want[i]);
	}

	/* RootFS.Layers, as listed */
	json_object *rootfs, *arr;
	assert_true(json_object_object_get_ex(o, "RootFS", &rootfs));
	assert_true(json_object_object_get_ex(rootfs, "Layers", &arr));
	assert_int_equal(img.n_diff_ids, json_object_array_length(arr));
	for (size_t i = 0; i < img.n_diff_ids; i++)
		assert_string_equal(img.diff_ids[i],
				    json_object_get_string(json_object_array_get_idx(arr, i)));

	free_strv(want, n);
	json_object_put(o);
	ud_image_free(&img);
}

/* ---- ud_parse_inspect + ud_validate_layers on captured answers ------------------------------------ */

static void test_inspect_overlay2(void **state)
{
	(void)state;
	check_good_inspect("inspect-overlay2.json", "overlay2", "/var/lib/docker/overlay2", 3);

	struct ud_image img;
	ud_error e;
	assert_int_equal(parse_fixture("inspect-overlay2.json", "udunit-fixture", &img, &e), 0);
	assert_int_equal(img.n_env, 2);
	assert_string_equal(img.env[0], "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
	assert_string_equal(img.env[1], "FOO=bar");
	assert_non_null(img.workdir);
	assert_string_equal(img.workdir, "/srv");
	assert_int_equal(img.n_diff_ids, 3);
	/* the layer order is exactly UpperDir, LowerDir[0], LowerDir[1] */
	assert_non_null(strstr(img.layers[0], "6751533b6fe60b94cb837505c63d5e2e6f14ce43f4c602eadb45bc54eb88af8f"));
	assert_non_null(strstr(img.layers[1], "025b8fc2e8f302f2b66e7756b6b0b41f678288b8a67f96da7d5f4a7f235fa216"));
	assert_non_null(strstr(img.layers[2], "12a719735aeaaefeff68ab5dcb3325dbf136bb089caf8cbd6c9666fb988f0150"));
	ud_image_free(&img);
}

static void test_inspect_overlay2_single(void **state)
{
	(void)state;
	check_good_inspect("inspect-overlay2-single.json", "overlay2", "/var/lib/docker/overlay2", 1);

	struct ud_image img;
	ud_error e;
	assert_int_equal(parse_fixture("inspect-overlay2-single.json", "s", &img, &e), 0);
	assert_int_equal(img.n_env, 1);
	assert_string_equal(img.env[0], "PATH=/bin");
	assert_non_null(img.workdir);
	assert_string_equal(img.workdir, ""); /* WorkingDir "" in the answer */
	ud_image_free(&img);
}

static void test_inspect_podman(void **state)
{
	(void)state;
	check_good_inspect("inspect-podman.json", "overlay", "/var/lib/containers/storage/overlay", 3);

	struct ud_image img;
	ud_error e;
	assert_int_equal(parse_fixture("inspect-podman.json", "localhost/udunit-fixture", &img, &e), 0);
	assert_int_equal(img.n_env, 2);
	assert_string_equal(img.env[1], "FOO=bar");
	assert_string_equal(img.workdir, "/srv");
	ud_image_free(&img);
}

static void test_inspect_120_layers(void **state)
{
	(void)state;
	check_good_inspect("inspect-120-layers.json", "overlay2", "/var/lib/docker/overlay2", 120);
}

static void test_inspect_config_null(void **state)
{
	(void)state;
	struct ud_image img;
	ud_error e;
	if (parse_fixture("inspect-config-null.json", "x", &img, &e) != 0)
		fail_msg("\"Config\": null refused: status %d: %s", e.status, e.msg);
	assert_int_equal(img.n_env, 0);
	assert_non_null(img.workdir);
	assert_string_equal(img.workdir, "");
	assert_int_equal(img.n_layers, 3);
	ud_image_free(&img);
}

/* The length argument is honoured: the buffer need not be NUL-terminated where it ends. */
static void test_inspect_len_honoured(void **state)
{
	(void)state;
	size_t len;
	char *s = read_fixture("inspect-overlay2.json", &len);
	expect_inspect_str_fails(s, len / 2, UD_EXIT_DAEMON, "first half via len");
	/* a full answer without its terminating NUL */
	char *copy = malloc(len);
	assert_non_null(copy);
	memcpy(copy, s, len);
	struct ud_image img;
	ud_error e;
	memset(&img, 0, sizeof(img));
	if (ud_parse_inspect(copy, len, "x", &img, &e) != 0)
		fail_msg("unterminated buffer of exact length refused: %s", e.msg);
	assert_int_equal(img.n_layers, 3);
	ud_image_free(&img);
	free(copy);
	free(s);
}

static void test_inspect_containerd_absent(void **state)
{
	(void)state;
	expect_inspect_fails("inspect-containerd.json", UD_EXIT_STORAGE);
}

static void test_inspect_containerd_null(void **state)
{
	(void)state;
	expect_inspect_fails("inspect-containerd-null.json", UD_EXIT_STORAGE);
	/* the message names the driver */
	struct ud_image img;
	ud_error e;
	int r = parse_fixture("inspect-containerd-null.json", "x", &img, &e);
	if (r == 0)
		r = ud_validate_layers(&img, &e);
	assert_int_equal(r, -1);
	if (!strstr(e.msg, "overlayfs"))
		fail_msg("message does not name the driver 'overlayfs': \"%s\"", e.msg);
	ud_image_free(&img);
}

/* Another driver in the right shape: refused, and the message names it. */
static void test_inspect_other_driver(void **state)
{
	(void)state;
	json_object *o = fixture_json("inspect-overlay2.json");
	json_object *gd;
	assert_true(json_object_object_get_ex(o, "GraphDriver", &gd));
	json_object_object_add(gd, "Name", json_object_new_string("btrfs"));
	const char *s = json_object_to_json_string(o);
	struct ud_image img;
	ud_error e;
	memset(&img, 0, sizeof(img));
	memset(&e, 0, sizeof(e));
	int r = ud_parse_inspect(s, strlen(s), "x", &img, &e);
	if (r == 0)
		r = ud_validate_layers(&img, &e);
	assert_int_equal(r, -1);
	assert_int_equal(e.status, UD_EXIT_STORAGE);
	if (!strstr(e.msg, "btrfs"))
		fail_msg("message does not name the driver 'btrfs': \"%s\"", e.msg);
	ud_image_free(&img);
	json_object_put(o);
}

/* 404 bodies are never passed as a 200 answer by the transport; if they were, they must not
 * parse as an image (no Id, no GraphDriver). */
static void test_inspect_404_bodies(void **state)
{
	(void)state;
	expect_inspect_fails2("inspect-404-docker.json", UD_EXIT_DAEMON, UD_EXIT_STORAGE);
	expect_inspect_fails2("inspect-404-podman.json", UD_EXIT_DAEMON, UD_EXIT_STORAGE);
}

static void test_inspect_garbage(void **state)
{
	(void)state;
	expect_inspect_fails("garbage.json", UD_EXIT_DAEMON);
	expect_inspect_fails("truncated.json", UD_EXIT_DAEMON);
	expect_inspect_str_fails("", 0, UD_EXIT_DAEMON, "empty answer");
	expect_inspect_str_fails("null", 4, UD_EXIT_DAEMON, "null");
	expect_inspect_str_fails("42", 2, UD_EXIT_DAEMON, "a number");
	expect_inspect_str_fails("\"sha256:x\"", 10, UD_EXIT_DAEMON, "a string");
	expect_inspect_str_fails("{\"Id\":\"sha256:ab\"", 16, UD_EXIT_DAEMON, "unterminated object");
	/* a complete document followed by more: a broken answer, not an image */
	size_t len;
	char *good = read_fixture("inspect-overlay2.json", &len);
	char *twice = malloc(2 * len + 16);
	assert_non_null(twice);
	memcpy(twice, good, len);
	memcpy(twice + len, good, len);
	expect_inspect_str_fails(twice, 2 * len, UD_EXIT_DAEMON, "two documents");
	memcpy(twice + len, " garbage", 8);
	expect_inspect_str_fails(twice, len + 8, UD_EXIT_DAEMON, "trailing garbage");
	free(twice);
	free(good);
	static const char nul_inside[] = "{\"Id\":\0\"x\"}";
	expect_inspect_str_fails(nul_inside, sizeof(nul_inside) - 1, UD_EXIT_DAEMON, "NUL inside");
}

static void test_inspect_wrong_shape(void **state)
{
	(void)state;
	expect_inspect_fails("wrong-shape-array.json", UD_EXIT_DAEMON);
	expect_inspect_fails("wrong-shape-id-number.json", UD_EXIT_DAEMON);
	expect_inspect_fails("wrong-shape-upperdir-array.json", UD_EXIT_DAEMON);
	expect_inspect_fails("wrong-shape-env-string.json", UD_EXIT_DAEMON);
	expect_inspect_str_fails("{}", 2, UD_EXIT_DAEMON, "{}");
	expect_inspect_str_fails("[]", 2, UD_EXIT_DAEMON, "[]");
}

static void test_inspect_hostile_paths(void **state)
{
	(void)state;
	expect_inspect_fails("hostile-comma.json", UD_EXIT_STORAGE);
	expect_inspect_fails("hostile-colon.json", UD_EXIT_STORAGE);
	expect_inspect_fails("hostile-backslash.json", UD_EXIT_STORAGE);
	expect_inspect_fails("hostile-relative.json", UD_EXIT_STORAGE);
	expect_inspect_fails("hostile-outside.json", UD_EXIT_STORAGE);
	expect_inspect_fails("hostile-not-diff.json", UD_EXIT_STORAGE);
}

/* ".." components: every path has the form <root>/<id>/diff with one common root, but the root
 * climbs out of the storage directory. */
static void test_inspect_hostile_dotdot(void **state)
{
	(void)state;
	expect_inspect_fails("hostile-dotdot.json", UD_EXIT_STORAGE);
}

/* "a::b" in LowerDir: an empty path. */
static void test_inspect_hostile_empty_entry(void **state)
{
	(void)state;
	expect_inspect_fails2("hostile-empty-entry.json", UD_EXIT_STORAGE, UD_EXIT_DAEMON);
}

static void test_inspect_501_layers(void **state)
{
	(void)state;
	expect_inspect_fails2("inspect-501-layers.json", UD_EXIT_STORAGE, UD_EXIT_DAEMON);
}

/* Validation on a hand-built image (does not touch the filesystem). */
static void test_validate_layers_direct(void **state)
{
	(void)state;
	char *good[] = {"/var/lib/docker/overlay2/aaa/diff", "/var/lib/docker/overlay2/bbb/diff"};
	struct ud_image img;
	memset(&img, 0, sizeof(img));
	img.ref = strdup("x");
	img.id = strdup("sha256:0123");
	img.driver = strdup("overlay2");
	img.workdir = strdup("");
	img.n_layers = 2;
	img.layers = calloc(3, sizeof(char *));
	img.layers[0] = strdup(good[0]);
	img.layers[1] = strdup(good[1]);
	ud_error e;
	memset(&e, 0, sizeof(e));
	if (ud_validate_layers(&img, &e) != 0)
		fail_msg("valid stack refused: %s", e.msg);
	assert_non_null(img.storage_root);
	assert_string_equal(img.storage_root, "/var/lib/docker/overlay2");

	/* the paths need not exist */
	static const char *bad[] = {
		"/var/lib/docker/overlay2/ccc/diff,lowerdir=/",
		"/var/lib/docker/overlay2/ccc:d/diff",
		"/var/lib/docker/overlay2/c\\c/diff",
		"var/lib/docker/overlay2/ccc/diff",
		"/srv/other/ccc/diff",
		"/var/lib/docker/overlay2/ccc/work",
		"/var/lib/docker/overlay2/../ccc/diff",
		"",
		"/diff",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		free(img.layers[1]);
		img.layers[1] = strdup(bad[i]);
		free(img.storage_root);
		img.storage_root = NULL;
		memset(&e, 0, sizeof(e));
		if (ud_validate_layers(&img, &e) != -1)
			fail_msg("layer path \"%s\" accepted", bad[i]);
		if (e.status != UD_EXIT_STORAGE)
			fail_msg("layer path \"%s\": status %d, expected %d", bad[i], e.status,
				 UD_EXIT_STORAGE);
	}

	/* unsupported driver */
	free(img.layers[1]);
	img.layers[1] = strdup(good[1]);
	free(img.driver);
	img.driver = strdup("vfs");
	memset(&e, 0, sizeof(e));
	assert_int_equal(ud_validate_layers(&img, &e), -1);
	assert_int_equal(e.status, UD_EXIT_STORAGE);
	assert_non_null(strstr(e.msg, "vfs"));

	/* Podman's name is supported too */
	free(img.driver);
	img.driver = strdup("overlay");
	free(img.storage_root);
	img.storage_root = NULL;
	memset(&e, 0, sizeof(e));
	if (ud_validate_layers(&img, &e) != 0)
		fail_msg("driver 'overlay' refused: %s", e.msg);

	/* no layers at all */
	free(img.layers[0]);
	free(img.layers[1]);
	img.layers[0] = img.layers[1] = NULL;
	img.n_layers = 0;
	free(img.storage_root);
	img.storage_root = NULL;
	memset(&e, 0, sizeof(e));
	assert_int_equal(ud_validate_layers(&img, &e), -1);
	ud_image_free(&img);
}

/* ---- /info and /version ------------------------------------------------------------------------ */

static void parse_info_fixture(const char *name, char **desc, char **root)
{
	size_t len;
	char *s = read_fixture(name, &len);
	ud_error e;
	memset(&e, 0, sizeof(e));
	*desc = *root = NULL;
	if (ud_parse_info(s, len, desc, root, &e) != 0)
		fail_msg("%s: ud_parse_info failed: status %d: %s", name, e.status, e.msg);
	free(s);
	assert_non_null(*desc);
	assert_non_null(*root);
}

static void test_info_overlay2(void **state)
{
	(void)state;
	char *desc, *root;
	parse_info_fixture("info-overlay2.json", &desc, &root);
	assert_non_null(strstr(desc, "overlay2"));
	assert_string_equal(root, "/var/lib/docker");
	free(desc);
	free(root);
}

static void test_info_podman(void **state)
{
	(void)state;
	char *desc, *root;
	parse_info_fixture("info-podman.json", &desc, &root);
	assert_non_null(strstr(desc, "overlay"));
	assert_string_equal(root, "/var/lib/containers/storage");
	free(desc);
	free(root);
}

static void test_info_containerd(void **state)
{
	(void)state;
	char *desc, *root;
	parse_info_fixture("info-containerd.json", &desc, &root);
	if (!strstr(desc, "overlayfs") || !strstr(desc, "io.containerd.snapshotter.v1"))
		fail_msg("description does not name the containerd store: \"%s\"", desc);
	assert_string_equal(root, "/var/lib/docker");
	free(desc);
	free(root);
}

static void test_info_garbage(void **state)
{
	(void)state;
	static const char *bad[] = {"", "<html>", "[]", "{\"Driver\":", "{\"Driver\":42}", "null"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *desc = NULL, *root = NULL;
		ud_error e;
		memset(&e, 0, sizeof(e));
		if (ud_parse_info(bad[i], strlen(bad[i]), &desc, &root, &e) != -1)
			fail_msg("/info answer '%s' accepted", bad[i]);
		if (e.status != UD_EXIT_DAEMON)
			fail_msg("/info answer '%s': status %d, expected %d", bad[i], e.status,
				 UD_EXIT_DAEMON);
		free(desc);
		free(root);
	}
}

static void test_version(void **state)
{
	(void)state;
	size_t len;
	char *s = read_fixture("version.json", &len);
	char api[16];
	ud_error e;
	memset(api, 'x', sizeof(api));
	if (ud_parse_version(s, len, api, sizeof(api), &e) != 0)
		fail_msg("ud_parse_version failed: %s", e.msg);
	assert_string_equal(api, "1.41");
	free(s);

	/* a too small buffer is never overrun */
	char small[8];
	memset(small, 'x', sizeof(small));
	s = read_fixture("version.json", &len);
	memset(&e, 0, sizeof(e));
	int r = ud_parse_version(s, len, small, 3, &e);
	free(s);
	for (size_t i = 3; i < sizeof(small); i++)
		if (small[i] != 'x')
			fail_msg("ud_parse_version wrote past api_len (byte %zu)", i);
	if (r == 0 && memchr(small, '\0', 3) == NULL)
		fail_msg("ud_parse_version succeeded with an unterminated result");

	static const char *bad[] = {"", "garbage", "[]", "{}", "{\"ApiVersion\":1.41}",
				    "{\"ApiVersion\":null}", "{\"ApiVersion\":\"1.4"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&e, 0, sizeof(e));
		if (ud_parse_version(bad[i], strlen(bad[i]), api, sizeof(api), &e) != -1)
			fail_msg("/version answer '%s' accepted (api \"%.15s\")", bad[i], api);
		if (e.status != UD_EXIT_DAEMON)
			fail_msg("/version answer '%s': status %d", bad[i], e.status);
	}
}

/* The /_ping headers as captured: the API version the daemon speaks is in Api-Version. */
static void test_ping_headers_fixture(void **state)
{
	(void)state;
	size_t len;
	char *s = read_fixture("ping-headers.txt", &len);
	assert_non_null(strstr(s, "Api-Version: 1.41\r\n"));
	free(s);
}

/* ---- references -------------------------------------------------------------------------------- */

#define HEX64 "2a0b4576c85416566f0af65a73cad2ee4d20861e1158721ae78491641b9db432"

static void test_reference_valid(void **state)
{
	(void)state;
	static const char *good[] = {
		"busybox",
		"busybox:latest",
		"library/busybox",
		"docker.io/library/busybox:1.36",
		"localhost:5000/a/b:tag",
		"localhost/busybox",
		"registry.example.com:5000/team/app_x/y-z:v1.2.3-rc_1",
		("name@sha256:" HEX64),
		("busybox:1.36@sha256:" HEX64),
		("sha256:" HEX64),
		"2a0b4576c854", /* 12-hex id prefix */
		HEX64,          /* full id */
		"a",
		"a__b",
		"a.b-c",
		"a0/b1",
		"udunit-fixture",
		"Registry.Example.COM:5000/a/b", /* upper case is fine in the host part */
		"a-b--c",
	};
	int failures = 0;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		if (!ud_reference_valid(good[i])) {
			print_error("valid reference \"%s\" refused\n", good[i]);
			failures++;
		}
	if (failures)
		fail_msg("%d valid references refused", failures);
}

static void test_reference_invalid(void **state)
{
	(void)state;
	char long_name[301];
	memset(long_name, 'a', 300);
	long_name[300] = '\0';
	char long_tag[140];
	memcpy(long_tag, "a:", 2);
	memset(long_tag + 2, 't', 129); /* tags are at most 128 characters */
	long_tag[131] = '\0';
	static const char *bad[] = {
		"",
		"a b",
		"UPPER",
		"Busybox",
		"../x",
		"./x",
		"a/../b", /* ".." and "." as a later component: the daemon's path router sees them */
		"a/..",
		"library/../../../etc",
		"a/./b",
		"a/.",
		"/abs",
		"a//b",
		"a/",
		"x:",
		":tag",
		"a:b:c",
		"a?b",
		"a#b",
		"%2e%2e",
		"a/%2e%2e/b",
		"a..b",
		"-a",
		"a-",
		"a___b",
		"a\nb",
		"a\tb",
		"a\x01",
		"\x7f",
		"a\\b",
		"a;rm -rf /",
		"name@sha256:abc",
		("name@sha256:" HEX64 "0"),
		"name@",
		("@sha256:" HEX64),
		"a:tag/x",
		"a\xc3\xa9",
		"a-_b", /* separators are '.', '_', '__' or a run of '-', nothing mixed */
		"a-.b",
		"a_-b",
		"a._b",
		"a..com/x",
		".a.com/x",
		"host:/x",
		"host:port/x",
	};
	int failures = 0;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (ud_reference_valid(bad[i])) {
			print_error("invalid reference \"%s\" accepted (index %zu)\n", bad[i], i);
			failures++;
		}
	if (ud_reference_valid(long_name)) {
		print_error("300-character name accepted\n");
		failures++;
	}
	if (ud_reference_valid(long_tag)) {
		print_error("129-character tag accepted\n");
		failures++;
	}
	if (failures)
		fail_msg("%d invalid references accepted", failures);
	/* '/' and '?' and '#' would reach the URL path /images/{ref}/json unescaped */
}

/* Docker limits the repository *name* to 255 characters once normalised ("docker.io/library/" is
 * added to a bare name); the tag and digest come on top. Checked with docker 28's CLI (`docker tag`):
 * 237 a's + ":latest" is accepted, 238 a's refused; "localhost/" + 240 a's + ":latest" accepted. */
static void test_reference_lengths(void **state)
{
	(void)state;
	char buf[512];
	int failures = 0;
	memset(buf, 'a', 237);
	strcpy(buf + 237, ":latest");
	if (!ud_reference_valid(buf)) {
		print_error("237-character name + ':latest' refused; docker accepts it\n");
		failures++;
	}
	memset(buf, 'a', 256);
	buf[256] = '\0';
	if (ud_reference_valid(buf)) {
		print_error("256-character name accepted\n");
		failures++;
	}
	strcpy(buf, "localhost/");
	memset(buf + 10, 'a', 240);
	strcpy(buf + 250, ":latest");
	if (!ud_reference_valid(buf)) {
		print_error("'localhost/' + 240 a's + ':latest' (257 characters) refused; docker "
			    "accepts it (the limit is on the name, not the tag)\n");
		failures++;
	}
	memset(buf, 'a', 200);
	strcpy(buf + 200, "@sha256:" HEX64);
	if (!ud_reference_valid(buf)) {
		print_error("200-character name + digest (271 characters) refused; the limit is on "
			    "the name\n");
		failures++;
	}
	memset(buf, 'a', 10);
	buf[10] = ':';
	memset(buf + 11, 't', 128);
	buf[139] = '\0';
	if (!ud_reference_valid(buf)) {
		print_error("128-character tag refused\n");
		failures++;
	}
	if (failures)
		fail_msg("%d length cases wrong", failures);
}

/* ---- API versions ------------------------------------------------------------------------------ */

static int sign(int x)
{
	return (x > 0) - (x < 0);
}

static void test_api_version_cmp(void **state)
{
	(void)state;
	assert_int_equal(sign(ud_api_version_cmp("1.9", "1.41")), -1);
	assert_int_equal(sign(ud_api_version_cmp("1.41", "1.9")), 1);
	assert_int_equal(sign(ud_api_version_cmp("1.41", "1.41")), 0);
	assert_int_equal(sign(ud_api_version_cmp("1.100", "1.47")), 1);
	assert_int_equal(sign(ud_api_version_cmp("1.47", "1.100")), -1);
	assert_int_equal(sign(ud_api_version_cmp("2.0", "1.99")), 1);
	assert_int_equal(sign(ud_api_version_cmp("1.99", "2.0")), -1);
	assert_int_equal(sign(ud_api_version_cmp("1.12", "1.12")), 0);
	assert_int_equal(sign(ud_api_version_cmp("1.40", "1.44")), -1);
	assert_int_equal(sign(ud_api_version_cmp(UD_API_VERSION, "1.41")), 1);
}

/* GET /distribution/{name}/json: the Descriptor's digest, nothing else trusted. */
static void test_parse_distribution(void **state)
{
	(void)state;
	char d[80];
	ud_error e = {0};
	const char *ok = "{\"Descriptor\":{\"mediaType\":\"application/vnd.docker.distribution."
			 "manifest.v2+json\",\"digest\":\"sha256:"
			 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\","
			 "\"size\":527},\"Platforms\":[{\"architecture\":\"amd64\"}]}";
	assert_int_equal(ud_parse_distribution(ok, strlen(ok), d, sizeof(d), &e), 0);
	assert_string_equal(d, "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
	static const char *const bad[] = {
		"{}", "{\"Descriptor\":{}}", "{\"Descriptor\":{\"digest\":7}}",
		"{\"Descriptor\":{\"digest\":\"sha256:xyz\"}}",
		"{\"Descriptor\":{\"digest\":\"md5:0123456789abcdef0123456789abcdef\"}}",
		("{\"Descriptor\":{\"digest\":\"sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef"
		 "0123456789abcdef\"}}"),
		"[1]", "not json",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		e = (ud_error){0};
		assert_int_equal(ud_parse_distribution(bad[i], strlen(bad[i]), d, sizeof(d), &e), -1);
		assert_int_equal(e.status, UD_EXIT_DAEMON);
	}
}

/* RepoDigests as the daemon writes them: Docker Hub names in their short form. */
static void test_repo_digest(void **state)
{
	(void)state;
	char *digests[] = {
		"127.0.0.1:5000/app@sha256:1111111111111111111111111111111111111111111111111111111111111111",
		"busybox@sha256:2222222222222222222222222222222222222222222222222222222222222222",
		"me/tool@sha256:3333333333333333333333333333333333333333333333333333333333333333",
		"broken@sha256:short", "no-at-sign", NULL};
	struct ud_image img = {.repo_digests = digests, .n_repo_digests = 5};
	char out[80];
	assert_true(ud_repo_digest(&img, "127.0.0.1:5000/app", out, sizeof(out)));
	assert_string_equal(out + 7, "1111111111111111111111111111111111111111111111111111111111111111");
	assert_true(ud_repo_digest(&img, "docker.io/library/busybox", out, sizeof(out)));
	assert_true(ud_repo_digest(&img, "busybox", out, sizeof(out)));
	assert_true(ud_repo_digest(&img, "docker.io/me/tool", out, sizeof(out)));
	assert_string_equal(out + 7, "3333333333333333333333333333333333333333333333333333333333333333");
	assert_false(ud_repo_digest(&img, "127.0.0.1:5000/other", out, sizeof(out)));
	assert_false(ud_repo_digest(&img, "broken", out, sizeof(out)));
	assert_false(ud_repo_digest(&img, "127.0.0.1:5000/app:live", out, sizeof(out)));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_inspect_overlay2),
		cmocka_unit_test(test_inspect_overlay2_single),
		cmocka_unit_test(test_inspect_podman),
		cmocka_unit_test(test_inspect_120_layers),
		cmocka_unit_test(test_inspect_config_null),
		cmocka_unit_test(test_inspect_len_honoured),
		cmocka_unit_test(test_inspect_containerd_absent),
		cmocka_unit_test(test_inspect_containerd_null),
		cmocka_unit_test(test_inspect_other_driver),
		cmocka_unit_test(test_inspect_404_bodies),
		cmocka_unit_test(test_inspect_garbage),
		cmocka_unit_test(test_inspect_wrong_shape),
		cmocka_unit_test(test_inspect_hostile_paths),
		cmocka_unit_test(test_inspect_hostile_dotdot),
		cmocka_unit_test(test_inspect_hostile_empty_entry),
		cmocka_unit_test(test_inspect_501_layers),
		cmocka_unit_test(test_validate_layers_direct),
		cmocka_unit_test(test_info_overlay2),
		cmocka_unit_test(test_info_podman),
		cmocka_unit_test(test_info_containerd),
		cmocka_unit_test(test_info_garbage),
		cmocka_unit_test(test_version),
		cmocka_unit_test(test_ping_headers_fixture),
		cmocka_unit_test(test_reference_valid),
		cmocka_unit_test(test_reference_invalid),
		cmocka_unit_test(test_reference_lengths),
		cmocka_unit_test(test_api_version_cmp),
		cmocka_unit_test(test_parse_distribution),
		cmocka_unit_test(test_repo_digest),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
