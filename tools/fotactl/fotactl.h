/*
 * fotactl: the command-line tool for both sides of fotagw. Release side (release.c): keys,
 * manifest signing, MCUboot images and NCS bundles, all offline. Ops side (talks to fotagwd's
 * REST API): each command group lives in its own file and adds one line to the table in
 * main.c. A command returns a process exit code: 0 ok, 1 failed or refused, 2 bad usage.
 */
#pragma once

#include <stdbool.h>
#include <stdio.h>

enum {
	FOTACTL_EXIT_OK = 0,
	FOTACTL_EXIT_FAILED = 1,
	FOTACTL_EXIT_USAGE = 2,
};

/* The global options (anywhere on the line), for the commands that talk to fotagwd. */
struct fotactl_ctx {
	const char *url;	/* --url; NULL: from the gateway config (ops-client.c) */
	const char *token;	/* --token, NULL if none */
	const char *token_file; /* --token-file, NULL: [api] token_file of the config */
	const char *config;	/* --config, NULL: FOTACTL_DEFAULT_CONFIG if it exists */
	bool json;		/* --json: machine-readable output */
};

struct fotactl_command {
	const char *name;
	const char *prog; /* "fotactl NAME", argv[0] for the command (getopt's messages) */
	/* argv[0] is the command name; getopt state is reset before the call. */
	int (*run)(const struct fotactl_ctx *ctx, int argc, char **argv);
	const char *usage; /* one line per form, for `fotactl --help` */
};

/* release.c */
int fotactl_release(const struct fotactl_ctx *ctx, int argc, char **argv);
/* `fotactl keygen` and `fotactl sign-manifest`: the short names design.md uses. */
int fotactl_keygen(const struct fotactl_ctx *ctx, int argc, char **argv);
int fotactl_sign_manifest(const struct fotactl_ctx *ctx, int argc, char **argv);
extern const char fotactl_release_usage[];
/* Whether @name is a subcommand of `fotactl release`. */
bool fotactl_release_has_sub(const char *name);

/* devices.c: `fotactl devices enroll | import | forget` (argv[1] is the verb). */
bool fotactl_devices_is_change(int argc, char **argv);
int fotactl_devices_change(const struct fotactl_ctx *ctx, int argc, char **argv);
