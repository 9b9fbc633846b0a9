#include "error.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int ud_fail(ud_error *e, int status, int errnum, const char *fmt, ...)
{
	if (!e)
		return -1;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
	e->status = status;
	e->errnum = errnum;
	return -1;
}

int ud_oom(ud_error *e)
{
	return ud_fail(e, UD_EXIT_REFUSED, ENOMEM, "out of memory");
}

int ud_context(ud_error *e, const char *fmt, ...)
{
	if (!e)
		return -1;
	char prefix[512], old[sizeof(e->msg)];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	memcpy(old, e->msg, sizeof(old));
	/* Truncation is acceptable for a message; build it piecewise so the compiler sees that. */
	size_t pl = strnlen(prefix, sizeof(prefix) - 1);
	memcpy(e->msg, prefix, pl);
	memcpy(e->msg + pl, ": ", 2);
	size_t room = sizeof(e->msg) - pl - 3;
	size_t ol = strnlen(old, room);
	memcpy(e->msg + pl + 2, old, ol);
	e->msg[pl + 2 + ol] = '\0';
	return -1;
}

const char *ud_error_text(const ud_error *e, char *buf, size_t len)
{
	if (e->errnum)
		snprintf(buf, len, "%s: %s", e->msg, strerror(e->errnum));
	else
		snprintf(buf, len, "%s", e->msg);
	/* One line, whatever an image or archive put in a name: no newline, no terminal escape. */
	for (char *p = buf; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	return buf;
}
