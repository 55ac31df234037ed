/* peernet demo: children, downloads and reading nodes, shared by
 * cmd_demo.c (the story), demo_proc.c (the child processes) and demo_get.c
 * (the downloads, in this process). */
#ifndef PN_CLI_DEMO_H
#define PN_CLI_DEMO_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <peernet.h>
#include <uv.h>

#define DEMO_MAX_CHILDREN 256
#define DEMO_NAME_MAX 32
#define DEMO_ERR_MAX 256
#define DEMO_OUT_MAX (256 * 1024)  /* captured stdout per child */
#define DEMO_STOP_GRACE_MS 3000    /* SIGTERM -> SIGKILL */
#define DEMO_TICK_MS 100

/* Results of the waits below. */
enum { DEMO_OK = 0, DEMO_FAIL = -1, DEMO_TIMEOUT = -2, DEMO_INTR = -3 };

struct demo_child {
	bool used;
	bool running;
	pid_t pid;
	int status;                 /* exit code, or 128 + signal */
	char name[DEMO_NAME_MAX];
	double t_start, t_end;      /* monotonic seconds */
	int out_fd, err_fd;         /* pipes, or -1 */
	char *out;                  /* captured stdout, NUL-terminated */
	size_t out_len;
	char pend[DEMO_ERR_MAX];    /* stderr since the last \r or \n */
	size_t pend_len;
	char err_line[DEMO_ERR_MAX]; /* the last line it wrote to stderr */
};

/* One download of a distribution, on the demo's own loop: progress comes
 * from the library (pn_client_get's events, or pn_ctl_get's for a node),
 * never from a progress bar. */
struct demo_get {
	bool running;               /* not ended yet */
	bool ok;                    /* ended with the file in place */
	double t_end;               /* demo_now() when it ended */
	uint64_t have, total;       /* verified bytes, size (0 before the first report) */
	char err[DEMO_ERR_MAX];     /* why it failed: one line, escaped for a terminal */
	/* private to demo_get.c */
	pn_transfer *transfer;      /* from the server, until its done */
	pn_ctl *ctl;                /* through a node, until its done */
};

/* Starts downloading id from the server (HOST:PORT) into path through
 * pn_client_get; timeout_ms as its config's. DEMO_OK, or DEMO_FAIL with g
 * ended (g->err says why). g must stay put until demo_get_busy is false. */
int demo_get_server(uv_loop_t *loop, struct demo_get *g, const char *server, const char *id, const char *path,
		    uint32_t timeout_ms);
/* Asks the node whose control socket is at control to download id into
 * path (cwd: the directory a relative path is taken from). As above. */
int demo_get_node(uv_loop_t *loop, struct demo_get *g, const char *control, const char *id, const char *path,
		  const char *cwd);
/* Ends a running download ("cancelled"); its handles close from the loop. */
void demo_get_cancel(struct demo_get *g);
/* Whether g still has something on the loop (running, or closing). */
bool demo_get_busy(const struct demo_get *g);

extern volatile sig_atomic_t demo_interrupted;

double demo_now(void);
void demo_install_signals(void);

/* Starts /proc/self/exe with argv (argv[0] is the name shown) in cwd, in
 * its own process group. log_path: stdout and stderr go there; NULL: both
 * are pipes read by demo_pump(). NULL on failure (message printed). */
struct demo_child *demo_spawn(const char *name, const char *cwd, const char *log_path, char *const argv[]);
/* Reads the pipes of every running child for up to timeout_ms, reaps. */
void demo_pump(int timeout_ms);
/* Frees a finished child's slot. */
void demo_release(struct demo_child *c);
/* SIGKILL, then reap (bounded). */
void demo_kill(struct demo_child *c);
/* SIGTERM every running child, SIGKILL what is left after grace_ms. */
void demo_stop_all(int grace_ms);
/* Running children with their names, for the interrupt message. */
int demo_running_count(void);

/* Runs a short command to the end (bounded by timeout_ms; killed after).
 * Returns DEMO_OK with *rc its exit code, or DEMO_TIMEOUT / DEMO_INTR / DEMO_FAIL.
 * out (may be NULL) gets its stdout, err its last stderr line. */
int demo_run(const char *cwd, int timeout_ms, char *const argv[], int *rc, double *secs, char *out, size_t outsz,
	     char *err, size_t errsz);
/* Waits until the child wrote a port to port_file. */
int demo_wait_port(struct demo_child *c, const char *port_file, int timeout_ms, unsigned *port);

/* /proc/PID/io wchar: bytes the process passed to write(2) and friends. */
bool demo_proc_wchar(pid_t pid, uint64_t *out);
/* "12.3 MiB" */
void demo_fmt_bytes(double bytes, char *out, size_t n);
/* Removes a tree (no symlinks followed). */
void demo_rmtree(const char *path);

/* What the demo reads of a node's report (pn_ctl_status). */
#define DEMO_STATUS_SHARES 16
struct demo_status {
	struct pn_node_status status;
	bool flood_on;
	struct pn_flood_info flood;
	struct {
		char id[PN_CID_STR_LEN + 1];
		char name[DEMO_NAME_MAX];
	} shares[DEMO_STATUS_SHARES]; /* the first shares whose names fit */
	size_t nshares;
};
/* The report of the node whose control socket is at control, asked on a
 * loop of its own within timeout_ms. DEMO_OK or DEMO_FAIL. */
int demo_node_status(const char *control, struct demo_status *out, int timeout_ms);
/* Searches the network through that node for query: *found tells whether
 * want_id was among the hits. DEMO_OK, DEMO_TIMEOUT or DEMO_FAIL, with err
 * the node's answer (escaped for a terminal) when it failed. */
int demo_search(const char *control, const char *query, const char *want_id, int timeout_ms, bool *found,
		char *err, size_t errsz);

#endif
