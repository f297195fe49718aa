/*
 * Private to the `fotactl release` files (release*.c): the subcommands and the helpers they
 * share. Every helper that reports returns the exit code to return.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "bundle.h"
#include "fotactl.h"

/* Inputs (bundles, images, manifests) are read whole; bigger files are refused. */
#define MAX_FILE (256u * 1024 * 1024)

/* "fotactl: " @fmt [": " strerror(@err)]; FOTACTL_EXIT_FAILED. */
int rel_fail(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A usage mistake described by @msg; FOTACTL_EXIT_USAGE. */
int rel_usage_error(const char *msg);
/* getopt has already named the option: only point at the usage. */
int rel_bad_option(char **argv);
/* A value an option does not accept: name both. */
int rel_bad_value(const char *opt, const char *value, const char *expected);
/* An operand too many. */
int rel_extra_operand(const char *arg);
/* The regular file @path, at most @max bytes, NUL-terminated; 0 or -errno. */
int rel_read_file(const char *path, size_t max, uint8_t **ret, size_t *ret_len);
/* Why lib/bundle refused @what, on stderr. */
void rel_print_reject(const char *what, const struct fgw_reject *why);

/* release-inspect.c */
int rel_cmd_inspect(const struct fotactl_ctx *ctx, int argc, char **argv);
/* release-make.c */
int rel_cmd_make_image(int argc, char **argv);
int rel_cmd_make_bundle(int argc, char **argv);
