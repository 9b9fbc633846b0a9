/* Shared by the libFuzzer targets: a failed property aborts, which libFuzzer reports as a crash and
 * saves the input (assert() would vanish under -DNDEBUG). */
#ifndef UD_FUZZ_H
#define UD_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define fuzz_require(cond)                                                                  \
	do {                                                                                \
		if (!(cond)) {                                                              \
			fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__, __LINE__, \
				#cond);                                                     \
			abort();                                                            \
		}                                                                           \
	} while (0)

/* The input as a C string: callers get strings, not byte ranges. Stops at the first NUL. */
static inline char *fuzz_cstr(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	if (!s)
		abort();
	memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

/* Whatever failed, the error must be one the helper knows how to report. */
static inline void fuzz_check_error(const ud_error *e)
{
	fuzz_require(strnlen(e->msg, sizeof(e->msg)) < sizeof(e->msg));
	switch (e->status) {
	case UD_EXIT_USAGE:
	case UD_EXIT_IMAGE:
	case UD_EXIT_DAEMON:
	case UD_EXIT_STORAGE:
	case UD_EXIT_MOUNT:
	case UD_EXIT_HANDOFF:
	case UD_EXIT_REFUSED:
		return;
	default:
		fuzz_require(!"unexpected exit status in a parser error");
	}
}

#endif
