/* The image's Env reaches the app, and only the app.
 *
 * Python copies the environment into os.environ once, when the interpreter starts: in the
 * master, on the host, as root. Putting the image's Env there (as an earlier version did, with a
 * deny-list) let an image steer root code on the host: HOME made Python's site module run the
 * .pth files of a directory the image chose. No deny-list is complete, so the master never sees
 * a value from the image. Each worker sets Env in its own C environment after it entered the
 * image, and then refreshes the copy that the language runtime made in the master.
 *
 * The refresh is the one language-specific step. Python's symbols are in the process (uWSGI
 * loads plugins RTLD_GLOBAL), so they are looked up at run time and the plugin does not link
 * libpython. Other runtimes: Perl's %ENV is a copy made in the master too (not refreshed: the
 * app sees the host's environment there), Ruby's ENV, PHP's getenv() and Lua's os.getenv read
 * the C environment and see the image's Env. */
#include "appenv.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

int ud_appenv_apply(char *const *env, size_t n_env, ud_error *e)
{
	for (size_t i = 0; i < n_env; i++) {
		const char *eq = strchr(env[i], '=');
		if (!eq || eq == env[i])
			continue;
		char *key = strndup(env[i], (size_t)(eq - env[i]));
		if (!key)
			return ud_oom(e);
		int r = setenv(key, eq + 1, 1);
		int err = errno;
		free(key);
		if (r < 0)
			return ud_fail(e, UD_EXIT_REFUSED, err, "setting the image's Env");
	}
	return 0;
}

/* The few CPython entry points used, by name (stable ABI since 3.2). */
struct py_api {
	int (*is_initialized)(void);
	int (*gil_ensure)(void);
	void (*gil_release)(int);
	void *(*import_module)(const char *);
	void *(*get_attr)(void *, const char *);
	void (*dict_clear)(void *);
	int (*dict_set_item)(void *, void *, void *);
	void *(*bytes)(const char *, long);
	void (*decref)(void *);
	void (*err_clear)(void);
};

static int py_lookup(struct py_api *py)
{
#define SYM(field, name) (*(void **)&py->field = dlsym(RTLD_DEFAULT, name))
	return SYM(is_initialized, "Py_IsInitialized") && SYM(gil_ensure, "PyGILState_Ensure") &&
	       SYM(gil_release, "PyGILState_Release") &&
	       SYM(import_module, "PyImport_ImportModule") &&
	       SYM(get_attr, "PyObject_GetAttrString") && SYM(dict_clear, "PyDict_Clear") &&
	       SYM(dict_set_item, "PyDict_SetItem") &&
	       SYM(bytes, "PyBytes_FromStringAndSize") && SYM(decref, "Py_DecRef") &&
	       SYM(err_clear, "PyErr_Clear");
#undef SYM
}

/* os.environ keeps its data as bytes -> bytes in os.environ._data (shared with os.environb).
 * Replacing that dict's content touches no C environment (os.environ's own methods would call
 * putenv/unsetenv) and runs no code from the image. */
static int py_fill(struct py_api *py, void *data)
{
	py->dict_clear(data);
	for (char **kv = environ; kv && *kv; kv++) {
		const char *eq = strchr(*kv, '=');
		if (!eq)
			continue;
		void *k = py->bytes(*kv, eq - *kv), *v = py->bytes(eq + 1, (long)strlen(eq + 1));
		int r = k && v ? py->dict_set_item(data, k, v) : -1;
		if (k)
			py->decref(k);
		if (v)
			py->decref(v);
		if (r < 0)
			return -1;
	}
	return 0;
}

static int py_refresh(struct py_api *py)
{
	int r = -1;
	void *os = py->import_module("os");
	void *env = os ? py->get_attr(os, "environ") : NULL;
	void *data = env ? py->get_attr(env, "_data") : NULL;
	if (data)
		r = py_fill(py, data);
	if (data)
		py->decref(data);
	if (env)
		py->decref(env);
	if (os)
		py->decref(os);
	if (r < 0)
		py->err_clear();
	return r;
}

int ud_appenv_refresh_runtimes(ud_error *e)
{
	struct py_api py;
	if (!dlsym(RTLD_DEFAULT, "Py_IsInitialized"))
		return 0;
	if (!py_lookup(&py))
		return ud_fail(e, UD_EXIT_REFUSED, 0, "Python is loaded but lacks a C API function");
	if (!py.is_initialized())
		return 0;
	int gil = py.gil_ensure();
	int r = py_refresh(&py);
	py.gil_release(gil);
	if (r < 0)
		return ud_fail(e, UD_EXIT_REFUSED, 0,
			       "could not give Python's os.environ the image's Env");
	return 0;
}

/* The master, before the first worker: the modules uWSGI's Python plugin imports in every worker
 * right after fork (random, to reseed it; threading, to name the thread) are imported once here,
 * from the host's standard library like the rest of the interpreter's start, instead of once
 * per worker from the image. Best effort: a worker imports whatever is missing. */
void ud_appenv_preload_runtimes(void)
{
	static const char *const modules[] = {"random", "threading"};
	struct py_api py;
	if (!dlsym(RTLD_DEFAULT, "Py_IsInitialized") || !py_lookup(&py) || !py.is_initialized())
		return;
	int gil = py.gil_ensure();
	for (size_t i = 0; i < sizeof(modules) / sizeof(modules[0]); i++) {
		void *m = py.import_module(modules[i]);
		if (m)
			py.decref(m);
		else
			py.err_clear();
	}
	py.gil_release(gil);
}
