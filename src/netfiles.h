/* /etc/hosts, /etc/resolv.conf and /etc/hostname, as docker run gives them: made by the helper
 * (their content is part of the plan, so --print shows it) and bound read-only over whatever the
 * image has. The content is pure (unit-tested); reading the host's files is the one I/O here. */
#ifndef UD_NETFILES_H
#define UD_NETFILES_H

#include <stdbool.h>

#include "error.h"

#define UD_HOST_RESOLV "/etc/resolv.conf"
/* systemd-resolved's list of the real nameservers, behind its stub 127.0.0.53. */
#define UD_RESOLVED_RESOLV "/run/systemd/resolve/resolv.conf"
#define UD_NETFILE_MAX (64 * 1024) /* read of a host file, at most */

/* What the files are made from: the host's, read before anything is unshared. */
struct ud_host_net {
	char *resolv;	   /* the host's /etc/resolv.conf, NULL when it has none */
	char *resolved;	   /* UD_RESOLVED_RESOLV, NULL when absent */
	char nodename[65]; /* uname's: the hostname inside unless --hostname */
};

int ud_host_net_read(struct ud_host_net *hn, ud_error *e);
void ud_host_net_free(struct ud_host_net *hn);

/* resolv.conf for the app. Sharing the host's network, the host's file as it is (what docker
 * run --network host gives: a loopback nameserver such as systemd-resolved's answers there). In
 * a network namespace of its own loopback answers nothing, so, as docker run does for a
 * container not on the host's network: the upstream list when the host's file is only
 * systemd-resolved's stub, nameserver lines for 127.0.0.0/8 and ::1 dropped, and Docker's
 * defaults (8.8.8.8, 8.8.4.4) when no nameserver is left. Every other line is kept. NULL only
 * when out of memory. */
char *ud_netfiles_resolv(const char *host, const char *resolved, bool own_netns);

/* hosts: docker run's localhost lines, then "127.0.1.1\tNAME[ SHORT]" (SHORT: NAME up to its
 * first dot) when hostname is a valid host name other than localhost. */
char *ud_netfiles_hosts(const char *hostname);

/* "NAME\n". */
char *ud_netfiles_hostname(const char *hostname);

/* A host name that may go into /etc/hosts: 1 to 64 of letters, digits, '-', '_' and '.'. */
bool ud_netfiles_name_valid(const char *hostname);

#endif
