/* The image's /etc/passwd and /etc/group, parsed by us (see userdb.h for why and the rules). */
#include "userdb.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define MAX_FIELDS 7

/* One line split at ':' (fields point into the file; not NUL-terminated). */
struct line {
	const char *f[MAX_FIELDS];
	size_t len[MAX_FIELDS];
	size_t n;
};

/* The next line of db from *pos; false at the end. */
static bool next_line(const struct ud_userdb *db, size_t *pos, struct line *l)
{
	if (*pos >= db->len)
		return false;
	const char *start = db->data + *pos;
	const char *nl = memchr(start, '\n', db->len - *pos);
	size_t n = nl ? (size_t)(nl - start) : db->len - *pos;
	*pos += n + 1;
	l->n = 0;
	for (const char *c = start, *end = start + n;; c++) {
		const char *colon = memchr(c, ':', (size_t)(end - c));
		const char *stop = colon ? colon : end;
		if (l->n == MAX_FIELDS)
			break; /* more fields than passwd has: the rest is ignored, as by glibc */
		l->f[l->n] = c;
		l->len[l->n++] = (size_t)(stop - c);
		if (!colon)
			break;
		c = colon;
	}
	return true;
}

/* Empty, a comment, a NIS compat entry (+name, -name): not an entry of ours. */
static bool skipped(const struct line *l)
{
	return l->len[0] == 0 || l->f[0][0] == '#' || l->f[0][0] == '+' || l->f[0][0] == '-';
}

static int parse_id(const char *s, size_t n, unsigned long *out)
{
	unsigned long v = 0;
	if (n == 0 || n > 10)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v > UD_USER_MAX_ID)
		return -1;
	*out = v;
	return 0;
}

static bool field_is(const struct line *l, size_t i, const char *s)
{
	return l->len[i] == strlen(s) && !memcmp(l->f[i], s, l->len[i]);
}

/* ---------------------------------------------------------------- spec */

/* The spec for a message: an image's Config.User may hold anything, the message is one line. */
static const char *printable(const char *spec, char *buf, size_t len)
{
	size_t i = 0;
	for (; spec[i] && i + 1 < len; i++)
		buf[i] = (unsigned char)spec[i] < ' ' || spec[i] == 0x7f ? '?' : spec[i];
	buf[i] = '\0';
	if (spec[i] && len > 4)
		memcpy(buf + len - 4, "...", 4);
	return buf;
}

static int spec_part(const char *p, size_t n, int status, char *out, bool *numeric,
		     unsigned long *id, const char *spec, ud_error *e)
{
	char shown[64];
	if (n > UD_USER_NAME_MAX)
		return ud_fail(e, status, 0, "user '%s': a name of more than %d bytes",
			       printable(spec, shown, sizeof(shown)), UD_USER_NAME_MAX);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)p[i] <= ' ' || p[i] == 0x7f)
			return ud_fail(e, status, 0,
				       "user '%s' has whitespace or a control character: expected "
				       "USER[:GROUP]",
				       printable(spec, shown, sizeof(shown)));
	memcpy(out, p, n);
	out[n] = '\0';
	*numeric = n && strspn(out, "0123456789") == n;
	if (*numeric && parse_id(out, n, id) < 0)
		return ud_fail(e, status, 0, "user '%s': id %s is out of range (0 to %u)",
			       printable(spec, shown, sizeof(shown)), out, UD_USER_MAX_ID);
	return 0;
}

int ud_user_spec_parse(const char *spec, int status, struct ud_user_spec *s, ud_error *e)
{
	memset(s, 0, sizeof(*s));
	const char *colon = strchr(spec, ':');
	size_t ul = colon ? (size_t)(colon - spec) : strlen(spec);
	char shown[64];
	if (colon && (strchr(colon + 1, ':') || ul == 0 || !colon[1]))
		return ud_fail(e, status, 0, "user '%s': expected USER[:GROUP]",
			       printable(spec, shown, sizeof(shown)));
	if (spec_part(spec, ul, status, s->user, &s->user_numeric, &s->uid, spec, e) < 0)
		return -1;
	if (!colon)
		return 0;
	s->has_group = true;
	return spec_part(colon + 1, strlen(colon + 1), status, s->group, &s->group_numeric, &s->gid,
			 spec, e);
}

/* ---------------------------------------------------------------- files */

int ud_userdb_check(const struct ud_userdb *db, const char *what, ud_error *e)
{
	if (!db->present)
		return 0;
	if (db->len > UD_USERDB_MAX_BYTES)
		return ud_fail(e, UD_EXIT_USER, 0,
			       "the image's %s is larger than %u MiB: refusing it", what,
			       UD_USERDB_MAX_BYTES >> 20);
	if (memchr(db->data, '\0', db->len))
		return ud_fail(e, UD_EXIT_USER, 0,
			       "the image's %s has a NUL byte (not a text file): refusing it",
			       what);
	for (size_t pos = 0; pos < db->len;) {
		const char *nl = memchr(db->data + pos, '\n', db->len - pos);
		size_t n = nl ? (size_t)(nl - db->data) - pos : db->len - pos;
		if (n > UD_USERDB_MAX_LINE)
			return ud_fail(
				e, UD_EXIT_USER, 0,
				"the image's %s has a line of more than %d bytes: refusing it",
				what, UD_USERDB_MAX_LINE);
		pos += n + 1;
	}
	return 0;
}

/* ---------------------------------------------------------------- resolving */

/* name:password:uid:gid:gecos:home:shell; the first entry that matches. */
static bool find_passwd(const struct ud_user_spec *s, const struct ud_userdb *db, struct ud_user *u,
			struct line *hit)
{
	struct line l;
	for (size_t pos = 0; db->present && next_line(db, &pos, &l);) {
		unsigned long uid, gid;
		if (skipped(&l) || l.n < 4 || parse_id(l.f[2], l.len[2], &uid) < 0 ||
		    parse_id(l.f[3], l.len[3], &gid) < 0)
			continue;
		bool match = s->user_numeric ? uid == s->uid :
			     s->user[0]	     ? field_is(&l, 0, s->user) :
					       uid == 0;
		if (!match)
			continue;
		u->uid = (uid_t)uid;
		u->gid = (gid_t)gid;
		*hit = l;
		return true;
	}
	return false;
}

/* Does the member list (field 3) name the user? */
static bool lists(const struct line *l, const char *name, size_t name_len)
{
	if (l->n < 4)
		return false;
	for (const char *c = l->f[3], *end = c + l->len[3]; c <= end;) {
		const char *comma = memchr(c, ',', (size_t)(end - c));
		const char *stop = comma ? comma : end;
		if ((size_t)(stop - c) == name_len && !memcmp(c, name, name_len))
			return true;
		c = stop + 1;
	}
	return false;
}

static int push_group(struct ud_user *u, gid_t g, ud_error *e)
{
	if (u->n_groups >= UD_USERDB_MAX_GROUPS)
		return ud_fail(
			e, UD_EXIT_USER, 0,
			"the image's /etc/group gives the user more than %d groups: refusing it",
			UD_USERDB_MAX_GROUPS);
	return ud_push(&u->groups, &u->n_groups, sizeof(g), &g) < 0 ? ud_oom(e) : 0;
}

/* name:password:gid:members. With an explicit GROUP, *found tells whether it was there; else
 * every group that lists name goes into u->groups. */
static int scan_groups(const struct ud_user_spec *s, const struct ud_userdb *db, const char *name,
		       size_t name_len, struct ud_user *u, bool *found, ud_error *e)
{
	struct line l;
	*found = false;
	for (size_t pos = 0; db->present && next_line(db, &pos, &l);) {
		unsigned long gid;
		if (skipped(&l) || l.n < 3 || parse_id(l.f[2], l.len[2], &gid) < 0)
			continue;
		if (s->has_group) {
			if (s->group_numeric ? gid == s->gid : field_is(&l, 0, s->group)) {
				u->gid = (gid_t)gid;
				*found = true;
				return 0;
			}
		} else if (lists(&l, name, name_len) && push_group(u, (gid_t)gid, e) < 0)
			return -1;
	}
	return 0;
}

static int set_home(struct ud_user *u, const struct line *hit, ud_error *e)
{
	bool has = hit && hit->n >= 6 && hit->len[5] > 0;
	u->home = has ? strndup(hit->f[5], hit->len[5]) : strdup("/");
	return u->home ? 0 : ud_oom(e);
}

int ud_user_resolve(const struct ud_user_spec *s, const struct ud_userdb *passwd,
		    const struct ud_userdb *group, struct ud_user *u, ud_error *e)
{
	memset(u, 0, sizeof(*u));
	struct line hit;
	bool matched = find_passwd(s, passwd, u, &hit);
	if (!matched && s->user[0] && !s->user_numeric)
		return ud_fail(e, UD_EXIT_USER, 0, "no user '%s' in the image's /etc/passwd%s",
			       s->user, passwd->present ? "" : " (it has none)");
	if (!matched) {
		u->uid = (uid_t)s->uid; /* numeric without an entry (or root): gid 0, as runc */
		u->gid = 0;
	}
	if (set_home(u, matched ? &hit : NULL, e) < 0)
		return -1;
	bool found = false;
	if ((s->has_group || matched) && scan_groups(s, group, matched ? hit.f[0] : "",
						     matched ? hit.len[0] : 0, u, &found, e) < 0)
		goto fail;
	if (s->has_group && !found) {
		if (!s->group_numeric) {
			ud_fail(e, UD_EXIT_USER, 0, "no group '%s' in the image's /etc/group%s",
				s->group, group->present ? "" : " (it has none)");
			goto fail;
		}
		u->gid = (gid_t)s->gid;
	}
	return 0;
fail:
	ud_user_free(u);
	return -1;
}

void ud_user_free(struct ud_user *u)
{
	free(u->groups);
	free(u->home);
	memset(u, 0, sizeof(*u));
}
