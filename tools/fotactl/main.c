/* fotactl: global options, then one command from the table. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fotactl.h"
#include "ops-client.h"
#include "util.h"

/* Ops commands without --url ask the gateway's config ([api] listen, port). */
#define DEFAULT_URL "[api] of " FOTACTL_DEFAULT_CONFIG ", else http://127.0.0.1:8370"

/* Add ops commands here (devices, device, rollout, releases, pause, resume, retry, watch). */
static const struct fotactl_command commands[] = {
	{"release", fotactl_release, fotactl_release_usage},
	{"keygen", fotactl_keygen, "keygen ...                     same as release keygen\n"},
	{"sign-manifest", fotactl_sign_manifest,
	 "sign-manifest ...              same as release sign\n"},
	{"devices", fotactl_devices, fotactl_ops_usage},
	{"device", fotactl_device, ""},
	{"rollout", fotactl_rollout, ""},
	{"releases", fotactl_releases, ""},
	{"pause", fotactl_pause, ""},
	{"resume", fotactl_resume, ""},
	{"retry", fotactl_retry, ""},
	{"watch", fotactl_watch, fotactl_watch_usage},
};

static void usage(FILE *out)
{
	fprintf(out, "Usage: fotactl [--url URL] [--token T] [--json] COMMAND ...\n"
		     "  --url URL      fotagwd REST API (default " DEFAULT_URL ")\n"
		     "  --token T      bearer token for changes\n"
		     "  --json         machine-readable output\n"
		     "Commands:\n");
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
		fprintf(out, "%s", commands[i].usage);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"url", required_argument, NULL, 'u'},
		{"token", required_argument, NULL, 't'},
		{"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},
		{},
	};
	struct fotactl_ctx ctx = {0}; /* url NULL: ops commands find it in the config */
	int c;

	/* "+": stop at the command, whose own options follow it */
	while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		switch (c) {
		case 'u':
			ctx.url = optarg;
			break;
		case 't':
			ctx.token = optarg;
			break;
		case 'j':
			ctx.json = true;
			break;
		case 'h':
			usage(stdout);
			return FOTACTL_EXIT_OK;
		default:
			usage(stderr);
			return FOTACTL_EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return FOTACTL_EXIT_USAGE;
	}
	fgw_log_set_level(LOG_WARNING);
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
		if (strcmp(argv[optind], commands[i].name) == 0) {
			char **sub = argv + optind;
			int n = argc - optind;
			optind = 0; /* full getopt reset for the command's own parsing */
			return commands[i].run(&ctx, n, sub);
		}
	fprintf(stderr, "fotactl: unknown command '%s'\n", argv[optind]);
	usage(stderr);
	return FOTACTL_EXIT_USAGE;
}
