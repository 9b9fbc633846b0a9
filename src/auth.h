/* Registry credentials for a pull, found the way the docker CLI finds them: config.json in
 * --docker-config, $DOCKER_CONFIG or ~/.docker (credHelpers, then credsStore, then auths), and
 * sent to the daemon as X-Registry-Auth (base64url of a JSON object). Nothing here logs a secret:
 * messages name the registry and the helper, never what they answered. */
#ifndef UD_AUTH_H
#define UD_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"

#define UD_AUTH_MAX_CONFIG (1024 * 1024) /* config.json larger than this is refused */

/* Where the credentials for one registry key are. */
struct ud_auth_source {
	char helper[64]; /* a credential helper's name ("pass": docker-credential-pass), or "" */
	char *header;    /* X-Registry-Auth from an auths entry (caller frees), or NULL */
};

/* The X-Registry-Auth value: base64url of {"username","password","serveraddress"}, or with
 * token {"identitytoken","serveraddress"} (user ignored). Caller frees. */
int ud_auth_encode(const char *user, const char *secret, bool token, const char *server,
		   char **out, ud_error *e);

/* Reads config.json (text, len bytes) for the registry key: credHelpers[host], else credsStore,
 * else auths[key] (or an entry whose host part is the key's, as the CLI reads old files). Neither
 * helper nor header: no credentials. Status 64 for a malformed file. */
int ud_auth_from_config(const char *json, size_t len, const char *key, struct ud_auth_source *src,
			ud_error *e);

/* A credential helper's answer to "get": {"ServerURL","Username","Secret"}; a Username of
 * "<token>" makes Secret an identity token. *header NULL when it holds no credentials. */
int ud_auth_parse_helper(const char *json, size_t len, const char *server, char **header,
			 ud_error *e);

/* The directory of config.json: dir (--docker-config), else $DOCKER_CONFIG, else ~/.docker of
 * the user running the helper ($HOME, else the password database). */
int ud_auth_config_dir(const char *dir, char *out, size_t len, ud_error *e);

/* The whole lookup for registry key: reads the config (a missing file: no credentials), runs a
 * credential helper if one is configured (at most timeout_ms). *header NULL: none. */
int ud_auth_header(const char *config_dir, const char *key, long timeout_ms, char **header,
		   ud_error *e);

/* "X-Registry-Auth: <base64url>" for a registry domain ("127.0.0.1:5000", "docker.io"), or NULL
 * without credentials: the header line a pull or a check sends. Free with ud_auth_line_free(). */
int ud_auth_line(const char *domain, const char *config_dir, long timeout_ms, char **line,
		 ud_error *e);
/* Wipes and frees a line of ud_auth_line() (NULL is fine). */
void ud_auth_line_free(char *line);

#endif
