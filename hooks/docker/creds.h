/* The workers' groups, computed on the host. */
#ifndef UD_CREDS_H
#define UD_CREDS_H

#include <sys/types.h>

#include "error.h"
#include "handoff.h"

struct ud_creds {
	gid_t gid;
	gid_t *groups; /* supplementary groups, malloc'ed */
	int n_groups;
	int active;  /* 0: nothing to do (no gid, uid root) */
	int set_uid; /* the image's User: uid goes to uWSGI's setuid */
	uid_t uid;
};

/* Whether the ini names a uid (uid = NAME or NUMBER). */
int ud_ini_names_uid(void);

/* Before entering: the gid and supplementary groups uWSGI would give uid/gid (initgroups, or
 * add-gid), looked up in the host's user database. With no uid in the ini and a non-root User
 * for the image in h (the helper's numbers, resolved inside the image): that uid, the ini's gid
 * or else the image's, and no supplementary groups at all. */
int ud_creds_resolve(struct ud_creds *c, const struct ud_handoff *h, ud_error *e);

/* After entering, before uWSGI drops privileges: sets them, and keeps uWSGI from computing them
 * again inside the image (where /etc/group is the image's); the image's uid is left to uWSGI's
 * setuid. */
int ud_creds_apply(struct ud_creds *c, ud_error *e);

void ud_creds_free(struct ud_creds *c);

/* uid and gid as the ini names them, looked up on the host (uWSGI resolves names only later,
 * and in form 1's master never): the one lookup behind the root refusal and socket owners. */
void ud_host_ids(uid_t *uid, gid_t *gid);

#endif
