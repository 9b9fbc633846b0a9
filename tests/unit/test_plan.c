/* Unit tests for plan.c: --bind parsing, plan building (order, options, DST validation) and the
 * --print JSON. The plan is pure data: nothing here touches the filesystem. */
#include <errno.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "docker.h"
#include "error.h"
#include "netfiles.h"
#include "plan.h"
#include "tmpfsopt.h"

/* ---- fixtures: a hand-built image and default options ------------------------------------------ */

static char *layers[] = {
	"/var/lib/docker/overlay2/aaaa/diff",
	"/var/lib/docker/overlay2/bbbb/diff",
	"/var/lib/docker/overlay2/cccc/diff",
};
static char *env[] = {"PATH=/usr/bin:/bin", "QUOTE=say \"hi\"\\n", "FOO=bar"};

static struct ud_image test_image(void)
{
	struct ud_image img;
	memset(&img, 0, sizeof(img));
	img.ref = "busybox:latest";
	img.id = "sha256:2a0b4576c85416566f0af65a73cad2ee4d20861e1158721ae78491641b9db432";
	img.driver = "overlay2";
	img.storage_root = "/var/lib/docker/overlay2";
	img.layers = layers;
	img.n_layers = 3;
	img.env = env;
	img.n_env = 3;
	img.workdir = "/srv";
	return img;
}

static struct ud_options default_options(void)
{
	struct ud_options o;
	memset(&o, 0, sizeof(o));
	o.image = "busybox:latest";
	o.timeout_ms = 10000;
	o.rw = UD_RW_TMPFS;
	o.mount_api = UD_API_AUTO;
	/* Most tests look at the plan's own mounts; test_plan_confine* add the confinement,
	 * test_plan_network_files the network files. */
	o.no_confine = true;
	o.no_network_files = true;
	return o;
}

static void build_ok(const struct ud_options *o, const struct ud_image *img, struct ud_plan *p)
{
	ud_error e;
	memset(&e, 0, sizeof(e));
	memset(p, 0, sizeof(*p));
	if (ud_plan_build(o, img, NULL, p, &e) != 0)
		fail_msg("ud_plan_build failed: status %d: %s", e.status, e.msg);
}

struct want_op {
	enum ud_op_type type;
	const char *src;
	const char *dst;
	int readonly; /* -1: don't care */
};

static void check_ops(const struct ud_plan *p, const struct want_op *w, size_t n)
{
	if (p->n_ops != n) {
		for (size_t i = 0; i < p->n_ops; i++)
			print_message("  op %zu: %s %s\n", i, ud_op_name(p->ops[i].type),
				      p->ops[i].dst ? p->ops[i].dst : "(null)");
		fail_msg("%zu ops, expected %zu", p->n_ops, n);
	}
	for (size_t i = 0; i < n; i++) {
		const struct ud_op *op = &p->ops[i];
		if (op->type != w[i].type)
			fail_msg("op %zu: type %s, expected %s", i, ud_op_name(op->type),
				 ud_op_name(w[i].type));
		assert_non_null(op->dst);
		assert_string_equal(op->dst, w[i].dst);
		if (w[i].src) {
			assert_non_null(op->src);
			assert_string_equal(op->src, w[i].src);
		}
		if (w[i].readonly >= 0 && op->readonly != (bool)w[i].readonly)
			fail_msg("op %zu (%s %s): readonly %d, expected %d", i, ud_op_name(op->type),
				 op->dst, op->readonly, w[i].readonly);
	}
}

/* ---- ud_parse_bind ------------------------------------------------------------------------------ */

static void test_parse_bind(void **state)
{
	(void)state;
	struct ud_op op;
	ud_error e;

	memset(&op, 0, sizeof(op));
	if (ud_parse_bind("/host/data:/data", false, &op, &e) != 0)
		fail_msg("ud_parse_bind: %s", e.msg);
	assert_int_equal(op.type, UD_OP_BIND);
	assert_string_equal(op.src, "/host/data");
	assert_string_equal(op.dst, "/data");
	assert_false(op.readonly);
	free(op.src);
	free(op.dst);

	memset(&op, 0, sizeof(op));
	if (ud_parse_bind("/etc/ssl", true, &op, &e) != 0)
		fail_msg("ud_parse_bind: %s", e.msg);
	assert_int_equal(op.type, UD_OP_BIND);
	assert_string_equal(op.src, "/etc/ssl");
	assert_string_equal(op.dst, "/etc/ssl"); /* DST defaults to SRC */
	assert_true(op.readonly);
	free(op.src);
	free(op.dst);

	static const char *bad[] = {"", "relative", "relative:/in", "/host:relative", "/host:",
				    ":/in", ":"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&op, 0, sizeof(op));
		memset(&e, 0, sizeof(e));
		if (ud_parse_bind(bad[i], false, &op, &e) != -1)
			fail_msg("--bind '%s' accepted", bad[i]);
		if (e.status != UD_EXIT_USAGE)
			fail_msg("--bind '%s': status %d, expected %d", bad[i], e.status, UD_EXIT_USAGE);
		if (e.msg[0] == '\0')
			fail_msg("--bind '%s': empty message", bad[i]);
	}
}

/* ---- ud_plan_build ------------------------------------------------------------------------------ */

static void test_plan_defaults(void **state)
{
	(void)state;
	struct ud_image img = test_image();
	struct ud_options o = default_options();
	struct ud_plan p;
	build_ok(&o, &img, &p);

	static const struct want_op w[] = {
		{UD_OP_OVERLAY, NULL, "/", 0},
		{UD_OP_PROC, NULL, "/proc", -1},
		{UD_OP_DEV, NULL, "/dev", -1},
		{UD_OP_SYS, NULL, "/sys", 1},
	};
	check_ops(&p, w, 4);
	assert_ptr_equal(p.img, &img);
	assert_int_equal(p.rw, UD_RW_TMPFS);
	assert_int_equal(p.mount_api, UD_API_AUTO);
	assert_int_equal(p.unshare_flags, CLONE_NEWNS);
	assert_null(p.hostname);
	ud_plan_free(&p);
}

static void test_plan_no_special(void **state)
{
	(void)state;
	struct ud_image img = test_image();
	struct ud_plan p;
	struct ud_options o;

	o = default_options();
	o.no_proc = true;
	build_ok(&o, &img, &p);
	static const struct want_op w1[] = {
		{UD_OP_OVERLAY, NULL, "/", 0}, {UD_OP_DEV, NULL, "/dev", -1}, {UD_OP_SYS, NULL, "/sys", 1}};
	check_ops(&p, w1, 3);
	ud_plan_free(&p);

	o = default_options();
	o.no_dev = true;
	build_ok(&o, &img, &p);
	static const struct want_op w2[] = {
		{UD_OP_OVERLAY, NULL, "/", 0}, {UD_OP_PROC, NULL, "/proc", -1}, {UD_OP_SYS, NULL, "/sys", 1}};
	check_ops(&p, w2, 3);
	ud_plan_free(&p);

	o = default_options();
	o.no_sys = true;
	build_ok(&o, &img, &p);
	static const struct want_op w3[] = {
		{UD_OP_OVERLAY, NULL, "/", 0}, {UD_OP_PROC, NULL, "/proc", -1}, {UD_OP_DEV, NULL, "/dev", -1}};
	check_ops(&p, w3, 3);
	ud_plan_free(&p);

	o = default_options();
	o.no_proc = o.no_dev = o.no_sys = true;
	build_ok(&o, &img, &p);
	static const struct want_op w4[] = {{UD_OP_OVERLAY, NULL, "/", 0}};
	check_ops(&p, w4, 1);
	ud_plan_free(&p);
}

static void test_plan_rw_modes(void **state)
{
	(void)state;
	struct ud_image img = test_image();
	struct ud_plan p;
	struct ud_options o;

	o = default_options();
	o.rw = UD_RW_NONE;
	build_ok(&o, &img, &p);
	assert_int_equal(p.rw, UD_RW_NONE);
	assert_int_equal(p.ops[0].type, UD_OP_OVERLAY);
	assert_true(p.ops[0].readonly); /* --read-only: no rw layer, the root is read-only */
	ud_plan_free(&p);

	o = default_options();
	o.rw = UD_RW_PATH;
	o.rw_path = "/var/tmp/udunit-rw";
	build_ok(&o, &img, &p);
	assert_int_equal(p.rw, UD_RW_PATH);
	assert_non_null(p.rw_path);
	assert_string_equal(p.rw_path, "/var/tmp/udunit-rw");
	assert_ptr_not_equal(p.rw_path, o.rw_path); /* the plan owns its copy (ud_plan_free) */
	assert_false(p.ops[0].readonly);
	ud_plan_free(&p);

	o = default_options();
	o.mount_api = UD_API_LEGACY;
	build_ok(&o, &img, &p);
	assert_int_equal(p.mount_api, UD_API_LEGACY);
	ud_plan_free(&p);
}

static void test_plan_binds_in_order(void **state)
{
	(void)state;
	struct ud_image img = test_image();
	struct ud_op binds[] = {
		{.type = UD_OP_BIND, .src = "/host/a", .dst = "/in/a", .readonly = false},
		{.type = UD_OP_TMPFS, .src = NULL, .dst = "/tmp", .readonly = false},
		{.type = UD_OP_BIND, .src = "/host/b", .dst = "/in/b", .readonly = true},
		{.type = UD_OP_BIND,
		 .src = "/etc/resolv.conf",
		 .dst = "/etc/resolv.conf",
		 .readonly = true},
	};
	struct ud_options o = default_options();
	o.binds = binds;
	o.n_binds = 4;
	struct ud_plan p;
	build_ok(&o, &img, &p);
	static const struct want_op w[] = {
		{UD_OP_OVERLAY, NULL, "/", 0},
		{UD_OP_PROC, NULL, "/proc", -1},
		{UD_OP_DEV, NULL, "/dev", -1},
		{UD_OP_SYS, NULL, "/sys", 1},
		{UD_OP_BIND, "/host/a", "/in/a", 0},
		{UD_OP_TMPFS, NULL, "/tmp", -1},
		{UD_OP_BIND, "/host/b", "/in/b", 1},
		{UD_OP_BIND, "/etc/resolv.conf", "/etc/resolv.conf", 1},
	};
	check_ops(&p, w, 8);
	ud_plan_free(&p);

	/* binds come after the special filesystems even when those are off */
	o.no_proc = o.no_dev = o.no_sys = true;
	build_ok(&o, &img, &p);
	static const struct want_op w2[] = {
		{UD_OP_OVERLAY, NULL, "/", 0},
		{UD_OP_BIND, "/host/a", "/in/a", 0},
		{UD_OP_TMPFS, NULL, "/tmp", -1},
		{UD_OP_BIND, "/host/b", "/in/b", 1},
		{UD_OP_BIND, "/etc/resolv.conf", "/etc/resolv.conf", 1},
	};
	check_ops(&p, w2, 5);
	ud_plan_free(&p);
}

static void test_plan_unshare(void **state)
{
	(void)state;
	struct ud_image img = test_image();
	struct ud_options o = default_options();
	o.unshare_flags = CLONE_NEWUTS | CLONE_NEWIPC;
	o.hostname = "box";
	struct ud_plan p;
	build_ok(&o, &img, &p);
	assert_int_equal(p.unshare_flags, CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC);
	assert_non_null(p.hostname);
	assert_string_equal(p.hostname, "box");
	ud_plan_free(&p);

	o.unshare_flags = CLONE_NEWNET | CLONE_NEWCGROUP;
	o.hostname = NULL;
	build_ok(&o, &img, &p);
	assert_true(p.unshare_flags & CLONE_NEWNS);
	assert_int_equal(p.unshare_flags, CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWCGROUP);
	ud_plan_free(&p);
}

static void expect_dst_refused(const char *dst, enum ud_op_type type)
{
	struct ud_image img = test_image();
	struct ud_op binds[] = {
		{.type = UD_OP_BIND, .src = "/host/ok", .dst = "/ok", .readonly = false},
		{.type = type,
		 .src = type == UD_OP_BIND ? "/host/x" : NULL,
		 .dst = (char *)dst,
		 .readonly = false},
	};
	struct ud_options o = default_options();
	o.binds = binds;
	o.n_binds = 2;
	struct ud_plan p;
	memset(&p, 0, sizeof(p));
	ud_error e;
	memset(&e, 0, sizeof(e));
	int r = ud_plan_build(&o, &img, NULL, &p, &e);
	if (r != -1) {
		ud_plan_free(&p);
		fail_msg("%s DST \"%s\" accepted", ud_op_name(type), dst);
	}
	if (e.status != UD_EXIT_USAGE)
		fail_msg("%s DST \"%s\": status %d, expected %d", ud_op_name(type), dst, e.status,
			 UD_EXIT_USAGE);
	if (e.msg[0] == '\0')
		fail_msg("%s DST \"%s\": empty message", ud_op_name(type), dst);
	ud_plan_free(&p); /* a failed build leaves a plan that can be freed */
}

static void test_plan_dst_validation(void **state)
{
	(void)state;
	static const char *bad[] = {
		"", "relative", "in/x", "..", "/..", "/a/..", "/a/../b", "/../etc", "/",
		"//", "/a//b", "/a/./b", "/./a", "/.", "/a/.", "/a/",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		expect_dst_refused(bad[i], UD_OP_BIND);
		expect_dst_refused(bad[i], UD_OP_TMPFS);
	}
}

static void test_plan_dst_accepted(void **state)
{
	(void)state;
	static const char *good[] = {"/a", "/a/b/c", "/a..b", "/.hidden", "/a/...", "/..a", "/tmp"};
	struct ud_image img = test_image();
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		struct ud_op binds[] = {
			{.type = UD_OP_BIND, .src = "/host", .dst = (char *)good[i], .readonly = false}};
		struct ud_options o = default_options();
		o.binds = binds;
		o.n_binds = 1;
		struct ud_plan p;
		memset(&p, 0, sizeof(p));
		ud_error e;
		if (ud_plan_build(&o, &img, NULL, &p, &e) != 0)
			fail_msg("DST \"%s\" refused: %s", good[i], e.msg);
		assert_string_equal(p.ops[p.n_ops - 1].dst, good[i]);
		ud_plan_free(&p);
	}
}

static void test_names(void **state)
{
	(void)state;
	assert_string_equal(ud_op_name(UD_OP_OVERLAY), "overlay");
	assert_string_equal(ud_op_name(UD_OP_PROC), "proc");
	assert_string_equal(ud_op_name(UD_OP_DEV), "dev");
	assert_string_equal(ud_op_name(UD_OP_SYS), "sys");
	assert_string_equal(ud_op_name(UD_OP_BIND), "bind");
	assert_string_equal(ud_op_name(UD_OP_TMPFS), "tmpfs");
	assert_string_equal(ud_ns_name(CLONE_NEWNS), "mnt");
	assert_string_equal(ud_ns_name(CLONE_NEWUTS), "uts");
	assert_string_equal(ud_ns_name(CLONE_NEWIPC), "ipc");
	assert_string_equal(ud_ns_name(CLONE_NEWNET), "net");
	assert_string_equal(ud_ns_name(CLONE_NEWCGROUP), "cgroup");
}

/* ---- ud_plan_json ------------------------------------------------------------------------------ */

static json_object *get(json_object *o, const char *key)
{
	json_object *v = NULL;
	if (!json_object_object_get_ex(o, key, &v))
		fail_msg("--print JSON has no \"%s\"", key);
	return v;
}

static const char *get_str(json_object *o, const char *key)
{
	json_object *v = get(o, key);
	if (!json_object_is_type(v, json_type_string))
		fail_msg("\"%s\" is not a string", key);
	return json_object_get_string(v);
}

static json_object *plan_json(const struct ud_plan *p)
{
	char *s = ud_plan_json(p);
	assert_non_null(s);
	enum json_tokener_error jerr;
	json_object *o = json_tokener_parse_verbose(s, &jerr);
	if (!o || !json_object_is_type(o, json_type_object))
		fail_msg("ud_plan_json output does not parse (%s): %s", json_tokener_error_desc(jerr), s);
	free(s);
	return o;
}

static void test_plan_json_full(void **state)
{
	(void)state;
	struct ud_image img = test_image();
	struct ud_op binds[] = {
		{.type = UD_OP_BIND, .src = "/host/a", .dst = "/in/a", .readonly = false},
		{.type = UD_OP_BIND, .src = "/host/\"quoted\"\\x", .dst = "/in/b", .readonly = true},
		{.type = UD_OP_TMPFS, .src = NULL, .dst = "/scratch", .readonly = false},
	};
	struct ud_options o = default_options();
	o.binds = binds;
	o.n_binds = 3;
	o.unshare_flags = CLONE_NEWUTS;
	o.hostname = "box";
	struct ud_plan p;
	build_ok(&o, &img, &p);
	json_object *j = plan_json(&p);

	assert_string_equal(get_str(j, "image"), "busybox:latest");
	assert_string_equal(get_str(j, "id"), img.id);
	assert_string_equal(get_str(j, "driver"), "overlay2");
	assert_string_equal(get_str(j, "storage_root"), "/var/lib/docker/overlay2");
	assert_string_equal(get_str(j, "mount_api"), "auto");
	assert_string_equal(get_str(j, "workdir"), "/srv");
	assert_string_equal(get_str(j, "hostname"), "box");

	json_object *l = get(j, "layers");
	assert_true(json_object_is_type(l, json_type_array));
	assert_int_equal(json_object_array_length(l), 3);
	for (size_t i = 0; i < 3; i++)
		assert_string_equal(json_object_get_string(json_object_array_get_idx(l, i)), layers[i]);

	json_object *ev = get(j, "env");
	assert_true(json_object_is_type(ev, json_type_array));
	assert_int_equal(json_object_array_length(ev), 3);
	for (size_t i = 0; i < 3; i++)
		assert_string_equal(json_object_get_string(json_object_array_get_idx(ev, i)), env[i]);

	json_object *rw = get(j, "rw");
	assert_string_equal(get_str(rw, "mode"), "tmpfs");
	assert_true(json_object_is_type(get(rw, "path"), json_type_null));

	json_object *ns = get(j, "namespaces");
	assert_true(json_object_is_type(ns, json_type_array));
	assert_int_equal(json_object_array_length(ns), 2);
	assert_string_equal(json_object_get_string(json_object_array_get_idx(ns, 0)), "mnt");
	assert_string_equal(json_object_get_string(json_object_array_get_idx(ns, 1)), "uts");

	json_object *m = get(j, "mounts");
	assert_true(json_object_is_type(m, json_type_array));
	assert_int_equal(json_object_array_length(m), p.n_ops);
	assert_int_equal(p.n_ops, 7);
	static const char *types[] = {"overlay", "proc", "dev", "sys", "bind", "bind", "tmpfs"};
	static const char *dsts[] = {"/", "/proc", "/dev", "/sys", "/in/a", "/in/b", "/scratch"};
	for (size_t i = 0; i < 7; i++) {
		json_object *mi = json_object_array_get_idx(m, i);
		assert_string_equal(get_str(mi, "type"), types[i]);
		assert_string_equal(get_str(mi, "dst"), dsts[i]);
	}
	assert_false(json_object_get_boolean(get(json_object_array_get_idx(m, 0), "readonly")));
	assert_true(json_object_get_boolean(get(json_object_array_get_idx(m, 3), "readonly")));
	json_object *b1 = json_object_array_get_idx(m, 4), *b2 = json_object_array_get_idx(m, 5);
	assert_string_equal(get_str(b1, "src"), "/host/a");
	assert_true(json_object_is_type(get(b1, "readonly"), json_type_boolean));
	assert_false(json_object_get_boolean(get(b1, "readonly")));
	assert_string_equal(get_str(b2, "src"), "/host/\"quoted\"\\x"); /* escaped correctly */
	assert_true(json_object_get_boolean(get(b2, "readonly")));

	json_object_put(j);
	ud_plan_free(&p);
}

static void test_plan_json_rw_modes(void **state)
{
	(void)state;
	struct ud_image img = test_image();
	struct ud_options o = default_options();
	struct ud_plan p;

	o.rw = UD_RW_NONE;
	o.mount_api = UD_API_LEGACY;
	build_ok(&o, &img, &p);
	json_object *j = plan_json(&p);
	json_object *rw = get(j, "rw");
	assert_string_equal(get_str(rw, "mode"), "none");
	assert_true(json_object_is_type(get(rw, "path"), json_type_null));
	assert_string_equal(get_str(j, "mount_api"), "legacy");
	assert_true(json_object_is_type(get(j, "hostname"), json_type_null));
	json_object *m0 = json_object_array_get_idx(get(j, "mounts"), 0);
	assert_true(json_object_get_boolean(get(m0, "readonly")));
	json_object *ns = get(j, "namespaces");
	assert_int_equal(json_object_array_length(ns), 1);
	assert_string_equal(json_object_get_string(json_object_array_get_idx(ns, 0)), "mnt");
	json_object_put(j);
	ud_plan_free(&p);

	o = default_options();
	o.rw = UD_RW_PATH;
	o.rw_path = "/var/tmp/with \"quote\"";
	o.mount_api = UD_API_FD;
	build_ok(&o, &img, &p);
	j = plan_json(&p);
	rw = get(j, "rw");
	assert_string_equal(get_str(rw, "mode"), "path");
	assert_string_equal(get_str(rw, "path"), "/var/tmp/with \"quote\"");
	assert_string_equal(get_str(j, "mount_api"), "fd");
	json_object_put(j);
	ud_plan_free(&p);

	o = default_options();
	o.mount_api = UD_API_STRING;
	build_ok(&o, &img, &p);
	j = plan_json(&p);
	assert_string_equal(get_str(j, "mount_api"), "string");
	json_object_put(j);
	ud_plan_free(&p);
}

/* Control characters and non-ASCII in image-controlled strings still give valid JSON. */
static void test_plan_json_escaping(void **state)
{
	(void)state;
	struct ud_image img = test_image();
	char *nasty_env[] = {"A=line1\nline2\ttab\x01\x1f", "B=\xc3\xa9t\xc3\xa9", "C=</script>"};
	img.env = nasty_env;
	img.n_env = 3;
	img.workdir = "/w\"d\\";
	struct ud_options o = default_options();
	struct ud_plan p;
	build_ok(&o, &img, &p);
	json_object *j = plan_json(&p);
	json_object *ev = get(j, "env");
	for (size_t i = 0; i < 3; i++)
		assert_string_equal(json_object_get_string(json_object_array_get_idx(ev, i)),
				    nasty_env[i]);
	assert_string_equal(get_str(j, "workdir"), "/w\"d\\");
	json_object_put(j);
	ud_plan_free(&p);
}

/* ---- the confinement: docker run's masked and read-only paths ---------------------------------- */

static const char *const masked[] = {
	"/proc/asound",	      "/proc/acpi",	    "/proc/kcore",	"/proc/keys",
	"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
	"/proc/scsi",	      "/sys/firmware",	    "/sys/devices/virtual/powercap"};
static const char *const readonly[] = {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
				       "/proc/sysrq-trigger"};

/* Checks ops[from...] against the masks then the read-only paths, those under skip left out;
 * returns the index after them. */
static size_t check_confine(const struct ud_plan *p, size_t from, const char *skip)
{
	size_t i = from;
	for (size_t k = 0; k < 16; k++) {
		bool mask = k < 11;
		const char *want = mask ? masked[k] : readonly[k - 11];
		if (skip && !strncmp(want, skip, strlen(skip)))
			continue;
		assert_true(i < p->n_ops);
		assert_int_equal(p->ops[i].type, mask ? UD_OP_MASK : UD_OP_READONLY);
		assert_string_equal(p->ops[i].dst, want);
		assert_true(p->ops[i].readonly);
		assert_null(p->ops[i].src);
		i++;
	}
	return i;
}

static void test_plan_confine(void **state)
{
	(void)state;
	struct ud_image img = test_image();
	struct ud_op binds[] = {{.type = UD_OP_BIND, .src = "/host/a", .dst = "/in/a", .readonly = false}};
	struct ud_options o = default_options();
	o.no_confine = false;
	o.binds = binds;
	o.n_binds = 1;
	struct ud_plan p;
	build_ok(&o, &img, &p);
	/* After /proc /dev /sys, which they lie in; before the operator's binds. */
	assert_int_equal(p.ops[3].type, UD_OP_SYS);
	size_t end = check_confine(&p, 4, NULL);
	assert_int_equal(end, 20);
	assert_int_equal(p.n_ops, 21);
	assert_int_equal(p.ops[20].type, UD_OP_BIND);
	assert_string_equal(ud_op_name(UD_OP_MASK), "mask");
	assert_string_equal(ud_op_name(UD_OP_READONLY), "readonly");

	char *text = ud_plan_json(&p);
	json_object *j = json_tokener_parse(text);
	free(text);
	json_object *m, *c;
	assert_true(json_object_object_get_ex(j, "mounts", &m));
	assert_true(json_object_object_get_ex(j, "confine", &c));
	assert_int_equal(json_object_array_length(m), 5);
	assert_int_equal(json_object_array_length(c), 16);
	json_object *first, *type;
	first = json_object_array_get_idx(c, 0);
	assert_true(json_object_object_get_ex(first, "type", &type));
	assert_string_equal(json_object_get_string(type), "mask");
	json_object_put(j);
	ud_plan_free(&p);
}

static void test_plan_confine_follows_special_fs(void **state)
{
	(void)state;
	struct ud_image img = test_image();
	struct ud_plan p;
	struct ud_options o = default_options();
	o.no_confine = false;
	o.no_proc = true; /* no /proc: none of its masks */
	build_ok(&o, &img, &p);
	assert_int_equal(check_confine(&p, 3, "/proc/"), p.n_ops);
	assert_int_equal(p.n_ops, 5);
	ud_plan_free(&p);

	o.no_proc = false;
	o.no_sys = true;
	build_ok(&o, &img, &p);
	assert_int_equal(check_confine(&p, 3, "/sys/"), p.n_ops);
	assert_int_equal(p.n_ops, 17);
	ud_plan_free(&p);
}

static void test_plan_rw_path_root_refused(void **state)
{
	(void)state;
	static const char *bad[] = {"/", "//", "///"};
	struct ud_image img = test_image();
	for (size_t i = 0; i < 3; i++) {
		struct ud_options o = default_options();
		o.rw = UD_RW_PATH;
		o.rw_path = bad[i];
		struct ud_plan p;
		ud_error e;
		memset(&p, 0, sizeof(p));
		memset(&e, 0, sizeof(e));
		assert_int_equal(ud_plan_build(&o, &img, NULL, &p, &e), -1);
		assert_int_equal(e.status, UD_EXIT_USAGE);
		ud_plan_free(&p);
	}
}

/* ---- the overlay op: its lowers and mount(2)'s one page ------------------------------------------ */

/* Docker's short names come in from lowers.c (already read); unknown or odd ones stay NULL. */
static void test_plan_overlay_lowers(void **state)
{
	(void)state;
	struct ud_image img = test_image();
	char *links[] = {"AAAAAAAAAAAAAAAAAAAAAAAAAA", NULL, "bad/name"};
	struct ud_options o = default_options();
	struct ud_plan p;
	ud_error e;
	memset(&e, 0, sizeof(e));
	memset(&p, 0, sizeof(p));
	assert_int_equal(ud_plan_build(&o, &img, links, &p, &e), 0);
	const struct ud_op *ov = ud_plan_overlay(&p);
	assert_non_null(ov);
	assert_ptr_equal(ov, &p.ops[0]);
	assert_string_equal(ov->src, "/var/lib/docker/overlay2");
	assert_int_equal(ov->n_lowers, 3);
	for (size_t i = 0; i < 3; i++)
		assert_string_equal(ov->lowers[i].path, layers[i]);
	assert_string_equal(ov->lowers[0].link, "l/AAAAAAAAAAAAAAAAAAAAAAAAAA");
	assert_null(ov->lowers[1].link);
	assert_null(ov->lowers[2].link); /* never into mount(2)'s options */

	json_object *j = plan_json(&p);
	json_object *m0 = json_object_array_get_idx(get(j, "mounts"), 0);
	assert_string_equal(get_str(m0, "type"), "overlay");
	assert_string_equal(get_str(m0, "src"), "/var/lib/docker/overlay2");
	json_object *lw = get(m0, "lowers");
	assert_true(json_object_is_type(lw, json_type_array));
	assert_int_equal(json_object_array_length(lw), 3);
	for (size_t i = 0; i < 3; i++)
		assert_string_equal(get_str(json_object_array_get_idx(lw, i), "path"), layers[i]);
	assert_string_equal(get_str(json_object_array_get_idx(lw, 0), "link"),
			    "l/AAAAAAAAAAAAAAAAAAAAAAAAAA");
	assert_true(json_object_is_type(get(json_object_array_get_idx(lw, 1), "link"),
					json_type_null));
	/* Only the overlay op lists lowers. */
	json_object *v = NULL;
	assert_false(json_object_object_get_ex(json_object_array_get_idx(get(j, "mounts"), 1),
					       "lowers", &v));
	json_object_put(j);
	ud_plan_free(&p);
}

/* The layer cache's short names are computed: <cache>/sha256/<hex> is l/<first 20 hex>. */
static void test_plan_overlay_cache_links(void **state)
{
	(void)state;
	static char *cached[] = {
		"/var/cache/ud/sha256/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"/var/cache/ud/sha256/fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210",
	};
	struct ud_image img = test_image();
	img.layers = cached;
	img.n_layers = 2;
	img.from_cache = true;
	img.storage_root = "/var/cache/ud";
	char *ignored[] = {"XXXX", "YYYY"};
	struct ud_options o = default_options();
	struct ud_plan p;
	build_ok(&o, &img, &p);
	const struct ud_op *ov = ud_plan_overlay(&p);
	assert_string_equal(ov->src, "/var/cache/ud");
	assert_string_equal(ov->lowers[0].link, "l/0123456789abcdef0123");
	assert_string_equal(ov->lowers[1].link, "l/fedcba9876543210fedc");
	ud_plan_free(&p);

	ud_error e;
	memset(&e, 0, sizeof(e));
	assert_int_equal(ud_plan_build(&o, &img, ignored, &p, &e), 0);
	assert_string_equal(ud_plan_overlay(&p)->lowers[0].link, "l/0123456789abcdef0123");
	ud_plan_free(&p);
}

/* ---- issue 12: network files, tmpfs options, user, /dev/shm --------------------------------- */

static void test_plan_network_files(void **state)
{
	(void)state;
	struct ud_image img = test_image();
	struct ud_host_net hn = {.resolv = "nameserver 127.0.0.53\nnameserver 192.0.2.1\n",
				 .resolved = NULL, .nodename = "hostbox"};
	struct ud_op binds[] = {{.type = UD_OP_BIND, .src = "/h", .dst = "/etc/hosts", .readonly = true}};
	struct ud_options o = default_options();
	o.no_network_files = false;
	o.no_confine = false;
	o.host_net = &hn;
	o.binds = binds;
	o.n_binds = 1;
	struct ud_plan p;
	build_ok(&o, &img, &p);
	/* after the special filesystems and the confinement, before the user's mounts (which
	 * may replace one of them) */
	size_t first = 0;
	while (first < p.n_ops && p.ops[first].type != UD_OP_FILE)
		first++;
	assert_true(first + 3 < p.n_ops);
	assert_int_equal(p.ops[first - 1].type, UD_OP_READONLY);
	static const char *const dst[] = {"/etc/hosts", "/etc/resolv.conf", "/etc/hostname"};
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(p.ops[first + i].type, UD_OP_FILE);
		assert_string_equal(p.ops[first + i].dst, dst[i]);
		assert_true(p.ops[first + i].readonly);
	}
	assert_int_equal(p.ops[first + 3].type, UD_OP_BIND);
	assert_non_null(strstr(p.ops[first].data, "127.0.0.1\tlocalhost\n"));
	assert_non_null(strstr(p.ops[first].data, "127.0.1.1\thostbox\n"));
	/* the host's network: the host's file as it is */
	assert_string_equal(p.ops[first + 1].data, hn.resolv);
	assert_string_equal(p.ops[first + 2].data, "hostbox\n");
	ud_plan_free(&p);

	/* a network namespace and a hostname of its own */
	o.unshare_flags = CLONE_NEWNET | CLONE_NEWUTS;
	o.hostname = "app.example";
	build_ok(&o, &img, &p);
	const struct ud_op *f = &p.ops[first];
	assert_non_null(strstr(f[0].data, "127.0.1.1\tapp.example app\n"));
	assert_null(strstr(f[0].data, "hostbox"));
	assert_string_equal(f[1].data, "nameserver 192.0.2.1\n");
	assert_string_equal(f[2].data, "app.example\n");
	json_object *j = plan_json(&p);
	json_object *hosts = json_object_array_get_idx(get(j, "mounts"), 4);
	assert_string_equal(get_str(hosts, "type"), "file");
	assert_string_equal(get_str(hosts, "content"), f[0].data);
	json_object_put(j);
	ud_plan_free(&p);

	/* no host files given: an empty resolv.conf on the host's network */
	o.host_net = NULL;
	o.unshare_flags = 0;
	o.hostname = NULL;
	build_ok(&o, &img, &p);
	assert_string_equal(p.ops[first + 1].data, "");
	ud_plan_free(&p);
}

static void test_plan_hostname_is_one_word(void **state)
{
	(void)state;
	struct ud_image img = test_image();
	struct ud_options o = default_options();
	o.unshare_flags = CLONE_NEWUTS;
	static const char *const bad[] = {"a b", "a\nb", "#x", "a\tb", "\x7f"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct ud_plan p;
		ud_error e;
		o.hostname = bad[i];
		assert_int_equal(ud_plan_build(&o, &img, NULL, &p, &e), -1);
		assert_int_equal(e.status, UD_EXIT_USAGE);
		ud_plan_free(&p);
	}
}

static void test_plan_tmpfs_user_shm(void **state)
{
	(void)state;
	struct ud_image img = test_image();
	img.user = "nobody";
	struct ud_op t;
	ud_error e;
	assert_int_equal(ud_tmpfs_parse("/s:size=1m,ro", "tmpfs", &t, &e), 0);
	struct ud_op binds[] = {t, {.type = UD_OP_TMPFS, .dst = "/plain"}};
	struct ud_options o = default_options();
	o.binds = binds;
	o.n_binds = 2;
	struct ud_plan p;
	build_ok(&o, &img, &p);
	const struct ud_op *a = &p.ops[p.n_ops - 2], *b = &p.ops[p.n_ops - 1];
	assert_string_equal(a->data, "mode=1777,size=1m");
	assert_int_equal(a->attrs, UD_TMPFS_DEFAULT_ATTRS | MOUNT_ATTR_RDONLY);
	assert_true(a->readonly);
	/* a tmpfs op made by hand: docker run's defaults */
	assert_string_equal(b->data, "mode=1777");
	assert_int_equal(b->attrs, UD_TMPFS_DEFAULT_ATTRS);
	assert_string_equal(p.user, "nobody");
	assert_int_equal(p.shm_size, UD_SHM_DEFAULT);
	json_object *j = plan_json(&p);
	assert_string_equal(get_str(j, "user"), "nobody");
	assert_int_equal(json_object_get_int64(get(j, "shm_size")), 64 << 20);
	json_object *m = json_object_array_get_idx(get(j, "mounts"), 4);
	assert_string_equal(get_str(m, "options"), "mode=1777,size=1m");
	json_object *fl = get(m, "flags");
	assert_int_equal(json_object_array_length(fl), 4);
	assert_string_equal(json_object_get_string(json_object_array_get_idx(fl, 0)), "ro");
	json_object_put(j);
	ud_plan_free(&p);

	/* --user wins over the image's User; an empty image User is none */
	o.user = "app:app";
	o.shm_size = 1 << 20;
	build_ok(&o, &img, &p);
	assert_string_equal(p.user, "app:app");
	assert_int_equal(p.shm_size, 1 << 20);
	ud_plan_free(&p);
	o.user = NULL;
	img.user = "";
	build_ok(&o, &img, &p);
	assert_null(p.user);
	j = plan_json(&p);
	assert_true(json_object_is_type(get(j, "user"), json_type_null));
	json_object_put(j);
	ud_plan_free(&p);
	free(t.dst);
	free(t.data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_bind),
		cmocka_unit_test(test_plan_defaults),
		cmocka_unit_test(test_plan_no_special),
		cmocka_unit_test(test_plan_rw_modes),
		cmocka_unit_test(test_plan_binds_in_order),
		cmocka_unit_test(test_plan_unshare),
		cmocka_unit_test(test_plan_dst_validation),
		cmocka_unit_test(test_plan_dst_accepted),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_plan_json_full),
		cmocka_unit_test(test_plan_json_rw_modes),
		cmocka_unit_test(test_plan_json_escaping),
		cmocka_unit_test(test_plan_confine),
		cmocka_unit_test(test_plan_confine_follows_special_fs),
		cmocka_unit_test(test_plan_rw_path_root_refused),
		cmocka_unit_test(test_plan_overlay_lowers),
		cmocka_unit_test(test_plan_overlay_cache_links),
		cmocka_unit_test(test_plan_network_files),
		cmocka_unit_test(test_plan_hostname_is_one_word),
		cmocka_unit_test(test_plan_tmpfs_user_shm),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
