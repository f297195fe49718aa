/*
 * The per-device configuration vocabulary shared by the command line and scenario files: link
 * profiles and keys, flash timings, MCUboot and mcumgr options, identity and faults
 * (docs/simulator.md, "Scenario files").
 */
#include <errno.h>
#include <stddef.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "sim.h"

void sim_link_profile(const char *name, struct sim_link_params *p)
{
	/* Flash: QSPI NOR like the MX25R64 on the nRF5340 DK (4 KiB sectors, ~40 ms erase,
	 * ~3.5 us/byte page program). */
	p->erase_ms = 40;
	p->write_us = 3.5;
	p->sector = 4096;
	p->boot_ms = 300;
	p->proc_us = 200;
	p->supervision_ms = 420;
	p->encrypt = false;
	p->pkts = 0;
	if (!strcmp(name, "fast")) {
		/* 2M PHY, DLE, NCS DFU "speedup": MTU 498, 7.5 ms interval; the controller lets
		 * the event run to the next anchor: 5 exchanges of 1392 us per event. */
		p->phy = SIM_PHY_2M;
		p->interval_ms = 7.5;
		p->event_ms = 0;
		p->mtu = 498;
		p->latency_ms = 2;
		p->dle = 251;
	} else if (!strcmp(name, "slow")) {
		/* 1M PHY, no DLE, default MTU, 50 ms interval, a 3.75 ms event (the SoftDevice's
		 * default event length): 5 exchanges of 676 us per event. */
		p->phy = SIM_PHY_1M;
		p->interval_ms = 50;
		p->event_ms = 3.75;
		p->mtu = 23;
		p->latency_ms = 10;
		p->dle = 27;
	} else {
		/* "typical": 1M PHY with DLE, MTU 247, the kernel's 30 ms interval, a controller
		 * that reserves 7.5 ms per event: 3 exchanges of 2468 us per event. */
		p->phy = SIM_PHY_1M;
		p->interval_ms = 30;
		p->event_ms = 7.5;
		p->mtu = 247;
		p->latency_ms = 5;
		p->dle = 251;
	}
}

static int parse_double(const char *s, double min, double max, double *ret)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end != '\0' || !isfinite(v))
		return -EINVAL;
	if (v < min || v > max)
		return -ERANGE;
	*ret = v;
	return 0;
}

static int parse_uint(const char *s, unsigned min, unsigned max, unsigned *ret)
{
	int64_t v;
	int r = fgw_parse_int64(s, min, max, &v);
	if (r < 0)
		return r;
	*ret = (unsigned) v;
	return 0;
}

static int link_set(struct sim_link_params *p, const char *k, const char *v)
{
	if (!strcmp(k, "mtu"))
		return parse_uint(v, 23, 517, &p->mtu);
	if (!strcmp(k, "interval"))
		return parse_double(v, 7.5, 4000, &p->interval_ms);
	if (!strcmp(k, "pkts")) /* a cap below physics only; 0 = none */
		return parse_uint(v, 0, 64, &p->pkts);
	if (!strcmp(k, "event"))
		return parse_double(v, 0, 4000, &p->event_ms);
	if (!strcmp(k, "encrypt"))
		return fgw_parse_bool(v, &p->encrypt);
	if (!strcmp(k, "phy")) {
		if (!strcmp(v, "1m"))
			p->phy = SIM_PHY_1M;
		else if (!strcmp(v, "2m"))
			p->phy = SIM_PHY_2M;
		else if (!strcmp(v, "coded"))
			p->phy = SIM_PHY_CODED_S8;
		else
			return -EINVAL;
		return 0;
	}
	if (!strcmp(k, "latency"))
		return parse_double(v, 0, 10000, &p->latency_ms);
	if (!strcmp(k, "dle"))
		return parse_uint(v, 27, 251, &p->dle);
	if (!strcmp(k, "erase"))
		return parse_double(v, 0, 100000, &p->erase_ms);
	if (!strcmp(k, "write"))
		return parse_double(v, 0, 100000, &p->write_us);
	if (!strcmp(k, "sector"))
		return parse_uint(v, 256, 1u << 20, &p->sector);
	if (!strcmp(k, "boot"))
		return parse_double(v, 0, 600000, &p->boot_ms);
	if (!strcmp(k, "proc"))
		return parse_double(v, 0, 1000000, &p->proc_us);
	if (!strcmp(k, "supervision"))
		return parse_double(v, 0, 32000, &p->supervision_ms);
	return -ENOENT;
}

int sim_link_parse(const char *s, struct sim_link_params *p)
{
	struct sim_link_params n = *p;
	char buf[512], *save = NULL, *tok;

	if (!strcmp(s, "fast") || !strcmp(s, "typical") || !strcmp(s, "slow")) {
		sim_link_profile(s, p);
		return 0;
	}
	if (strlen(s) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, s);
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');
		int r;

		if (!eq) {
			if (!strcmp(tok, "fast") || !strcmp(tok, "typical") ||
			    !strcmp(tok, "slow")) {
				sim_link_profile(tok,
						 &n); /* "fast,latency=5": profile, then tweaks */
				continue;
			}
			return -EINVAL;
		}
		*eq = '\0';
		r = link_set(&n, tok, eq + 1);
		if (r < 0)
			return r == -ENOENT ? -EINVAL : r;
	}
	*p = n;
	return 0;
}

void sim_dev_config_defaults(struct sim_dev_config *c)
{
	memset(c, 0, sizeof(*c));
	c->mode = SIM_MODE_OVERWRITE; /* nRF5340 multi-image DFU is overwrite-only (mode 2) */
	sim_link_profile("typical", &c->link);
	snprintf(c->app_version, sizeof(c->app_version), "1.0.0");
	snprintf(c->net_version, sizeof(c->net_version), "1.0.0");
	c->buf_size = 2475;	   /* NCS DFU sample with reassembly: 5 x 495 */
	c->buf_count = 0;	   /* the transport's default, resolved in main.c */
	c->slot_size[0] = 0xf0000; /* 960 KiB app slots */
	c->slot_size[1] = 0x40000; /* 256 KiB net core slots */
	c->body_size[0] = 48 * 1024;
	c->body_size[1] = 24 * 1024;
	c->image_check = true;
	c->bootloader_info = true;
	c->ncs_order_bug = true;
	c->rssi = -60;
	c->passkey = -1;
	c->faults.disconnect_at_chunk = -1;
	c->faults.error_at_chunk = -1;
	c->faults.reboot_at_chunk = -1;
	c->faults.out_of_range_at_chunk = -1;
	c->faults.watchdog_ms = 5000;
}

static int parse_chunk(const char *v, int64_t *ret)
{
	return fgw_parse_int64(v, -1, INT64_MAX / 2, ret);
}

static int parse_prob(const char *v, double *ret)
{
	return parse_double(v, 0, 1, ret);
}

static bool utf8_ok(const unsigned char *s, size_t len)
{
	for (size_t i = 0; i < len;) {
		size_t n = s[i] < 0x80			  ? 1
			   : s[i] >= 0xc2 && s[i] <= 0xdf ? 2
			   : s[i] >= 0xe0 && s[i] <= 0xef ? 3
			   : s[i] >= 0xf0 && s[i] <= 0xf4 ? 4
							  : 0;
		if (n == 0 || i + n > len)
			return false;
		for (size_t k = 1; k < n; k++)
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
		/* overlong 3/4-byte forms, surrogates, past U+10FFFF */
		if ((s[i] == 0xe0 && s[i + 1] < 0xa0) || (s[i] == 0xed && s[i + 1] > 0x9f) ||
		    (s[i] == 0xf0 && s[i + 1] < 0x90) || (s[i] == 0xf4 && s[i + 1] > 0x8f))
			return false;
		i += n;
	}
	return true;
}

/*
 * A device name as a scenario writes it: text, with \xHH for any byte (control characters
 * cannot be written in an INI value) and \\ for a backslash. It must come out as valid
 * UTF-8 of 1 to @size - 1 bytes without NUL: what BlueZ passes on to D-Bus (it does not
 * strip control characters).
 */
static int parse_text(const char *v, char *out, size_t size, bool utf8)
{
	size_t n = 0;

	for (const char *s = v; *s; s++) {
		unsigned char c = (unsigned char) *s;

		if (c == '\\' && s[1] == '\\') {
			s++;
		} else if (c == '\\' && s[1] == 'x') {
			uint8_t b;
			if (fgw_hex_decode((const char[]){s[2] ? s[2] : '?', s[2] ? s[3] : '?', 0},
					   &b, 1) < 0 ||
			    b == 0)
				return -EINVAL;
			c = b;
			s += 3;
		} else if (c == '\\') {
			return -EINVAL;
		}
		if (n + 1 >= size)
			return -EINVAL;
		out[n++] = (char) c;
	}
	out[n] = '\0';
	return n > 0 && (!utf8 || utf8_ok((const unsigned char *) out, n)) ? 0 : -EINVAL;
}

/* "hci0:-60,hci1:-75" (or ';' between entries): the adapters that hear the device, each with
 * a mean RSSI; "hci1" alone takes `rssi`; "all" = every adapter. */
static int parse_adapters(const char *v, struct sim_dev_config *c)
{
	uint32_t mask = 0;
	int rssi[SIM_MAX_ADAPTERS];
	const char *p = v;

	if (!strcmp(v, "all")) {
		c->adapters_mask = 0;
		return 0;
	}
	while (*p) {
		unsigned k;
		int64_t x = c->rssi;
		char num[8];
		const char *end = p + strcspn(p, ",;"), *colon;
		size_t n;

		if (strncmp(p, "hci", 3))
			return -EINVAL;
		colon = memchr(p, ':', (size_t) (end - p));
		n = (size_t) ((colon ? colon : end) - (p + 3));
		if (n == 0 || n >= sizeof(num))
			return -EINVAL;
		memcpy(num, p + 3, n);
		num[n] = '\0';
		if (parse_uint(num, 0, SIM_MAX_ADAPTERS - 1, &k) < 0)
			return -EINVAL;
		if (colon) {
			char r[8];
			size_t rn = (size_t) (end - colon - 1);
			if (rn == 0 || rn >= sizeof(r))
				return -EINVAL;
			memcpy(r, colon + 1, rn);
			r[rn] = '\0';
			if (fgw_parse_int64(r, -127, 20, &x) < 0)
				return -EINVAL;
		}
		mask |= 1u << k;
		rssi[k] = (int) x;
		p = *end ? end + 1 : end;
	}
	if (!mask)
		return -EINVAL;
	c->adapters_mask = mask;
	for (unsigned k = 0; k < SIM_MAX_ADAPTERS; k++)
		if (mask & (1u << k))
			c->adapter_rssi[k] = rssi[k];
	return 0;
}

/* Keys that are plain booleans of the device or of its faults. */
static const struct {
	const char *key;
	size_t off;
} bool_keys[] = {
    {"image_check", offsetof(struct sim_dev_config, image_check)},
    {"no_downgrade", offsetof(struct sim_dev_config, no_downgrade)},
    {"net_slot0_visible", offsetof(struct sim_dev_config, net_slot0_visible)},
    {"ncs_order_bug", offsetof(struct sim_dev_config, ncs_order_bug)},
    {"allow_erase_pending", offsetof(struct sim_dev_config, allow_erase_pending)},
    {"adv_smp_uuid", offsetof(struct sim_dev_config, adv_smp_uuid)},
    {"bond_lost", offsetof(struct sim_dev_config, bond_lost)},
    {"single_image", offsetof(struct sim_dev_config, single_image)},
    {"bootloader_info", offsetof(struct sim_dev_config, bootloader_info)},
    {"reset_no_answer", offsetof(struct sim_dev_config, reset_no_answer)},
    {"bad_boot", offsetof(struct sim_dev_config, faults.bad_boot)},
    {"lose_final_chunk", offsetof(struct sim_dev_config, faults.lose_final_chunk)},
    {"no_confirm", offsetof(struct sim_dev_config, faults.no_confirm)},
    {"net_unreadable", offsetof(struct sim_dev_config, faults.net_unreadable)},
    {"out_of_range", offsetof(struct sim_dev_config, faults.out_of_range)},
};

static int set_bool(struct sim_dev_config *c, const char *k, const char *v)
{
	for (size_t i = 0; i < sizeof(bool_keys) / sizeof(bool_keys[0]); i++)
		if (!strcmp(k, bool_keys[i].key))
			return fgw_parse_bool(v, (bool *) ((char *) c + bool_keys[i].off));
	return -ENOENT;
}

/* The value's index in the NULL-terminated @names, or -EINVAL. */
static int pick(const char *v, const char *const *names)
{
	for (int i = 0; names[i]; i++)
		if (!strcmp(v, names[i]))
			return i;
	return -EINVAL;
}

static int set_choice(struct sim_dev_config *c, const char *k, const char *v)
{
	static const char *const modes[] = {"swap", "overwrite", NULL};
	static const char *const secs[] = {"none", "encrypt", "authen", NULL};
	static const char *const errs[] = {"busy", "nomem", "none", NULL};
	int i;

	if (!strcmp(k, "mode")) {
		if ((i = pick(v, modes)) < 0)
			return i;
		c->mode = i == 0 ? SIM_MODE_SWAP : SIM_MODE_OVERWRITE;
		return 0;
	}
	if (!strcmp(k, "security")) {
		if ((i = pick(v, secs)) < 0)
			return i;
		c->security = i == 0 ? SIM_SEC_NONE : i == 1 ? SIM_SEC_ENCRYPT : SIM_SEC_AUTHEN;
		return 0;
	}
	if (!strcmp(k, "error")) {
		if ((i = pick(v, errs)) < 0)
			return i;
		c->faults.error = i == 0 ? SIM_ERR_BUSY : i == 1 ? SIM_ERR_NOMEM : SIM_ERR_NONE;
		return 0;
	}
	return -ENOENT;
}

/* passkey and rssi: a number or a word for "none". */
static int set_special_int(struct sim_dev_config *c, const char *k, const char *v)
{
	int64_t x;
	int r;

	if (!strcmp(k, "passkey")) {
		if (!strcmp(v, "none")) {
			c->passkey = -1;
			return 0;
		}
		if (strlen(v) != 6)
			return -EINVAL;
		r = fgw_parse_int64(v, 0, 999999, &x);
		if (r == 0)
			c->passkey = (int) x;
		return r;
	}
	if (!strcmp(k, "rssi")) {
		/* 127: the controller reports "RSSI not available" (HCI), as virtual ones do */
		if (!strcmp(v, "127") || !strcmp(v, "invalid")) {
			c->rssi = 127;
			return 0;
		}
		r = fgw_parse_int64(v, -127, 20, &x);
		if (r == 0)
			c->rssi = (int) x;
		return r;
	}
	return -ENOENT;
}

static int set_device(struct sim_dev_config *c, const char *k, const char *v)
{
	struct sim_version ver;

	if (!strcmp(k, "app_version") || !strcmp(k, "net_version")) {
		char *dst = k[0] == 'a' ? c->app_version : c->net_version;
		if (strlen(v) >= SIM_VERSION_MAX || sim_version_parse(v, &ver) < 0)
			return -EINVAL;
		strcpy(dst, v);
		return 0;
	}
	if (!strcmp(k, "buf_size"))
		return parse_uint(v, 64, 65535, &c->buf_size);
	if (!strcmp(k, "buf_count"))
		return parse_uint(v, 1, SIM_MAX_BUFS, &c->buf_count);
	if (!strcmp(k, "app_slot_size"))
		return parse_uint(v, 4096, 64u << 20, &c->slot_size[0]);
	if (!strcmp(k, "net_slot_size"))
		return parse_uint(v, 4096, 64u << 20, &c->slot_size[1]);
	if (!strcmp(k, "app_size"))
		return parse_uint(v, 0, 16u << 20, &c->body_size[0]);
	if (!strcmp(k, "net_size"))
		return parse_uint(v, 0, 16u << 20, &c->body_size[1]);
	if (!strcmp(k, "name"))
		return parse_text(v, c->name, sizeof(c->name), true);
	if (!strcmp(k, "adapters"))
		return parse_adapters(v, c);
	if (!strcmp(k, "rpa_rotate_s"))
		return parse_double(v, 0, 86400, &c->rpa_rotate_s);
	if (!strcmp(k, "rsn")) {
		if (!strcmp(v, "none")) {
			c->rsn[0] = '\0';
			return 0;
		}
		return parse_text(v, c->rsn, sizeof(c->rsn), false);
	}
	return set_special_int(c, k, v);
}

static int set_fault(struct sim_faults *f, const char *k, const char *v)
{
	if (!strcmp(k, "disconnect_at_chunk"))
		return parse_chunk(v, &f->disconnect_at_chunk);
	if (!strcmp(k, "disconnect_prob"))
		return parse_prob(v, &f->disconnect_prob);
	if (!strcmp(k, "drop_notify_prob"))
		return parse_prob(v, &f->drop_notify_prob);
	if (!strcmp(k, "rsp_delay_ms"))
		return parse_double(v, 0, 600000, &f->rsp_delay_ms);
	if (!strcmp(k, "error_prob"))
		return parse_prob(v, &f->error_prob);
	if (!strcmp(k, "error_at_chunk"))
		return parse_chunk(v, &f->error_at_chunk);
	if (!strcmp(k, "reboot_at_chunk"))
		return parse_chunk(v, &f->reboot_at_chunk);
	if (!strcmp(k, "watchdog_ms"))
		return parse_double(v, 0, 600000, &f->watchdog_ms);
	if (!strcmp(k, "out_of_range_at_chunk"))
		return parse_chunk(v, &f->out_of_range_at_chunk);
	if (!strcmp(k, "out_of_range_ms"))
		return parse_double(v, 0, 86400000, &f->out_of_range_ms);
	return -ENOENT;
}

/* Keys are unique, so the groups are tried in any order; -ENOENT from all: unknown key. */
int sim_dev_config_set(struct sim_dev_config *c, const char *k, const char *v)
{
	int r;

	if (!strcmp(k, "link"))
		return sim_link_parse(v, &c->link);
	r = link_set(&c->link, k, v);
	if (r == -ENOENT)
		r = set_bool(c, k, v);
	if (r == -ENOENT)
		r = set_choice(c, k, v);
	if (r == -ENOENT)
		r = set_device(c, k, v);
	if (r == -ENOENT)
		r = set_fault(&c->faults, k, v);
	return r;
}
