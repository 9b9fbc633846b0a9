/* Unit tests for netfiles.c: resolv.conf as docker run gives it (the host's, or filtered in a
 * network namespace of its own), /etc/hosts and /etc/hostname. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "netfiles.h"

static void resolv(const char *host, const char *resolved, bool netns, const char *want)
{
	char *got = ud_netfiles_resolv(host, resolved, netns);
	assert_non_null(got);
	if (strcmp(got, want))
		fail_msg("resolv (netns %d) of\n%s---\ngot\n%s---\nwant\n%s---", netns,
			 host ? host : "(none)", got, want);
	free(got);
}

#define DEFAULTS "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"

static void test_host_network_is_verbatim(void **state)
{
	(void)state;
	static const char host[] = "# generated\nnameserver 127.0.0.53\noptions edns0 trust-ad\n"
				   "search lan\n";
	resolv(host, NULL, false, host);
	resolv("nameserver 10.0.0.1", NULL, false, "nameserver 10.0.0.1\n"); /* a final newline */
	resolv(NULL, NULL, false, "");
	resolv("", NULL, false, "");
	/* systemd-resolved's stub answers on the host's network: kept, its upstream list unused */
	resolv("nameserver 127.0.0.53\n", "nameserver 192.0.2.53\n", false,
	       "nameserver 127.0.0.53\n");
}

static void test_own_netns_drops_loopback(void **state)
{
	(void)state;
	resolv("# c\nnameserver 127.0.0.1\nnameserver 192.0.2.1\nnameserver ::1\n"
	       "nameserver 2001:db8::1\nsearch example.test\noptions ndots:2\n",
	       NULL, true,
	       "# c\nnameserver 192.0.2.1\nnameserver 2001:db8::1\nsearch example.test\n"
	       "options ndots:2\n");
	/* all of 127.0.0.0/8, ::1 however written, v4-mapped loopback; spacing and comments */
	resolv("nameserver 127.1.2.3\n  nameserver\t::0001\nnameserver ::ffff:127.0.0.1 # x\n"
	       "nameserver 10.1.1.1;c\n",
	       NULL, true, "nameserver 10.1.1.1;c\n");
	/* not loopback: 128.x, fe80 with a zone, words that only start like nameserver */
	resolv("nameserver 128.0.0.1\nnameserver fe80::1%eth0\nnameservers 127.0.0.1\n"
	       "#nameserver 127.0.0.1\n",
	       NULL, true,
	       "nameserver 128.0.0.1\nnameserver fe80::1%eth0\nnameservers 127.0.0.1\n"
	       "#nameserver 127.0.0.1\n");
	/* none left (or none at all): Docker's defaults */
	resolv("nameserver 127.0.0.1\nsearch lan\n", NULL, true, "search lan\n" DEFAULTS);
	resolv(NULL, NULL, true, DEFAULTS);
	resolv("", NULL, true, DEFAULTS);
	/* a garbage address is no loopback: kept, like any line we do not understand */
	resolv("nameserver not-an-address\n", NULL, true, "nameserver not-an-address\n");
}

static void test_resolved_stub(void **state)
{
	(void)state;
	static const char up[] = "nameserver 192.0.2.53\nnameserver 127.0.0.1\nsearch corp\n";
	/* the stub alone: the upstream list, itself filtered */
	resolv("nameserver 127.0.0.53\noptions edns0\n", up, true,
	       "nameserver 192.0.2.53\nsearch corp\n");
	/* the stub and another nameserver: not the stub file, filtered as it is */
	resolv("nameserver 127.0.0.53\nnameserver 10.0.0.1\n", up, true, "nameserver 10.0.0.1\n");
	/* the stub without resolved's file */
	resolv("nameserver 127.0.0.53\n", NULL, true, DEFAULTS);
}

static void test_long_lines(void **state)
{
	(void)state;
	char *big = malloc(UD_NETFILE_MAX + 64);
	memset(big, 'a', UD_NETFILE_MAX);
	memcpy(big, "nameserver ", 11);
	strcpy(big + UD_NETFILE_MAX, "\nnameserver 127.0.0.1\n");
	char *got = ud_netfiles_resolv(big, NULL, true);
	assert_non_null(got);
	assert_int_equal(strlen(got), UD_NETFILE_MAX + 1);
	free(got);
	free(big);
}

static const char base[] = "127.0.0.1\tlocalhost\n"
			   "::1\tlocalhost ip6-localhost ip6-loopback\n"
			   "fe00::0\tip6-localnet\n"
			   "ff00::0\tip6-mcastprefix\n"
			   "ff02::1\tip6-allnodes\n"
			   "ff02::2\tip6-allrouters\n";

static void hosts(const char *name, const char *extra)
{
	char *got = ud_netfiles_hosts(name);
	char want[1024];
	snprintf(want, sizeof(want), "%s%s", base, extra);
	assert_non_null(got);
	assert_string_equal(got, want);
	free(got);
}

static void test_hosts(void **state)
{
	(void)state;
	hosts("vm", "127.0.1.1\tvm\n");
	hosts("app.example.com", "127.0.1.1\tapp.example.com app\n");
	hosts("under_score-1", "127.0.1.1\tunder_score-1\n");
	hosts("localhost", "");
	hosts("", "");
	hosts(NULL, "");
	/* names that would add lines or fields are left out */
	hosts("a b", "");
	hosts("a\n1.2.3.4 evil", "");
	hosts("a#b", "");
	hosts(".lead", "127.0.1.1\t.lead\n");
	char long_name[66];
	memset(long_name, 'x', 65);
	long_name[65] = '\0';
	hosts(long_name, "");
	long_name[64] = '\0';
	assert_true(ud_netfiles_name_valid(long_name));
}

static void test_hostname(void **state)
{
	(void)state;
	char *h = ud_netfiles_hostname("app1");
	assert_string_equal(h, "app1\n");
	free(h);
	h = ud_netfiles_hostname(NULL);
	assert_string_equal(h, "\n");
	free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_host_network_is_verbatim),
		cmocka_unit_test(test_own_netns_drops_loopback),
		cmocka_unit_test(test_resolved_stub),
		cmocka_unit_test(test_long_lines),
		cmocka_unit_test(test_hosts),
		cmocka_unit_test(test_hostname),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
