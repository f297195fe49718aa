/*
 * fotactl: global options anywhere on the line, --help and --version for every command and
 * subcommand, then one command from the table.
 */
#define _GNU_SOURCE /* strchrnul */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fotactl.h"
#include "ops-client.h"
#include "util.h"

#ifndef FGW_VERSION
#define FGW_VERSION "unknown"
#endif

/* Ops commands without --url ask the gateway's config ([api] listen, port). */
#define DEFAULT_URL "[api] of " FOTACTL_DEFAULT_CONFIG ", else http://127.0.0.1:8370"

/* Add ops commands here (devices, device, rollout, releases, pause, resume, retry, watch). */
static const struct fotactl_command commands[] = {
    {"release", "fotactl release", fotactl_release, fotactl_release_usage},
    {"keygen", "fotactl keygen", fotactl_keygen,
     "keygen ...                     same as release keygen\n"},
    {"sign-manifest", "fotactl sign-manifest", fotactl_sign_manifest,
     "sign-manifest ...              same as release sign\n"},
    {"devices", "fotactl devices", fotactl_devices, fotactl_ops_usage},
    {"device", "fotactl device", fotactl_device, ""},
    {"rollout", "fotactl rollout", fotactl_rollout, ""},
    {"releases", "fotactl releases", fotactl_releases, ""},
    {"pause", "fotactl pause", fotactl_pause, ""},
    {"resume", "fotactl resume", fotactl_resume, ""},
    {"retry", "fotactl retry", fotactl_retry, ""},
    {"watch", "fotactl watch", fotactl_watch, fotactl_watch_usage},
};

static const char global_usage[] =
    "Global options, before or after the command:\n"
    "  --url URL         fotagwd REST API (default " DEFAULT_URL ")\n"
    "  --token T         bearer token for changes (pause, resume, retry)\n"
    "  --token-file F    read it from F (default: [api] token_file of the config)\n"
    "  --config F        gateway config the ops commands read (default " FOTACTL_DEFAULT_CONFIG
    ")\n"
    "  --json            machine-readable output\n"
    "  -h, --help        usage (of the command or subcommand it follows)\n"
    "  -V, --version     print the version\n";

static void usage(FILE *out)
{
	fprintf(out, "Usage: fotactl [OPTIONS] COMMAND [SUBCOMMAND] [ARGS]\n%sCommands:\n",
		global_usage);
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
		fprintf(out, "%s", commands[i].usage);
}

/* The command's usage lines that start with @prefix, each with its continuation lines. */
static bool print_entries(const char *text, const char *prefix)
{
	size_t n = strlen(prefix);
	bool in = false, any = false;

	for (const char *l = text; *l;) {
		const char *e = strchrnul(l, '\n');

		if (*l != ' ') /* an entry starts; indented lines continue it */
			in = strncmp(l, prefix, n) == 0 && (l[n] == ' ' || l[n] == '\n');
		if (in) {
			printf("%.*s\n", (int) (e - l), l);
			any = true;
		}
		l = *e ? e + 1 : e;
	}
	return any;
}

static const struct fotactl_command *find_command(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
		if (strcmp(name, commands[i].name) == 0)
			return &commands[i];
	return NULL;
}

/* --help after a command: its own lines (and the ops options), else everything. */
static int help(const char *cmd, const char *sub)
{
	char prefix[96];

	if (!cmd) {
		usage(stdout);
		return FOTACTL_EXIT_OK;
	}
	if (strcmp(cmd, "keygen") == 0 || strcmp(cmd, "sign-manifest") == 0) {
		printf("fotactl %s: same as fotactl release %s\n", cmd,
		       cmd[0] == 'k' ? "keygen" : "sign");
		sub = cmd[0] == 'k' ? "keygen" : "sign";
		cmd = "release";
	}
	if (strcmp(cmd, "release") == 0 && sub && fotactl_release_has_sub(sub))
		snprintf(prefix, sizeof(prefix), "release %s", sub);
	else
		snprintf(prefix, sizeof(prefix), "%s", cmd);
	printf("Usage: fotactl [OPTIONS] %s ...\n", prefix);
	if (!print_entries(fotactl_release_usage, prefix) &&
	    !print_entries(fotactl_ops_usage, prefix) &&
	    !print_entries(fotactl_watch_usage, prefix))
		return FOTACTL_EXIT_USAGE;
	printf("%s", global_usage);
	return FOTACTL_EXIT_OK;
}

enum global { G_URL, G_TOKEN, G_TOKEN_FILE, G_CONFIG, G_JSON, G_HELP, G_VERSION };

static const struct {
	const char *name;
	enum global id;
	bool arg;
} globals[] = {
    {"--url", G_URL, true},
    {"--token", G_TOKEN, true},
    {"--token-file", G_TOKEN_FILE, true},
    {"--config", G_CONFIG, true},
    {"--json", G_JSON, false},
    {"--help", G_HELP, false},
    {"-h", G_HELP, false},
    {"--version", G_VERSION, false},
    {"-V", G_VERSION, false},
};

/* Index of the global option @a is (also "--url=X"), or -1. */
static int global_index(const char *a)
{
	for (size_t k = 0; k < ARRAY_SIZE(globals); k++) {
		size_t n = strlen(globals[k].name);

		if (strncmp(a, globals[k].name, n) == 0 &&
		    (a[n] == '\0' || (globals[k].arg && a[n] == '=')))
			return (int) k;
	}
	return -1;
}

/*
 * Takes the global options out of argv wherever they are (up to "--"), so that the command
 * sees only its own. Returns -1 to go on, else an exit code (help, version, usage error).
 */
static int take_globals(int *argc, char **argv, struct fotactl_ctx *ctx)
{
	const char *cmd = NULL, *sub = NULL;
	bool want_help = false, want_version = false;
	int out = 1;

	for (int i = 1; i < *argc; i++) {
		const char *a = argv[i], *val = NULL;
		int k = global_index(a);

		if (strcmp(a, "--") == 0) { /* the rest is the command's, untouched */
			while (i < *argc)
				argv[out++] = argv[i++];
			break;
		}
		/* make-image's --version VALUE is the image's version (the older spelling) */
		if (k >= 0 && globals[k].id == G_VERSION && a[1] == '-' && sub &&
		    strcmp(sub, "make-image") == 0 && i + 1 < *argc && argv[i + 1][0] != '-')
			k = -1;
		if (k < 0) {
			if (a[0] != '-' && !cmd)
				cmd = a;
			else if (a[0] != '-' && !sub && strcmp(cmd, "release") == 0)
				sub = a;
			argv[out++] = argv[i];
			continue;
		}
		if (globals[k].arg) {
			size_t n = strlen(globals[k].name);

			if (a[n] == '=')
				val = a + n + 1;
			else if (i + 1 < *argc)
				val = argv[++i];
			else {
				fprintf(stderr, "fotactl: option '%s' needs a value\n", a);
				return FOTACTL_EXIT_USAGE;
			}
		}
		switch (globals[k].id) {
		case G_URL:
			ctx->url = val;
			break;
		case G_TOKEN:
			ctx->token = val;
			break;
		case G_TOKEN_FILE:
			ctx->token_file = val;
			break;
		case G_CONFIG:
			ctx->config = val;
			break;
		case G_JSON:
			ctx->json = true;
			break;
		case G_HELP:
			want_help = true;
			break;
		case G_VERSION:
			want_version = true;
			break;
		}
	}
	argv[out] = NULL;
	*argc = out;
	if (want_help)
		return help(cmd, sub);
	if (want_version) {
		puts("fotactl " FGW_VERSION);
		return FOTACTL_EXIT_OK;
	}
	return -1;
}

int main(int argc, char **argv)
{
	struct fotactl_ctx ctx = {0}; /* url NULL: ops commands find it in the config */
	const struct fotactl_command *cmd;
	int r;

	r = take_globals(&argc, argv, &ctx);
	if (r >= 0)
		return r;
	if (argc < 2) {
		fprintf(stderr, "fotactl: no command given\n");
		usage(stderr);
		return FOTACTL_EXIT_USAGE;
	}
	if (argv[1][0] == '-') {
		fprintf(stderr,
			"fotactl: unknown option '%s' (or a command's option before the "
			"command)\n",
			argv[1]);
		return FOTACTL_EXIT_USAGE;
	}
	cmd = find_command(argv[1]);
	if (!cmd) {
		fprintf(stderr, "fotactl: unknown command '%s' (fotactl --help lists them)\n",
			argv[1]);
		return FOTACTL_EXIT_USAGE;
	}
	fgw_log_set_level(LOG_WARNING);
	optind = 0;		      /* full getopt reset for the command's own parsing */
	argv[1] = (char *) cmd->prog; /* getopt's messages name "fotactl COMMAND" */
	return cmd->run(&ctx, argc - 1, argv + 1);
}
