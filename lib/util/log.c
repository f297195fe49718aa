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

__attribute__((format(printf, 2, 0))) static void logv(int prio, const char *fmt, va_list ap)
{
	char msg[2048], line[4096];
	int n, m;

	if (prio > log_level)
		return;
	m = vsnprintf(msg, sizeof(msg), fmt, ap);
	if (m < 0)
		return;
	if (m >= (int) sizeof(msg))
		m = (int) sizeof(msg) - 1;
	/* Messages carry device and network text: escaped here, once for every caller, a
	 * newline in it can never start a journald record of its own with a forged "<N>". */
	n = snprintf(line, sizeof(line), "<%d>", prio);
	fgw_escape_text(line + n, sizeof(line) - 1 - (size_t) n, msg, (size_t) m);
	/* One write per line so concurrent writers and journald never see half a message. */
	n = (int) strlen(line);
	line[n++] = '\n';
	(void) !write(STDERR_FILENO, line, (size_t) n);
}

FGW_EXPORT void fgw_log(int prio, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	logv(prio, fmt, ap);
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
