#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "util/log.h"

static enum pn_log_level current_level = PN_LOG_INFO;
static const char *log_tag = "peernet";

void pn_log_set_level(enum pn_log_level level) { current_level = level; }
enum pn_log_level pn_log_get_level(void) { return current_level; }
void pn_log_set_tag(const char *tag) { log_tag = tag; }

void pn_log_init_from_env(void)
{
	const char *v = getenv("PEERNET_LOG");
	if (!v)
		return;
	if (!strcmp(v, "debug"))
		current_level = PN_LOG_DEBUG;
	else if (!strcmp(v, "info"))
		current_level = PN_LOG_INFO;
	else if (!strcmp(v, "warn"))
		current_level = PN_LOG_WARN;
	else if (!strcmp(v, "error"))
		current_level = PN_LOG_ERROR;
}

void pn_log(enum pn_log_level level, const char *fmt, ...)
{
	static const char *names[] = {"error", "warn", "info", "debug"};
	if (level > current_level)
		return;
	char line[1024];
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	int n = snprintf(line, sizeof line, "%02d:%02d:%02d.%03ld %s %s: ", tm.tm_hour, tm.tm_min,
			 tm.tm_sec, ts.tv_nsec / 1000000, log_tag, names[level]);
	if (n < 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
	va_end(ap);
	/* One write per line so lines from several processes do not interleave. */
	size_t len = strlen(line);
	if (len + 1 < sizeof line) {
		line[len++] = '\n';
		line[len] = 0;
	}
	fputs(line, stderr);
	fflush(stderr);
}
