/* Logging through a callback (src/util/log.c): the library has no process-wide logger. */
#include <stdio.h>
#include <string.h>
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include "peernet.h"
#include "util/log.h"

struct capture {
	int calls;
	enum pn_log_level level;
	void *ud_seen;
	char line[2 * PN_LOG_LINE_MAX];
};

static void capture_cb(void *ud, enum pn_log_level level, const char *line)
{
	struct capture *c = ud;
	c->calls++;
	c->level = level;
	c->ud_seen = ud;
	snprintf(c->line, sizeof c->line, "%s", line);
}

Test(log, formats_and_hands_the_line_to_the_callback)
{
	struct capture cap = {0};
	struct pn_logger lg = {.cb = capture_cb, .ud = &cap, .level = PN_LOG_INFO};

	pn_logf(&lg, PN_LOG_WARN, "%s has %d chunks", "file", 3);
	cr_assert_eq(cap.calls, 1);
	cr_assert_eq(cap.level, PN_LOG_WARN);
	cr_assert_eq(cap.ud_seen, &cap);
	cr_assert_str_eq(cap.line, "file has 3 chunks");
	PN_LOGE(&lg, "e");
	PN_LOGW(&lg, "w");
	PN_LOGI(&lg, "i");
	cr_assert_eq(cap.calls, 4);
	cr_assert_str_eq(cap.line, "i");
	cr_assert_eq(cap.level, PN_LOG_INFO);
}

static int evaluated;
static int side_effect(void)
{
	return ++evaluated;
}

Test(log, lines_above_the_level_are_dropped)
{
	struct capture cap = {0};
	struct pn_logger lg = {.cb = capture_cb, .ud = &cap, .level = PN_LOG_WARN};

	PN_LOGI(&lg, "info");
	PN_LOGD(&lg, "debug %d", side_effect());
	cr_assert_eq(cap.calls, 0);
	cr_assert_eq(evaluated, 0, "a dropped debug line does not evaluate its arguments");
	PN_LOGW(&lg, "warn");
	PN_LOGE(&lg, "error");
	cr_assert_eq(cap.calls, 2);
	lg.level = PN_LOG_ERROR;
	PN_LOGW(&lg, "warn");
	cr_assert_eq(cap.calls, 2);
	lg.level = PN_LOG_DEBUG;
	PN_LOGD(&lg, "debug %d", side_effect());
	cr_assert_eq(cap.calls, 3);
	cr_assert_str_eq(cap.line, "debug 1");
	cr_assert_not(pn_log_enabled(&lg, (enum pn_log_level)(PN_LOG_DEBUG + 1)));
}

Test(log, null_logger_or_null_callback_drops_the_line)
{
	struct pn_logger silent = {.cb = NULL, .ud = NULL, .level = PN_LOG_DEBUG};

	pn_logf(NULL, PN_LOG_ERROR, "nowhere %d", 1);
	PN_LOGE(NULL, "nowhere");
	PN_LOGD(NULL, "nowhere %d", side_effect());
	pn_logf(&silent, PN_LOG_ERROR, "nowhere");
	cr_assert_not(pn_log_enabled(NULL, PN_LOG_ERROR));
	cr_assert_not(pn_log_enabled(&silent, PN_LOG_ERROR));
	cr_assert_eq(evaluated, 0);
}

Test(log, a_long_line_is_cut_not_overflowed)
{
	struct capture cap = {0};
	struct pn_logger lg = {.cb = capture_cb, .ud = &cap, .level = PN_LOG_DEBUG};
	static char big[3 * PN_LOG_LINE_MAX];

	memset(big, 'x', sizeof big - 1);
	pn_logf(&lg, PN_LOG_INFO, "<%s>", big);
	cr_assert_eq(cap.calls, 1);
	cr_assert_eq(strlen(cap.line), PN_LOG_LINE_MAX - 1);
	cr_assert_eq(cap.line[0], '<');
	cr_assert_eq(cap.line[PN_LOG_LINE_MAX - 2], 'x');
}

Test(log, level_names_round_trip)
{
	enum pn_log_level l = PN_LOG_ERROR;

	for (int i = PN_LOG_ERROR; i <= PN_LOG_DEBUG; i++) {
		cr_assert_eq(pn_log_level_parse(pn_log_level_name((enum pn_log_level)i), &l), 0);
		cr_assert_eq(l, (enum pn_log_level)i);
	}
	cr_assert_str_eq(pn_log_level_name(PN_LOG_WARN), "warn");
	cr_assert_str_eq(pn_log_level_name((enum pn_log_level)9), "?");
	l = PN_LOG_INFO;
	cr_assert_eq(pn_log_level_parse("verbose", &l), PN_EINVAL);
	cr_assert_eq(pn_log_level_parse(NULL, &l), PN_EINVAL);
	cr_assert_eq(pn_log_level_parse("", &l), PN_EINVAL);
	cr_assert_eq(l, PN_LOG_INFO, "unchanged on error");
}

/* The stderr sink prints the classic line: "HH:MM:SS.mmm TAG LEVEL: text". */
static void read_stderr(char *out, size_t cap)
{
	fflush(stderr);
	FILE *f = cr_get_redirected_stderr();
	size_t n = fread(out, 1, cap - 1, f);
	out[n] = 0;
}

static void check_line(const char *got, const char *tail)
{
	/* 12 characters of time, then the rest exactly. */
	cr_assert_geq(strlen(got), 13, "%s", got);
	cr_assert(got[2] == ':' && got[5] == ':' && got[8] == '.' && got[12] == ' ', "time prefix: %s", got);
	cr_assert_str_eq(got + 13, tail);
}

Test(log, stderr_sink_prints_the_classic_line, .init = cr_redirect_stderr)
{
	struct pn_logger lg = {.cb = pn_log_stderr_cb, .ud = (void *)"peernet directory", .level = PN_LOG_INFO};
	char buf[4096];

	PN_LOGI(&lg, "node %s registered at %s", "abcd", "127.0.0.1:7000");
	PN_LOGD(&lg, "not shown");
	read_stderr(buf, sizeof buf);
	check_line(buf, "peernet directory info: node abcd registered at 127.0.0.1:7000\n");
}

Test(log, stderr_sink_without_a_tag_says_peernet, .init = cr_redirect_stderr)
{
	char buf[4096];

	pn_log_stderr_cb(NULL, PN_LOG_ERROR, "boom");
	read_stderr(buf, sizeof buf);
	check_line(buf, "peernet error: boom\n");
}
