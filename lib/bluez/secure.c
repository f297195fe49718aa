/*
 * The security steps of a link, between service resolution and the subscription: pair when
 * the device needs a secured link and bluetoothd holds no bond, or probe with StartNotify when
 * nobody knows yet. Facts from BlueZ 5.66 (src/gatt-client.c, src/device.c, the VM tier):
 *   - AcquireNotify on a characteristic that refuses the CCC write for security is never
 *     answered, and bluetoothd later crashes (fixed upstream in 5.84): never do it unpaired.
 *   - StartNotify answers an ATT security error (0x05, 0x0f, 0x0c) with
 *     "org.bluez.Error.NotPermitted: Not paired", or, when bluetoothd raised the security by
 *     itself and that pairing failed, "org.bluez.Error.Failed: Operation failed with ATT
 *     error: 0x0e".
 *   - Device1.Pair() asks the agent registered on the caller's own D-Bus connection; it
 *     fails with AuthenticationFailed (wrong passkey, "Confirm value failed"),
 *     AuthenticationRejected, AuthenticationCanceled (link lost), AuthenticationTimeout, and
 *     answers AlreadyExists when a bond is held. It is called asynchronously: a synchronous
 *     call has been seen to end in AuthenticationCanceled after 31 s.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "bluez-private.h"
#include "util.h"

#define PAIR_TIMEOUT_DEFAULT_MS 30000

static const char *const security_names[_FGW_BLUEZ_SECURITY_MAX] = {
    [FGW_BLUEZ_SECURITY_UNKNOWN] = "unknown",
    [FGW_BLUEZ_SECURITY_NONE] = "none",
    [FGW_BLUEZ_SECURITY_ENCRYPT] = "encrypted",
    [FGW_BLUEZ_SECURITY_AUTHEN] = "authenticated",
};

FGW_EXPORT const char *fgw_bluez_security_to_string(enum fgw_bluez_security s)
{
	if ((int) s < 0 || s >= _FGW_BLUEZ_SECURITY_MAX)
		return NULL;
	return security_names[s];
}

FGW_EXPORT enum fgw_bluez_security fgw_bluez_security_from_string(const char *s)
{
	for (int i = 0; s && i < _FGW_BLUEZ_SECURITY_MAX; i++)
		if (strcmp(s, security_names[i]) == 0)
			return (enum fgw_bluez_security) i;
	return _FGW_BLUEZ_SECURITY_INVALID;
}

FGW_EXPORT void fgw_bluez_link_set_security(struct fgw_bluez_link *l, enum fgw_bluez_security sec)
{
	if (l && (int) sec >= 0 && sec < _FGW_BLUEZ_SECURITY_MAX)
		l->security = sec;
}

FGW_EXPORT bool fgw_bluez_link_paired(struct fgw_bluez_link *l)
{
	return l && l->paired_here;
}

static unsigned pair_timeout_ms(const struct fgw_bluez_link *l)
{
	return l->b->opts.pair_timeout_ms ? l->b->opts.pair_timeout_ms : PAIR_TIMEOUT_DEFAULT_MS;
}

void bz_link_subscribe_failed(struct fgw_bluez_link *l, const char *what, int err, const char *text)
{
	if (bz_is_notify_wedged(text)) {
		bz_link_set_error(l,
				  "%s: %s: bluetoothd holds a stale notify session on the SMP "
				  "characteristic (BlueZ < 5.84 after a link loss during "
				  "AcquireNotify); restart bluetoothd to clear it",
				  what, text);
		bz_link_fail(l, -EUCLEAN, true);
		return;
	}
	if (bz_is_security_error(text)) {
		bz_link_set_error(l, "pairing required: %s refused for security (%s)", what, text);
		bz_link_fail(l, -ENOKEY, true);
		return;
	}
	bz_link_set_error(l, "%s: %s", what, text);
	bz_link_fail(l, err, true);
}

/* A key refusal is quick: a few connection events, far below any connection timeout. */
#define BOND_REFUSAL_MAX_MS 3000

bool bz_bond_refused(struct fgw_bluez_link *l, const char *text)
{
	return strstr(text, "le-connection-abort-by-local") &&
	       fgw_now_ms() - l->connect_ms < BOND_REFUSAL_MAX_MS;
}

bool bz_link_probe_dropped(struct fgw_bluez_link *l, const char *why)
{
	if (!l->probing)
		return false;
	/* VM tier, BlueZ 5.66: the CCC write on an unpaired link made bluetoothd pair by itself,
	 * that failed, and SMP's failure ended the link ("Authentication Failure"). */
	l->probing = false;
	bz_link_set_error(
	    l,
	    "pairing required: the link dropped (%s) while subscribing on an unpaired "
	    "link (bluetoothd's own security upgrade failed)",
	    why);
	bz_link_fail(l, -ENOKEY, true);
	return true;
}

/* ---- pairing ---- */

static int on_pair_reply(sd_bus_message *m, void *user_data, sd_bus_error *ret_error)
{
	struct fgw_bluez_link *l = user_data;
	char text[BZ_REPLY_TEXT];
	int r;

	r = bz_link_reply(l, m, NULL, text);
	if (r == -EEXIST)
		r = 0; /* a bond was there already (Paired came late): use it */
	if (r == -ETIMEDOUT) {
		bz_link_set_error(l, "pairing did not finish within %u ms (%s)", pair_timeout_ms(l),
				  text);
		bz_link_fail(l, -ETIMEDOUT, true);
		return 0;
	}
	if (r < 0) {
		/* Wrong passkey, refusal, no agent, lost link: retrying the same would fail the
		 * same way, so it is the caller's to decide. */
		bz_link_set_error(l, "pairing failed: %s", text);
		bz_link_fail(l, -EKEYREJECTED, true);
		return 0;
	}
	fgw_info("bluez: %s paired", l->addr);
	l->paired_here = true;
	bz_link_restart_timer(l, l->b->opts.connect_timeout_ms);
	bz_link_enter_state(l, FGW_BLUEZ_LINK_STATE_ACQUIRING);
	bz_link_acquire_notify(l);
	return 0;
}

static void link_pair(struct fgw_bluez_link *l)
{
	unsigned ms = pair_timeout_ms(l);

	bz_link_enter_state(l, FGW_BLUEZ_LINK_STATE_PAIRING);
	/* Pairing has its own bound (the passkey exchange, SMP's 30 s), not the connect one; the
	 * call's own timeout is a backstop behind the link timer. */
	bz_link_restart_timer(l, ms);
	bz_link_call(l, "Pair", false, true, ((uint64_t) ms + 5000u) * 1000u, on_pair_reply);
}

void bz_link_pair_timeout(struct fgw_bluez_link *l)
{
	sd_bus_message *m = NULL;

	/* Tell bluetoothd to stop too; its answer does not matter. */
	if (l->b && l->dev_path &&
	    sd_bus_message_new_method_call(l->b->bus, &m, BLUEZ_SERVICE, l->dev_path,
					   BLUEZ_DEVICE_IFACE, "CancelPairing") >= 0)
		(void) sd_bus_call_async(l->b->bus, NULL, m, NULL, NULL, 0);
	sd_bus_message_unref(m);
	bz_link_set_error(l, "pairing did not finish within %u ms", pair_timeout_ms(l));
	bz_link_fail(l, -ETIMEDOUT, true);
}

/* ---- probing an unknown device ---- */

static int on_probe_stopped(sd_bus_message *m, void *user_data, sd_bus_error *ret_error)
{
	struct fgw_bluez_link *l = user_data;
	char text[BZ_REPLY_TEXT];
	int r;

	r = bz_link_reply(l, m, "StopNotify", text);
	if (r > 0)
		return 0;
	if (r < 0) {
		bz_link_set_error(l, "StopNotify: %s", text);
		bz_link_fail(l, r, true);
		return 0;
	}
	bz_link_acquire_notify(l);
	return 0;
}

static int on_probe_started(sd_bus_message *m, void *user_data, sd_bus_error *ret_error)
{
	struct fgw_bluez_link *l = user_data;
	struct bz_device *d;
	char text[BZ_REPLY_TEXT];
	int r;

	l->probing = false;
	r = bz_link_reply(l, m, "StartNotify", text);
	if (r > 0)
		return 0;
	d = bz_link_device(l);
	if (r == -ETIMEDOUT && d && !d->paired) {
		/* VM tier, BlueZ 5.66: on an unpaired link to a protected characteristic the
		 * CCC write waits for the security bluetoothd tries to raise by itself (pairing
		 * through its default agent); when that cannot succeed, no answer comes for
		 * longer than our call timeout. */
		bz_link_set_error(l,
				  "pairing required: StartNotify not answered within %u ms on an "
				  "unpaired link (bluetoothd waits for a security upgrade): %s",
				  l->b->opts.call_timeout_ms, text);
		bz_link_fail(l, -ENOKEY, true);
		return 0;
	}
	if (r < 0) {
		bz_link_subscribe_failed(l, "StartNotify", r, text);
		return 0;
	}
	/* The CCC write went through unsecured: the fd path is safe now. One notify session
	 * per client, so give this one back before acquiring. */
	l->probed = true;
	bz_link_call(l, "StopNotify", false, false, 0, on_probe_stopped);
	return 0;
}

void bz_link_subscribe(struct fgw_bluez_link *l, struct bz_device *d, struct bz_gatt_char *c)
{
	bool bonded = d->paired || l->paired_here;

	if (l->security >= FGW_BLUEZ_SECURITY_ENCRYPT && !bonded) {
		link_pair(l);
		return;
	}
	/* Unknown, or secured by a key whose level D-Bus does not show (an unauthenticated
	 * bond against a device that needs an authenticated one): StartNotify fails cleanly
	 * where AcquireNotify would hang. */
	if (l->security != FGW_BLUEZ_SECURITY_NONE && !l->probed && l->b->opts.acquire &&
	    c->has_notify_acquired) {
		l->probing = !bonded;
		bz_link_call(l, "StartNotify", false, false, 0, on_probe_started);
		return;
	}
	bz_link_acquire_notify(l);
}
