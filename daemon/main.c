/* fotagwd: arguments, then the daemon context does the rest. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <uv.h>

#include "daemon.h"
#include "util.h"

#define DEFAULT_CONFIG "/etc/fotagw/fotagw.conf"

/* Exit codes: 0 ok, 1 failed at run time, 2 bad usage or bad configuration. */
enum { EXIT_USAGE = 2 };

static void usage(FILE *out)
{
	fprintf(out, "Usage: fotagwd [--config FILE] [--check-config] (options in any order)\n"
		     "  -c, --config FILE    configuration file (default " DEFAULT_CONFIG ")\n"
		     "      --check-config   validate the configuration and exit (2 if bad)\n"
		     "  -V, --version        print the version\n"
		     "  -h, --help           this text\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"check-config", no_argument, NULL, 'C'},
	    {"version", no_argument, NULL, 'V'},
	    {"help", no_argument, NULL, 'h'},
	    {},
	};
	const char *config = DEFAULT_CONFIG;
	bool check_only = false;
	struct fgw_daemon d;
	uv_loop_t loop;
	int c, r;

	/* getopt has named a bad option itself ("unrecognized option '--x'") */
	while ((c = getopt_long(argc, argv, "c:hV", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			config = optarg;
			break;
		case 'C':
			check_only = true;
			break;
		case 'V':
			puts("fotagwd " FGW_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			fprintf(stderr, "Try 'fotagwd --help'.\n");
			return EXIT_USAGE;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "fotagwd: unexpected argument '%s' (fotagwd takes options only)\n",
			argv[optind]);
		return EXIT_USAGE;
	}

	if (uv_loop_init(&loop) < 0)
		return EXIT_FAILURE;
	r = fgw_daemon_init(&d, &loop, config);
	if (r < 0) {
		fgw_error("Configuration '%s' is not valid", config);
		fgw_daemon_done(&d);
		uv_loop_close(&loop);
		return EXIT_USAGE;
	}
	if (check_only) {
		fgw_daemon_done(&d);
		uv_loop_close(&loop);
		printf("%s: ok\n", config);
		return 0;
	}
	r = fgw_daemon_start(&d);
	if (r < 0)
		fgw_daemon_stop(&d);
	uv_run(&loop, UV_RUN_DEFAULT);
	fgw_daemon_done(&d);
	if (uv_loop_close(&loop) != 0)
		fgw_warning("Event loop closed with handles still open");
	if (r < 0)
		return EXIT_FAILURE;
	fgw_notice("event: stopped");
	return 0;
}
