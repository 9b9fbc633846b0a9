/* Registry credentials: config.json (json-c), credential helpers (docker-credential-NAME get),
 * the X-Registry-Auth encoding. Buffers that held a secret are wiped before they are freed. */
#include "auth.h"

#include <ctype.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "reference.h"
#include "util.h"

#define MAX_HELPER_OUTPUT (64 * 1024)

static void wipe_free(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

/* ---- base64 (standard for config.json's "auth", URL-safe with padding for the header) ---- */

static char *b64_encode(const unsigned char *in, size_t n, bool url)
{
	const char *abc = url ? "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
			      : "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;
	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i += 3) {
		unsigned v = (unsigned)in[i] << 16 | (i + 1 < n ? (unsigned)in[i + 1] << 8 : 0) |
			     (i + 2 < n ? in[i + 2] : 0);
		*o++ = abc[v >> 18 & 63];
		*o++ = abc[v >> 12 & 63];
		*o++ = i + 1 < n ? abc[v >> 6 & 63] : '=';
		*o++ = i + 2 < n ? abc[v & 63] : '=';
	}
	*o = '\0';
	return out;
}

static int b64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* Standard base64 into a NUL-terminated string (caller wipes and frees); NULL if invalid. */
static char *b64_decode(const char *in)
{
	size_t n = strlen(in);
	char *out = malloc(n / 4 * 3 + 4), *o = out;
	if (!out || n % 4) {
		free(out);
		return NULL;
	}
	for (size_t i = 0; i < n; i += 4) {
		int v[4];
		for (int k = 0; k < 4; k++)
			v[k] = in[i + k] == '=' && i + 4 == n && k >= 2 ? 0 : b64_value(in[i + k]);
		if (v[0] < 0 || v[1] < 0 || v[2] < 0 || v[3] < 0 || (in[i + 2] == '=' && in[i + 3] != '=')) {
			wipe_free(out);
			return NULL;
		}
		unsigned x = (unsigned)v[0] << 18 | (unsigned)v[1] << 12 | (unsigned)v[2] << 6 | (unsigned)v[3];
		*o++ = (char)(x >> 16);
		if (in[i + 2] != '=')
			*o++ = (char)(x >> 8 & 255);
		if (in[i + 3] != '=')
			*o++ = (char)(x & 255);
	}
	*o = '\0';
	return out;
}

/* ---- the header ---------------------------------------------------------------------------- */

int ud_auth_encode(const char *user, const char *secret, bool token, const char *server,
		   char **out, ud_error *e)
{
	*out = NULL;
	json_object *o = json_object_new_object();
	if (!o)
		return ud_oom(e);
	if (!token)
		json_object_object_add(o, "username", json_object_new_string(user ? user : ""));
	json_object_object_add(o, token ? "identitytoken" : "password",
			       json_object_new_string(secret ? secret : ""));
	json_object_object_add(o, "serveraddress", json_object_new_string(server));
	const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
								 JSON_C_TO_STRING_NOSLASHESCAPE);
	*out = text ? b64_encode((const unsigned char *)text, strlen(text), true) : NULL;
	if (text)
		explicit_bzero((char *)text, strlen(text));
	json_object_put(o);
	return *out ? 0 : ud_oom(e);
}

/* ---- config.json --------------------------------------------------------------------------- */

static const char *obj_string(json_object *o, const char *key)
{
	json_object *v;
	if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

static json_object *obj_object(json_object *o, const char *key)
{
	json_object *v;
	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_object))
		return NULL;
	return v;
}

/* "https://host/v1/" -> "host" (the CLI's ConvertToHostname). */
static void to_hostname(const char *url, char *out, size_t len)
{
	if (!strncmp(url, "http://", 7))
		url += 7;
	else if (!strncmp(url, "https://", 8))
		url += 8;
	snprintf(out, len, "%.*s", (int)strcspn(url, "/"), url);
}

/* auths[key], else an entry whose hostname is the key's. */
static json_object *auths_entry(json_object *auths, const char *key, const char **server)
{
	json_object *v = obj_object(auths, key);
	*server = key;
	if (v)
		return v;
	char want[256], have[256];
	to_hostname(key, want, sizeof(want));
	json_object_object_foreach(auths, k, val)
	{
		to_hostname(k, have, sizeof(have));
		if (json_object_is_type(val, json_type_object) && strcmp(have, want) == 0) {
			*server = k;
			return val;
		}
	}
	return NULL;
}

/* An auths entry: "auth" (base64 "user:pass") and/or "identitytoken". */
static int entry_header(json_object *entry, const char *server, char **header, ud_error *e)
{
	const char *token = obj_string(entry, "identitytoken"), *auth = obj_string(entry, "auth");
	if (token && *token)
		return ud_auth_encode(NULL, token, true, server, header, e);
	if (!auth || !*auth)
		return 0;
	char *plain = b64_decode(auth);
	char *colon = plain ? strchr(plain, ':') : NULL;
	if (!colon) {
		wipe_free(plain);
		return ud_fail(e, UD_EXIT_USAGE, 0, "config.json: the \"auth\" of '%s' is not base64 "
			       "of user:password", server);
	}
	*colon = '\0';
	int r = ud_auth_encode(plain, colon + 1, false, server, header, e);
	*colon = ':';
	wipe_free(plain);
	return r;
}

static int copy_helper(const char *name, struct ud_auth_source *src, ud_error *e)
{
	size_t n = strlen(name);
	if (n == 0 || n >= sizeof(src->helper) || strspn(name, "abcdefghijklmnopqrstuvwxyz"
						      "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != n)
		return ud_fail(e, UD_EXIT_USAGE, 0, "config.json: credential helper name '%.64s' is "
			       "not a plain name", name);
	memcpy(src->helper, name, n + 1);
	return 0;
}

int ud_auth_from_config(const char *json, size_t len, const char *key, struct ud_auth_source *src,
			ud_error *e)
{
	memset(src, 0, sizeof(*src));
	json_tokener *tok = json_tokener_new();
	if (!tok)
		return ud_oom(e);
	json_object *root = json_tokener_parse_ex(tok, json, (int)len);
	enum json_tokener_error jerr = json_tokener_get_error(tok);
	json_tokener_free(tok);
	if (!root || jerr != json_tokener_success || !json_object_is_type(root, json_type_object)) {
		if (root)
			json_object_put(root);
		return ud_fail(e, UD_EXIT_USAGE, 0, "config.json is not a JSON object");
	}
	char host[256];
	to_hostname(key, host, sizeof(host));
	json_object *helpers = obj_object(root, "credHelpers"), *auths = obj_object(root, "auths");
	const char *helper = helpers ? obj_string(helpers, host) : NULL;
	if (!helper && helpers)
		helper = obj_string(helpers, key);
	if (!helper)
		helper = obj_string(root, "credsStore");
	int r = 0;
	if (helper && *helper) {
		r = copy_helper(helper, src, e);
	} else if (auths) {
		const char *server;
		json_object *entry = auths_entry(auths, key, &server);
		if (entry)
			r = entry_header(entry, server, &src->header, e);
	}
	json_object_put(root);
	return r;
}

int ud_auth_parse_helper(const char *json, size_t len, const char *server, char **header,
			 ud_error *e)
{
	*header = NULL;
	json_tokener *tok = json_tokener_new();
	if (!tok)
		return ud_oom(e);
	json_object *o = json_tokener_parse_ex(tok, json, (int)len);
	enum json_tokener_error jerr = json_tokener_get_error(tok);
	json_tokener_free(tok);
	const char *user = NULL, *secret = NULL;
	if (o && jerr == json_tokener_success && json_object_is_type(o, json_type_object)) {
		user = obj_string(o, "Username");
		secret = obj_string(o, "Secret");
	}
	int r = 0;
	if (!user || !secret)
		r = ud_fail(e, UD_EXIT_DAEMON, 0, "its answer is not {\"Username\", \"Secret\"}");
	else if (*secret)
		r = ud_auth_encode(user, secret, strcmp(user, "<token>") == 0, server, header, e);
	if (o)
		json_object_put(o);
	return r;
}

/* ---- the impure half: files and credential helpers ------------------------------------------ */

int ud_auth_config_dir(const char *dir, char *out, size_t len, ud_error *e)
{
	const char *env = getenv("DOCKER_CONFIG");
	const char *home = getenv("HOME");
	int n;
	if (dir && *dir)
		n = snprintf(out, len, "%s", dir);
	else if (env && *env)
		n = snprintf(out, len, "%s", env);
	else {
		if (!home || !*home) {
			struct passwd *pw = getpwuid(getuid());
			home = pw && pw->pw_dir ? pw->pw_dir : "/";
		}
		n = snprintf(out, len, "%s/.docker", home);
	}
	if (n < 0 || (size_t)n >= len)
		return ud_fail(e, UD_EXIT_USAGE, 0, "docker config directory path is too long");
	return 0;
}

/* The file, whole, NUL-terminated; *text NULL when there is none. Caller wipes and frees. */
static int read_config(const char *path, char **text, size_t *len, ud_error *e)
{
	*text = NULL;
	ud_autoclose int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return errno == ENOENT || errno == ENOTDIR ? 0 : ud_fail(e, UD_EXIT_USAGE, errno, "%s", path);
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > UD_AUTH_MAX_CONFIG)
		return ud_fail(e, UD_EXIT_USAGE, 0, "%s: not a regular file of at most %d KiB", path,
			       UD_AUTH_MAX_CONFIG >> 10);
	char *buf = calloc(1, (size_t)st.st_size + 1);
	if (!buf)
		return ud_oom(e);
	size_t got = 0;
	while (got < (size_t)st.st_size) {
		ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
		if (r <= 0) {
			if (r < 0 && errno == EINTR)
				continue;
			break;
		}
		got += (size_t)r;
	}
	*text = buf;
	*len = got;
	return 0;
}

/* Reads the helper's stdout until EOF, the size limit, or the deadline. */
static int read_helper(int fd, char *buf, size_t cap, size_t *len, long timeout_ms)
{
	struct timespec t0, now;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	*len = 0;
	for (;;) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		long left = timeout_ms - ((now.tv_sec - t0.tv_sec) * 1000 +
					  (now.tv_nsec - t0.tv_nsec) / 1000000);
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		if (left <= 0 || poll(&pfd, 1, (int)left) == 0)
			return -ETIMEDOUT;
		ssize_t r = read(fd, buf + *len, cap - 1 - *len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return 0;
		*len += (size_t)r;
		if (*len == cap - 1)
			return -EFBIG;
	}
}

/* Spawns docker-credential-NAME get, its stdin a pipe already holding the server address, stdout
 * our pipe, stderr /dev/null, and no other descriptor of ours. */
static int spawn_helper(const char *name, const char *server, int *out_fd, pid_t *pid, ud_error *e)
{
	int in[2], out[2];
	if (pipe2(in, O_CLOEXEC) < 0)
		return ud_fail(e, UD_EXIT_REFUSED, errno, "pipe2");
	if (pipe2(out, O_CLOEXEC) < 0) {
		close(in[0]), close(in[1]);
		return ud_fail(e, UD_EXIT_REFUSED, errno, "pipe2");
	}
	/* A few bytes fit in the pipe: written before the helper runs, no SIGPIPE possible. */
	ssize_t w = write(in[1], server, strlen(server));
	close(in[1]);
	char prog[96];
	snprintf(prog, sizeof(prog), "docker-credential-%s", name);
	char *argv[] = {prog, "get", NULL};
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, in[0], 0);
	posix_spawn_file_actions_adddup2(&fa, out[1], 1);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addclosefrom_np(&fa, 3);
	int rc = w == (ssize_t)strlen(server) ? posix_spawnp(pid, prog, &fa, NULL, argv, environ) : EIO;
	posix_spawn_file_actions_destroy(&fa);
	close(in[0]);
	close(out[1]);
	if (rc != 0) {
		close(out[0]);
		return ud_fail(e, UD_EXIT_DAEMON, rc, "cannot run %s", prog);
	}
	*out_fd = out[0];
	return 0;
}

/* Runs the helper and turns its answer into a header; "credentials not found": none. */
static int run_helper(const char *name, const char *server, long timeout_ms, char **header,
		      ud_error *e)
{
	int fd = -1;
	pid_t pid = -1;
	if (spawn_helper(name, server, &fd, &pid, e) < 0)
		return -1;
	char *buf = calloc(1, MAX_HELPER_OUTPUT);
	size_t len = 0;
	int rr = buf ? read_helper(fd, buf, MAX_HELPER_OUTPUT, &len, timeout_ms) : -ENOMEM;
	close(fd);
	if (rr < 0)
		kill(pid, SIGKILL);
	int status = 0;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	int r;
	if (rr == -ENOMEM)
		r = ud_oom(e);
	else if (rr < 0)
		r = ud_fail(e, UD_EXIT_DAEMON, 0, "docker-credential-%s get %s", name,
			    rr == -ETIMEDOUT ? "did not answer in time" : "answered too much");
	else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		r = strstr(buf, "credentials not found") ? 0
			: ud_fail(e, UD_EXIT_DAEMON, 0, "docker-credential-%s get failed (status %d)",
				  name, WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
	else if ((r = ud_auth_parse_helper(buf, len, server, header, e)) < 0)
		ud_context(e, "docker-credential-%s get", name);
	if (buf)
		explicit_bzero(buf, MAX_HELPER_OUTPUT);
	free(buf);
	return r;
}

int ud_auth_header(const char *config_dir, const char *key, long timeout_ms, char **header,
		   ud_error *e)
{
	*header = NULL;
	char dir[4096], path[4200];
	if (ud_auth_config_dir(config_dir, dir, sizeof(dir), e) < 0)
		return -1;
	snprintf(path, sizeof(path), "%s/config.json", dir);
	char *text;
	size_t len;
	if (read_config(path, &text, &len, e) < 0)
		return -1;
	if (!text)
		return 0;
	struct ud_auth_source src;
	int r = ud_auth_from_config(text, len, key, &src, e);
	explicit_bzero(text, len);
	free(text);
	if (r < 0)
		return ud_context(e, "%s", path);
	if (!src.helper[0]) {
		*header = src.header;
		return 0;
	}
	return run_helper(src.helper, key, timeout_ms, header, e);
}

int ud_auth_line(const char *domain, const char *config_dir, long timeout_ms, char **line,
		 ud_error *e)
{
	*line = NULL;
	char *hdr = NULL;
	if (ud_auth_header(config_dir, ud_reference_registry_key(domain), timeout_ms, &hdr, e) < 0)
		return ud_context(e, "credentials for %s", domain);
	if (!hdr)
		return 0;
	size_t n = strlen(hdr) + sizeof("X-Registry-Auth: ");
	*line = malloc(n);
	if (*line)
		snprintf(*line, n, "X-Registry-Auth: %s", hdr);
	explicit_bzero(hdr, strlen(hdr));
	free(hdr);
	return *line ? 0 : ud_oom(e);
}

void ud_auth_line_free(char *line)
{
	if (line) {
		explicit_bzero(line, strlen(line));
		free(line);
	}
}
