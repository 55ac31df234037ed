/* peernet: one program for every role. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include "cli.h"
#include <peernet.h>

static const char usage[] =
	"usage: peernet COMMAND [OPTIONS]\n"
	"\n"
	"Client-server model:\n"
	"  serve   run the central server          peernet serve --listen 0.0.0.0:7070 --data DIR\n"
	"  put     upload files to a server        peernet put --server HOST:PORT FILE...\n"
	"  get     download by content ID          peernet get --server HOST:PORT ID [-o PATH]\n"
	"  ls      list what a server holds        peernet ls --server HOST:PORT [--json]\n"
	"\n"
	"Peer-to-peer model:\n"
	"  directory  run the central look-up service   peernet directory --listen 0.0.0.0:7071\n"
	"  node    run a peer                      peernet node --listen 0.0.0.0:7072 --directory HOST:7071\n"
	"  add     share files through the node    peernet add FILE...\n"
	"  search  keyword search on the network   peernet search WORDS...\n"
	"  get     swarm download (no --server)    peernet get ID [-o PATH]\n"
	"  status  the node's peers, shares, transfers  peernet status [--json]\n"
	"  stop    stop the node                   peernet stop\n"
	"\n"
	"Both models side by side:\n"
	"  demo    distribute one file three ways on loopback, compare  peernet demo [--nodes N]\n"
	"\n"
	"Run 'peernet COMMAND --help' for a command's options.\n"
	"'peernet --version' prints the version; every command takes --help. PEERNET_LOG=debug|info|warn|error sets the log level.\n";

struct command {
	const char *name;
	int (*fn)(int argc, char **argv);
};

static const struct command commands[] = {
	{"serve", cmd_serve},
	{"put", cmd_put},
	{"get", cmd_get},
	{"ls", cmd_ls},
	{"node", cmd_node},
	{"directory", cmd_directory},
	{"add", cmd_add},
	{"search", cmd_search},
	{"status", cmd_status},
	{"stop", cmd_stop},
	{"demo", cmd_demo},
};

/* Many connections (a busy server, a benchmark) need more descriptors than the
 * default soft limit; raise it to the hard limit. */
static void raise_fd_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* libuv's thread pool hashes and writes the chunks a download receives. Its
 * default of 4 threads on a machine of 2 cores has them fight the loop
 * thread, which decrypts, and each other over the file's lock: leave the
 * loop a core of its own, 1 to 4 threads. The user's UV_THREADPOOL_SIZE wins.
 * (On 2 cores, 256 MiB from serve to get --server on loopback took about 8%
 * less time with 1 thread than with 4, measured side by side.) */
static void size_thread_pool(void)
{
	if (getenv("UV_THREADPOOL_SIZE"))
		return;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	long n = cpus - 1 < 1 ? 1 : cpus - 1 > 4 ? 4 : cpus - 1;
	char v[8];
	snprintf(v, sizeof v, "%ld", n);
	setenv("UV_THREADPOOL_SIZE", v, 0);
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN); /* a closed socket is an error to handle, not a reason to die */
	cli_log_init_from_env();
	raise_fd_limit();
	size_thread_pool();
	if (argc < 2) {
		fputs(usage, stderr);
		return PN_EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		fputs(usage, stdout);
		return PN_EXIT_OK;
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V") || !strcmp(argv[1], "version")) {
		printf("peernet %s (protocol %d)\n", PN_VERSION_STRING, PN_PROTOCOL_VERSION);
		return PN_EXIT_OK;
	}
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].fn(argc - 1, argv + 1);
	}
	fprintf(stderr, "peernet: unknown command '%s' (try 'peernet --help')\n", argv[1]);
	return PN_EXIT_USAGE;
}
