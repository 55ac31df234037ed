/* peernet demo machinery: child processes (all re-executions of this
 * binary), their pipes (stdout kept, the last stderr line kept as the
 * message of a failure), bounded waits, reading the JSON that status,
 * search and get print, hashing, and cleanup. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "demo.h"

#define SELF_EXE "/proc/self/exe"
#define READ_CHUNK 4096
#define PORT_POLL_MS 50

volatile sig_atomic_t demo_interrupted;

static struct demo_child children[DEMO_MAX_CHILDREN];

double demo_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void on_signal(int sig)
{
	demo_interrupted = sig;
}

void demo_install_signals(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal; /* no SA_RESTART: poll() returns at once */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
}

/* In the child after fork: only async-signal-safe calls. */
static void child_exec(const char *cwd, int in_fd, int out_fd, int err_fd, char *const argv[])
{
	sigset_t none;
	setpgid(0, 0); /* a Ctrl-C reaches the demo only; it stops the rest in order */
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (dup2(in_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0)
		_exit(127);
	if (cwd && chdir(cwd) != 0)
		_exit(127);
	execv(SELF_EXE, argv);
	_exit(127);
}

struct demo_child *demo_spawn(const char *name, const char *cwd, const char *log_path, char *const argv[])
{
	struct demo_child *c = NULL;
	for (int i = 0; i < DEMO_MAX_CHILDREN && !c; i++)
		if (!children[i].used)
			c = &children[i];
	if (!c) {
		fprintf(stderr, "peernet demo: more than %d processes at once\n", DEMO_MAX_CHILDREN);
		return NULL;
	}
	int in_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	int out_p[2] = {-1, -1}, err_p[2] = {-1, -1}, log_fd = -1;
	if (in_fd < 0)
		goto fail;
	if (log_path) {
		log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (log_fd < 0)
			goto fail;
	} else if (pipe2(out_p, O_CLOEXEC) != 0 || pipe2(err_p, O_CLOEXEC) != 0) {
		goto fail;
	}
	char *out = NULL;
	if (!log_path && !(out = malloc(DEMO_OUT_MAX + 1)))
		goto fail;
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		free(out);
		goto fail;
	}
	if (pid == 0)
		child_exec(cwd, in_fd, log_path ? log_fd : out_p[1], log_path ? log_fd : err_p[1], argv);
	memset(c, 0, sizeof *c);
	c->used = c->running = true;
	c->pid = pid;
	snprintf(c->name, sizeof c->name, "%s", name);
	c->t_start = demo_now();
	c->out = out;
	if (out)
		out[0] = 0;
	c->out_fd = out_p[0];
	c->err_fd = err_p[0];
	if (c->out_fd >= 0) {
		fcntl(c->out_fd, F_SETFL, O_NONBLOCK);
		fcntl(c->err_fd, F_SETFL, O_NONBLOCK);
	}
	close(in_fd);
	if (log_fd >= 0)
		close(log_fd);
	if (out_p[1] >= 0)
		close(out_p[1]);
	if (err_p[1] >= 0)
		close(err_p[1]);
	return c;
fail:
	fprintf(stderr, "peernet demo: cannot start %s: %s\n", name, strerror(errno));
	int fds[] = {in_fd, log_fd, out_p[0], out_p[1], err_p[0], err_p[1]};
	for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	return NULL;
}

/* One line of stderr (ended by \r or \n): kept, trimmed, as the message
 * to show if the command fails. Nothing else is read from it. */
static void take_segment(struct demo_child *c, char *seg)
{
	while (*seg == ' ')
		seg++;
	size_t n = strlen(seg);
	while (n && (seg[n - 1] == ' ' || seg[n - 1] == '\t'))
		seg[--n] = 0;
	if (n)
		snprintf(c->err_line, sizeof c->err_line, "%s", seg);
}

static void take_stderr(struct demo_child *c, const char *data, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char ch = data[i];
		if (ch == '\r' || ch == '\n') {
			c->pend[c->pend_len] = 0;
			take_segment(c, c->pend);
			c->pend_len = 0;
		} else if (c->pend_len < sizeof c->pend - 1) {
			c->pend[c->pend_len++] = ch;
		} /* longer lines are cut */
	}
}

/* Reads what is there; closes the fd on EOF or error. */
static void drain(struct demo_child *c, int *fd, bool is_out)
{
	char buf[READ_CHUNK];
	for (;;) {
		ssize_t r = read(*fd, buf, sizeof buf);
		if (r > 0) {
			if (!is_out) {
				take_stderr(c, buf, (size_t)r);
				continue;
			}
			size_t room = DEMO_OUT_MAX - c->out_len, k = (size_t)r < room ? (size_t)r : room;
			memcpy(c->out + c->out_len, buf, k);
			c->out_len += k;
			c->out[c->out_len] = 0;
			continue;
		}
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (!is_out && c->pend_len) {
			c->pend[c->pend_len] = 0;
			take_segment(c, c->pend);
			c->pend_len = 0;
		}
		close(*fd);
		*fd = -1;
		return;
	}
}

static void reap(void)
{
	for (int i = 0; i < DEMO_MAX_CHILDREN; i++) {
		struct demo_child *c = &children[i];
		if (!c->used || !c->running)
			continue;
		int st;
		pid_t r = waitpid(c->pid, &st, WNOHANG);
		if (r == c->pid) {
			c->running = false;
			c->t_end = demo_now();
			c->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		} else if (r < 0 && errno == ECHILD) {
			c->running = false;
			c->t_end = demo_now();
			c->status = 255;
		}
	}
}

void demo_pump(int timeout_ms)
{
	struct pollfd pfd[2 * DEMO_MAX_CHILDREN];
	struct demo_child *who[2 * DEMO_MAX_CHILDREN];
	int n = 0;
	for (int i = 0; i < DEMO_MAX_CHILDREN; i++) {
		struct demo_child *c = &children[i];
		if (!c->used)
			continue;
		if (c->out_fd >= 0) {
			pfd[n] = (struct pollfd){.fd = c->out_fd, .events = POLLIN};
			who[n++] = c;
		}
		if (c->err_fd >= 0) {
			pfd[n] = (struct pollfd){.fd = c->err_fd, .events = POLLIN};
			who[n++] = c;
		}
	}
	if (poll(pfd, (nfds_t)n, timeout_ms) > 0) {
		for (int i = 0; i < n; i++) {
			if (!pfd[i].revents)
				continue;
			struct demo_child *c = who[i];
			if (pfd[i].fd == c->out_fd)
				drain(c, &c->out_fd, true);
			else if (pfd[i].fd == c->err_fd)
				drain(c, &c->err_fd, false);
		}
	}
	reap();
}

static void close_pipes(struct demo_child *c)
{
	if (c->out_fd >= 0)
		close(c->out_fd);
	if (c->err_fd >= 0)
		close(c->err_fd);
	c->out_fd = c->err_fd = -1;
}

void demo_release(struct demo_child *c)
{
	if (!c || c->running)
		return;
	close_pipes(c);
	free(c->out);
	c->out = NULL;
	c->used = false;
}

/* Reaps c for up to ms; true once it is gone. */
static bool wait_gone(struct demo_child *c, int ms)
{
	double deadline = demo_now() + ms / 1000.0;
	for (;;) {
		reap();
		if (!c->running)
			return true;
		if (demo_now() >= deadline)
			return false;
		usleep(20 * 1000);
	}
}

void demo_kill(struct demo_child *c)
{
	if (!c || !c->running)
		return;
	kill(c->pid, SIGKILL);
	if (!wait_gone(c, DEMO_STOP_GRACE_MS))
		fprintf(stderr, "peernet demo: %s (pid %d) survives SIGKILL\n", c->name, (int)c->pid);
}

void demo_stop_all(int grace_ms)
{
	for (int i = 0; i < DEMO_MAX_CHILDREN; i++)
		if (children[i].used && children[i].running)
			kill(children[i].pid, SIGTERM);
	double deadline = demo_now() + grace_ms / 1000.0;
	while (demo_running_count() && demo_now() < deadline) {
		reap();
		usleep(20 * 1000);
	}
	for (int i = 0; i < DEMO_MAX_CHILDREN; i++) {
		struct demo_child *c = &children[i];
		if (c->used && c->running) {
			fprintf(stderr, "peernet demo: %s (pid %d) did not stop on SIGTERM; killing it\n", c->name,
				(int)c->pid);
			demo_kill(c);
		}
	}
	for (int i = 0; i < DEMO_MAX_CHILDREN; i++)
		if (children[i].used)
			demo_release(&children[i]);
}

int demo_running_count(void)
{
	int n = 0;
	for (int i = 0; i < DEMO_MAX_CHILDREN; i++)
		n += children[i].used && children[i].running;
	return n;
}

int demo_run(const char *cwd, int timeout_ms, char *const argv[], int *rc, double *secs, char *out, size_t outsz,
	     char *err, size_t errsz)
{
	struct demo_child *c = demo_spawn(argv[1] ? argv[1] : argv[0], cwd, NULL, argv);
	if (!c)
		return DEMO_FAIL;
	double deadline = c->t_start + timeout_ms / 1000.0;
	int r = DEMO_OK;
	while (c->running || c->out_fd >= 0 || c->err_fd >= 0) {
		if (demo_interrupted) {
			r = DEMO_INTR;
			break;
		}
		if (demo_now() >= deadline) {
			r = DEMO_TIMEOUT;
			break;
		}
		demo_pump(DEMO_TICK_MS);
		/* a grandchild holding the pipes must not keep us waiting */
		if (!c->running && demo_now() > c->t_end + 1.0)
			break;
	}
	if (r != DEMO_OK)
		demo_kill(c);
	if (rc)
		*rc = c->status;
	if (secs)
		*secs = (c->running ? demo_now() : c->t_end) - c->t_start;
	if (out && outsz)
		snprintf(out, outsz, "%s", c->out);
	if (err && errsz)
		snprintf(err, errsz, "%s", c->err_line);
	demo_release(c);
	return r;
}

int demo_wait_port(struct demo_child *c, const char *port_file, int timeout_ms, unsigned *port)
{
	double deadline = demo_now() + timeout_ms / 1000.0;
	for (;;) {
		FILE *f = fopen(port_file, "r");
		if (f) {
			unsigned p;
			int got = fscanf(f, "%u", &p);
			fclose(f);
			if (got == 1 && p > 0 && p < 65536) {
				*port = p;
				return DEMO_OK;
			}
		}
		reap();
		if (!c->running)
			return DEMO_FAIL;
		if (demo_interrupted)
			return DEMO_INTR;
		if (demo_now() >= deadline)
			return DEMO_TIMEOUT;
		usleep(PORT_POLL_MS * 1000);
	}
}

bool demo_proc_wchar(pid_t pid, uint64_t *out)
{
	char path[64], line[128];
	snprintf(path, sizeof path, "/proc/%d/io", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return false;
	bool ok = false;
	while (fgets(line, sizeof line, f)) {
		unsigned long long v;
		if (sscanf(line, "wchar: %llu", &v) == 1) {
			*out = v;
			ok = true;
			break;
		}
	}
	fclose(f);
	return ok;
}

void demo_fmt_bytes(double b, char *out, size_t n)
{
	static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	int u = 0;
	while (b >= 1024 && u < 4) {
		b /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(out, n, "%.0f B", b);
	else
		snprintf(out, n, "%.1f %s", b, units[u]);
}

static int rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	if (type == FTW_DP)
		rmdir(path);
	else
		unlink(path);
	return 0;
}

void demo_rmtree(const char *path)
{
	nftw(path, rm_one, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}
