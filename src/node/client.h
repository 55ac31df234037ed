/* Client side of the client-server model: put, get, ls against a server.
 * Each call runs its own libuv loop until the operation ends. On failure the
 * functions return a PN_E* code and opts->error says what went wrong and
 * what to do, in one line. */
#ifndef PN_NODE_CLIENT_H
#define PN_NODE_CLIENT_H
#ifndef PN_INTERNAL
#error "an internal header of libpeernet: a program includes <peernet.h> only"
#endif

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include "peernet.h"
#include "util/log.h"

#define PN_CLIENT_ERROR_MAX 1024

/* A transfer's progress, for the caller to show: START once when bytes
 * begin to move (done may already be > 0 on a resume), UPDATE about five
 * times a second, then DONE or ABORT once. label: the file's name. */
enum pn_progress_event { PN_PROGRESS_START, PN_PROGRESS_UPDATE, PN_PROGRESS_DONE, PN_PROGRESS_ABORT };
typedef void (*pn_progress_cb)(void *ud, enum pn_progress_event ev, const char *label, uint64_t done,
			       uint64_t total, uint64_t now_ms);

struct pn_client_opts {
	char *error;               /* PN_CLIENT_ERROR_MAX bytes: the one-line error when a call fails */
	const char *server;        /* "host:port" */
	const uint8_t *server_id;  /* refuse any other server; NULL: any */
	const char *data_dir;      /* identity from here; NULL: ephemeral identity */
	pn_progress_cb progress;   /* NULL: no progress reports */
	void *progress_ud;
	uint32_t window;           /* chunk requests in flight; 0: default */
	uint32_t timeout_ms;       /* no answer for this long: fail; 0: default */
	const struct pn_logger *log; /* the connection's and the partial file's lines; NULL: none */
};

struct pn_get_result {
	struct pn_cid cid;
	char name[PN_NAME_MAX + 1];
	char path[PATH_MAX];
	uint64_t bytes_downloaded; /* chunk bytes fetched in this run */
	uint64_t bytes_resumed;    /* verified bytes reused from an earlier attempt */
	double seconds;
};

/* Downloads cid. out_path NULL: the server's name in the current directory;
 * "-": standard output. An existing file is kept unless overwrite. */
int pn_client_get(const struct pn_client_opts *o, const struct pn_cid *cid, const char *out_path, bool overwrite,
		  struct pn_get_result *res);

struct pn_put_result {
	struct pn_cid cid;
	char name[PN_NAME_MAX + 1];
	uint64_t bytes_sent;   /* chunk bytes uploaded (0 if the server had them all) */
};
/* Called after each file is stored. */
typedef void (*pn_put_done_cb)(void *ud, const struct pn_put_result *r);
/* Uploads files in order on one connection. */
int pn_client_put(const struct pn_client_opts *o, char *const *paths, int npaths, pn_put_done_cb cb, void *ud);

typedef void (*pn_ls_entry_cb)(void *ud, const struct pn_cid *cid, const char *name);
int pn_client_ls(const struct pn_client_opts *o, pn_ls_entry_cb cb, void *ud);


#endif
