/* The docker plugin's shared state: its options and what it holds between uWSGI's callbacks. */
#ifndef UD_PLUGIN_H
#define UD_PLUGIN_H

#include <uwsgi.h>

#include "creds.h"
#include "error.h"
#include "handoff.h"
#include "pidns.h"

#define LOG_PREFIX "[docker] "
#define HELPER_NAME "uwsgi-docker-rootfs"

struct ud_plugin {
	/* options */
	char *image;
	char *rwpath;
	struct uwsgi_string_list *binds, *ro_binds, *tmpfs;
	char *unshare;
	char *hostname;
	int read_only;
	char *host;
	char *helper;
	int env; /* -1: default (on) */
	int allow_root;
	int no_confine;
	char *timeout;
	char *mount_api;
	char *layers;
	char *cache_dir;

	/* state */
	int form;  /* 0: unused, 1: master keeps the namespace, 2: the whole instance enters */
	int sock;  /* form 2: our end of the hand-off socket, -1 */
	int peer;  /* form 2: the end the hook inherits, -1 */
	int entered;
	struct ud_handoff h;
	struct ud_pidns pidns;
};

extern struct ud_plugin ud;
extern struct uwsgi_server uwsgi;

/* helper.c: runs uwsgi-docker-rootfs (form 1) and receives its namespace. */
int ud_run_helper(struct ud_handoff *h, ud_error *e);
/* The longest the plugin waits for the helper, in seconds. */
int ud_helper_deadline_s(void);
/* argv for the helper, NULL-terminated (caller frees the array, not the strings). */
char **ud_helper_argv(void);

#endif
