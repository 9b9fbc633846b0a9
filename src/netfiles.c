/* The network files' content (see netfiles.h). */
#include "netfiles.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "util.h"

/* ---------------------------------------------------------------- the host's files */

/* path's first UD_NETFILE_MAX bytes (the host's own file: trusted, symlinks followed as its
 * resolver follows them); NULL when it does not exist. */
static int read_host_file(const char *path, char **out, ud_error *e)
{
	*out = NULL;
	ud_autoclose int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT || errno == ENOTDIR ?
			       0 :
			       ud_fail(e, UD_EXIT_MOUNT, errno, "reading the host's %s", path);
	char *b = malloc(UD_NETFILE_MAX + 1);
	size_t len = 0;
	if (!b)
		return ud_oom(e);
	for (ssize_t n; len < UD_NETFILE_MAX; len += (size_t)n)
		if ((n = read(fd, b + len, UD_NETFILE_MAX - len)) <= 0) {
			if (n < 0 && errno == EINTR) {
				n = 0;
				continue;
			}
			if (n < 0) {
				free(b);
				return ud_fail(e, UD_EXIT_MOUNT, errno, "reading the host's %s",
					       path);
			}
			break;
		}
	b[len] = '\0'; /* text: a NUL in it ends it */
	*out = b;
	return 0;
}

int ud_host_net_read(struct ud_host_net *hn, ud_error *e)
{
	memset(hn, 0, sizeof(*hn));
	struct utsname u;
	if (uname(&u) == 0)
		snprintf(hn->nodename, sizeof(hn->nodename), "%s", u.nodename);
	if (read_host_file(UD_HOST_RESOLV, &hn->resolv, e) < 0 ||
	    read_host_file(UD_RESOLVED_RESOLV, &hn->resolved, e) < 0) {
		ud_host_net_free(hn);
		return -1;
	}
	return 0;
}

void ud_host_net_free(struct ud_host_net *hn)
{
	free(hn->resolv);
	free(hn->resolved);
	hn->resolv = hn->resolved = NULL;
}

/* ---------------------------------------------------------------- resolv.conf */

/* The address of a "nameserver ADDR" line (into addr), or false for any other line. */
static bool nameserver(const char *line, size_t n, char *addr, size_t len)
{
	const char *p = line, *end = line + n;
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	if ((size_t)(end - p) < 11 || strncmp(p, "nameserver", 10) ||
	    (p[10] != ' ' && p[10] != '\t'))
		return false;
	for (p += 10; p < end && (*p == ' ' || *p == '\t'); p++)
		;
	size_t a = 0;
	while (p + a < end && p[a] != ' ' && p[a] != '\t' && p[a] != '\r' && p[a] != '#' &&
	       p[a] != ';')
		a++;
	if (a == 0 || a >= len)
		return a != 0; /* an address too long to parse is no loopback: kept */
	memcpy(addr, p, a);
	addr[a] = '\0';
	return true;
}

static bool loopback(const char *addr)
{
	struct in_addr v4;
	struct in6_addr v6;
	if (inet_pton(AF_INET, addr, &v4) == 1)
		return (ntohl(v4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, addr, &v6) != 1)
		return false;
	return IN6_IS_ADDR_LOOPBACK(&v6) || (IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127);
}

/* systemd-resolved's stub: 127.0.0.53 the one nameserver (docker run then reads
 * UD_RESOLVED_RESOLV instead). */
static bool resolved_stub(const char *text)
{
	int all = 0;
	bool stub = false;
	for (const char *l = text; l && *l;) {
		size_t n = strcspn(l, "\n");
		char addr[64] = "";
		if (nameserver(l, n, addr, sizeof(addr))) {
			all++;
			stub = !strcmp(addr, "127.0.0.53");
		}
		l += n + (l[n] == '\n');
	}
	return stub && all == 1;
}

static char *filtered(const char *text)
{
	size_t len = strlen(text);
	char *out = malloc(len + 64), *end = out;
	if (!out)
		return NULL;
	int kept = 0;
	for (const char *l = text; *l;) {
		size_t n = strcspn(l, "\n");
		char addr[64] = "";
		bool ns = nameserver(l, n, addr, sizeof(addr));
		if (!ns || !loopback(addr)) {
			memcpy(end, l, n);
			end += n;
			*end++ = '\n';
			kept += ns;
		}
		l += n + (l[n] == '\n');
	}
	if (!kept)
		end = stpcpy(end, "nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
	*end = '\0';
	return out;
}

char *ud_netfiles_resolv(const char *host, const char *resolved, bool own_netns)
{
	if (!own_netns) {
		size_t n = host ? strlen(host) : 0;
		char *out = malloc(n + 2);
		if (out) {
			memcpy(out, host ? host : "", n);
			strcpy(out + n, n && host[n - 1] != '\n' ? "\n" : "");
		}
		return out;
	}
	return filtered(resolved && resolved_stub(host) ? resolved : host ? host : "");
}

/* ---------------------------------------------------------------- hosts, hostname */

bool ud_netfiles_name_valid(const char *h)
{
	size_t n = h ? strlen(h) : 0;
	return n >= 1 && n <= 64 &&
	       strspn(h, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") == n;
}

char *ud_netfiles_hosts(const char *hostname)
{
	static const char base[] = "127.0.0.1\tlocalhost\n"
				   "::1\tlocalhost ip6-localhost ip6-loopback\n"
				   "fe00::0\tip6-localnet\n"
				   "ff00::0\tip6-mcastprefix\n"
				   "ff02::1\tip6-allnodes\n"
				   "ff02::2\tip6-allrouters\n";
	char *out = malloc(sizeof(base) + 2 * 65 + 16);
	if (!out)
		return NULL;
	char *end = stpcpy(out, base);
	if (!ud_netfiles_name_valid(hostname) || !strcmp(hostname, "localhost"))
		return out;
	/* 127.0.1.1, as Debian names the host: on loopback, so it answers with or without a
	 * network namespace of the app's own. */
	size_t short_len = strcspn(hostname, ".");
	if (hostname[short_len] && short_len)
		sprintf(end, "127.0.1.1\t%s %.*s\n", hostname, (int)short_len, hostname);
	else
		sprintf(end, "127.0.1.1\t%s\n", hostname);
	return out;
}

char *ud_netfiles_hostname(const char *hostname)
{
	size_t n = hostname ? strlen(hostname) : 0;
	char *out = malloc(n + 2);
	if (out)
		snprintf(out, n + 2, "%s\n", n ? hostname : "");
	return out;
}
