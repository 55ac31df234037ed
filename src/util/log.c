/* Logging through a callback (see log.h). No state: every call is given
 * its logger. */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "peernet.h"
#include "util/log.h"

#define LOG_LEVEL_NAME_MAX 6  /* "error", "debug" + NUL */
#define LOG_PREFIX_MAX 128    /* "HH:MM:SS.mmm " + tag + " level: " */
#define LOG_TAG_DEFAULT "peernet"

/* A table of arrays, not of pointers: no relocation, so it stays in .rodata. */
static const char level_names[][LOG_LEVEL_NAME_MAX] = {"error", "warn", "info", "debug"};

const char *pn_log_level_name(enum pn_log_level level)
{
	if ((unsigned)level >= sizeof level_names / sizeof level_names[0])
		return "?";
	return level_names[level];
}

int pn_log_level_parse(const char *s, enum pn_log_level *out)
{
	if (!s)
		return PN_EINVAL;
	for (size_t i = 0; i < sizeof level_names / sizeof level_names[0]; i++) {
		if (!strcmp(s, level_names[i])) {
			*out = (enum pn_log_level)i;
			return PN_OK;
		}
	}
	return PN_EINVAL;
}

void pn_vlogf(const struct pn_logger *lg, enum pn_log_level level, const char *fmt, va_list ap)
{
	char line[PN_LOG_LINE_MAX];

	if (!pn_log_enabled(lg, level))
		return;
	if (vsnprintf(line, sizeof line, fmt, ap) < 0)
		return;
	lg->cb(lg->ud, level, line);
}

void pn_logf(const struct pn_logger *lg, enum pn_log_level level, const char *fmt, ...)
{
	va_list ap;

	if (!pn_log_enabled(lg, level))
		return;
	va_start(ap, fmt);
	pn_vlogf(lg, level, fmt, ap);
	va_end(ap);
}

void pn_log_stderr_cb(void *ud, enum pn_log_level level, const char *line)
{
	const char *tag = ud ? (const char *)ud : LOG_TAG_DEFAULT;
	char out[LOG_PREFIX_MAX + PN_LOG_LINE_MAX + 1];
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	int n = snprintf(out, LOG_PREFIX_MAX, "%02d:%02d:%02d.%03ld %s %s: ", tm.tm_hour, tm.tm_min, tm.tm_sec,
			 ts.tv_nsec / 1000000, tag, pn_log_level_name(level));
	if (n < 0)
		return;
	if (n >= LOG_PREFIX_MAX)
		n = LOG_PREFIX_MAX - 1; /* a tag too long for the prefix is cut */
	size_t len = (size_t)n;
	size_t msg = strnlen(line, PN_LOG_LINE_MAX - 1);
	memcpy(out + len, line, msg);
	len += msg;
	out[len++] = '\n';
	out[len] = 0;
	/* One write per line so lines from several processes do not interleave. */
	fputs(out, stderr);
	fflush(stderr);
}
