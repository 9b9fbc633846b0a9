/* The workers' supplementary groups, computed on the host.
 *
 * uWSGI sets them in uwsgi_as_root() right after the plugins' before_privileges_drop: with
 * initgroups(), which reads /etc/group, and getgrnam() for add-gid. By then a worker has entered
 * the image, so the image's /etc/group would choose its groups: an image that lists nobody in
 * root, shadow and docker gave its workers groups 0, 42 and 105. So the plugin looks everything
 * up on the host first, sets gid and groups itself once inside, and clears uwsgi.gid so that
 * uWSGI's own block (setgid, initgroups, add-gid) does not run inside. uid stays with uWSGI.
 *
 * An ini without uid, for an image whose User is not root: the workers run as that User, as the
 * helper resolved it inside the image (numbers in the hand-off), with the image's primary gid
 * (or the ini's gid) and no supplementary group. Not the image's /etc/group: the workers' gids
 * are the host's gids too (there is no user namespace), so a group the image lists its user in
 * ("docker", "disk") may open host files that a bind, a device or a socket brings inside. The
 * primary gid is the image's word as well; gid 0 is refused unless the ini says so. And not the
 * host's groups of that uid either: the host's user of that number is someone else. */
#include <uwsgi.h>

#include <grp.h>
#include <pwd.h>

#include "creds.h"

extern struct uwsgi_server uwsgi;

int ud_ini_names_uid(void)
{
	return uwsgi.uid || uwsgi.uidname;
}

void ud_host_ids(uid_t *uid, gid_t *gid)
{
	*uid = uwsgi.uid;
	*gid = uwsgi.gid;
	if (!*uid && uwsgi.uidname) {
		struct passwd *pw = getpwnam(uwsgi.uidname);
		char *end;
		unsigned long n = strtoul(uwsgi.uidname, &end, 10);
		/* an unknown name is not root: uWSGI refuses it itself, later */
		*uid = pw ? pw->pw_uid : (!*end ? (uid_t)n : (uid_t)-1);
		if (pw && !uwsgi.gid && !uwsgi.gidname)
			*gid = pw->pw_gid;
	}
	if (!*gid && uwsgi.gidname) {
		struct group *gr = getgrnam(uwsgi.gidname);
		if (gr)
			*gid = gr->gr_gid;
	}
}

/* uWSGI resolves uid and gid names before the hook; without gid it would leave the master's
 * groups (root's) in place, so take the primary group from the host's passwd. */
static int resolve_gid(struct ud_creds *c, ud_error *e)
{
	c->gid = uwsgi.gid;
	if (c->gid)
		return 0;
	struct passwd *pw = getpwuid(uwsgi.uid);
	if (!pw)
		return ud_fail(e, UD_EXIT_REFUSED, 0,
			       "uid %u has no entry in the host's passwd to take a group from: set gid",
			       (unsigned)uwsgi.uid);
	c->gid = pw->pw_gid;
	return 0;
}

static int initgroups_list(struct ud_creds *c, ud_error *e)
{
	const char *name = uwsgi.uidname;
	struct passwd *pw = NULL;
	if (!name || !getpwnam(name)) {
		pw = getpwuid(uwsgi.uid);
		name = pw ? pw->pw_name : NULL;
	}
	if (!name) {
		c->groups = uwsgi_calloc(sizeof(gid_t));
		c->groups[0] = c->gid;
		c->n_groups = 1;
		return 0;
	}
	int n = 64;
	for (int tries = 0; tries < 4; tries++) {
		free(c->groups);
		c->groups = uwsgi_calloc(sizeof(gid_t) * (size_t)n);
		int got = n;
		if (getgrouplist(name, c->gid, c->groups, &got) >= 0) {
			c->n_groups = got;
			return 0;
		}
		n = got > n ? got : n * 4;
	}
	return ud_fail(e, UD_EXIT_REFUSED, 0, "cannot list the host's groups of user %s", name);
}

/* add-gid replaces what initgroups set, as in uWSGI; names are the host's. */
static int additional_list(struct ud_creds *c, ud_error *e)
{
	struct uwsgi_string_list *usl;
	int n = 0;
	uwsgi_foreach(usl, uwsgi.additional_gids) n++;
	free(c->groups);
	c->groups = uwsgi_calloc(sizeof(gid_t) * (size_t)n);
	c->n_groups = 0;
	uwsgi_foreach(usl, uwsgi.additional_gids)
	{
		char *end;
		unsigned long v = strtoul(usl->value, &end, 10);
		struct group *g = NULL;
		if (!*usl->value || *end) {
			g = getgrnam(usl->value);
			if (!g)
				return ud_fail(e, UD_EXIT_REFUSED, 0,
					       "add-gid %s: no such group on the host", usl->value);
		}
		c->groups[c->n_groups++] = g ? g->gr_gid : (gid_t)v;
	}
	return 0;
}

int ud_creds_resolve(struct ud_creds *c, const struct ud_handoff *h, ud_error *e)
{
	memset(c, 0, sizeof(*c));
	if (h && !ud_ini_names_uid() && h->has_user && h->uid != 0) {
		c->gid = uwsgi.gid ? uwsgi.gid : (gid_t)h->gid;
		c->uid = (uid_t)h->uid;
		c->set_uid = 1;
		c->active = 1;
		return 0;
	}
	if (!uwsgi.uid && !uwsgi.gid)
		return 0; /* root inside (docker-allow-root): uWSGI changes nothing either */
	if (resolve_gid(c, e) < 0)
		return -1;
	if (uwsgi.additional_gids) {
		if (additional_list(c, e) < 0)
			return -1;
	} else if (uwsgi.uid && !uwsgi.no_initgroups) {
		if (initgroups_list(c, e) < 0)
			return -1;
	}
	c->active = 1;
	return 0;
}

int ud_creds_apply(struct ud_creds *c, ud_error *e)
{
	if (!c->active)
		return 0;
	if (setgroups((size_t)c->n_groups, c->groups) < 0)
		return ud_fail(e, UD_EXIT_REFUSED, errno, "setgroups");
	if (setgid(c->gid) < 0)
		return ud_fail(e, UD_EXIT_REFUSED, errno, "setgid(%u)", (unsigned)c->gid);
	uwsgi.gid = 0;
	if (c->set_uid)
		uwsgi.uid = c->uid;
	return 0;
}

void ud_creds_free(struct ud_creds *c)
{
	free(c->groups);
	c->groups = NULL;
	c->n_groups = 0;
}
