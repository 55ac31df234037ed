/* Logging through a callback.
 *
 * The library prints nothing by itself. Whatever logs (a net, a store, the
 * directory server) is handed a struct pn_logger by its owner and passes it
 * finished lines; the program decides where they go. pn_log_stderr_cb is a
 * ready-made sink that prints the classic peernet line to stderr.
 */
#ifndef PN_UTIL_LOG_H
#define PN_UTIL_LOG_H
#ifndef PN_INTERNAL
#error "an internal header of libpeernet: a program includes <peernet.h> only"
#endif

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include "peernet.h" /* enum pn_log_level, pn_log_cb and the public helpers */

struct pn_logger {
	pn_log_cb cb;            /* NULL: every line is dropped */
	void *ud;                /* handed back to cb */
	enum pn_log_level level; /* lines above this level are dropped */
};

/* Bytes of one formatted line, NUL included; a longer line is cut. */
#define PN_LOG_LINE_MAX 1024

/* Formats into a stack buffer of PN_LOG_LINE_MAX bytes (no allocation) and
 * hands the line to lg->cb. lg may be NULL (the line is dropped). */
void pn_logf(const struct pn_logger *lg, enum pn_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void pn_vlogf(const struct pn_logger *lg, enum pn_log_level level, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));

/* True if a line at this level would reach a callback. */
static inline bool pn_log_enabled(const struct pn_logger *lg, enum pn_log_level level)
{
	return lg && lg->cb && level <= lg->level;
}

#define PN_LOGE(lg, ...) pn_logf((lg), PN_LOG_ERROR, __VA_ARGS__)
#define PN_LOGW(lg, ...) pn_logf((lg), PN_LOG_WARN, __VA_ARGS__)
#define PN_LOGI(lg, ...) pn_logf((lg), PN_LOG_INFO, __VA_ARGS__)
/* Debug lines cost nothing, not even their arguments, when not wanted. */
#define PN_LOGD(lg, ...)                                              \
	do {                                                          \
		const struct pn_logger *pn_logd_lg_ = (lg);           \
		if (pn_log_enabled(pn_logd_lg_, PN_LOG_DEBUG))        \
			pn_logf(pn_logd_lg_, PN_LOG_DEBUG, __VA_ARGS__); \
	} while (0)

/* pn_log_level_name, pn_log_level_parse and pn_log_stderr_cb: peernet.h. */

#endif
