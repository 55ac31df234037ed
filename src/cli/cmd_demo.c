/* peernet demo: distributes one file by client-server, by peer-to-peer with
 * a directory and by peer-to-peer with flooding, all on loopback, and ends
 * with one table comparing the models, every figure measured in the run.
 * Every process it starts is this binary again (demo_proc.c): the server,
 * the directory, the nodes, and the short commands (put, status, search,
 * the gets of section 5). The downloads of each distribution run in this
 * process (demo_get.c): from the server through pn_client_get, through a
 * node by its control socket; their progress comes from the library's
 * events and the nodes' JSON replies, never from a progress bar. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sys/random.h>
#include "cli.h"
#include "demo.h"

#define DEFAULT_NODES 8
#define MAX_NODES 32
#define DEFAULT_SIZE "16M"
#define DEFAULT_RATE "2M"
#define MIN_SIZE 1024ULL
#define MAX_SIZE (4ULL << 30)
#define SMALL_SIZE (256 * 1024)
#define BIG_NAME "demo-data.bin"
#define SMALL_NAME "second-file.bin"
#define SMALL_WORD "second"
#define START_TIMEOUT_MS 10000
#define CMD_TIMEOUT_MS 10000
#define PUT_TIMEOUT_MS 120000
#define READY_TIMEOUT_MS 20000
#define GONE_TIMEOUT_MS 60000
#define READY_POLL_US (200 * 1000)
#define GET_SLACK_S 30.0         /* a distribution may take 2x its bound plus this */
#define CLIENT_TIMEOUT "5"       /* seconds a CS client waits on a silent server */
#define CLIENT_TIMEOUT_MS 5000
#define PEER_TIMEOUT "10"        /* seconds a node's get waits for a reachable provider */
#define PLAIN_EVERY_S 1.0        /* a progress line per second when stdout is not a terminal */
#define TTY_EVERY_S 0.1          /* redraws on a terminal */
#define BAR_WIDTH 30
#define ARGS_MAX 48
#define ARGS_BUF 8192
#define ID_MAX 128
#define ADDR_MAX 64
#define WRITE_BLOCK (1 << 20)

enum model { M_CS, M_DIR, M_FLOOD, NMODELS };
static const char *const model_name[NMODELS] = {"client-server", "p2p + directory", "p2p + flooding"};

struct result {
	bool ran;
	int verified;               /* copies whose SHA-256 matched */
	double secs, bound;         /* launch -> last finish; its lower bound */
	bool central_ok, origin_ok, msgs_ok;
	uint64_t central_sent;      /* server / directory, during the distribution */
	uint64_t origin_sent;       /* server / seed */
	uint64_t msgs, lookups;
	bool gone_ran, gone_expected;
	int gone_rc;
	double gone_secs;
	char gone_what[64];
	char gone_err[DEMO_ERR_MAX];
};

struct demo {
	int n;
	uint64_t size, rate;
	bool keep, tty;
	char root[PATH_MAX];
	char big[PATH_MAX], small[PATH_MAX];
	struct pn_cid big_cid, small_cid; /* of the files distributed: every copy is checked against them */
	char big_id[ID_MAX], small_id[ID_MAX];
	struct result r[NMODELS];
	struct demo_child *server, *directory;
	char server_addr[ADDR_MAX], dir_addr[ADDR_MAX];
	struct demo_child *node[2][MAX_NODES + 1]; /* [0: directory, 1: flood][0 is the seed] */
	unsigned node_port[2][MAX_NODES + 1];
};

static const char demo_help[] =
	"usage: peernet demo [--nodes N] [--size SIZE] [--up-rate RATE] [--keep]\n"
	"\n"
	"Starts, on 127.0.0.1, a server, a directory and networks of nodes (each in its\n"
	"own directory under one temporary root), and distributes one random file to N\n"
	"downloaders three ways: client-server, peer-to-peer with the directory, and\n"
	"peer-to-peer with flooding. Shows live progress, verifies every copy by SHA-256,\n"
	"kills each model's central machine to see what still works, and ends with one\n"
	"table comparing the models, every figure measured in the run. Stops everything it\n"
	"started, also on Ctrl-C.\n"
	"\n"
	"  --nodes N          downloaders per model, 1 to 32 (default 8)\n"
	"  --size SIZE        size of the file, e.g. 512K, 16M, 1G (K, M, G = 1024^n; default 16M)\n"
	"  --up-rate RATE     upload cap of every uploader: server, seed and nodes (default 2M)\n"
	"  --keep             keep the temporary directory (logs, data directories)\n"
	"  -h, --help         this text\n";

/* ---- small helpers ---- */

struct args {
	char *v[ARGS_MAX + 1];
	char buf[ARGS_BUF];
	size_t used;
	int n;
	bool overflow;
};

static void arg(struct args *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void arg(struct args *a, const char *fmt, ...)
{
	va_list ap;
	size_t room = sizeof a->buf - a->used;
	va_start(ap, fmt);
	int k = vsnprintf(a->buf + a->used, room, fmt, ap);
	va_end(ap);
	if (k < 0 || (size_t)k >= room || a->n >= ARGS_MAX) {
		a->overflow = true;
		return;
	}
	a->v[a->n++] = a->buf + a->used;
	a->v[a->n] = NULL;
	a->used += (size_t)k + 1;
}

static bool path_fmt(char *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool path_fmt(char *out, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int k = vsnprintf(out, PATH_MAX, fmt, ap);
	va_end(ap);
	if (k < 0 || k >= PATH_MAX) {
		fprintf(stderr, "peernet demo: path too long\n");
		return false;
	}
	return true;
}

static bool make_dir(const char *path)
{
	if (mkdir(path, 0700) != 0 && errno != EEXIST) {
		fprintf(stderr, "peernet demo: cannot create %s: %s\n", path, strerror(errno));
		return false;
	}
	return true;
}

/* Size with an optional K/M/G suffix (1024^n). */
static bool parse_size(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || !isfinite(v) || v <= 0)
		return false;
	double mult = 1;
	switch (*end) {
	case 'k': case 'K': mult = 1024.0; end++; break;
	case 'm': case 'M': mult = 1024.0 * 1024; end++; break;
	case 'g': case 'G': mult = 1024.0 * 1024 * 1024; end++; break;
	}
	if (*end == 'i')
		end++;
	if (*end == 'B' || *end == 'b')
		end++;
	if (*end)
		return false;
	v *= mult;
	if (v < (double)MIN_SIZE || v > (double)MAX_SIZE)
		return false;
	*out = (uint64_t)v;
	return true;
}

static bool stop_now(void)
{
	return demo_interrupted != 0;
}

/* Random bytes into path; its content ID (the SHA-256 hash tree, as a node
 * computes it) into cid. */
static bool make_file(const char *path, uint64_t size, struct pn_cid *cid)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	unsigned char *buf = malloc(WRITE_BLOCK);
	bool ok = fd >= 0 && buf;
	for (uint64_t left = size; ok && left && !stop_now();) {
		size_t k = left < WRITE_BLOCK ? (size_t)left : WRITE_BLOCK;
		for (size_t got = 0; ok && got < k;) {
			ssize_t g = getrandom(buf + got, k - got, 0);
			if (g < 0 && errno == EINTR)
				continue;
			ok = g > 0;
			got += ok ? (size_t)g : 0;
		}
		for (size_t off = 0; ok && off < k;) {
			ssize_t w = write(fd, buf + off, k - off);
			if (w < 0 && errno == EINTR)
				continue;
			ok = w > 0;
			off += ok ? (size_t)w : 0;
		}
		left -= k;
	}
	if (fd >= 0 && close(fd) != 0)
		ok = false;
	ok = ok && !stop_now() && pn_cid_of_file(path, cid) == PN_OK;
	if (!ok && !stop_now())
		fprintf(stderr, "peernet demo: cannot write %s: %s\n", path, strerror(errno));
	free(buf);
	return ok;
}

/* The copy at path has the content ID of the original. */
static bool same_content(const char *path, const struct pn_cid *want)
{
	struct pn_cid got;
	return pn_cid_of_file(path, &got) == PN_OK && !memcmp(&got, want, sizeof got);
}

/* Prints the last lines of a child's log after it failed. */
static void show_log_tail(const char *log)
{
	char buf[2048];
	FILE *f = fopen(log, "r");
	if (!f)
		return;
	fseek(f, 0, SEEK_END);
	long len = ftell(f);
	fseek(f, len > (long)sizeof buf - 1 ? len - (long)sizeof buf + 1 : 0, SEEK_SET);
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	buf[n] = 0;
	fclose(f);
	fprintf(stderr, "--- %s (end) ---\n%s\n---\n", log, buf);
}

/* Starts a long-running child in dir (created), its output in dir/log, and
 * waits for its port. */
static struct demo_child *start_daemon(const char *name, const char *dir, struct args *a, unsigned *port)
{
	char log[PATH_MAX], pf[PATH_MAX];
	if (a->overflow) {
		fprintf(stderr, "peernet demo: %s: argument list too long\n", name);
		return NULL;
	}
	if (!make_dir(dir) || !path_fmt(log, "%s/log", dir) || !path_fmt(pf, "%s/port", dir))
		return NULL;
	struct demo_child *c = demo_spawn(name, dir, log, a->v);
	if (!c)
		return NULL;
	int r = demo_wait_port(c, pf, START_TIMEOUT_MS, port);
	if (r == DEMO_OK)
		return c;
	if (r == DEMO_TIMEOUT)
		fprintf(stderr, "peernet demo: %s did not write %s within %d s\n", name, pf, START_TIMEOUT_MS / 1000);
	else if (r == DEMO_FAIL)
		fprintf(stderr, "peernet demo: %s exited with status %d before listening\n", name, c->status);
	if (r != DEMO_INTR)
		show_log_tail(log);
	demo_kill(c);
	return NULL;
}

/* A node's directory under the root: model 0 = directory, 1 = flood. */
static bool node_dir(const struct demo *d, int model, int i, char *out)
{
	if (i == 0)
		return path_fmt(out, "%s/%s/seed", d->root, model ? "flood" : "dir");
	return path_fmt(out, "%s/%s/node-%d", d->root, model ? "flood" : "dir", i);
}

/* The control socket of a node under the root into out; false if it does not fit. */
static bool node_control(const struct demo *d, int model, int i, char *out)
{
	char dir[PATH_MAX];
	return node_dir(d, model, i, dir) && path_fmt(out, "%s/data/%s", dir, PN_CONTROL_SOCKET);
}

/* A node's report, through its control socket. DEMO_OK or DEMO_FAIL. */
static int node_status(const struct demo *d, int model, int i, struct demo_status *out)
{
	char control[PATH_MAX];
	if (!node_control(d, model, i, control))
		return DEMO_FAIL;
	return demo_node_status(control, out, CMD_TIMEOUT_MS);
}

/* ---- live progress ---- */

static void draw_progress(const struct demo *d, enum model m, const struct demo_get *g, int n, double t0, bool final)
{
	double sum = 0;
	int done = 0;
	for (int i = 0; i < n; i++) {
		double part = g[i].total ? (double)g[i].have / (double)g[i].total : 0;
		sum += !g[i].running && g[i].ok ? 1.0 : part > 1 ? 1.0 : part;
		done += !g[i].running;
	}
	double frac = n ? sum / n : 1.0;
	double secs = demo_now() - t0;
	if (d->tty) {
		char bar[BAR_WIDTH + 1];
		int fill = (int)(frac * BAR_WIDTH);
		for (int i = 0; i < BAR_WIDTH; i++)
			bar[i] = i < fill ? '#' : '.';
		bar[BAR_WIDTH] = 0;
		printf("\r\x1b[2K  %-16s [%s] %5.1f%%  %2d/%d finished  %6.1f s%s", model_name[m], bar, frac * 100,
		       done, n, secs, final ? "\n" : "");
	} else {
		printf("  %-16s %5.1f%%  %2d/%d finished  %6.1f s\n", model_name[m], frac * 100, done, n, secs);
	}
	fflush(stdout);
}

static void tick_cb(uv_timer_t *t)
{
	/* nothing: it makes each uv_run(UV_RUN_ONCE) return within DEMO_TICK_MS */
}

static int running_count(const struct demo_get *g, int n)
{
	int k = 0;
	for (int i = 0; i < n; i++)
		k += g[i].running;
	return k;
}

/* Starts one download of a distribution on loop into out: from the server
 * (client-server), else through the node whose directory is cwd. */
static int start_get(struct demo *d, enum model m, uv_loop_t *loop, struct demo_get *g, const char *out,
		     const char *cwd)
{
	char control[PATH_MAX];
	if (m == M_CS)
		return demo_get_server(loop, g, d->server_addr, d->big_id, out, CLIENT_TIMEOUT_MS);
	if (!path_fmt(control, "%s/data/%s", cwd, PN_CONTROL_SOCKET))
		return DEMO_FAIL;
	return demo_get_node(loop, g, control, d->big_id, out, cwd);
}

/* Runs the n downloads of model m at once in this process (outputs outs,
 * directories cwds), shows their progress as the library reports it,
 * verifies every copy; fills r->secs and r->verified. */
static int distribute(struct demo *d, enum model m, char (*outs)[PATH_MAX], char (*cwds)[PATH_MAX])
{
	struct result *r = &d->r[m];
	struct demo_get *g = calloc((size_t)d->n, sizeof *g);
	uv_loop_t loop;
	uv_timer_t tick;
	int n = 0, ret = DEMO_OK;
	if (!g || uv_loop_init(&loop) != 0) {
		fprintf(stderr, "peernet demo: cannot set up the event loop\n");
		free(g);
		return DEMO_FAIL;
	}
	uv_timer_init(&loop, &tick);
	uv_timer_start(&tick, tick_cb, DEMO_TICK_MS, DEMO_TICK_MS);
	double t0 = demo_now(), deadline = t0 + 2 * r->bound + GET_SLACK_S, last_plain = 0;
	printf("  %d downloads at once (lower bound %.1f s):\n", d->n, r->bound);
	for (; n < d->n; n++) {
		if (start_get(d, m, &loop, &g[n], outs[n], cwds[n]) != DEMO_OK) {
			fprintf(stderr, "peernet demo: cannot start get %d: %s\n", n + 1, g[n].err);
			n++;
			ret = DEMO_FAIL;
			break;
		}
	}
	while (ret == DEMO_OK && running_count(g, n)) {
		if (stop_now()) {
			ret = DEMO_INTR;
			break;
		}
		if (demo_now() > deadline) {
			fprintf(stderr, "\npeernet demo: the downloads did not finish within %.0f s\n", deadline - t0);
			ret = DEMO_TIMEOUT;
			break;
		}
		uv_run(&loop, UV_RUN_ONCE);
		if (demo_now() - last_plain >= (d->tty ? TTY_EVERY_S : PLAIN_EVERY_S)) {
			draw_progress(d, m, g, n, t0, false);
			last_plain = demo_now();
		}
	}
	for (int i = 0; i < n; i++)
		if (g[i].running)
			demo_get_cancel(&g[i]);
	/* every download lets go of the loop: transfers call done, pipes close */
	uv_close((uv_handle_t *)&tick, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	if (uv_loop_close(&loop) != 0)
		fprintf(stderr, "peernet demo: internal: the event loop still had handles\n");
	if (ret != DEMO_OK) {
		if (d->tty)
			printf("\n");
		free(g);
		return ret;
	}
	double last = t0;
	for (int i = 0; i < n; i++)
		last = g[i].t_end > last ? g[i].t_end : last;
	r->secs = last - t0;
	if (d->tty)
		printf("\r\x1b[2K  %-16s all %d finished in %.2f s\n", model_name[m], n, r->secs);
	else
		printf("  %-16s all %d finished in %.2f s\n", model_name[m], n, r->secs);
	for (int i = 0; i < n; i++) {
		if (!g[i].ok)
			printf("    get %d FAILED: %s\n", i + 1, g[i].err[0] ? g[i].err : "no message");
		else if (!same_content(outs[i], &d->big_cid))
			printf("    get %d: %s does not match the original's content ID (SHA-256 hash tree)\n", i + 1, outs[i]);
		else
			r->verified++;
	}
	free(g);
	r->ran = true;
	printf("  %d/%d copies verified by SHA-256\n", r->verified, n);
	return DEMO_OK;
}

/* ---- the three models ---- */

static int run_cs(struct demo *d)
{
	struct result *r = &d->r[M_CS];
	char dir[PATH_MAX], rate[32], shown[32];
	struct args a = {0};
	unsigned port;
	snprintf(rate, sizeof rate, "%llu", (unsigned long long)d->rate);
	demo_fmt_bytes((double)d->rate, shown, sizeof shown);
	printf("\n== 2. Client-server: one server (upload cap %s/s), %d clients\n", shown, d->n);
	if (!path_fmt(dir, "%s/cs", d->root) || !make_dir(dir) || !path_fmt(dir, "%s/cs/server", d->root))
		return DEMO_FAIL;
	arg(&a, "peernet");
	arg(&a, "serve");
	arg(&a, "--listen");
	arg(&a, "127.0.0.1:0");
	arg(&a, "--data");
	arg(&a, "%s/data", dir);
	arg(&a, "--port-file");
	arg(&a, "%s/port", dir);
	arg(&a, "--up-rate");
	arg(&a, "%s", rate);
	if (!(d->server = start_daemon("server", dir, &a, &port)))
		return stop_now() ? DEMO_INTR : DEMO_FAIL;
	snprintf(d->server_addr, sizeof d->server_addr, "127.0.0.1:%u", port);
	printf("  server    pid %d on %s\n", (int)d->server->pid, d->server_addr);

	char out[DEMO_ERR_MAX * 4], err[DEMO_ERR_MAX];
	int rc;
	double secs;
	memset(&a, 0, sizeof a);
	arg(&a, "peernet");
	arg(&a, "put");
	arg(&a, "--server");
	arg(&a, "%s", d->server_addr);
	arg(&a, "--no-progress");
	arg(&a, "%s", d->big);
	int w = demo_run(dir, PUT_TIMEOUT_MS, a.v, &rc, &secs, out, sizeof out, err, sizeof err);
	if (w != DEMO_OK || rc != 0 || sscanf(out, "%127s", d->big_id) != 1) {
		if (w != DEMO_INTR)
			fprintf(stderr, "peernet demo: put failed (exit %d): %s\n", rc, err);
		return w == DEMO_INTR ? DEMO_INTR : DEMO_FAIL;
	}
	printf("  put       %s  %s  (%.2f s)\n", d->big_id, BIG_NAME, secs);

	uint64_t w0 = 0, w1 = 0;
	bool wok = demo_proc_wchar(d->server->pid, &w0);
	char(*outs)[PATH_MAX] = calloc((size_t)d->n, PATH_MAX), (*cwds)[PATH_MAX] = calloc((size_t)d->n, PATH_MAX);
	int ret = DEMO_FAIL;
	if (!outs || !cwds)
		goto out;
	for (int i = 0; i < d->n; i++) {
		if (!path_fmt(cwds[i], "%s/cs/client-%d", d->root, i + 1) || !make_dir(cwds[i]) ||
		    !path_fmt(outs[i], "%s/%s", cwds[i], BIG_NAME))
			goto out;
	}
	/* d = infinity: downloads are not capped */
	r->bound = (double)d->n * (double)d->size / (double)d->rate;
	ret = distribute(d, M_CS, outs, cwds);
	if (ret == DEMO_OK && wok && demo_proc_wchar(d->server->pid, &w1) && w1 >= w0) {
		r->central_ok = r->origin_ok = true;
		r->central_sent = r->origin_sent = w1 - w0;
	}
	r->msgs_ok = true; /* the client knows the server: no look-up at all */
out:
	free(outs);
	free(cwds);
	return ret;
}

/* Starts the seed and the n nodes of one p2p model. */
static int start_nodes(struct demo *d, int model)
{
	char rate[32];
	snprintf(rate, sizeof rate, "%llu", (unsigned long long)d->rate);
	for (int i = 0; i <= d->n; i++) {
		char dir[PATH_MAX], name[DEMO_NAME_MAX];
		struct args a = {0};
		if (!node_dir(d, model, i, dir))
			return DEMO_FAIL;
		snprintf(name, sizeof name, i ? "%s node %d" : "%s seed", model ? "flood" : "dir", i);
		arg(&a, "peernet");
		arg(&a, "node");
		arg(&a, "--listen");
		arg(&a, "127.0.0.1:0");
		arg(&a, "--data");
		arg(&a, "%s/data", dir);
		arg(&a, "--port-file");
		arg(&a, "%s/port", dir);
		arg(&a, "--up-rate");
		arg(&a, "%s", rate);
		arg(&a, "--peer-timeout");
		arg(&a, PEER_TIMEOUT);
		if (model == 0) {
			arg(&a, "--discovery");
			arg(&a, "directory");
			arg(&a, "--directory");
			arg(&a, "%s", d->dir_addr);
		} else {
			arg(&a, "--discovery");
			arg(&a, "flood");
			/* a small random connected topology: 1-2 earlier nodes */
			int k = i == 0 ? 0 : i == 1 ? 1 : 1 + rand() % 2, first = i ? rand() % i : 0;
			for (int j = 0; j < k; j++) {
				arg(&a, "--bootstrap");
				arg(&a, "127.0.0.1:%u", d->node_port[1][(first + j) % i]);
			}
		}
		if (i == 0) {
			arg(&a, "--share");
			arg(&a, "%s", d->big);
			arg(&a, "--share");
			arg(&a, "%s", d->small);
		}
		if (!(d->node[model][i] = start_daemon(name, dir, &a, &d->node_port[model][i])))
			return stop_now() ? DEMO_INTR : DEMO_FAIL;
		if (model == 1 && i > 0) {
			printf("  %-12s pid %-7d port %-5u bootstrap", name, (int)d->node[model][i]->pid,
			       d->node_port[model][i]);
			for (int j = 0; j < a.n; j++)
				if (!strcmp(a.v[j], "--bootstrap"))
					printf(" %s", a.v[j + 1] + strlen("127.0.0.1:"));
			printf("\n");
		} else if (i == 0) {
			printf("  %-12s pid %-7d port %-5u shares %s and %s\n", name, (int)d->node[model][i]->pid,
			       d->node_port[model][i], BIG_NAME, SMALL_NAME);
		}
	}
	if (model == 0) {
		printf("  %d nodes      ports", d->n);
		for (int i = 1; i <= d->n; i++)
			printf(" %u", d->node_port[0][i]);
		printf("\n");
	}
	return DEMO_OK;
}

/* Waits until every node is registered (directory) or has a neighbour (flood). */
static int wait_ready(struct demo *d, int model)
{
	struct demo_status *st = malloc(sizeof *st);
	double deadline = demo_now() + READY_TIMEOUT_MS / 1000.0;
	int ret = DEMO_TIMEOUT, i = 0;
	while (st && i <= d->n) {
		bool ready = node_status(d, model, i, st) == DEMO_OK &&
			     (model == 0 ? st->status.discovery_ready : st->flood_on && st->status.neighbors > 0);
		if (ready) {
			i++;
			continue;
		}
		if (stop_now()) {
			ret = DEMO_INTR;
			break;
		}
		if (demo_now() > deadline) {
			fprintf(stderr, "peernet demo: %s %d is not %s after %d s\n", model ? "flood" : "directory", i,
				model ? "connected to any neighbour" : "registered with the directory",
				READY_TIMEOUT_MS / 1000);
			break;
		}
		usleep(READY_POLL_US);
	}
	if (st && i > d->n)
		ret = DEMO_OK;
	free(st);
	return ret;
}

/* The content IDs of the seed's two files, from its status. */
static int seed_ids(struct demo *d, int model)
{
	struct demo_status *st = malloc(sizeof *st);
	bool big = false, small = false;
	size_t nshares = st && node_status(d, model, 0, st) == DEMO_OK ? st->nshares : 0;
	for (size_t k = 0; k < nshares; k++) {
		const char *name = st->shares[k].name, *id = st->shares[k].id;
		if (strlen(id) >= ID_MAX)
			continue;
		if (!strcmp(name, BIG_NAME)) {
			big = true;
			if (strcmp(id, d->big_id))
				fprintf(stderr, "peernet demo: the seed's ID of %s (%s) is not the server's (%s)\n", BIG_NAME,
					id, d->big_id);
		} else if (!strcmp(name, SMALL_NAME)) {
			small = true;
			snprintf(d->small_id, sizeof d->small_id, "%s", id);
		}
	}
	free(st);
	if (!big || !small) {
		fprintf(stderr, "peernet demo: the seed's status does not list %s and %s\n", BIG_NAME, SMALL_NAME);
		return DEMO_FAIL;
	}
	return DEMO_OK;
}

/* The N node gets of one p2p model. */
static int p2p_gets(struct demo *d, int model, enum model m)
{
	char(*outs)[PATH_MAX] = calloc((size_t)d->n, PATH_MAX), (*cwds)[PATH_MAX] = calloc((size_t)d->n, PATH_MAX);
	int ret = DEMO_FAIL;
	if (!outs || !cwds)
		goto out;
	for (int i = 0; i < d->n; i++) {
		if (!node_dir(d, model, i + 1, cwds[i]) || !path_fmt(outs[i], "%s/%s", cwds[i], BIG_NAME))
			goto out;
	}
	double us = (double)d->rate, u = (double)d->rate, F = (double)d->size, N = d->n;
	d->r[m].bound = fmax(F / us, N * F / (us + N * u));
	ret = distribute(d, m, outs, cwds);
out:
	free(outs);
	free(cwds);
	return ret;
}

/* Look-up costs and the seed's upload, from every node's status. */
static void p2p_totals(struct demo *d, int model, enum model m)
{
	struct result *r = &d->r[m];
	struct demo_status *st = malloc(sizeof *st);
	uint64_t msgs = 0, lookups = 0, started = 0;
	bool ok = st != NULL;
	for (int i = 0; ok && i <= d->n; i++) {
		if (node_status(d, model, i, st) != DEMO_OK) {
			ok = false;
			break;
		}
		if (i == 0) {
			r->origin_sent = st->status.bytes_up;
			r->origin_ok = true;
		}
		if (model == 0) {
			msgs += st->status.lookup_msgs;
		} else {
			ok = st->flood_on;
			msgs += st->flood.queries_sent + st->flood.hits_sent;
			started += st->flood.queries_started;
		}
		lookups += st->status.lookups;
	}
	free(st);
	if (!ok) {
		fprintf(stderr, "peernet demo: could not read every node's look-up counters\n");
		return;
	}
	r->msgs = msgs;
	r->lookups = lookups ? lookups : started;
	r->msgs_ok = r->lookups > 0;
}

static int run_dir(struct demo *d)
{
	struct result *r = &d->r[M_DIR];
	char dir[PATH_MAX];
	struct args a = {0};
	unsigned port;
	int ret;
	printf("\n== 3. Peer-to-peer with a directory: a directory, a seed and %d nodes\n", d->n);
	if (!path_fmt(dir, "%s/dir", d->root) || !make_dir(dir) || !path_fmt(dir, "%s/dir/directory", d->root))
		return DEMO_FAIL;
	arg(&a, "peernet");
	arg(&a, "directory");
	arg(&a, "--listen");
	arg(&a, "127.0.0.1:0");
	arg(&a, "--port-file");
	arg(&a, "%s/port", dir);
	if (!(d->directory = start_daemon("directory", dir, &a, &port)))
		return stop_now() ? DEMO_INTR : DEMO_FAIL;
	snprintf(d->dir_addr, sizeof d->dir_addr, "127.0.0.1:%u", port);
	printf("  directory    pid %-7d port %u\n", (int)d->directory->pid, port);
	if ((ret = start_nodes(d, 0)) || (ret = wait_ready(d, 0)) || (ret = seed_ids(d, 0)))
		return ret;
	printf("  all %d nodes registered with the directory\n", d->n + 1);
	uint64_t w0 = 0, w1 = 0;
	bool wok = demo_proc_wchar(d->directory->pid, &w0);
	if ((ret = p2p_gets(d, 0, M_DIR)))
		return ret;
	if (wok && demo_proc_wchar(d->directory->pid, &w1) && w1 >= w0) {
		r->central_ok = true;
		r->central_sent = w1 - w0;
	}
	p2p_totals(d, 0, M_DIR);
	return DEMO_OK;
}

static int run_flood(struct demo *d)
{
	int ret;
	printf("\n== 4. Peer-to-peer with flooding: a seed and %d nodes, each joining through 1-2 earlier ones\n",
	       d->n);
	char dir[PATH_MAX];
	if (!path_fmt(dir, "%s/flood", d->root) || !make_dir(dir))
		return DEMO_FAIL;
	if ((ret = start_nodes(d, 1)) || (ret = wait_ready(d, 1)))
		return ret;
	printf("  every node has a neighbour\n");
	if ((ret = p2p_gets(d, 1, M_FLOOD)))
		return ret;
	p2p_totals(d, 1, M_FLOOD);
	return DEMO_OK;
}

/* ---- 5. the central machine gone ---- */

static void gone_get(struct demo *d, enum model m, struct args *a, const char *cwd, bool expect_ok)
{
	struct result *r = &d->r[m];
	char out[DEMO_ERR_MAX * 4];
	int w = demo_run(cwd, GONE_TIMEOUT_MS, a->v, &r->gone_rc, &r->gone_secs, out, sizeof out, r->gone_err,
			 sizeof r->gone_err);
	if (w == DEMO_INTR)
		return;
	if (w == DEMO_TIMEOUT) {
		r->gone_rc = -1;
		snprintf(r->gone_err, sizeof r->gone_err, "no answer within %d s", GONE_TIMEOUT_MS / 1000);
	}
	r->gone_ran = true;
	r->gone_expected = expect_ok ? r->gone_rc == 0 : r->gone_rc != 0;
	printf("  %-16s %s: exit %d after %.2f s%s%s  -> %s\n", model_name[m], r->gone_what, r->gone_rc, r->gone_secs,
	       r->gone_err[0] && r->gone_rc ? ": " : "", r->gone_rc ? r->gone_err : "",
	       r->gone_expected ? "as expected" : "UNEXPECTED");
}

static int run_gone(struct demo *d)
{
	char cwd[PATH_MAX], out[PATH_MAX];
	printf("\n== 5. The central machine gone\n");
	/* client-server: the server dies, a new client tries */
	printf("  kill -9 the server (pid %d)\n", (int)d->server->pid);
	demo_kill(d->server);
	struct args a = {0};
	if (!path_fmt(cwd, "%s/cs/client-late", d->root) || !make_dir(cwd) || !path_fmt(out, "%s/%s", cwd, BIG_NAME))
		return DEMO_FAIL;
	arg(&a, "peernet");
	arg(&a, "get");
	arg(&a, "--server");
	arg(&a, "%s", d->server_addr);
	arg(&a, "--timeout");
	arg(&a, CLIENT_TIMEOUT);
	arg(&a, "%s", d->big_id);
	arg(&a, "-o");
	arg(&a, "%s", out);
	arg(&a, "--json");
	snprintf(d->r[M_CS].gone_what, sizeof d->r[M_CS].gone_what, "new get");
	gone_get(d, M_CS, &a, cwd, false);
	if (stop_now())
		return DEMO_INTR;

	/* directory: it dies, a node looks up the second file */
	printf("  kill -9 the directory (pid %d)\n", (int)d->directory->pid);
	demo_kill(d->directory);
	memset(&a, 0, sizeof a);
	if (!node_dir(d, 0, 1, cwd) || !path_fmt(out, "%s/%s", cwd, SMALL_NAME))
		return DEMO_FAIL;
	arg(&a, "peernet");
	arg(&a, "get");
	arg(&a, "--data");
	arg(&a, "%s/data", cwd);
	arg(&a, "%s", d->small_id);
	arg(&a, "-o");
	arg(&a, "%s", out);
	arg(&a, "--json");
	snprintf(d->r[M_DIR].gone_what, sizeof d->r[M_DIR].gone_what, "new get of %s", SMALL_NAME);
	gone_get(d, M_DIR, &a, cwd, false);
	if (stop_now())
		return DEMO_INTR;

	/* flood: a node (not the seed, not the asker) dies; the last node searches and gets */
	struct result *r = &d->r[M_FLOOD];
	int asker = d->n, victim = d->n >= 2 ? 1 : 0;
	if (victim) {
		printf("  kill -9 flood node %d (pid %d)\n", victim, (int)d->node[1][victim]->pid);
		demo_kill(d->node[1][victim]);
	} else {
		printf("  (one node only: nothing to kill but the seed or the asker)\n");
	}
	char control[PATH_MAX];
	if (!node_dir(d, 1, asker, cwd) || !path_fmt(out, "%s/%s", cwd, SMALL_NAME) ||
	    !node_control(d, 1, asker, control))
		return DEMO_FAIL;
	/* the search runs in this process, as `peernet search` would run it */
	double t0 = demo_now();
	bool found = false;
	int w = demo_search(control, SMALL_WORD, d->small_id, GONE_TIMEOUT_MS, &found, r->gone_err, sizeof r->gone_err);
	double s1 = demo_now() - t0;
	int rc = w == DEMO_OK ? 0 : 1;
	if (stop_now())
		return DEMO_INTR;
	char id[ID_MAX] = "";
	found = found && w == DEMO_OK;
	if (found)
		snprintf(id, sizeof id, "%s", d->small_id);
	printf("  %-16s search '%s' from node %d: exit %d after %.2f s, %s\n", model_name[M_FLOOD], SMALL_WORD, asker,
	       rc, s1, found ? "found it" : "NOT FOUND");
	snprintf(r->gone_what, sizeof r->gone_what, "get of %s", SMALL_NAME);
	if (!found) {
		r->gone_ran = true;
		r->gone_rc = rc ? rc : 1;
		r->gone_secs = s1;
		r->gone_expected = false;
		snprintf(r->gone_what, sizeof r->gone_what, "search");
		return DEMO_OK;
	}
	memset(&a, 0, sizeof a);
	arg(&a, "peernet");
	arg(&a, "get");
	arg(&a, "--data");
	arg(&a, "%s/data", cwd);
	arg(&a, "%s", id);
	arg(&a, "-o");
	arg(&a, "%s", out);
	arg(&a, "--json");
	gone_get(d, M_FLOOD, &a, cwd, true);
	r->gone_secs += s1;
	if (r->gone_rc == 0 && !same_content(out, &d->small_cid)) {
		printf("  %s does not match the original's content ID (SHA-256 hash tree)\n", out);
		r->gone_expected = false;
	}
	return stop_now() ? DEMO_INTR : DEMO_OK;
}

/* ---- 6. the table ---- */

#define COL 24
#define LABEL 30

static void row(const char *label, const char *a, const char *b, const char *c)
{
	printf("  %-*s %-*s %-*s %s\n", LABEL, label, COL, a, COL, b, c);
}

static void fmt_sent(const struct demo *d, bool ok, uint64_t bytes, char *out, size_t n)
{
	char b[32];
	if (!ok) {
		snprintf(out, n, "not measured");
		return;
	}
	demo_fmt_bytes((double)bytes, b, sizeof b);
	snprintf(out, n, "%s (%.2f F)", b, (double)bytes / (double)d->size);
}

static void print_table(const struct demo *d)
{
	char c[NMODELS][96], sz[32], rate[32];
	const struct result *r = d->r;
	demo_fmt_bytes((double)d->size, sz, sizeof sz);
	demo_fmt_bytes((double)d->rate, rate, sizeof rate);
	printf("\n== 6. The models side by side (F = %s, N = %d, every upload capped at %s/s)\n\n", sz, d->n, rate);
	row("", model_name[M_CS], model_name[M_DIR], model_name[M_FLOOD]);
	for (int m = 0; m < NMODELS; m++)
		snprintf(c[m], sizeof c[m], r[m].ran ? "%.2f s" : "not run", r[m].secs);
	row("time to distribute", c[0], c[1], c[2]);
	for (int m = 0; m < NMODELS; m++)
		snprintf(c[m], sizeof c[m], r[m].ran ? "%.2f s (%.2fx)" : "-", r[m].bound,
			 r[m].bound > 0 ? r[m].secs / r[m].bound : 0);
	row("  lower bound (time / bound)", c[0], c[1], c[2]);
	for (int m = 0; m < NMODELS; m++)
		snprintf(c[m], sizeof c[m], "%d/%d", r[m].verified, d->n);
	row("copies verified (SHA-256)", c[0], c[1], c[2]);
	fmt_sent(d, r[M_CS].central_ok, r[M_CS].central_sent, c[0], sizeof c[0]);
	if (r[M_DIR].central_ok)
		demo_fmt_bytes((double)r[M_DIR].central_sent, c[1], sizeof c[1]);
	else
		snprintf(c[1], sizeof c[1], "not measured");
	snprintf(c[2], sizeof c[2], "none: no central machine");
	row("bytes the central machine sent", c[0], c[1], c[2]);
	snprintf(c[0], sizeof c[0], "(the server)");
	fmt_sent(d, r[M_DIR].origin_ok, r[M_DIR].origin_sent, c[1], sizeof c[1]);
	fmt_sent(d, r[M_FLOOD].origin_ok, r[M_FLOOD].origin_sent, c[2], sizeof c[2]);
	row("bytes the seed sent", c[0], c[1], c[2]);
	snprintf(c[0], sizeof c[0], "0: knows the server");
	for (int m = M_DIR; m < NMODELS; m++) {
		if (r[m].msgs_ok)
			snprintf(c[m], sizeof c[m], "%.1f (%llu / %llu)", (double)r[m].msgs / (double)r[m].lookups,
				 (unsigned long long)r[m].msgs, (unsigned long long)r[m].lookups);
		else
			snprintf(c[m], sizeof c[m], "not measured");
	}
	row("messages per look-up", c[0], c[1], c[2]);
	static const char *const claim[NMODELS] = {"new downloads fail", "new look-ups fail", "still works"};
	for (int m = 0; m < NMODELS; m++)
		snprintf(c[m], sizeof c[m], "%s%s", r[m].gone_ran ? claim[m] : "not measured",
			 r[m].gone_ran && !r[m].gone_expected ? " - NOT SO" : "");
	row("central machine gone", c[0], c[1], c[2]);
	for (int m = 0; m < NMODELS; m++)
		snprintf(c[m], sizeof c[m], r[m].gone_ran ? "exit %d in %.2f s" : "-", r[m].gone_rc, r[m].gone_secs);
	row("  measured", c[0], c[1], c[2]);
	printf("\n  lower bounds (downloads uncapped): client-server N*F/u_s; peer-to-peer max(F/u_s, N*F/(u_s+N*u))\n"
	       "  bytes: the server's and the directory's write(2) bytes (/proc/PID/io wchar) during the\n"
	       "  distribution; the seed's bytes_uploaded. Messages: directory requests, or flood queries\n"
	       "  and hits sent by every node, per look-up the nodes started.\n");
}

/* ---- the command ---- */

static int run(struct demo *d)
{
	char sz[32], rate[32], hex[PN_CID_STR_LEN + 1];
	int ret;
	demo_fmt_bytes((double)d->size, sz, sizeof sz);
	demo_fmt_bytes((double)d->rate, rate, sizeof rate);
	printf("peernet demo: %d downloaders, a %s file, every upload capped at %s/s\n", d->n, sz, rate);
	printf("  working in %s\n", d->root);
	printf("\n== 1. A random file\n");
	if (!path_fmt(d->big, "%s/%s", d->root, BIG_NAME) || !path_fmt(d->small, "%s/%s", d->root, SMALL_NAME))
		return DEMO_FAIL;
	if (!make_file(d->big, d->size, &d->big_cid) || !make_file(d->small, SMALL_SIZE, &d->small_cid))
		return stop_now() ? DEMO_INTR : DEMO_FAIL;
	pn_cid_format(&d->big_cid, hex);
	printf("  %s  %s, content ID %s\n", BIG_NAME, sz, hex);
	if ((ret = run_cs(d)) || (ret = run_dir(d)) || (ret = run_flood(d)) || (ret = run_gone(d)))
		return ret;
	print_table(d);
	return DEMO_OK;
}

int cmd_demo(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"nodes", required_argument, NULL, 'n'},
		{"size", required_argument, NULL, 's'},
		{"up-rate", required_argument, NULL, 'U'},
		{"keep", no_argument, NULL, 'k'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	static struct demo d;
	const char *size = DEFAULT_SIZE, *rate = DEFAULT_RATE;
	uint32_t n = DEFAULT_NODES;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'n':
			if (!cli_parse_uint(optarg, 1, MAX_NODES, &n))
				return cli_usage_err("demo", "bad --nodes '%s': expected 1 to %d", optarg, MAX_NODES);
			break;
		case 's': size = optarg; break;
		case 'U': rate = optarg; break;
		case 'k': d.keep = true; break;
		case 'h': fputs(demo_help, stdout); return PN_EXIT_OK;
		default: return cli_usage_err("demo", "unknown option");
		}
	}
	if (optind < argc)
		return cli_usage_err("demo", "unexpected argument '%s'", argv[optind]);
	if (!parse_size(size, &d.size))
		return cli_usage_err("demo", "bad --size '%s': expected 1K to 4G, e.g. 512K, 16M", size);
	if (pn_parse_rate(rate, &d.rate) != 0 || d.rate == 0)
		return cli_usage_err("demo", "bad --up-rate '%s': expected a rate such as 500K or 2M", rate);
	d.n = (int)n;
	d.tty = isatty(STDOUT_FILENO);
	unsetenv("PEERNET_SERVER"); /* every command gets its server explicitly */
	srand((unsigned)(getpid() ^ (unsigned)(demo_now() * 1000)));

	const char *tmp = getenv("TMPDIR");
	if (!tmp || !*tmp || strlen(tmp) > 64)
		tmp = "/tmp"; /* control sockets need short paths */
	if (!path_fmt(d.root, "%s/peernet-demo-XXXXXX", tmp) || !mkdtemp(d.root)) {
		cli_err("demo", "cannot create a temporary directory in %s: %s", tmp, strerror(errno));
		return PN_EXIT_FAIL;
	}
	demo_install_signals();
	int ret = run(&d);
	if (ret == DEMO_INTR || stop_now())
		fprintf(stderr, "\npeernet demo: interrupted; stopping everything it started\n");
	int nrun = demo_running_count();
	demo_stop_all(DEMO_STOP_GRACE_MS);
	printf("\n  stopped the %d processes still running\n", nrun);
	if (d.keep)
		printf("  kept %s\n", d.root);
	else
		demo_rmtree(d.root);
	if (ret == DEMO_INTR || stop_now())
		return 130;
	if (ret != DEMO_OK)
		return PN_EXIT_FAIL;
	for (int m = 0; m < NMODELS; m++) {
		if (d.r[m].verified != d.n || !d.r[m].gone_expected) {
			cli_err("demo", "%s did not go as expected (see above)", model_name[m]);
			return PN_EXIT_FAIL;
		}
	}
	return PN_EXIT_OK;
}
