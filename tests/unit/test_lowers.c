/* Unit tests for the overlay's lower layers: lowers.c reading Docker's per-layer short names
 * from a storage tree built in a temporary directory (under /var/tmp: the integration tests
 * watch /tmp), strict with --mount-api legacy, tolerant with auto, not read otherwise; and
 * mount(2)'s options built from them (ud_plan_mount_data), within its one page. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "docker.h"
#include "error.h"
#include "lowers.h"
#include "plan.h"

static char root[64], paths[3][128];
static char *layer_paths[3] = {paths[0], paths[1], paths[2]};

static void put(const char *id, const char *link)
{
	char p[256];
	snprintf(p, sizeof(p), "%s/%s", root, id);
	assert_int_equal(mkdir(p, 0755), 0);
	snprintf(p, sizeof(p), "%s/%s/diff", root, id);
	assert_int_equal(mkdir(p, 0755), 0);
	if (!link)
		return;
	snprintf(p, sizeof(p), "%s/%s/link", root, id);
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fputs(link, f);
	fclose(f);
}

static int setup(void **state)
{
	(void)state;
	snprintf(root, sizeof(root), "/var/tmp/ud-test-lowers-XXXXXX");
	if (!mkdtemp(root))
		return -1;
	put("aaaa", "ABCDEFGHIJKLMNOPQRSTUVWXYZ\n");
	put("bbbb", NULL);
	put("cccc", "../../etc");
	for (size_t i = 0; i < 3; i++)
		snprintf(paths[i], sizeof(paths[i]), "%s/%s/diff", root,
			 (const char *[]){"aaaa", "bbbb", "cccc"}[i]);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	return system(cmd) == 0 ? 0 : -1;
}

static struct ud_image image(size_t n)
{
	struct ud_image img;
	memset(&img, 0, sizeof(img));
	img.storage_root = root;
	img.layers = layer_paths;
	img.n_layers = n;
	return img;
}

static void test_auto_tolerates(void **state)
{
	(void)state;
	struct ud_image img = image(3);
	char **links = NULL;
	ud_error e;
	memset(&e, 0, sizeof(e));
	assert_int_equal(ud_lowers_read_links(&img, UD_API_AUTO, &links, &e), 0);
	assert_non_null(links);
	assert_string_equal(links[0], "ABCDEFGHIJKLMNOPQRSTUVWXYZ");
	assert_null(links[1]); /* no link file */
	assert_null(links[2]); /* not a plain name */
	ud_lowers_free_links(links, 3);
}

static void test_legacy_is_strict(void **state)
{
	(void)state;
	ud_error e;
	char **links = NULL;
	struct ud_image img = image(1);
	memset(&e, 0, sizeof(e));
	assert_int_equal(ud_lowers_read_links(&img, UD_API_LEGACY, &links, &e), 0);
	assert_string_equal(links[0], "ABCDEFGHIJKLMNOPQRSTUVWXYZ");
	ud_lowers_free_links(links, 1);

	img = image(2);
	links = NULL;
	assert_int_equal(ud_lowers_read_links(&img, UD_API_LEGACY, &links, &e), -1);
	assert_null(links);
	assert_int_equal(e.status, UD_EXIT_STORAGE);
	assert_int_equal(e.errnum, ENOENT);
	assert_non_null(strstr(e.msg, "reading the short name of layer"));

	img = image(3);
	img.layers = layer_paths + 2;
	img.n_layers = 1;
	assert_int_equal(ud_lowers_read_links(&img, UD_API_LEGACY, &links, &e), -1);
	assert_int_equal(e.status, UD_EXIT_STORAGE);
	assert_non_null(strstr(e.msg, "bad short name '../../etc'"));
}

static void test_not_read(void **state)
{
	(void)state;
	ud_error e;
	char **links = (char **)&e;
	struct ud_image img = image(3);
	assert_int_equal(ud_lowers_read_links(&img, UD_API_FD, &links, &e), 0);
	assert_null(links);
	assert_int_equal(ud_lowers_read_links(&img, UD_API_STRING, &links, &e), 0);
	assert_null(links);
	img.from_cache = true; /* plan.c computes the cache's names */
	assert_int_equal(ud_lowers_read_links(&img, UD_API_LEGACY, &links, &e), 0);
	assert_null(links);
}

/* The one call the command line makes: the names read reach the plan's overlay op. */
static void test_plan_gets_links(void **state)
{
	(void)state;
	struct ud_image img = image(3);
	struct ud_options o;
	memset(&o, 0, sizeof(o));
	o.mount_api = UD_API_AUTO;
	o.no_confine = true;
	struct ud_plan p;
	memset(&p, 0, sizeof(p));
	ud_error e;
	memset(&e, 0, sizeof(e));
	assert_int_equal(ud_lowers_plan(&o, &img, &p, &e), 0);
	const struct ud_op *ov = ud_plan_overlay(&p);
	assert_int_equal(ov->n_lowers, 3);
	assert_string_equal(ov->lowers[0].link, "l/ABCDEFGHIJKLMNOPQRSTUVWXYZ");
	assert_null(ov->lowers[1].link);
	ud_plan_free(&p);

	o.mount_api = UD_API_LEGACY;
	assert_int_equal(ud_lowers_plan(&o, &img, &p, &e), -1);
	assert_int_equal(e.status, UD_EXIT_STORAGE);
	ud_plan_free(&p);
}

/* ---- mount(2)'s options from the overlay op (plan.c, pure) ------------------------------------ */

/* n lowers whose mount(2) options, read-only, come to exactly `total` bytes. */
static struct ud_op overlay_of_size(size_t total, struct ud_lower *lw, size_t max)
{
	char *probe = NULL;
	ud_error e;
	struct ud_op ov = {.type = UD_OP_OVERLAY, .lowers = lw};
	assert_int_equal(ud_plan_mount_data(&ov, "/tmp/init", NULL, NULL, &probe, &e), 0);
	size_t left = total - strlen(probe); /* each lower adds ":l/<name>" */
	free(probe);
	for (; left > 0; ov.n_lowers++) {
		assert_true(ov.n_lowers < max);
		size_t name = left >= 29 + 4 ? 26 : left - 3; /* Docker's 26, the rest in the last */
		char *l = malloc(name + 3);
		assert_non_null(l);
		memcpy(l, "l/", 2);
		memset(l + 2, 'A' + (int)(ov.n_lowers % 26), name);
		l[name + 2] = '\0';
		lw[ov.n_lowers] = (struct ud_lower){.path = "/x/diff", .link = l};
		left -= name + 3;
	}
	return ov;
}

static void free_links(struct ud_op *ov)
{
	for (size_t i = 0; i < ov->n_lowers; i++)
		free(ov->lowers[i].link);
}

static void test_mount_data(void **state)
{
	(void)state;
	struct ud_lower two[] = {{.path = "/s/a/diff", .link = "l/AAAA"},
				 {.path = "/s/b/diff", .link = "l/BBBB"}};
	struct ud_op ov = {.type = UD_OP_OVERLAY, .src = "/s", .lowers = two, .n_lowers = 2};
	char *d = NULL;
	ud_error e;
	memset(&e, 0, sizeof(e));
	assert_int_equal(ud_plan_mount_data(&ov, "/tmp/init", "/tmp/upper", "/tmp/work", &d, &e), 0);
	assert_string_equal(d, "lowerdir=/tmp/init:l/AAAA:l/BBBB,upperdir=/tmp/upper,"
			       "workdir=/tmp/work,redirect_dir=nofollow,metacopy=off");
	free(d);
	assert_int_equal(ud_plan_mount_data(&ov, "/tmp/init", NULL, NULL, &d, &e), 0);
	assert_string_equal(d, "lowerdir=/tmp/init:l/AAAA:l/BBBB,redirect_dir=nofollow,metacopy=off");
	free(d);

	/* A lower without a short name cannot go by mount(2): the storage's fault (67). */
	two[1].link = NULL;
	d = NULL;
	assert_int_equal(ud_plan_mount_data(&ov, "/tmp/init", NULL, NULL, &d, &e), -1);
	assert_int_equal(e.status, UD_EXIT_STORAGE);
	assert_non_null(strstr(e.msg, "/s/b/diff"));
	assert_null(d);
}

/* mount(2) copies one page: 4095 bytes of options go, 4096 are refused with E2BIG (68) and a
 * message that names the way out. 120 Docker layers fit. */
static void test_mount_data_limit(void **state)
{
	(void)state;
	static struct ud_lower lw[200];
	char *d = NULL;
	ud_error e;
	memset(&e, 0, sizeof(e));

	struct ud_op ov = overlay_of_size(UD_MOUNT_DATA_MAX, lw, 200);
	assert_int_equal(ud_plan_mount_data(&ov, "/tmp/init", NULL, NULL, &d, &e), 0);
	assert_int_equal(strlen(d), UD_MOUNT_DATA_MAX);
	free(d);
	free_links(&ov);

	ov = overlay_of_size(UD_MOUNT_DATA_MAX + 1, lw, 200);
	d = NULL;
	assert_int_equal(ud_plan_mount_data(&ov, "/tmp/init", NULL, NULL, &d, &e), -1);
	assert_null(d);
	assert_int_equal(e.status, UD_EXIT_MOUNT);
	assert_int_equal(e.errnum, E2BIG);
	assert_non_null(strstr(e.msg, "4096 bytes"));
	assert_non_null(strstr(e.msg, "lowerdir+"));
	free_links(&ov);

	/* 120 of Docker's 26-character names fit, even beside the longest --rw-path upper and
	 * work; 140 do not. */
	ov = (struct ud_op){.type = UD_OP_OVERLAY, .lowers = lw, .n_lowers = 120};
	for (size_t i = 0; i < 120; i++)
		lw[i] = (struct ud_lower){.path = "/x/diff", .link = "l/ABCDEFGHIJKLMNOPQRSTUVWXYZ"};
	assert_int_equal(ud_plan_mount_data(&ov, "/tmp/init", "/proc/self/fd/2147483647/upper",
					    "/proc/self/fd/2147483647/work", &d, &e),
			 0);
	free(d);
	ov.n_lowers = 140;
	for (size_t i = 120; i < 140; i++)
		lw[i] = lw[0];
	assert_int_equal(ud_plan_mount_data(&ov, "/tmp/init", NULL, NULL, &d, &e), -1);
	assert_int_equal(e.errnum, E2BIG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_auto_tolerates),
		cmocka_unit_test(test_legacy_is_strict),
		cmocka_unit_test(test_not_read),
		cmocka_unit_test(test_plan_gets_links),
		cmocka_unit_test(test_mount_data),
		cmocka_unit_test(test_mount_data_limit),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
