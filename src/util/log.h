/* Logging: one line per event on stderr, with a level and a subsystem. */
#ifndef PN_UTIL_LOG_H
#define PN_UTIL_LOG_H

enum pn_log_level { PN_LOG_ERROR = 0, PN_LOG_WARN = 1, PN_LOG_INFO = 2, PN_LOG_DEBUG = 3 };

/* Messages above this level are dropped. Default PN_LOG_INFO; PEERNET_LOG=debug|info|warn|error overrides. */
void pn_log_set_level(enum pn_log_level level);
enum pn_log_level pn_log_get_level(void);
void pn_log_init_from_env(void);
/* Prefix every line with this program tag, e.g. "peernet serve". Not copied: pass a static string. */
void pn_log_set_tag(const char *tag);

void pn_log(enum pn_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define pn_log_error(...) pn_log(PN_LOG_ERROR, __VA_ARGS__)
#define pn_log_warn(...) pn_log(PN_LOG_WARN, __VA_ARGS__)
#define pn_log_info(...) pn_log(PN_LOG_INFO, __VA_ARGS__)
#define pn_log_debug(...) do { if (pn_log_get_level() >= PN_LOG_DEBUG) pn_log(PN_LOG_DEBUG, __VA_ARGS__); } while (0)

#endif
