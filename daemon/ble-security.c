/*
 * fotagwd's BLE security: the passkey ([ble] passkey_file or the systemd credential
 * "ble-passkey"), the pairing agent, the security level stored per device (store
 * devices.security) applied to each new link, and the decision after a security failure:
 *   - refused for security at level L: raise to the next level the gateway can reach
 *     (encrypted by Just Works, authenticated with a passkey) and go again, once per level;
 *   - a bonded device that refuses our key (it lost its bond): remove the stale bond once
 *     (event "ble-bond-removed") and pair again;
 *   - a failed pairing (wrong passkey, refusal) or nothing left to raise: the job fails with
 *     a reason that says so.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ble-security.h"
#include "bluez.h"
#include "daemon.h"
#include "store.h"
#include "transport-ble.h"
#include "util.h"

#define MAX_REBONDS 256

struct fgw_ble_security {
	struct fgw_store *store; /* per-device passkeys (device_passkeys, migration 0004) */
	uint32_t passkey;
	bool has_passkey;
	bool keyboard; /* the agent was registered KeyboardOnly */
	/* devices whose stale bond was removed by this process: once each */
	char rebonded[MAX_REBONDS][18];
	unsigned n_rebonded;
};

static int give_passkey(const char *addr, uint32_t *ret, void *user_data)
{
	struct fgw_ble_security *s = user_data;
	int r;

	/* the device's own passkey, given at enrollment, before the product-wide one */
	r = fgw_store_device_passkey_get(s->store, addr, ret);
	if (r == 0)
		return 0;
	if (r != -ENOENT)
		fgw_log_errno(LOG_WARNING, r, "Cannot read the passkey of %s from the database",
			      addr);
	if (!s->has_passkey)
		return -ENOENT;
	*ret = s->passkey;
	return 0;
}

static int load_passkey(struct fgw_daemon *d, struct fgw_ble_security *s)
{
	const char *creds = getenv("CREDENTIALS_DIRECTORY");
	char path[4096];
	int r;

	if (d->cfg.ble_passkey_file && *d->cfg.ble_passkey_file) {
		snprintf(path, sizeof(path), "%s", d->cfg.ble_passkey_file);
	} else if (creds && *creds) {
		snprintf(path, sizeof(path), "%s/ble-passkey", creds);
		if (access(path, F_OK) != 0)
			return 0; /* no credential of that name: Just Works only */
	} else {
		return 0;
	}
	r = fgw_bluez_passkey_read(path, &s->passkey);
	if (r < 0)
		return fgw_log_errno(LOG_ERR, r, "ble.passkey_file '%s': %s", path,
				     r == -EINVAL ? "not a six-digit passkey" : "cannot read it");
	s->has_passkey = true;
	return 0;
}

int fgw_ble_security_start(struct fgw_daemon *d)
{
	struct fgw_ble_security *s = calloc(1, sizeof(*s));
	struct fgw_bluez_agent_options o = {0};
	int r;

	if (!s)
		return -ENOMEM;
	r = load_passkey(d, s);
	if (r < 0) {
		free(s);
		return r;
	}
	d->blesec = s;
	s->store = d->store;
	/*
	 * Passkey entry needs KeyboardOnly, chosen when any passkey is known at start. Not
	 * always: against a device with a display, KeyboardOnly without a passkey fails a
	 * pairing that Just Works (NoInputNoOutput) would have done for an encrypted link.
	 */
	bool keyboard = s->has_passkey || fgw_store_device_passkeys_count(d->store) > 0;
	s->keyboard = keyboard;
	o.capability = keyboard ? "KeyboardOnly" : "NoInputNoOutput";
	o.passkey_cb = give_passkey;
	o.user_data = s;
	o.allow_confirmation = d->cfg.ble_allow_numeric_comparison;
	/* default agent too: bluetoothd raising the security by itself asks it */
	o.make_default = d->cfg.ble_default_agent;
	r = fgw_bluez_agent_start(d->bluez, &o);
	if (r < 0)
		return fgw_log_errno(LOG_ERR, r, "Failed to start the BLE pairing agent");
	fgw_info("ble: pairing agent %s (%s)", o.capability,
		 s->has_passkey ? "a product-wide passkey is configured"
		 : keyboard	? "per-device passkeys from enrollment"
				: "no passkey: Just Works only");
	return 0;
}

void fgw_ble_security_passkey_added(struct fgw_daemon *d)
{
	int r;

	if (!d->blesec || d->blesec->keyboard || !d->bluez)
		return;
	r = fgw_bluez_agent_set_capability(d->bluez, "KeyboardOnly");
	if (r < 0) {
		fgw_log_errno(LOG_WARNING, r,
			      "ble: cannot switch the pairing agent to passkey entry");
		return;
	}
	d->blesec->keyboard = true;
	fgw_info("ble: pairing agent KeyboardOnly (a device was enrolled with its own passkey)");
}

void fgw_ble_security_stop(struct fgw_daemon *d)
{
	if (d->blesec)
		explicit_bzero(&d->blesec->passkey, sizeof(d->blesec->passkey));
	free(d->blesec);
	d->blesec = NULL;
}

static enum fgw_bluez_security stored_level(struct fgw_daemon *d, const char *address)
{
	char buf[32];
	enum fgw_bluez_security sec;

	if (fgw_store_device_security_get(d->store, address, buf, sizeof(buf)) < 0)
		return FGW_BLUEZ_SECURITY_UNKNOWN;
	sec = fgw_bluez_security_from_string(buf);
	return sec < 0 ? FGW_BLUEZ_SECURITY_UNKNOWN : sec;
}

void fgw_ble_security_apply(struct fgw_daemon *d, const char *address, struct fgw_transport *t)
{
	fgw_transport_ble_set_security(t, stored_level(d, address));
}

static bool rebond_once(struct fgw_ble_security *s, const char *address)
{
	for (unsigned i = 0; i < s->n_rebonded; i++)
		if (strcmp(s->rebonded[i], address) == 0)
			return false;
	if (s->n_rebonded < MAX_REBONDS)
		snprintf(s->rebonded[s->n_rebonded++], sizeof(s->rebonded[0]), "%s", address);
	return true;
}

static void on_bond_removed(struct fgw_bluez *b, int err, const char *text, void *user_data)
{
	char *address = user_data;

	if (err < 0)
		fgw_warning("ble: removing the stale bond of %s failed: %s", address, text);
	free(address);
}

static int set_level(struct fgw_daemon *d, const char *address, enum fgw_bluez_security sec)
{
	int r = fgw_store_device_security_set(d->store, address, fgw_bluez_security_to_string(sec));
	if (r < 0)
		fgw_log_errno(LOG_WARNING, r, "ble: cannot store the security of %s", address);
	fgw_notice("event: ble-security, device: %s, level: %s", address,
		   fgw_bluez_security_to_string(sec));
	return r;
}

static int lost_bond(struct fgw_daemon *d, const char *address, const char *detail, char *why,
		     size_t size)
{
	char *copy;

	if (!rebond_once(d->blesec, address)) {
		snprintf(why, size, "the device refuses our bond again after re-pairing: %s",
			 detail);
		return 0;
	}
	copy = strdup(address);
	if (!copy || fgw_bluez_remove_device(d->bluez, address, on_bond_removed, copy) < 0) {
		free(copy);
		snprintf(why, size, "cannot remove the stale bond: %s", detail);
		return 0;
	}
	fgw_notice("event: ble-bond-removed, device: %s, reason: 'the device lost its bond'",
		   address);
	snprintf(why, size, "stale bond removed (the device lost it), pairing again");
	return 1;
}

int fgw_ble_security_failed(struct fgw_daemon *d, const char *address, struct fgw_transport *t,
			    int err, char *why, size_t size)
{
	const char *detail = t ? fgw_transport_ble_last_error(t) : "";
	enum fgw_bluez_security cur = stored_level(d, address), next;

	if (!d->blesec)
		return 0;
	if (err == -EKEYREJECTED) {
		snprintf(why, size, "pairing failed (wrong passkey or refused by the device): %s",
			 detail);
		return 0;
	}
	if (err == -EKEYEXPIRED)
		return lost_bond(d, address, detail, why, size);
	/* -ENOKEY: the subscription was refused for security at level @cur */
	next = cur < FGW_BLUEZ_SECURITY_ENCRYPT ? FGW_BLUEZ_SECURITY_ENCRYPT
						: FGW_BLUEZ_SECURITY_AUTHEN;
	if (next == FGW_BLUEZ_SECURITY_AUTHEN && !d->blesec->has_passkey) {
		(void) set_level(d, address, FGW_BLUEZ_SECURITY_AUTHEN);
		snprintf(
		    why, size,
		    "pairing required: the device needs an authenticated (passkey) bond and no "
		    "passkey is configured ([ble] passkey_file): %s",
		    detail);
		return 0;
	}
	if (cur == FGW_BLUEZ_SECURITY_AUTHEN) {
		snprintf(why, size, "pairing required: refused even with an authenticated bond: %s",
			 detail);
		return 0;
	}
	(void) set_level(d, address, next);
	snprintf(why, size, "the device needs an %s link: pairing, then trying again",
		 fgw_bluez_security_to_string(next));
	return 1;
}
