/* Unit tests for lowers.c: Docker's per-layer short names, read from a storage tree built in a
 * temporary directory (under /var/tmp: the integration tests watch /tmp). Strict with
 * --mount-api legacy, tolerant with auto, not read otherwise. */
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_auto_tolerates),
		cmocka_unit_test(test_legacy_is_strict),
		cmocka_unit_test(test_not_read),
		cmocka_unit_test(test_plan_gets_links),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
