#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "util.h"

/* The one process-wide setting the style allows: how much to say. */
static int log_level = LOG_INFO;

static const struct {
	const char *name;
	int level;
} level_names[] = {
    {"emerg", LOG_EMERG}, {"alert", LOG_ALERT},	    {"crit", LOG_CRIT},	   {"err", LOG_ERR},
    {"error", LOG_ERR},	  {"warning", LOG_WARNING}, {"warn", LOG_WARNING}, {"notice", LOG_NOTICE},
    {"info", LOG_INFO},	  {"debug", LOG_DEBUG},
};

FGW_EXPORT void fgw_log_set_level(int level)
{
	if (level < LOG_EMERG)
		level = LOG_EMERG;
	if (level > LOG_DEBUG)
		level = LOG_DEBUG;
	log_level = level;
}

FGW_EXPORT int fgw_log_get_level(void)
{
	return log_level;
}

FGW_EXPORT int fgw_log_level_from_string(const char *s)
{
	if (!s)
		return -EINVAL;
	for (size_t i = 0; i < ARRAY_SIZE(level_names); i++)
		if (strcasecmp(s, level_names[i].name) == 0)
			return level_names[i].level;
	return -EINVAL;
}

FGW_EXPORT const char *fgw_log_level_to_string(int level)
{
	for (size_t i = 0; i < ARRAY_SIZE(level_names); i++)
		if (level_names[i].level == level)
			return level_names[i].name;
	return "unknown";
}

FGW_EXPORT void fgw_logv(int prio, const char *fmt, va_list ap)
{
	static const char hex[] = "0123456789abcdef";
	char msg[2048], line[2048];
	size_t n;

	if (prio > log_level)
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	n = (size_t) snprintf(line, sizeof(line), "<%d>", prio);
	/*
	 * Messages carry what devices and servers send (names, reasons, URLs): a control
	 * character there could forge a log line or drive a terminal, so it goes out as \xHH.
	 */
	for (const unsigned char *s = (const unsigned char *) msg; *s && n < sizeof(line) - 5;
	     s++) {
		if (*s < 0x20 || *s == 0x7f) {
			line[n++] = '\\';
			line[n++] = 'x';
			line[n++] = hex[*s >> 4];
			line[n++] = hex[*s & 0xf];
		} else {
			line[n++] = (char) *s;
		}
	}
	/* One write per line so concurrent writers and journald never see half a message. */
	line[n++] = '\n';
	(void) !write(STDERR_FILENO, line, n);
}

FGW_EXPORT void fgw_log(int prio, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fgw_logv(prio, fmt, ap);
	va_end(ap);
}

FGW_EXPORT int fgw_log_errno(int prio, int err, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	if (prio <= log_level) {
		va_start(ap, fmt);
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
		fgw_log(prio, "%s: %s", msg, strerror(err < 0 ? -err : err));
	}
	return err < 0 ? err : -err;
}
