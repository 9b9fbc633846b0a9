/* Unit tests for userdb.c: the --user / Config.User syntax, docker run's lookup rules, and the
 * image's passwd and group as hostile input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "userdb.h"

static const char passwd_text[] = "root:x:0:0:root:/root:/bin/sh\n"
				  "# comment\n"
				  "\n"
				  "+nis\n"
				  "-nis:x:0:0::/:/bin/sh\n"
				  "short:x:7\n"
				  "neg:x:-1:1::/:/bin/sh\n"
				  "hex:x:0x10:1::/:/bin/sh\n"
				  "big:x:2147483648:1::/:/bin/sh\n"
				  "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
				  "app:x:1234:2345:the app:/home/app:/bin/sh\n"
				  "app:x:9999:9999:second entry:/second:/bin/sh\n"
				  "nohome:x:77:77::\n"
				  "fields:x:78:78:g:/h:/s:extra:more\n"
				  "lastline:x:79:79::/last:/bin/sh"; /* no final newline */
static const char group_text[] = "root:x:0:\n"
				 "app:x:2345:\n"
				 "extra:x:3456:other,app\n"
				 "bad:x:notanumber:app\n"
				 "prefix:x:3457:application,ap,app2\n"
				 "more:x:4567:app\n"
				 "dup:x:4567:app\n"
				 "nogroup:x:65534:\n";

static struct ud_userdb db(const char *text)
{
	return (struct ud_userdb){.data = text, .len = strlen(text), .present = true};
}

static const struct ud_userdb none = {.present = false};

static void resolve_ok(const char *spec, const struct ud_userdb *pw, const struct ud_userdb *gr,
		       struct ud_user *u)
{
	struct ud_user_spec s;
	ud_error e;
	if (ud_user_spec_parse(spec, 64, &s, &e) < 0)
		fail_msg("spec '%s': %s", spec, e.msg);
	if (ud_user_resolve(&s, pw, gr, u, &e) < 0)
		fail_msg("'%s': %s", spec, e.msg);
}

static void expect(const char *spec, unsigned uid, unsigned gid, const char *home, size_t n,
		   const gid_t *groups)
{
	struct ud_userdb pw = db(passwd_text), gr = db(group_text);
	struct ud_user u;
	resolve_ok(spec, &pw, &gr, &u);
	assert_int_equal(u.uid, uid);
	assert_int_equal(u.gid, gid);
	assert_string_equal(u.home, home);
	assert_int_equal(u.n_groups, n);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(u.groups[i], groups[i]);
	ud_user_free(&u);
}

static void test_docker_rules(void **state)
{
	(void)state;
	static const gid_t app_groups[] = {3456, 4567, 4567};
	expect("", 0, 0, "/root", 0, NULL);
	expect("root", 0, 0, "/root", 0, NULL);
	expect("0", 0, 0, "/root", 0, NULL);
	expect("nobody", 65534, 65534, "/nonexistent", 0, NULL);
	expect("65534:65534", 65534, 65534, "/nonexistent", 0, NULL);
	/* the first entry of a name wins; groups listing the name, in file order */
	expect("app", 1234, 2345, "/home/app", 3, app_groups);
	/* a numeric user takes the entry's name for its groups */
	expect("1234", 1234, 2345, "/home/app", 3, app_groups);
	/* the second "app" entry, by uid: its name is app too, so app's groups */
	expect("9999", 9999, 9999, "/second", 3, app_groups);
	/* an explicit group: its gid, no supplementary groups */
	expect("app:extra", 1234, 3456, "/home/app", 0, NULL);
	expect("app:4567", 1234, 4567, "/home/app", 0, NULL);
	expect("app:31337", 1234, 31337, "/home/app", 0, NULL);
	/* numeric, no entry: gid 0 and home / (runc's defaults) */
	expect("4321", 4321, 0, "/", 0, NULL);
	expect("4321:4322", 4321, 4322, "/", 0, NULL);
	expect("4321:app", 4321, 2345, "/", 0, NULL);
	/* an empty home field, too many fields, a last line without a newline */
	expect("nohome", 77, 77, "/", 0, NULL);
	expect("fields", 78, 78, "/h", 0, NULL);
	expect("lastline", 79, 79, "/last", 0, NULL);
	expect("2147483647", UD_USER_MAX_ID, 0, "/", 0, NULL);
}

static void expect_missing(const char *spec, const struct ud_userdb *pw, const struct ud_userdb *gr,
			   const char *word)
{
	struct ud_user_spec s;
	struct ud_user u;
	ud_error e;
	assert_int_equal(ud_user_spec_parse(spec, 64, &s, &e), 0);
	assert_int_equal(ud_user_resolve(&s, pw, gr, &u, &e), -1);
	assert_int_equal(e.status, UD_EXIT_USER);
	if (!strstr(e.msg, word))
		fail_msg("'%s': message '%s' lacks '%s'", spec, e.msg, word);
	assert_null(u.groups);
	assert_null(u.home);
}

static void test_missing_names(void **state)
{
	(void)state;
	struct ud_userdb pw = db(passwd_text), gr = db(group_text);
	expect_missing("ghost", &pw, &gr, "no user 'ghost' in the image's /etc/passwd");
	expect_missing("app:ghost", &pw, &gr, "no group 'ghost' in the image's /etc/group");
	/* skipped lines are not entries: NIS, malformed ids, a comment */
	expect_missing("+nis", &pw, &gr, "+nis");
	expect_missing("-nis", &pw, &gr, "-nis");
	expect_missing("neg", &pw, &gr, "neg");
	expect_missing("hex", &pw, &gr, "hex");
	expect_missing("big", &pw, &gr, "big");
	expect_missing("short", &pw, &gr, "short");
	expect_missing("app:bad", &pw, &gr, "bad");
	/* no passwd or group in the image at all */
	expect_missing("app", &none, &gr, "(it has none)");
	expect_missing("1234:app", &pw, &none, "(it has none)");
	/* numbers need no file */
	struct ud_user u;
	resolve_ok("1234:2345", &none, &none, &u);
	assert_int_equal(u.uid, 1234);
	assert_int_equal(u.gid, 2345);
	assert_int_equal(u.n_groups, 0);
	ud_user_free(&u);
	resolve_ok("", &none, &none, &u);
	assert_int_equal(u.uid, 0);
	assert_string_equal(u.home, "/");
	ud_user_free(&u);
}

static void test_member_lists_match_whole_names(void **state)
{
	(void)state;
	/* "application", "ap" and "app2" are not "app"; an empty list and a trailing comma */
	static const char gr_text[] = "prefix:x:10:application,ap,app2\n"
				      "empty:x:11:\n"
				      "trailing:x:12:app,\n"
				      "lead:x:13:,app\n"
				      "nomembers:x:14\n";
	struct ud_userdb pw = db(passwd_text), gr = db(gr_text);
	struct ud_user u;
	resolve_ok("app", &pw, &gr, &u);
	assert_int_equal(u.n_groups, 2);
	assert_int_equal(u.groups[0], 12);
	assert_int_equal(u.groups[1], 13);
	ud_user_free(&u);
}

static void spec_fails(const char *spec)
{
	struct ud_user_spec s;
	ud_error e;
	if (ud_user_spec_parse(spec, 71, &s, &e) == 0)
		fail_msg("spec '%s' accepted", spec);
	assert_int_equal(e.status, 71);
	for (const char *c = e.msg; *c; c++)
		if ((unsigned char)*c < ' ')
			fail_msg("spec message has a control character: '%s'", e.msg);
}

static void test_spec_syntax(void **state)
{
	(void)state;
	struct ud_user_spec s;
	ud_error e;
	assert_int_equal(ud_user_spec_parse("app:extra", 64, &s, &e), 0);
	assert_string_equal(s.user, "app");
	assert_string_equal(s.group, "extra");
	assert_true(s.has_group && !s.user_numeric && !s.group_numeric);
	assert_int_equal(ud_user_spec_parse("0012:7", 64, &s, &e), 0);
	assert_true(s.user_numeric && s.group_numeric);
	assert_int_equal(s.uid, 12);
	assert_int_equal(s.gid, 7);
	assert_int_equal(ud_user_spec_parse("", 64, &s, &e), 0);
	assert_string_equal(s.user, "");
	assert_false(s.has_group);
	/* a name may be any bytes but whitespace and controls */
	assert_int_equal(ud_user_spec_parse("\xc3\xa9t\xc3\xa9:-x+", 64, &s, &e), 0);
	assert_false(s.user_numeric);

	spec_fails(":0");
	spec_fails("app:");
	spec_fails("a:b:c");
	spec_fails("bad name");
	spec_fails("tab\tname");
	spec_fails("line\nbreak:x");
	spec_fails("app:line\nbreak");
	spec_fails("\x1b[31mred");
	spec_fails("del\x7f");
	spec_fails("2147483648");
	spec_fails("0:99999999999");
	char longname[UD_USER_NAME_MAX + 2];
	memset(longname, 'x', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	spec_fails(longname);
	longname[UD_USER_NAME_MAX] = '\0';
	assert_int_equal(ud_user_spec_parse(longname, 64, &s, &e), 0);
}

static void check_refused(const char *data, size_t len, const char *word)
{
	struct ud_userdb d = {.data = data, .len = len, .present = true};
	ud_error e;
	assert_int_equal(ud_userdb_check(&d, "/etc/passwd", &e), -1);
	assert_int_equal(e.status, UD_EXIT_USER);
	if (!strstr(e.msg, word) || !strstr(e.msg, "/etc/passwd"))
		fail_msg("message '%s' lacks '%s'", e.msg, word);
}

static void test_hostile_files(void **state)
{
	(void)state;
	ud_error e;
	struct ud_userdb ok = db(passwd_text);
	assert_int_equal(ud_userdb_check(&ok, "/etc/passwd", &e), 0);
	assert_int_equal(ud_userdb_check(&none, "/etc/passwd", &e), 0);
	/* a NUL anywhere, at the very end too */
	static const char nul[] = "root:x:0:0::/:/bin/sh\n\0\1\2garbage";
	check_refused(nul, sizeof(nul) - 1, "NUL");
	check_refused("root:x:0:0::/:/bin/sh\n", 23, "NUL"); /* the literal's own NUL counted */
	/* too large: checked before anything is scanned */
	size_t big = UD_USERDB_MAX_BYTES + 1;
	char *b = malloc(big);
	memset(b, '\n', big);
	check_refused(b, big, "larger than 4 MiB");
	/* exactly the limit passes */
	struct ud_userdb at = {.data = b, .len = UD_USERDB_MAX_BYTES, .present = true};
	assert_int_equal(ud_userdb_check(&at, "/etc/passwd", &e), 0);
	/* one line over the limit, first, in the middle, last without a newline */
	memset(b, 'x', UD_USERDB_MAX_LINE + 1);
	check_refused(b, UD_USERDB_MAX_LINE + 1, "line of more than");
	memcpy(b, "a\n", 2);
	memset(b + 2, 'x', UD_USERDB_MAX_LINE + 1);
	b[UD_USERDB_MAX_LINE + 3] = '\n';
	check_refused(b, UD_USERDB_MAX_LINE + 4, "line of more than");
	memset(b, 'x', UD_USERDB_MAX_LINE);
	b[UD_USERDB_MAX_LINE] = '\n';
	struct ud_userdb edge = {.data = b, .len = UD_USERDB_MAX_LINE + 1, .present = true};
	assert_int_equal(ud_userdb_check(&edge, "/etc/passwd", &e), 0);
	free(b);
}

/* Binary noise that passes the check (no NUL) resolves nothing and reads nothing out of bounds
 * (the sanitizer build checks the latter). */
static void test_noise(void **state)
{
	(void)state;
	unsigned seed = 12345;
	char buf[4096];
	for (int round = 0; round < 2000; round++) {
		size_t n = (size_t)(rand_r(&seed) % sizeof(buf));
		for (size_t i = 0; i < n; i++) {
			int r = rand_r(&seed) % 8;
			buf[i] = r == 0 ? ':' :
				 r == 1 ? '\n' :
				 r == 2 ? ',' :
					  (char)(1 + rand_r(&seed) % 255);
		}
		struct ud_userdb d = {.data = buf, .len = n, .present = true};
		ud_error e;
		if (ud_userdb_check(&d, "/etc/passwd", &e) < 0)
			continue;
		static const char *const specs[] = {"", "app", "1", "app:app", "0:x"};
		for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
			struct ud_user_spec s;
			struct ud_user u;
			assert_int_equal(ud_user_spec_parse(specs[i], 64, &s, &e), 0);
			if (ud_user_resolve(&s, &d, &d, &u, &e) == 0) {
				assert_true(u.uid <= UD_USER_MAX_ID && u.gid <= UD_USER_MAX_ID);
				assert_non_null(u.home);
				ud_user_free(&u);
			} else
				assert_int_equal(e.status, UD_EXIT_USER);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_docker_rules),
		cmocka_unit_test(test_missing_names),
		cmocka_unit_test(test_member_lists_match_whole_names),
		cmocka_unit_test(test_spec_syntax),
		cmocka_unit_test(test_hostile_files),
		cmocka_unit_test(test_noise),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
