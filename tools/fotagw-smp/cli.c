/*
 * The command line, as Debian tools behave: options before or after the command, --help and
 * --version on every command and subcommand (exit 0), and errors that name the argument at
 * fault (exit 2). Commands are rows of one table; a new one is a row plus its run function.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "tool.h"
#include "util.h"

#ifndef FGW_VERSION
#define FGW_VERSION "unknown"
#endif

#define M(c) (1u << (c))
#define M_DEVICE                                                                                   \
	(M(CMD_ECHO) | M(CMD_RESET) | M(CMD_PARAMS) | M(CMD_INFO) | M(CMD_IMAGE_LIST) |            \
	 M(CMD_IMAGE_SLOTS) | M(CMD_IMAGE_UPLOAD) | M(CMD_IMAGE_TEST) | M(CMD_IMAGE_CONFIRM) |     \
	 M(CMD_IMAGE_ERASE))
#define M_PAIR (M(CMD_PAIR) | M(CMD_UNPAIR))
#define M_ALL 0xffffffffu

struct cmd_desc {
	enum cmd cmd;
	const char *name, *sub; /* "image", "upload"; sub NULL for one-word commands */
	const char *args;	/* positional arguments, for the usage line */
	int min_args, max_args;
	const char *help;
};

static const struct cmd_desc cmds[] = {
    {CMD_ECHO, "echo", NULL, "TEXT", 1, 1, "liveness: the device echoes TEXT"},
    {CMD_RESET, "reset", NULL, "", 0, 0,
     "reboot the device; no answer is an error (exit 1), a BLE link that drops right after "
     "the request counts as the reset"},
    {CMD_PARAMS, "params", NULL, "", 0, 0, "SMP buffer size and count"},
    {CMD_INFO, "info", NULL, "", 0, 0, "OS info, bootloader and its mode"},
    {CMD_IMAGE, "image", NULL, "SUBCOMMAND", 0, 0,
     "image management: list, slots, upload, test, confirm, erase"},
    {CMD_IMAGE_LIST, "image", "list", "", 0, 0, "slots with version, hash and flags"},
    {CMD_IMAGE_SLOTS, "image", "slots", "", 0, 0, "slot sizes"},
    {CMD_IMAGE_UPLOAD, "image", "upload", "FILE", 1, 1,
     "check and send FILE, then where the device lists it; local checks first: MCUboot "
     "header, TLVs, SHA-256, the signature with --key, the size against the device's slot "
     "(refused unless --force); afterwards image list must show its hash as image N slot 1, "
     "else exit 1"},
    {CMD_IMAGE_TEST, "image", "test", "HASH", 1, 1, "boot HASH once at the next reset"},
    {CMD_IMAGE_CONFIRM, "image", "confirm", "[HASH]", 0, 1,
     "make HASH permanent; without HASH: the running image"},
    {CMD_IMAGE_ERASE, "image", "erase", "", 0, 0, "erase a slot; default: the device's choice"},
    {CMD_SCAN, "scan", NULL, "", 0, 0,
     "BLE devices: those showing the SMP service, or with --name/--all any device"},
    {CMD_PAIR, "pair", NULL, "", 0, 0,
     "ble: bond with the device (authenticated with --passkey-file, else Just Works)"},
    {CMD_UNPAIR, "unpair", NULL, "", 0, 0, "ble: forget the bond bluetoothd holds"},
};

enum opt_id {
	O_TRANSPORT = 't',
	O_JSON = 'j',
	O_VERBOSE = 'v',
	O_HELP = 'h',
	O_VERSION = 'V',
	O_TIMEOUT = 256,
	O_RETRIES,
	O_V1,
	O_ADAPTER,
	O_RSSI,
	O_IMAGE,
	O_WINDOW,
	O_KEY,
	O_FORCE,
	O_SLOT,
	O_SECONDS,
	O_NAME,
	O_ALL,
	O_PASSKEY_FILE,
};

struct opt_desc {
	struct option o;
	unsigned cmds; /* commands it applies to */
	const char *arg, *help;
};

static const struct opt_desc opts[] = {
    {{"transport", required_argument, NULL, O_TRANSPORT},
     M_DEVICE | M_PAIR,
     "SPEC",
     "udp:HOST[:PORT] (default udp:127.0.0.1:1337) or ble:AA:BB:CC:DD:EE:FF"},
    {{"json", no_argument, NULL, O_JSON},
     M_ALL,
     NULL,
     "one JSON object on stdout, always, with \"ok\" true or false"},
    {{"timeout", required_argument, NULL, O_TIMEOUT},
     M_DEVICE,
     "MS",
     "answer timeout per request (default 10000)"},
    {{"retries", required_argument, NULL, O_RETRIES},
     M_DEVICE,
     "N",
     "resend a timed-out request N times, never a reset (default 2)"},
    {{"v1", no_argument, NULL, O_V1}, M_DEVICE, NULL, "SMP v1 headers"},
    {{"adapter", required_argument, NULL, O_ADAPTER},
     M_DEVICE | M(CMD_SCAN) | M_PAIR,
     "hciN",
     "ble: adapter (default: the first one bluetoothd lists)"},
    {{"rssi", required_argument, NULL, O_RSSI},
     M_DEVICE | M(CMD_SCAN),
     "DBM",
     "ble: discovery threshold (default -90; 0: none)"},
    {{"image", required_argument, NULL, O_IMAGE},
     M(CMD_IMAGE_UPLOAD),
     "N",
     "image number: 0 app core (default), 1 net core"},
    {{"window", required_argument, NULL, O_WINDOW},
     M(CMD_IMAGE_UPLOAD),
     "N",
     "chunks in flight (default: buf_count - 1)"},
    {{"key", required_argument, NULL, O_KEY},
     M(CMD_IMAGE_UPLOAD),
     "PEM",
     "verify the image signature with this MCUboot key"},
    {{"force", no_argument, NULL, O_FORCE},
     M(CMD_IMAGE_UPLOAD) | M(CMD_RESET),
     NULL,
     "upload: send even when a local check fails; reset: force it"},
    {{"slot", required_argument, NULL, O_SLOT}, M(CMD_IMAGE_ERASE), "N", "slot to erase"},
    {{"seconds", required_argument, NULL, O_SECONDS},
     M(CMD_SCAN),
     "N",
     "scan for N seconds (default 5)"},
    {{"name", required_argument, NULL, O_NAME},
     M(CMD_SCAN),
     "PREFIX",
     "devices whose name starts with PREFIX, SMP UUID advertised or not"},
    {{"all", no_argument, NULL, O_ALL},
     M(CMD_SCAN),
     NULL,
     "every device bluetoothd lists, with a column: SMP seen or not"},
    {{"passkey-file", required_argument, NULL, O_PASSKEY_FILE},
     M_DEVICE | M(CMD_PAIR),
     "FILE",
     "ble: the device's six-digit passkey, read from FILE; pairs before subscribing"},
    {{"verbose", no_argument, NULL, O_VERBOSE}, M_ALL, NULL, "debug log on stderr"},
    {{"help", no_argument, NULL, O_HELP}, M_ALL, NULL, "this help, or a command's"},
    {{"version", no_argument, NULL, O_VERSION}, M_ALL, NULL, "print the version"},
};
#define N_OPTS (sizeof(opts) / sizeof(opts[0]))

static const char timeouts_help[] =
    "Timeouts: every request waits --timeout ms for its answer and is sent again --retries\n"
    "times, so a silent device fails after timeout x (retries + 1); the error names the\n"
    "address tried. reset is never resent. image erase waits at least 75 s (the device erases\n"
    "synchronously). image upload asks params and slot info with at most 5 s each, then the\n"
    "engine waits up to 40 s for the first chunk (the device erases the slot first), 5 s per\n"
    "chunk, 20 s for the last one (the device hashes the image), and gives up after 5\n"
    "timeouts in a row without progress.\n";

static const struct cmd_desc *find_cmd(enum cmd c)
{
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (cmds[i].cmd == c)
			return &cmds[i];
	return NULL;
}

static void print_opts(FILE *f, unsigned mask, bool global)
{
	for (size_t i = 0; i < N_OPTS; i++) {
		char left[40];
		bool is_global = opts[i].cmds == M_ALL || opts[i].cmds == M_DEVICE ||
				 opts[i].cmds == (M_DEVICE | M(CMD_SCAN));

		if (!(opts[i].cmds & mask) || is_global != global)
			continue;
		snprintf(left, sizeof(left), "--%s%s%s", opts[i].o.name, opts[i].arg ? " " : "",
			 opts[i].arg ? opts[i].arg : "");
		fprintf(f, "  %-20s %s\n", left, opts[i].help);
	}
}

static void help_main(FILE *f)
{
	fprintf(f, "usage: fotagw-smp [OPTIONS] COMMAND [ARGS] [OPTIONS]\n"
		   "A field engineer's SMP (mcumgr) client for one device.\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		char left[40];

		if (cmds[i].cmd == CMD_IMAGE)
			continue;
		snprintf(left, sizeof(left), "%s%s%s %s", cmds[i].name, cmds[i].sub ? " " : "",
			 cmds[i].sub ? cmds[i].sub : "", cmds[i].args);
		fprintf(f, "  %-22s %.*s\n", left, (int) strcspn(cmds[i].help, ";("), cmds[i].help);
	}
	fprintf(f, "\noptions (any command):\n");
	print_opts(f, M_ALL, true);
	fprintf(f,
		"\ncommand options: see 'fotagw-smp COMMAND --help'.\n"
		"HASH is the MCUboot image hash (SHA256 TLV) as 64 hex digits.\n\n%s"
		"\nExit status: 0 done, 1 failed (device, link or check), 2 usage error.\n",
		timeouts_help);
}

static void help_cmd(FILE *f, const struct cmd_desc *d)
{
	fprintf(f, "usage: fotagw-smp [OPTIONS] %s%s%s%s%s\n", d->name, d->sub ? " " : "",
		d->sub ? d->sub : "", d->args[0] ? " " : "", d->args);
	for (const char *p = d->help; *p; p++) {
		if (p[0] == ';' && p[1] == ' ')
			fputs(".\n", f), p++;
		else
			fputc(*p, f);
	}
	fputs(".\n", f);
	if (d->cmd == CMD_IMAGE) {
		for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
			if (cmds[i].sub)
				fprintf(f, "  image %-8s %-7s %.*s\n", cmds[i].sub, cmds[i].args,
					(int) strcspn(cmds[i].help, ";"), cmds[i].help);
		return;
	}
	fprintf(f, "\noptions:\n");
	print_opts(f, M(d->cmd), false);
	print_opts(f, M(d->cmd), true);
	if (d->cmd != CMD_SCAN)
		fprintf(f, "\n%s", timeouts_help);
}

/* Usage errors: text on stderr, or the one JSON object with --json; exit 2. */
static int usage_error(struct tool *tl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int usage_error(struct tool *tl, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (tl->json)
		return tool_failf(tl, 2, "usage", "%s", buf), 2;
	fprintf(stderr, "fotagw-smp: %s (see 'fotagw-smp --help')\n", buf);
	tl->exit_code = 2;
	return 2;
}

static int parse_num(struct tool *tl, const char *opt, const char *v, int64_t lo, int64_t hi,
		     int64_t *ret)
{
	if (fgw_parse_int64(v, lo, hi, ret) < 0)
		return usage_error(tl, "--%s: bad value '%s' (want %lld..%lld)", opt, v,
				   (long long) lo, (long long) hi);
	return 0;
}

static int set_opt(struct tool *tl, int id, const char *v)
{
	int64_t n;
	int r = 0;

	switch (id) {
	case O_TRANSPORT:
		tl->spec = v;
		break;
	case O_TIMEOUT:
		if (!(r = parse_num(tl, "timeout", v, 1, 3600000, &n)))
			tl->timeout_ms = (unsigned) n;
		break;
	case O_RETRIES:
		if (!(r = parse_num(tl, "retries", v, 0, 100, &n)))
			tl->retries = (unsigned) n;
		break;
	case O_IMAGE:
		if (!(r = parse_num(tl, "image", v, 0, 15, &n)))
			tl->image = (unsigned) n;
		break;
	case O_WINDOW:
		if (!(r = parse_num(tl, "window", v, 1, FGW_UPLOAD_MAX_WINDOW, &n)))
			tl->window = (unsigned) n;
		break;
	case O_SLOT:
		if (!(r = parse_num(tl, "slot", v, 0, 255, &n)))
			tl->slot = (int) n;
		break;
	case O_SECONDS:
		if (!(r = parse_num(tl, "seconds", v, 1, 3600, &n)))
			tl->scan_seconds = (unsigned) n;
		break;
	case O_RSSI:
		if (!(r = parse_num(tl, "rssi", v, -127, 0, &n))) {
			tl->ble_rssi = (int) n;
			tl->ble_rssi_set = true;
		}
		break;
	case O_ADAPTER:
		tl->ble_adapter = v;
		break;
	case O_PASSKEY_FILE:
		tl->passkey_file = v;
		break;
	case O_KEY:
		tl->key_path = v;
		break;
	case O_NAME:
		tl->scan_name = v;
		break;
	case O_ALL:
		tl->scan_all = true;
		break;
	case O_FORCE:
		tl->force = true;
		break;
	case O_V1:
		tl->v1 = true;
		break;
	case O_VERBOSE:
		fgw_log_set_level(LOG_DEBUG);
		break;
	}
	return r;
}

static const struct opt_desc *opt_by_id(int id)
{
	for (size_t i = 0; i < N_OPTS; i++)
		if (opts[i].o.val == id)
			return &opts[i];
	return NULL;
}

/* The command from the words left after the options; *@ret_used: how many it took. */
static int resolve_cmd(struct tool *tl, char **pos, int n, int *ret_used)
{
	if (n == 0) {
		tl->cmd = CMD_NONE;
		*ret_used = 0;
		return 0;
	}
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		if (strcmp(cmds[i].name, pos[0]) != 0)
			continue;
		if (!cmds[i].sub && cmds[i].cmd != CMD_IMAGE) {
			tl->cmd = cmds[i].cmd;
			*ret_used = 1;
			return 0;
		}
		if (cmds[i].sub && n >= 2 && !strcmp(cmds[i].sub, pos[1])) {
			tl->cmd = cmds[i].cmd;
			*ret_used = 2;
			return 0;
		}
	}
	if (!strcmp(pos[0], "image")) {
		tl->cmd = CMD_IMAGE;
		*ret_used = 1;
		if (n == 1)
			return 0;
		return -EINVAL; /* an unknown image subcommand: named by the caller */
	}
	return -ENOENT;
}

static int take_args(struct tool *tl, const struct cmd_desc *d, char **args, int n)
{
	if (n < d->min_args)
		return usage_error(tl, "%s%s%s: missing %s", d->name, d->sub ? " " : "",
				   d->sub ? d->sub : "", d->args);
	if (n > d->max_args)
		return usage_error(tl, "%s%s%s: unexpected argument '%s'", d->name,
				   d->sub ? " " : "", d->sub ? d->sub : "", args[d->max_args]);
	if (d->cmd == CMD_ECHO)
		tl->text = args[0];
	if (d->cmd == CMD_IMAGE_UPLOAD)
		tl->file = args[0];
	if ((d->cmd == CMD_IMAGE_TEST || d->cmd == CMD_IMAGE_CONFIRM) && n == 1) {
		if (strlen(args[0]) != 64 || fgw_hex_decode(args[0], tl->hash, 32) < 0)
			return usage_error(tl, "%s %s: '%s' is not a 64-digit hex hash", d->name,
					   d->sub, args[0]);
		tl->has_hash = true;
	}
	return 0;
}

/* Options a command does not take are named instead of ignored. */
static int check_opts(struct tool *tl, const struct cmd_desc *d, const bool *used)
{
	for (size_t i = 0; i < N_OPTS; i++)
		if (used[i] && !(opts[i].cmds & M(d->cmd)))
			return usage_error(tl, "%s%s%s does not take --%s", d->name,
					   d->sub ? " " : "", d->sub ? d->sub : "", opts[i].o.name);
	if (tl->scan_all && tl->scan_name)
		return usage_error(tl, "scan: --all and --name exclude each other");
	return 0;
}

static int parse_opts(struct tool *tl, int argc, char **argv, bool *used, bool *help, bool *version)
{
	struct option lo[N_OPTS + 1];
	int c, idx;

	memset(lo, 0, sizeof(lo));
	for (size_t i = 0; i < N_OPTS; i++)
		lo[i] = opts[i].o;
	/* --json first, so that even an error in the options comes as JSON */
	for (int i = 1; i < argc && strcmp(argv[i], "--"); i++)
		if (!strcmp(argv[i], "--json"))
			tl->json = true;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":t:jvhV", lo, &idx)) >= 0) {
		const struct opt_desc *d;

		if (c == '?')
			return usage_error(tl, "unknown option '%s'", argv[optind - 1]);
		if (c == ':')
			return usage_error(tl, "option '%s' needs a value", argv[optind - 1]);
		if (c == O_HELP)
			*help = true;
		else if (c == O_VERSION)
			*version = true;
		else if (c == O_JSON)
			tl->json = true;
		d = opt_by_id(c);
		if (d)
			used[d - opts] = true;
		if (set_opt(tl, c, optarg) != 0)
			return 2;
	}
	return 0;
}

static int print_version(struct tool *tl)
{
	if (tl->json) {
		cJSON_AddStringToObject(tl->out, "version", FGW_VERSION);
		tool_done(tl);
	} else {
		printf("fotagw-smp %s\n", FGW_VERSION);
	}
	return 0;
}

int cli_parse(struct tool *tl, int argc, char **argv, bool *ret_exit)
{
	bool used[N_OPTS] = {0}, help = false, version = false;
	const struct cmd_desc *d;
	int n, used_words = 0, r;

	*ret_exit = true;
	r = parse_opts(tl, argc, argv, used, &help, &version);
	if (r)
		return r;
	n = argc - optind;
	r = resolve_cmd(tl, argv + optind, n, &used_words);
	if (r == -ENOENT)
		return usage_error(tl, "unknown command '%s'", argv[optind]);
	if (r == -EINVAL && !help)
		return usage_error(tl, "unknown image subcommand '%s'", argv[optind + 1]);
	if (help) {
		d = find_cmd(tl->cmd);
		if (d)
			help_cmd(stdout, d);
		else
			help_main(stdout);
		return 0;
	}
	if (version)
		return print_version(tl);
	if (tl->cmd == CMD_NONE)
		return usage_error(tl, "no command given");
	if (tl->cmd == CMD_IMAGE)
		return usage_error(tl, "image: missing subcommand (list, slots, upload, test, "
				       "confirm, erase)");
	d = find_cmd(tl->cmd);
	r = take_args(tl, d, argv + optind + used_words, n - used_words);
	if (r == 0)
		r = check_opts(tl, d, used);
	if (r)
		return r;
	*ret_exit = false;
	return 0;
}
