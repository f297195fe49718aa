/*
 * fotagw-sim: command line, wiring, signals. See docs/simulator.md.
 */
#include <errno.h>
#include <getopt.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sim.h"

struct cli {
	struct sim_options opt;
	const char *mode;
	const char *link;
	const char *key_path;
	const char *scenario;
	const char *udp;
	bool capacity;
	const char **sets;
	size_t n_sets;
	const char **faults;
	size_t n_faults;
	const char **adapters;
	size_t n_adapters;
	bool devices_set;
};

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "Usage: fotagw-sim [OPTIONS]\n"
	    "Simulated nRF5340 fleet (MCUboot, SMP) over SMP/UDP and a fake bluetoothd.\n\n"
	    "  --devices N            number of devices (default 1)\n"
	    "  --state-dir DIR        where slots and MCUboot state persist (required unless "
	    "--capacity)\n"
	    "  --udp HOST:BASEPORT    device i answers SMP on BASEPORT+i\n"
	    "  --bluez                own org.bluez on DBUS_SYSTEM_BUS_ADDRESS (fake bluetoothd)\n"
	    "  --bluez-restart-ms MS  on SIGUSR1 the fake bluetoothd leaves the bus (links drop,\n"
	    "                         upload sessions survive) and rejoins after MS (default\n"
	    "                         2000; 0: at the next SIGUSR1)\n"
	    "  --peripheral           devices are GATT peripherals of the REAL bluetoothd (system\n"
	    "                         bus): one adapter each, see --adapter\n"
	    "  --adapter hciN         adapter of the next device with --peripheral (repeatable or\n"
	    "                         comma-separated; default hci0)\n"
	    "  --no-acquire           no AcquireWrite/AcquireNotify (WriteValue/StartNotify only)\n"
	    "  --max-connections N    connection limit of each controller (default 8)\n"
	    "  --adapters N           --bluez: adapters hci0..hciN-1, one radio each (default 1)\n"
	    "  --connect-timeout MS   LE connection attempt timeout (default 20000)\n"
	    "  --disconnect-delay MS  Device1.Disconnect duration (default 2000)\n"
	    "  --temporary-timeout S  unseen, unconnected devices removed after S s (default 30)\n"
	    "  --mode swap|overwrite|mixed   MCUboot mode (default overwrite; mixed: odd = swap)\n"
	    "  --link PROFILE|K=V,..  fast, typical (default), slow, or phy=1m|2m|coded,mtu=,\n"
	    "                         interval=,event=,encrypt=,pkts= (cap),latency=,dle=,\n"
	    "                         erase=,write=,sector=,boot=,proc=,supervision=\n"
	    "  --mcuboot-key PEM      images must be signed by this key (private: also signs the\n"
	    "                         generated starting images)\n"
	    "  --scenario FILE        per-device settings and faults (INI)\n"
	    "  --set KEY=VALUE        a scenario key for every device (repeatable)\n"
	    "  --fault I:K=V[,K=V]    scenario keys for device I, or * for all (repeatable)\n"
	    "  --canonical            definite-length CBOR replies (ZCBOR_CANONICAL)\n"
	    "  --seed N               seed for random faults and RSSI (default 0)\n"
	    "  --capacity             print each device's link capacity as JSON and exit\n"
	    "  --log-level LEVEL      err, warning, notice (default), info, debug\n"
	    "  --help\n\n"
	    "Signals: SIGTERM/SIGINT save and exit; SIGUSR1 restarts the fake bluetoothd "
	    "(--bluez).\n");
}

static int add_str(const char ***arr, size_t *n, const char *s)
{
	const char **a = realloc(*arr, (*n + 1) * sizeof(*a));
	if (!a)
		return -ENOMEM;
	a[(*n)++] = s;
	*arr = a;
	return 0;
}

enum {
	O_DEVICES = 256,
	O_STATE,
	O_UDP,
	O_BLUEZ,
	O_BLUEZ_RESTART,
	O_PERIPH,
	O_ADAPTER,
	O_NOACQ,
	O_MAXCONN,
	O_ADAPTERS,
	O_CONNTO,
	O_DISC,
	O_TEMP,
	O_MODE,
	O_LINK,
	O_KEY,
	O_SCEN,
	O_SET,
	O_FAULT,
	O_CANON,
	O_SEED,
	O_CAP,
	O_LOG,
	O_HELP,
};

/* In the order of the enum: a bad value is reported by the option's name. */
static const struct option opts[] = {
    {"devices", required_argument, NULL, O_DEVICES},
    {"state-dir", required_argument, NULL, O_STATE},
    {"udp", required_argument, NULL, O_UDP},
    {"bluez", no_argument, NULL, O_BLUEZ},
    {"bluez-restart-ms", required_argument, NULL, O_BLUEZ_RESTART},
    {"peripheral", no_argument, NULL, O_PERIPH},
    {"adapter", required_argument, NULL, O_ADAPTER},
    {"no-acquire", no_argument, NULL, O_NOACQ},
    {"max-connections", required_argument, NULL, O_MAXCONN},
    {"adapters", required_argument, NULL, O_ADAPTERS},
    {"connect-timeout", required_argument, NULL, O_CONNTO},
    {"disconnect-delay", required_argument, NULL, O_DISC},
    {"temporary-timeout", required_argument, NULL, O_TEMP},
    {"mode", required_argument, NULL, O_MODE},
    {"link", required_argument, NULL, O_LINK},
    {"mcuboot-key", required_argument, NULL, O_KEY},
    {"scenario", required_argument, NULL, O_SCEN},
    {"set", required_argument, NULL, O_SET},
    {"fault", required_argument, NULL, O_FAULT},
    {"canonical", no_argument, NULL, O_CANON},
    {"seed", required_argument, NULL, O_SEED},
    {"capacity", no_argument, NULL, O_CAP},
    {"log-level", required_argument, NULL, O_LOG},
    {"help", no_argument, NULL, O_HELP},
    {},
};

/* Options with a numeric value and their ranges. */
static const struct {
	int o;
	int64_t min, max;
} ranges[] = {
    {O_DEVICES, 1, 65536}, {O_BLUEZ_RESTART, 0, 600000},
    {O_MAXCONN, 1, 65536}, {O_ADAPTERS, 1, SIM_MAX_ADAPTERS},
    {O_CONNTO, 0, 600000}, {O_DISC, 0, 600000},
    {O_TEMP, 0, 86400},	   {O_SEED, 0, INT64_MAX},
};

/* -EINVAL when out of range, -ENOENT when @o has no numeric value. */
static int apply_number(struct cli *c, int o, const char *arg)
{
	size_t i = 0;
	int64_t v;

	while (i < sizeof(ranges) / sizeof(ranges[0]) && ranges[i].o != o)
		i++;
	if (i == sizeof(ranges) / sizeof(ranges[0]))
		return -ENOENT;
	if (fgw_parse_int64(arg, ranges[i].min, ranges[i].max, &v) < 0)
		return -EINVAL;
	switch (o) {
	case O_DEVICES:
		c->opt.n_devices = (unsigned) v;
		c->devices_set = true;
		break;
	case O_BLUEZ_RESTART:
		c->opt.bluez_restart_ms = (double) v;
		break;
	case O_MAXCONN:
		c->opt.max_connections = (unsigned) v;
		break;
	case O_ADAPTERS:
		c->opt.n_bluez_adapters = (unsigned) v;
		break;
	case O_CONNTO:
		c->opt.connect_timeout_ms = (double) v;
		break;
	case O_DISC:
		c->opt.disconnect_ms = (double) v;
		break;
	case O_TEMP:
		c->opt.temporary_timeout_ms = (double) v * 1000.0;
		break;
	case O_SEED:
		c->opt.seed = (uint64_t) v;
		break;
	}
	return 0;
}

/* "hci0,hci1": each name is checked, in order, one device each. */
static int add_adapters(struct cli *c, char *arg)
{
	char *save = NULL, *tok;
	int64_t v;

	for (tok = strtok_r(arg, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (strncmp(tok, "hci", 3) || fgw_parse_int64(tok + 3, 0, 255, &v) < 0)
			return -EINVAL;
		if (add_str(&c->adapters, &c->n_adapters, tok) < 0)
			return -ENOMEM;
	}
	return 0;
}

/* One option: -EINVAL for a bad value, -ENOMEM, -ENOENT for an unknown option. */
static int apply_option(struct cli *c, int o, char *arg)
{
	int r;

	switch (o) {
	case O_STATE:
		c->opt.state_dir = arg;
		return 0;
	case O_UDP:
		c->udp = arg;
		return 0;
	case O_BLUEZ:
		c->opt.bluez = true;
		return 0;
	case O_PERIPH:
		c->opt.peripheral = true;
		return 0;
	case O_ADAPTER:
		return add_adapters(c, arg);
	case O_NOACQ:
		c->opt.no_acquire = true;
		return 0;
	case O_MODE:
		if (strcmp(arg, "swap") && strcmp(arg, "overwrite") && strcmp(arg, "mixed"))
			return -EINVAL;
		c->mode = arg;
		return 0;
	case O_LINK:
		c->link = arg;
		return 0;
	case O_KEY:
		c->key_path = arg;
		return 0;
	case O_SCEN:
		c->scenario = arg;
		return 0;
	case O_SET:
		return add_str(&c->sets, &c->n_sets, arg);
	case O_FAULT:
		return add_str(&c->faults, &c->n_faults, arg);
	case O_CANON:
		c->opt.canonical = true;
		return 0;
	case O_CAP:
		c->capacity = true;
		return 0;
	case O_LOG:
		r = fgw_log_level_from_string(arg);
		if (r < 0)
			return -EINVAL;
		fgw_log_set_level(r);
		return 0;
	}
	return apply_number(c, o, arg);
}

/* --peripheral pairs devices with real adapters; without it --adapter means nothing. */
static int check_peripheral(struct cli *c)
{
	if (!c->opt.peripheral) {
		if (c->n_adapters) {
			fprintf(stderr, "fotagw-sim: --adapter needs --peripheral\n");
			return -EINVAL;
		}
		return 0;
	}
	if (c->opt.bluez) {
		fprintf(stderr, "fotagw-sim: --peripheral and --bluez exclude each other\n");
		return -EINVAL;
	}
	if (c->n_adapters == 0 && add_str(&c->adapters, &c->n_adapters, "hci0") < 0)
		return -ENOMEM;
	if (!c->devices_set)
		c->opt.n_devices = (unsigned) c->n_adapters;
	if (c->opt.n_devices != c->n_adapters) {
		fprintf(stderr,
			"fotagw-sim: --peripheral: one --adapter per device (%u "
			"devices, %zu adapters)\n",
			c->opt.n_devices, c->n_adapters);
		return -EINVAL;
	}
	c->opt.adapters = c->adapters;
	c->opt.n_adapters = (unsigned) c->n_adapters;
	/* the real controllers are the link: the model adds (almost) nothing on top */
	if (!c->link)
		c->link = "fast,latency=0";
	return 0;
}

static int parse_cli(int argc, char **argv, struct cli *c)
{
	int o, r;

	c->opt.n_devices = 1;
	c->opt.max_connections = 8;
	c->opt.connect_timeout_ms = 20000;
	c->opt.disconnect_ms = 2000;
	c->opt.temporary_timeout_ms = 30000;
	c->opt.bluez_restart_ms = 2000;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (o == O_HELP) {
			usage(stdout);
			exit(0);
		}
		r = apply_option(c, o, optarg);
		if (r == -ENOENT) {
			usage(stderr);
			return -EINVAL;
		}
		if (r == -EINVAL) {
			fprintf(stderr, "fotagw-sim: bad value '%s' for --%s\n", optarg,
				opts[o - O_DEVICES].name);
			return -EINVAL;
		}
		if (r < 0)
			return r;
	}
	if (optind < argc) {
		fprintf(stderr, "fotagw-sim: unexpected argument '%s'\n", argv[optind]);
		return -EINVAL;
	}
	return check_peripheral(c);
}

static int apply_kv_list(struct sim_dev_config *cfg, const char *list, const char *what)
{
	char buf[1024], *save = NULL, *tok;
	int r;

	if (strlen(list) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, list);
	/* "link=mtu=247,interval=30" would split badly: link goes through --link or --set. */
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');
		if (!eq) {
			fprintf(stderr, "fotagw-sim: %s: '%s' is not KEY=VALUE\n", what, tok);
			return -EINVAL;
		}
		*eq = '\0';
		r = sim_dev_config_set(cfg, tok, eq + 1);
		if (r < 0) {
			fprintf(stderr, "fotagw-sim: %s: %s '%s'\n", what,
				r == -ENOENT ? "unknown key" : "bad value for", tok);
			return -EINVAL;
		}
	}
	return 0;
}

/* Configuration of device @i: defaults, --mode/--link, scenario, --set, --fault. */
static int device_config(const struct cli *c, const struct sim_scenario *scen, unsigned i,
			 struct sim_dev_config *cfg)
{
	int r;

	sim_dev_config_defaults(cfg);
	if (c->mode) {
		if (!strcmp(c->mode, "mixed"))
			cfg->mode = i % 2 ? SIM_MODE_SWAP : SIM_MODE_OVERWRITE;
		else
			(void) sim_dev_config_set(cfg, "mode", c->mode);
	}
	if (c->link && sim_link_parse(c->link, &cfg->link) < 0) {
		fprintf(stderr, "fotagw-sim: bad --link '%s'\n", c->link);
		return -EINVAL;
	}
	if (scen) {
		r = sim_scenario_apply(scen, i, cfg);
		if (r < 0)
			return r;
	}
	for (size_t k = 0; k < c->n_sets; k++) {
		const char *eq = strchr(c->sets[k], '=');
		char key[64];

		if (!eq || (size_t) (eq - c->sets[k]) >= sizeof(key)) {
			fprintf(stderr, "fotagw-sim: --set '%s' is not KEY=VALUE\n", c->sets[k]);
			return -EINVAL;
		}
		memcpy(key, c->sets[k], (size_t) (eq - c->sets[k]));
		key[eq - c->sets[k]] = '\0';
		r = sim_dev_config_set(cfg, key, eq + 1);
		if (r < 0) {
			fprintf(stderr, "fotagw-sim: --set: %s '%s'\n",
				r == -ENOENT ? "unknown key" : "bad value for", key);
			return -EINVAL;
		}
	}
	for (size_t k = 0; k < c->n_faults; k++) {
		const char *colon = strchr(c->faults[k], ':');
		int64_t idx;
		char ibuf[16];

		if (!colon || colon == c->faults[k] ||
		    (size_t) (colon - c->faults[k]) >= sizeof(ibuf)) {
			fprintf(stderr, "fotagw-sim: --fault '%s' is not I:KEY=VALUE\n",
				c->faults[k]);
			return -EINVAL;
		}
		memcpy(ibuf, c->faults[k], (size_t) (colon - c->faults[k]));
		ibuf[colon - c->faults[k]] = '\0';
		if (strcmp(ibuf, "*")) {
			if (fgw_parse_int64(ibuf, 0, 65535, &idx) < 0) {
				fprintf(stderr, "fotagw-sim: --fault: bad device '%s'\n", ibuf);
				return -EINVAL;
			}
			if ((unsigned) idx != i)
				continue;
		}
		r = apply_kv_list(cfg, colon + 1, "--fault");
		if (r < 0)
			return r;
	}
	{
		const char *why;
		if (sim_link_check(&cfg->link, &why) < 0) {
			fprintf(stderr, "fotagw-sim: device %u: bad link: %s\n", i, why);
			return -EINVAL;
		}
	}
	if (cfg->link.mtu - 3 > cfg->buf_size)
		cfg->buf_size = cfg->link.mtu - 3;
	/* Zephyr's MCUMGR_TRANSPORT_NETBUF_COUNT: "default 2 if MCUMGR_TRANSPORT_UDP", else 4.
	 * UDP next to BLE is the test harness's side door, not the device's transport: 4. */
	if (cfg->buf_count == 0)
		cfg->buf_count = c->udp && !c->opt.bluez && !c->opt.peripheral ? 2 : 4;
	return 0;
}

static int print_capacity(const struct cli *c, const struct sim_scenario *scen)
{
	printf("[");
	for (unsigned i = 0; i < c->opt.n_devices; i++) {
		struct sim_dev_config cfg;
		unsigned chunk, chunk_ble;
		double cap, cap_ble;
		int r = device_config(c, scen, i, &cfg);

		if (r < 0)
			return r;
		cap = sim_link_capacity(&cfg.link, cfg.buf_size, cfg.buf_count, false, &chunk);
		cap_ble =
		    sim_link_capacity(&cfg.link, cfg.buf_size, cfg.buf_count, true, &chunk_ble);
		printf("%s{\"index\":%u,\"address\":\"C0:FF:EE:00:%02X:%02X\",\"name\":\"fotagw-"
		       "sim-%04u\","
		       "\"udp_port\":",
		       i ? "," : "", i, (i >> 8) & 0xff, i & 0xff, i);
		if (c->udp)
			printf("%u", c->opt.udp_base + i);
		else
			printf("null");
		printf(",\"capacity_bytes_per_s\":%.0f,\"chunk_bytes\":%u,"
		       "\"capacity_ble_bytes_per_s\":%.0f,\"chunk_ble_bytes\":%u,"
		       "\"ceiling_bytes_per_s\":%.0f,\"radio_ceiling_bytes_per_s\":%.0f,\"phy\":\"%"
		       "s\",\"encrypt\":%s,"
		       "\"exchange_us\":%g,\"exchanges_per_event\":%u,\"event_ms\":%g,\"mtu\":%u,"
		       "\"interval_ms\":%g,\"pkts\":%u,\"latency_ms\":%g,\"dle\":%u,"
		       "\"buf_size\":%u,\"buf_count\":%u,\"write_us_per_byte\":%g}",
		       cap, chunk, cap_ble, chunk_ble, sim_link_ceiling(&cfg.link),
		       sim_link_radio_ceiling(&cfg.link),
		       cfg.link.phy == SIM_PHY_2M	  ? "2m"
		       : cfg.link.phy == SIM_PHY_CODED_S8 ? "coded"
							  : "1m",
		       cfg.link.encrypt ? "true" : "false", sim_link_exchange_us(&cfg.link),
		       sim_link_event_exchanges(&cfg.link), cfg.link.event_ms, cfg.link.mtu,
		       cfg.link.interval_ms, cfg.link.pkts, cfg.link.latency_ms, cfg.link.dle,
		       cfg.buf_size, cfg.buf_count, cfg.link.write_us);
	}
	printf("]\n");
	return fflush(stdout) == 0 ? 0 : -EIO;
}

static int parse_udp(const char *s, struct sockaddr_storage *ss, unsigned *port)
{
	char host[256];
	const char *colon = strrchr(s, ':');
	int64_t p;

	if (!colon || (size_t) (colon - s) >= sizeof(host))
		return -EINVAL;
	memcpy(host, s, (size_t) (colon - s));
	host[colon - s] = '\0';
	if (fgw_parse_int64(colon + 1, 1, 65535, &p) < 0)
		return -EINVAL;
	*port = (unsigned) p;
	if (host[0] == '[' && host[strlen(host) - 1] == ']') {
		host[strlen(host) - 1] = '\0';
		return uv_ip6_addr(host + 1, 0, (struct sockaddr_in6 *) ss) < 0 ? -EINVAL : 0;
	}
	return uv_ip4_addr(host, 0, (struct sockaddr_in *) ss) < 0 ? -EINVAL : 0;
}

struct app {
	struct sim sim;
	uv_signal_t sigterm, sigint, sigusr1;
	uv_timer_t rejoin; /* the fake bluetoothd comes back after a SIGUSR1 */
	bool stopping;
};

static void stop(struct app *a)
{
	if (a->stopping)
		return;
	a->stopping = true;
	fgw_notice("event: shutdown, devices: %u", a->sim.n_devs);
	a->sim.bluez = sim_bluez_free(a->sim.bluez);
	a->sim.periph = sim_periph_free(a->sim.periph);
	for (unsigned i = 0; i < a->sim.n_devs; i++)
		sim_device_close(&a->sim.devs[i]);
	sim_device_close_requests(a->sim.loop);
	uv_close((uv_handle_t *) &a->sigterm, NULL);
	uv_close((uv_handle_t *) &a->sigint, NULL);
	uv_close((uv_handle_t *) &a->sigusr1, NULL);
	uv_close((uv_handle_t *) &a->rejoin, NULL);
}

static void on_signal(uv_signal_t *s, int signum)
{
	struct app *a = s->data;

	(void) signum;
	stop(a);
}

static void bluez_rejoin(struct app *a)
{
	int r;

	uv_timer_stop(&a->rejoin);
	if (a->stopping || a->sim.bluez)
		return;
	r = sim_bluez_new(&a->sim, false, &a->sim.bluez);
	if (r < 0) {
		fgw_log_errno(LOG_ERR, r, "fake bluetoothd cannot rejoin the bus, stopping");
		stop(a);
		return;
	}
	fgw_notice("event: bluez-rejoined");
}

static void on_rejoin(uv_timer_t *t)
{
	bluez_rejoin(container_of(t, struct app, rejoin));
}

/* SIGUSR1: a bluetoothd restart. The fake bluetoothd leaves the bus (every connection drops,
 * its objects vanish; the devices only lose their link, so their upload sessions survive) and
 * comes back after --bluez-restart-ms, or at the next SIGUSR1. */
static void on_usr1(uv_signal_t *s, int signum)
{
	struct app *a = s->data;

	(void) signum;
	if (a->stopping || !a->sim.opt.bluez) {
		fgw_notice("SIGUSR1 ignored: no fake bluetoothd (--bluez)");
		return;
	}
	if (!a->sim.bluez) {
		bluez_rejoin(a);
		return;
	}
	fgw_notice("event: bluez-leave, back_in_ms: %.0f", a->sim.opt.bluez_restart_ms);
	a->sim.bluez = sim_bluez_free(a->sim.bluez);
	for (unsigned i = 0; i < a->sim.n_devs; i++)
		sim_device_rx_reset(&a->sim.devs[i]);
	if (a->sim.opt.bluez_restart_ms > 0)
		uv_timer_start(&a->rejoin, on_rejoin, (uint64_t) a->sim.opt.bluez_restart_ms, 0);
}

static void app_free(struct app *a)
{
	if (!a)
		return;
	if (a->sim.key)
		EVP_PKEY_free(a->sim.key);
	free(a->sim.devs);
	free(a);
}

/* Brings up devices, transports and signals; on failure everything opened is closed again. */
static int app_start(struct app *a, const struct cli *c, const struct sim_dev_config *cfgs,
		     const struct sockaddr_storage *udp_addr)
{
	int r;

	uv_signal_init(a->sim.loop, &a->sigterm);
	uv_signal_init(a->sim.loop, &a->sigint);
	uv_signal_init(a->sim.loop, &a->sigusr1);
	uv_timer_init(a->sim.loop, &a->rejoin);
	a->sigterm.data = a->sigint.data = a->sigusr1.data = a;
	for (unsigned i = 0; i < c->opt.n_devices; i++) {
		r = sim_device_init(&a->sim, &a->sim.devs[i], i, &cfgs[i]);
		a->sim.n_devs = i + 1; /* its handles exist even when init failed */
		if (r < 0)
			return r;
		if (c->udp) {
			struct sockaddr_storage ss = *udp_addr;
			if (ss.ss_family == AF_INET6)
				((struct sockaddr_in6 *) &ss)->sin6_port =
				    htons(c->opt.udp_base + i);
			else
				((struct sockaddr_in *) &ss)->sin_port = htons(c->opt.udp_base + i);
			r = sim_udp_start(&a->sim.devs[i], (struct sockaddr *) &ss);
			if (r < 0)
				return r;
		}
	}
	if (c->opt.bluez) {
		r = sim_bluez_new(&a->sim, true, &a->sim.bluez);
		if (r < 0)
			return fgw_log_errno(LOG_ERR, r, "cannot start the fake bluetoothd");
	}
	if (c->opt.peripheral) {
		r = sim_periph_new(&a->sim, &a->sim.periph);
		if (r < 0)
			return fgw_log_errno(LOG_ERR, r,
					     "cannot reach bluetoothd on the system bus");
	}
	uv_signal_start(&a->sigterm, on_signal, SIGTERM);
	uv_signal_start(&a->sigint, on_signal, SIGINT);
	uv_signal_start(&a->sigusr1, on_usr1, SIGUSR1);
	return 0;
}

/* The --udp address and the scenario file, read and checked before anything is created. */
static int load_inputs(struct cli *c, struct sockaddr_storage *udp_addr, struct sim_scenario **scen)
{
	int r, line = 0;

	if (c->udp && parse_udp(c->udp, udp_addr, &c->opt.udp_base) < 0) {
		fprintf(stderr, "fotagw-sim: bad --udp '%s' (HOST:BASEPORT)\n", c->udp);
		return -EINVAL;
	}
	if (c->udp && c->opt.udp_base + c->opt.n_devices - 1 > 65535) {
		fprintf(stderr, "fotagw-sim: --udp: ports beyond 65535\n");
		return -EINVAL;
	}
	if (!c->scenario)
		return 0;
	r = sim_scenario_load(c->scenario, scen, &line);
	if (r < 0) {
		if (line > 0)
			fprintf(stderr, "fotagw-sim: %s:%d: %s\n", c->scenario, line,
				r == -ENOENT ? "unknown key" : "bad section or value");
		else
			fprintf(stderr, "fotagw-sim: cannot read '%s': %s\n", c->scenario,
				strerror(-r));
		return r;
	}
	return 0;
}

/* The app with its key, state directories and device array; returns the exit status on failure
 * (2 for a bad key, 1 otherwise), with *out set so that the caller frees it. */
static int app_prepare(const struct cli *c, struct app **out)
{
	struct app *a = calloc(1, sizeof(*a));
	char path[600];
	int r;

	*out = a;
	if (!a)
		return 1;
	a->sim.loop = uv_default_loop();
	a->sim.opt = c->opt;
	if (c->key_path) {
		r = sim_key_load(c->key_path, &a->sim.key);
		if (r < 0) {
			fprintf(stderr, "fotagw-sim: cannot load key '%s': %s\n", c->key_path,
				strerror(-r));
			return 2;
		}
	}
	if (mkdir(c->opt.state_dir, 0755) < 0 && errno != EEXIST) {
		fgw_log_errno(LOG_ERR, -errno, "cannot create '%s'", c->opt.state_dir);
		return 1;
	}
	snprintf(path, sizeof(path), "%s/images", c->opt.state_dir);
	if (mkdir(path, 0755) < 0 && errno != EEXIST) {
		fgw_log_errno(LOG_ERR, -errno, "cannot create '%s'", path);
		return 1;
	}
	a->sim.devs = calloc(c->opt.n_devices, sizeof(*a->sim.devs));
	return a->sim.devs ? 0 : 1;
}

/* Starts the app and runs it until a signal stops it; returns the exit status. */
static int app_run(struct app *a, const struct cli *c, const struct sim_dev_config *cfgs,
		   const struct sockaddr_storage *udp_addr)
{
	int r;

	signal(SIGPIPE, SIG_IGN);
	r = app_start(a, c, cfgs, udp_addr);
	if (r < 0) {
		stop(a);
		uv_run(a->sim.loop, UV_RUN_DEFAULT);
		(void) uv_loop_close(a->sim.loop);
		return 1;
	}

	/* Test helpers wait for this line. */
	printf("fotagw-sim: ready devices=%u udp=%s bluez=%s%s\n", c->opt.n_devices,
	       c->udp ? c->udp : "off", c->opt.bluez ? "on" : "off",
	       c->opt.peripheral ? " peripheral=on" : "");
	fflush(stdout);

	uv_run(a->sim.loop, UV_RUN_DEFAULT);
	r = uv_loop_close(a->sim.loop);
	if (r < 0)
		fgw_warning("event loop not empty at exit: %s", uv_strerror(r));
	return 0;
}

int main(int argc, char **argv)
{
	struct cli c = {};
	struct sim_scenario *scen = NULL;
	struct sim_dev_config *cfgs = NULL;
	struct sockaddr_storage udp_addr = {};
	struct app *a = NULL;
	int ret = 2;

	fgw_log_set_level(LOG_NOTICE);
	if (parse_cli(argc, argv, &c) < 0 || load_inputs(&c, &udp_addr, &scen) < 0)
		goto out;
	if (c.capacity) {
		ret = print_capacity(&c, scen) < 0 ? 2 : 0;
		goto out;
	}
	if (!c.opt.state_dir) {
		fprintf(stderr, "fotagw-sim: --state-dir is required\n");
		goto out;
	}
	/* Every device's configuration is checked before anything is created. */
	cfgs = calloc(c.opt.n_devices, sizeof(*cfgs));
	if (!cfgs) {
		ret = 1;
		goto out;
	}
	for (unsigned i = 0; i < c.opt.n_devices; i++)
		if (device_config(&c, scen, i, &cfgs[i]) < 0)
			goto out;
	if (!c.udp && !c.opt.bluez && !c.opt.peripheral)
		fgw_warning("neither --udp nor --bluez: devices are unreachable");

	ret = app_prepare(&c, &a);
	if (ret == 0)
		ret = app_run(a, &c, cfgs, &udp_addr);
out:
	app_free(a);
	free(cfgs);
	sim_scenario_free(scen);
	free(c.sets);
	free(c.faults);
	free(c.adapters);
	return ret;
}
