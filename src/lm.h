/* libmount, loaded on first use like libarchive (la.h): linking it costs every start four more
 * shared libraries (libblkid, libselinux, libpcre2), and only --gc reads mount tables and only
 * --tmpfs DST:OPTS has option strings to split (tmpfsopt.c). Never given a path that lies in an
 * image: it would realpath() it. */
#ifndef UD_LM_H
#define UD_LM_H

#include <libmount.h>

#include "error.h"

#define UD_LM_FUNCS(X)         \
	X(mnt_free_iter)       \
	X(mnt_fs_get_fstype)   \
	X(mnt_fs_get_root)     \
	X(mnt_fs_get_target)   \
	X(mnt_new_iter)        \
	X(mnt_new_table_from_file) \
	X(mnt_optstr_next_option) \
	X(mnt_split_optstr)    \
	X(mnt_table_next_fs)   \
	X(mnt_unref_table)

/* The functions, valid after ud_lm_load() succeeded: ud_lm.mnt_new_iter() etc. */
struct ud_lm {
#define UD_LM_FIELD(f) __typeof__(&f) f;
	UD_LM_FUNCS(UD_LM_FIELD)
#undef UD_LM_FIELD
};
extern struct ud_lm ud_lm;

/* dlopen()s libmount.so.1 once; -1 with UD_EXIT_STORAGE when it or a function is missing. */
int ud_lm_load(ud_error *e);

#endif
