/* libarchive, loaded on first use: linking it costs every start about 3 ms (a dozen more shared
 * libraries), and most starts use the daemon's own layer directories. */
#ifndef UD_LA_H
#define UD_LA_H

#include <archive.h>
#include <archive_entry.h>

#include "error.h"

#define UD_LA_FUNCS(X)                     \
	X(archive_entry_acl_types)         \
	X(archive_entry_atime)             \
	X(archive_entry_atime_is_set)      \
	X(archive_entry_atime_nsec)        \
	X(archive_entry_fflags)            \
	X(archive_entry_filetype)          \
	X(archive_entry_gid)               \
	X(archive_entry_hardlink)          \
	X(archive_entry_mode)              \
	X(archive_entry_mtime)             \
	X(archive_entry_mtime_is_set)      \
	X(archive_entry_mtime_nsec)        \
	X(archive_entry_pathname)          \
	X(archive_entry_set_hardlink)      \
	X(archive_entry_set_pathname)      \
	X(archive_entry_size)              \
	X(archive_entry_sparse_count)      \
	X(archive_entry_symlink)           \
	X(archive_entry_uid)               \
	X(archive_entry_xattr_add_entry)   \
	X(archive_entry_xattr_count)       \
	X(archive_entry_xattr_clear)       \
	X(archive_entry_xattr_next)        \
	X(archive_entry_xattr_reset)       \
	X(archive_errno)                   \
	X(archive_error_string)            \
	X(archive_read_data)               \
	X(archive_read_data_block)         \
	X(archive_read_free)               \
	X(archive_read_new)                \
	X(archive_read_next_header)        \
	X(archive_read_open)               \
	X(archive_read_support_filter_all) \
	X(archive_read_support_format_raw) \
	X(archive_read_support_format_tar) \
	X(archive_set_error)               \
	X(archive_write_close)             \
	X(archive_write_data_block)        \
	X(archive_write_disk_new)          \
	X(archive_write_disk_set_options)  \
	X(archive_write_finish_entry)      \
	X(archive_write_free)              \
	X(archive_write_header)

/* The functions, valid after ud_la_load() succeeded: ud_la.archive_read_new() etc. */
struct ud_la {
#define UD_LA_FIELD(f) __typeof__(&f) f;
	UD_LA_FUNCS(UD_LA_FIELD)
#undef UD_LA_FIELD
};
extern struct ud_la ud_la;

/* dlopen()s libarchive.so.13 once; -1 with UD_EXIT_STORAGE when it or a function is missing. */
int ud_la_load(ud_error *e);

#endif
