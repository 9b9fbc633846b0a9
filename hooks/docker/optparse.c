/* Option setters of the docker plugin that check their values when uWSGI parses the config: a
 * mistake ends the start with one line there, not later and never silently. uWSGI's own
 * uwsgi_opt_true reads every value but false/off/no/0 as true (docker-read-only = maybe). */
#include "plugin.h"

/* 1 or 0 for uWSGI's spellings of a boolean (no value: the flag given, true), -1 otherwise. */
static int boolean(const char *value)
{
	static const char *const yes[] = {"true", "on", "yes", "1"};
	static const char *const no[] = {"false", "off", "no", "0"};
	if (!value || !*value)
		return 1;
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (!strcasecmp(value, yes[i]))
			return 1;
		if (!strcasecmp(value, no[i]))
			return 0;
	}
	return -1;
}

void ud_opt_bool(char *opt, char *value, void *key)
{
	int b = boolean(value);
	if (b < 0) {
		uwsgi_log(LOG_PREFIX "%s = '%s': expected true or false (or yes/no, on/off, 1/0)\n",
			  opt, value);
		exit(1);
	}
	*(int *)key = b;
}

/* docker-env = KEY=VALUE, repeatable, as docker run -e. Its old boolean meaning (apply the
 * image's Env or not, before docker-image-env) still works, with a line saying so: an ini that
 * says docker-env = false meant to keep the image's Env out, and must not start with it in. */
void ud_opt_env(char *opt, char *value, void *key)
{
	(void)key;
	int b = boolean(value);
	if (value && b >= 0) {
		ud.image_env_deprecated = b;
		uwsgi_log(LOG_PREFIX
			  "%s = %s is deprecated: use docker-image-env = %s (%s = KEY=VALUE "
			  "sets a variable for the app)\n",
			  opt, value, b ? "true" : "false", opt);
		return;
	}
	if (!value || !strchr(value, '=') || value[0] == '=') {
		uwsgi_log(LOG_PREFIX "%s = '%s': expected KEY=VALUE\n", opt, value ? value : "");
		exit(1);
	}
	uwsgi_string_new_list(&ud.env_vars, value);
}
