/*
 * fotactl devices enroll | import | forget: enrollment over fotagwd's REST API. A passkey
 * comes from a file (--passkey-file, or the import CSV) and travels only in the request body:
 * never on a command line, where every user of the machine could read it in ps.
 */
#define _GNU_SOURCE /* asprintf */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fotactl.h"
#include "ops-client.h"
#include "util.h"

#define MAX_CSV (64 * 1024) /* the API's request body limit */

enum {
	OPT_PASSKEY_FILE = OPS_OPT_NEXT,
	OPT_BOARD,
	OPT_GROUP,
	OPT_LABEL,
};

static int usage_error(const char *form)
{
	fprintf(stderr, "Usage: fotactl devices %s (fotactl devices --help)\n", form);
	return FOTACTL_EXIT_USAGE;
}

/* Reads all of @path (at most @max bytes) into a NUL-terminated buffer. */
static int read_small_file(const char *path, size_t max, char **ret, size_t *ret_len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	char *buf;
	ssize_t len;

	if (fd < 0)
		return -errno;
	buf = malloc(max + 2);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	len = fgw_read_full(fd, buf, max + 1);
	close(fd);
	if (len < 0 || (size_t) len > max) {
		int err = len < 0 ? (int) len : -EFBIG;
		explicit_bzero(buf, max + 2);
		free(buf);
		return err;
	}
	buf[len] = '\0';
	*ret = buf;
	*ret_len = (size_t) len;
	return 0;
}

/* Six digits with white space around, as [ble] passkey_file takes it. */
static int read_passkey(const char *path, char out[7])
{
	char *buf;
	size_t len, i = 0, n = 0;
	int r = read_small_file(path, 64, &buf, &len);

	if (r < 0)
		return r;
	while (i < len && isspace((unsigned char) buf[i]))
		i++;
	while (i < len && isdigit((unsigned char) buf[i]) && n < 7)
		out[n++] = buf[i++];
	while (i < len && isspace((unsigned char) buf[i]))
		i++;
	r = n == 6 && i == len ? 0 : -EINVAL;
	out[n < 7 ? n : 6] = '\0';
	explicit_bzero(buf, len);
	free(buf);
	return r;
}

static int finish(struct ops_conn *conn, cJSON *j, const char *text)
{
	if (conn->json) {
		char *s = cJSON_Print(j);
		if (s)
			puts(s);
		free(s);
	} else {
		puts(text);
	}
	cJSON_Delete(j);
	return 0;
}

static char *enroll_body(const char *passkey, const char *board, const char *group,
			 const char *label)
{
	cJSON *b = cJSON_CreateObject();
	char *text = NULL;
	bool ok = b != NULL;

	if (ok && passkey)
		ok = cJSON_AddStringToObject(b, "passkey", passkey) != NULL;
	if (ok && board)
		ok = cJSON_AddStringToObject(b, "board", board) != NULL;
	if (ok && group)
		ok = cJSON_AddStringToObject(b, "group", group) != NULL;
	if (ok && label)
		ok = cJSON_AddStringToObject(b, "label", label) != NULL;
	if (ok)
		text = cJSON_PrintUnformatted(b);
	if (b && passkey) {
		cJSON *pk = cJSON_GetObjectItemCaseSensitive(b, "passkey");
		if (cJSON_IsString(pk))
			explicit_bzero(pk->valuestring, strlen(pk->valuestring));
	}
	cJSON_Delete(b);
	return text;
}

static int devices_enroll(const struct fotactl_ctx *ctx, int argc, char **argv)
{
	static const char form[] =
	    "enroll ADDR [--passkey-file F] [--board B] [--group G] [--label L]";
	static const struct option opts[] = {
	    OPS_COMMON_OPTS,
	    {"passkey-file", required_argument, NULL, OPT_PASSKEY_FILE},
	    {"board", required_argument, NULL, OPT_BOARD},
	    {"group", required_argument, NULL, OPT_GROUP},
	    {"label", required_argument, NULL, OPT_LABEL},
	    {},
	};
	const char *pkfile = NULL, *board = NULL, *group = NULL, *label = NULL;
	_cleanup_free_ char *path = NULL, *body = NULL;
	char passkey[7] = "";
	struct ops_opts o = {0};
	struct ops_conn conn;
	cJSON *j;
	int c, r;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (ops_common_opt(c, &o))
			continue;
		switch (c) {
		case OPT_PASSKEY_FILE:
			pkfile = optarg;
			break;
		case OPT_BOARD:
			board = optarg;
			break;
		case OPT_GROUP:
			group = optarg;
			break;
		case OPT_LABEL:
			label = optarg;
			break;
		default:
			return usage_error(form);
		}
	}
	if (optind + 1 != argc)
		return usage_error(form);
	if (pkfile) {
		r = read_passkey(pkfile, passkey);
		if (r < 0) {
			fprintf(stderr, "fotactl: --passkey-file '%s': %s\n", pkfile,
				r == -EINVAL ? "not a six-digit passkey" : strerror(-r));
			return FOTACTL_EXIT_FAILED;
		}
	}
	body = enroll_body(pkfile ? passkey : NULL, board, group, label);
	explicit_bzero(passkey, sizeof(passkey));
	if (!body)
		return FOTACTL_EXIT_FAILED;
	r = ops_conn_open(ctx, &o, &conn);
	if (r)
		goto out;
	path = ops_device_path(&conn, argv[optind], "/enroll");
	r = path ? ops_change(&conn, "POST", path, body, "enroll", &j) : FOTACTL_EXIT_FAILED;
	if (r == 0) {
		char line[128];
		snprintf(line, sizeof(line), "%s: enrolled", ops_str(j, "address"));
		r = finish(&conn, j, line);
	}
	ops_conn_close(&conn);
out:
	explicit_bzero(body, strlen(body));
	return r;
}

static int devices_import(const struct fotactl_ctx *ctx, int argc, char **argv)
{
	static const struct option opts[] = {OPS_COMMON_OPTS, {}};
	struct ops_opts o = {0};
	struct ops_conn conn;
	char *csv = NULL, line[96];
	size_t len = 0;
	cJSON *j;
	int c, r;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1)
		if (!ops_common_opt(c, &o))
			return usage_error("import FILE.csv");
	if (optind + 1 != argc)
		return usage_error("import FILE.csv");
	r = read_small_file(argv[optind], MAX_CSV, &csv, &len);
	if (r < 0) {
		fprintf(stderr, "fotactl: %s: %s\n", argv[optind],
			r == -EFBIG ? "larger than 64 KiB (about 1000 devices): split it into "
				      "several files"
				    : strerror(-r));
		return FOTACTL_EXIT_FAILED;
	}
	r = ops_conn_open(ctx, &o, &conn);
	if (r == 0) {
		conn.content_type = "text/csv";
		r = ops_change(&conn, "POST", "/v1/devices/import", csv, "import", &j);
		if (r == 0) {
			snprintf(line, sizeof(line), "%.0f device(s) enrolled",
				 ops_num(j, "enrolled", 0));
			r = finish(&conn, j, line);
		} else {
			fprintf(stderr, "fotactl: %s: nothing was enrolled\n", argv[optind]);
		}
		ops_conn_close(&conn);
	}
	explicit_bzero(csv, len);
	free(csv);
	return r;
}

static int devices_forget(const struct fotactl_ctx *ctx, int argc, char **argv)
{
	static const struct option opts[] = {OPS_COMMON_OPTS, {}};
	_cleanup_free_ char *path = NULL;
	struct ops_opts o = {0};
	struct ops_conn conn;
	cJSON *j;
	int c, r;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1)
		if (!ops_common_opt(c, &o))
			return usage_error("forget ADDR");
	if (optind + 1 != argc)
		return usage_error("forget ADDR");
	r = ops_conn_open(ctx, &o, &conn);
	if (r)
		return r;
	path = ops_device_path(&conn, argv[optind], "");
	r = path ? ops_change(&conn, "DELETE", path, NULL, "forget", &j) : FOTACTL_EXIT_FAILED;
	if (r == 0) {
		char text[128];
		snprintf(text, sizeof(text), "%s: forgotten", ops_str(j, "address"));
		r = finish(&conn, j, text);
	}
	ops_conn_close(&conn);
	return r;
}

int fotactl_devices_change(const struct fotactl_ctx *ctx, int argc, char **argv)
{
	/* argv[0] is "devices", argv[1] the verb: getopt sees the verb as its argv[0] */
	if (strcmp(argv[1], "enroll") == 0)
		return devices_enroll(ctx, argc - 1, argv + 1);
	if (strcmp(argv[1], "import") == 0)
		return devices_import(ctx, argc - 1, argv + 1);
	return devices_forget(ctx, argc - 1, argv + 1);
}

bool fotactl_devices_is_change(int argc, char **argv)
{
	return argc > 1 && (strcmp(argv[1], "enroll") == 0 || strcmp(argv[1], "import") == 0 ||
			    strcmp(argv[1], "forget") == 0);
}
