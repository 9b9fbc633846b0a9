/* Users and groups of an image, docker run's way: a --user / Config.User spec resolved against
 * the image's /etc/passwd and /etc/group. Those files are the image's, hence hostile: they are
 * parsed here, by us, with limits, never through NSS (which would read the host's databases, or
 * load modules the image names). Pure: the caller reads the files (user.c) and passes the bytes,
 * so every rule is unit-tested on crafted input. */
#ifndef UD_USERDB_H
#define UD_USERDB_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "error.h"

#define UD_USERDB_MAX_BYTES (4u << 20) /* a passwd or group larger than this is refused */
#define UD_USERDB_MAX_LINE 65536       /* ... and so is one with a longer line */
#define UD_USERDB_MAX_GROUPS 65536     /* NGROUPS_MAX */
#define UD_USER_MAX_ID 2147483647u     /* ids docker run accepts */
#define UD_USER_NAME_MAX 256

/* USER[:GROUP], split and checked; numeric parts are ids. */
struct ud_user_spec {
	char user[UD_USER_NAME_MAX + 1]; /* "" when the spec is empty: root */
	char group[UD_USER_NAME_MAX + 1];
	bool has_group;
	bool user_numeric, group_numeric;
	unsigned long uid, gid; /* the numeric parts' values */
};

/* Checks and splits spec: at most one ':', neither part longer than UD_USER_NAME_MAX, no
 * whitespace or control characters, a GROUP only after a USER, numeric parts at most
 * UD_USER_MAX_ID. status is the exit status of a refusal (64 for --user, 71 for the image's). */
int ud_user_spec_parse(const char *spec, int status, struct ud_user_spec *s, ud_error *e);

/* One of the image's files as read: present false when the image has none. */
struct ud_userdb {
	const char *data;
	size_t len;
	bool present;
};

/* Refuses a file that is not text of bounded lines: more than UD_USERDB_MAX_BYTES, a NUL byte,
 * a line longer than UD_USERDB_MAX_LINE. what names it in the message ("/etc/passwd"). */
int ud_userdb_check(const struct ud_userdb *db, const char *what, ud_error *e);

/* What the process runs as. */
struct ud_user {
	uid_t uid;
	gid_t gid;
	gid_t *groups; /* supplementary groups (malloc'ed), in /etc/group's order */
	size_t n_groups;
	char *home; /* the passwd entry's home, "/" without one */
};

/* runc's rules (docker run): the first passwd entry whose name is USER, or whose uid is USER
 * when numeric (the empty USER: uid 0), gives uid, gid and home; a numeric USER without an
 * entry is that uid with gid 0 and home "/"; a name without one is refused (status 71). An
 * explicit GROUP gives the gid (the first group of that name, or that gid when numeric; a name
 * without a group is refused) and no supplementary groups; without GROUP a matched user gets
 * every group that lists its name. Lines that are empty, comments, NIS (+/-) or malformed (too
 * few fields, an id that is not a decimal number in range) are skipped. Both files must have
 * passed ud_userdb_check(). */
int ud_user_resolve(const struct ud_user_spec *s, const struct ud_userdb *passwd,
		    const struct ud_userdb *group, struct ud_user *u, ud_error *e);
void ud_user_free(struct ud_user *u);

#endif
