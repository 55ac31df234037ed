/* The legacy process-wide logging API (see the end of log.h).
 *
 * Legacy, to be removed once src/node/{node,client,server}.c are converted to
 * take a struct pn_logger: the only writable globals left in this layer. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include "peernet.h"
#include "util/log.h"

static enum pn_log_level current_level = PN_LOG_INFO;
static const char *log_tag = "peernet";

void pn_log_set_level(enum pn_log_level level) { current_level = level; }
enum pn_log_level pn_log_get_level(void) { return current_level; }
void pn_log_set_tag(const char *tag) { log_tag = tag; }
const char *pn_log_get_tag(void) { return log_tag; }

void pn_log_init_from_env(void)
{
	enum pn_log_level level;

	if (pn_log_level_parse(getenv("PEERNET_LOG"), &level) == PN_OK)
		current_level = level;
}

static void legacy_vlog(enum pn_log_level level, const char *fmt, va_list ap)
{
	struct pn_logger lg = {.cb = pn_log_stderr_cb, .ud = (void *)log_tag, .level = current_level};

	pn_vlogf(&lg, level, fmt, ap);
}

void pn_log(enum pn_log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	legacy_vlog(level, fmt, ap);
	va_end(ap);
}

static void legacy_cb(void *ud, enum pn_log_level level, const char *line)
{
	pn_log(level, "%s", line);
}

/* Passes every level on: pn_log() applies the process-wide one. */
const struct pn_logger pn_log_legacy = {.cb = legacy_cb, .ud = NULL, .level = PN_LOG_DEBUG};
