/* Small helpers shared by the helper's modules and the plugin. */
#include "util.h"

#include <dlfcn.h>
#include <errno.h>
#include <linux/openat2.h>
#include <sched.h>
#include <string.h>
#include <sys/syscall.h>

#include "error.h"

int ud_openat2(int dirfd, const char *path, int flags, unsigned long long resolve)
{
	struct open_how how = {.flags = (unsigned long long)flags, .resolve = resolve};
	int fd = -1;
	/* With RESOLVE_IN_ROOT or RESOLVE_BENEATH the kernel answers EAGAIN when a rename anywhere
	 * raced with a ".." step (it cannot prove the walk stayed inside): try again, boundedly,
	 * as openat2(2) advises. */
	for (int i = 0; i < 64; i++) {
		fd = (int)syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
		if (fd >= 0 || errno != EAGAIN)
			break;
	}
	return fd;
}

int ud_dl_load(const char *soname, const char *const *names, void **slots, size_t n,
	       struct ud_error *e)
{
	if (n && slots[0])
		return 0;
	void *h = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
	if (!h)
		return ud_fail(e, UD_EXIT_STORAGE, 0, "cannot load %s: %s", soname, dlerror());
	for (size_t i = 0; i < n; i++) {
		if (!(slots[i] = dlsym(h, names[i]))) {
			for (size_t j = 0; j < i; j++)
				slots[j] = NULL;
			dlclose(h);
			return ud_fail(e, UD_EXIT_STORAGE, 0, "%s lacks %s", soname, names[i]);
		}
	}
	return 0;
}

int ud_push(void *arrp, size_t *n, size_t size, const void *item)
{
	void **arr = arrp;
	char *grown = realloc(*arr, (*n + 1) * size);
	if (!grown) {
		errno = ENOMEM;
		return -1;
	}
	memcpy(grown + *n * size, item, size);
	*arr = grown;
	(*n)++;
	return 0;
}

static const struct ud_name ns_names[] = {
	{CLONE_NEWNS, "mnt"},	{CLONE_NEWIPC, "ipc"},	     {CLONE_NEWUTS, "uts"},
	{CLONE_NEWNET, "net"},	{CLONE_NEWCGROUP, "cgroup"}, {CLONE_NEWPID, "pid"},
	{0, NULL},
};

const struct ud_name *ud_ns_names(void)
{
	return ns_names;
}

const char *ud_name_of(const struct ud_name *table, int value)
{
	for (; table->name; table++)
		if (table->value == value)
			return table->name;
	return "?";
}

int ud_value_of(const struct ud_name *table, const char *name, int *value)
{
	for (; table->name; table++)
		if (!strcmp(table->name, name)) {
			*value = table->value;
			return 0;
		}
	return -1;
}

const char *ud_ns_name(int clone_flag)
{
	return ud_name_of(ns_names, clone_flag);
}
