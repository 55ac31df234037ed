/* Command-line front end: one file per command.
 *
 * src/cli/ is a client of the library like any other program: it includes
 * <peernet.h>, <uv.h> and libc/POSIX headers, never a header of src/ nor
 * jansson's (the Makefile compiles it without PN_INTERNAL, without -Isrc
 * and without jansson's flags, and `make test` checks every include line
 * with tools/check-cli-includes.sh). The node's control socket is reached
 * through pn_ctl_*, and --json output is text the library renders
 * (pn_*_json), so the CLI never reads or writes JSON itself. */
#ifndef PN_CLI_H
#define PN_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <uv.h>
#include <peernet.h>

#define PN_EXIT_OK 0
#define PN_EXIT_FAIL 1
#define PN_EXIT_USAGE 2

int cmd_serve(int argc, char **argv);
int cmd_put(int argc, char **argv);
int cmd_get(int argc, char **argv);
int cmd_ls(int argc, char **argv);
int cmd_node(int argc, char **argv);
int cmd_directory(int argc, char **argv);
int cmd_add(int argc, char **argv);
int cmd_search(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_stop(int argc, char **argv);
int cmd_get_node(int argc, char **argv);
int cmd_demo(int argc, char **argv);

/* Runs loop until SIGINT or SIGTERM, then close(handle) and the rest of the
 * loop (a directory's or a server's close). */
void cli_run_until_signal(uv_loop_t *loop, void *handle, void (*close)(void *handle));

/* Prints "peernet CMD: message" on stderr. */
void cli_err(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints a usage error plus "try 'peernet CMD --help'" and returns PN_EXIT_USAGE. */
int cli_usage_err(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints text (one JSON value, released) on stdout as one line. 0, or -1
 * with an error line on stderr (text NULL: memory ran out while making it). */
int cli_json_print(const char *cmd, char *text);
/* A JSON array printed once complete: the JSON text of each item, in order. */
struct cli_json_list {
	char *text;                 /* "[item,item" so far; NULL before the first */
	size_t len, cap;
	bool oom;                   /* an item was lost: the list is not printed */
};
/* Appends item (a JSON value, released; NULL: memory ran out making it). */
void cli_json_list_add(struct cli_json_list *l, char *item);
/* Prints the list as one line ("[]" when empty) and frees it: as cli_json_print. */
int cli_json_list_print(const char *cmd, struct cli_json_list *l);
/* Parses seconds (integer or decimal) into milliseconds; false if malformed or out of range. */
bool cli_parse_seconds(const char *s, uint32_t *ms);
/* Parses a positive integer within [min, max]. */
bool cli_parse_uint(const char *s, uint32_t min, uint32_t max, uint32_t *out);

/* The program's log level and tag: process state, so it lives here in the
 * program and not in the library. The level starts at PN_LOG_INFO;
 * PEERNET_LOG=debug|info|warn|error (cli_log_init_from_env) or -v change it.
 * The tag ("peernet serve", ...) is not copied: a static string. */
void cli_log_init_from_env(void);
void cli_log_set_level(enum pn_log_level level);
enum pn_log_level cli_log_get_level(void);
void cli_log_set_tag(const char *tag);
const char *cli_log_get_tag(void);

/* Where the program's lines go: a log callback of peernet.h, its ud, and the
 * level above which lines are dropped. */
struct cli_log {
	pn_log_cb cb;
	void *ud;
	enum pn_log_level level;
};
/* The program's logger: pn_log_stderr_cb, lines on stderr as
 * "HH:MM:SS.mmm TAG LEVEL: text", at the level above. tag is not copied: a
 * static string. */
struct cli_log cli_logger(const char *tag);
/* Prints "peernet WHAT <node-id> listening on port N" and "node-id <node-id>"
 * on stdout, then writes the port to port_file (may be NULL). */
void cli_announce(const char *what, uint16_t port, const uint8_t node_id[PN_ID_BYTES], const char *port_file);

/* --http, --http-public and --http-port-file, shared by node, serve and
 * directory: long-option codes beyond any short option, the help lines, and
 * the line printed once the page is up ("status-page http://HOST:PORT/",
 * HOST as given to --http) with the port written to port_file (may be NULL). */
#define CLI_OPT_HTTP 1000
#define CLI_OPT_HTTP_PUBLIC 1001
#define CLI_OPT_HTTP_PORT_FILE 1002
#define CLI_HTTP_LONGOPTS                                                        \
	{"http", required_argument, NULL, CLI_OPT_HTTP},                         \
	{"http-public", no_argument, NULL, CLI_OPT_HTTP_PUBLIC},                 \
	{"http-port-file", required_argument, NULL, CLI_OPT_HTTP_PORT_FILE}
#define CLI_HTTP_HELP                                                                                        \
	"  --http ADDR:PORT          serve a status page (and its JSON at /api/status) on this\n"             \
	"                            address, e.g. 127.0.0.1:8080 (port 0 picks a free one)\n"                \
	"  --http-public             allow an --http address that is not loopback\n"                          \
	"  --http-port-file PATH     write the status page's port to PATH once listening\n"
void cli_announce_http(const char *listen, uint16_t port, const char *port_file);

#endif
