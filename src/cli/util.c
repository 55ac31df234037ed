#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"

void cli_err(const char *cmd, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "peernet %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int cli_usage_err(const char *cmd, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "peernet %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (try 'peernet %s --help')\n", cmd);
	return PN_EXIT_USAGE;
}

int cli_json_print(const char *cmd, char *text)
{
	if (!text) {
		cli_err(cmd, "out of memory writing the JSON output");
		return -1;
	}
	int r = puts(text) == EOF || fflush(stdout) != 0 ? -1 : 0;
	free(text);
	return r;
}

void cli_json_list_add(struct cli_json_list *l, char *item)
{
	size_t n = item ? strlen(item) : 0;
	if (!item || l->oom) {
		l->oom = true;
		free(item);
		return;
	}
	if (l->len + n + 3 > l->cap) { /* the separator, then "]" and a NUL at the end */
		size_t cap = (l->len + n + 3) * 2;
		char *text = realloc(l->text, cap);
		if (!text) {
			l->oom = true;
			free(item);
			return;
		}
		l->text = text;
		l->cap = cap;
	}
	char sep = l->len ? ',' : '[';
	l->text[l->len++] = sep;
	memcpy(l->text + l->len, item, n);
	l->len += n;
	free(item);
}

int cli_json_list_print(const char *cmd, struct cli_json_list *l)
{
	char *text = NULL;
	if (!l->oom)
		text = l->text ? l->text : malloc(3);
	if (text) {
		size_t len = l->text ? l->len : 0;
		if (!l->text)
			text[len++] = '[';
		text[len++] = ']';
		text[len] = '\0';
	} else {
		free(l->text);
	}
	memset(l, 0, sizeof *l);
	return cli_json_print(cmd, text);
}

bool cli_parse_seconds(const char *s, uint32_t *ms)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end || !isfinite(v) || v <= 0 || v > 86400)
		return false;
	*ms = (uint32_t)(v * 1000);
	if (*ms == 0)
		*ms = 1;
	return true;
}

bool cli_parse_uint(const char *s, uint32_t min, uint32_t max, uint32_t *out)
{
	char *end;
	errno = 0;
	if (*s == '-' || *s == '+')
		return false;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		return false;
	*out = (uint32_t)v;
	return true;
}

static enum pn_log_level cli_level = PN_LOG_INFO;
static const char *cli_tag = "peernet";

void cli_log_set_level(enum pn_log_level level) { cli_level = level; }
enum pn_log_level cli_log_get_level(void) { return cli_level; }
void cli_log_set_tag(const char *tag) { cli_tag = tag; }
const char *cli_log_get_tag(void) { return cli_tag; }

void cli_log_init_from_env(void)
{
	enum pn_log_level level;

	if (pn_log_level_parse(getenv("PEERNET_LOG"), &level) == PN_OK)
		cli_level = level;
}

struct cli_log cli_logger(const char *tag)
{
	struct cli_log lg = {.cb = pn_log_stderr_cb, .ud = (void *)tag, .level = cli_level};
	return lg;
}

void cli_announce_http(const char *listen, uint16_t port, const char *port_file)
{
	const char *colon = strrchr(listen, ':');
	int host_len = colon ? (int)(colon - listen) : (int)strlen(listen);
	printf("status-page http://%.*s:%u/\n", host_len, listen, port);
	fflush(stdout);
	if (port_file) {
		FILE *f = fopen(port_file, "w");
		if (f) {
			fprintf(f, "%u\n", port);
			fclose(f);
		}
	}
}

void cli_announce(const char *what, uint16_t port, const uint8_t node_id[PN_ID_BYTES], const char *port_file)
{
	char idhex[PN_NODE_ID_STR_LEN + 1];

	pn_node_id_format(node_id, idhex);
	printf("peernet %s %s listening on port %u\n", what, idhex, port);
	printf("node-id %s\n", idhex);
	fflush(stdout);
	if (port_file) {
		FILE *f = fopen(port_file, "w");
		if (f) {
			fprintf(f, "%u\n", port);
			fclose(f);
		}
	}
}
