/*
 * The pairing agent: an org.bluez.Agent1 object on our own bus connection, so that the
 * Device1.Pair() calls of our links are answered by it (bluetoothd asks the agent of the
 * Pair caller, VM tier, ../shared/vm-bluez §5), plus Adapter1.RemoveDevice for forgetting a
 * bond. Passkeys come from a callback and never reach a log.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bluez-private.h"
#include "util.h"

#define AGENT_REJECTED "org.bluez.Error.Rejected"

static int reject(sd_bus_message *m, const char *method, const char *why)
{
	const char *dev = NULL;
	char addr[18] = "?";

	/* the first argument of every request is the device path, when there is one */
	if (sd_bus_message_peek_type(m, NULL, NULL) > 0 &&
	    sd_bus_message_read_basic(m, 'o', &dev) >= 0 && dev)
		(void) bz_path_to_addr(dev, addr);
	fgw_warning("bluez agent: %s for %s refused: %s", method, addr, why);
	return sd_bus_reply_method_errorf(m, AGENT_REJECTED, "%s", why);
}

static int a_release(sd_bus_message *m, void *userdata, sd_bus_error *e)
{
	fgw_info("bluez agent: released by bluetoothd");
	return sd_bus_reply_method_return(m, NULL);
}

static int a_pin(sd_bus_message *m, void *userdata, sd_bus_error *e)
{
	return reject(m, "RequestPinCode", "PIN codes (BR/EDR legacy pairing) are not used");
}

static int a_display_pin(sd_bus_message *m, void *userdata, sd_bus_error *e)
{
	return reject(m, "DisplayPinCode", "PIN codes (BR/EDR legacy pairing) are not used");
}

static int a_passkey(sd_bus_message *m, void *userdata, sd_bus_error *e)
{
	struct fgw_bluez *b = userdata;
	const char *dev;
	char addr[18];
	uint32_t passkey;
	int r;

	if (sd_bus_message_read(m, "o", &dev) < 0 || bz_path_to_addr(dev, addr) < 0)
		return sd_bus_reply_method_errorf(m, AGENT_REJECTED, "not a device path");
	r = b->agent.passkey_cb ? b->agent.passkey_cb(addr, &passkey, b->agent.user_data) : -ENOENT;
	if (r < 0 || passkey > 999999) {
		fgw_warning("bluez agent: RequestPasskey for %s refused: no passkey configured "
			    "for it",
			    addr);
		return sd_bus_reply_method_errorf(m, AGENT_REJECTED, "no passkey for %s", addr);
	}
	fgw_info("bluez agent: passkey given for %s", addr);
	return sd_bus_reply_method_return(m, "u", passkey);
}

static int a_display_passkey(sd_bus_message *m, void *userdata, sd_bus_error *e)
{
	/* we are the keyboard side; a displayed passkey is the peer's business, not a log's */
	return sd_bus_reply_method_return(m, NULL);
}

static int a_confirm(sd_bus_message *m, void *userdata, sd_bus_error *e)
{
	struct fgw_bluez *b = userdata;
	const char *dev;
	uint32_t value;
	char addr[18] = "?";

	if (!b->agent.allow_confirmation)
		return reject(m, "RequestConfirmation",
			      "numeric comparison is not allowed ([ble] allow_numeric_comparison)");
	if (sd_bus_message_read(m, "ou", &dev, &value) >= 0)
		(void) bz_path_to_addr(dev, addr);
	fgw_info("bluez agent: numeric comparison for %s accepted (allowed by configuration)",
		 addr);
	return sd_bus_reply_method_return(m, NULL);
}

static int a_authorization(sd_bus_message *m, void *userdata, sd_bus_error *e)
{
	return reject(m, "RequestAuthorization", "incoming pairings are not authorized");
}

static int a_authorize_service(sd_bus_message *m, void *userdata, sd_bus_error *e)
{
	return reject(m, "AuthorizeService", "no service is offered to peers");
}

static int a_cancel(sd_bus_message *m, void *userdata, sd_bus_error *e)
{
	fgw_info("bluez agent: bluetoothd cancelled the pending request");
	return sd_bus_reply_method_return(m, NULL);
}

static const sd_bus_vtable agent_vtable[] = {
    SD_BUS_VTABLE_START(0),
    SD_BUS_METHOD("Release", "", "", a_release, 0),
    SD_BUS_METHOD("RequestPinCode", "o", "s", a_pin, 0),
    SD_BUS_METHOD("DisplayPinCode", "os", "", a_display_pin, 0),
    SD_BUS_METHOD("RequestPasskey", "o", "u", a_passkey, 0),
    SD_BUS_METHOD("DisplayPasskey", "ouq", "", a_display_passkey, 0),
    SD_BUS_METHOD("RequestConfirmation", "ou", "", a_confirm, 0),
    SD_BUS_METHOD("RequestAuthorization", "o", "", a_authorization, 0),
    SD_BUS_METHOD("AuthorizeService", "os", "", a_authorize_service, 0),
    SD_BUS_METHOD("Cancel", "", "", a_cancel, 0),
    SD_BUS_VTABLE_END,
};

static int on_default_reply(sd_bus_message *m, void *user_data, sd_bus_error *ret_error)
{
	struct fgw_bluez *b = user_data;
	char text[256];

	b->agent_default_slot = sd_bus_slot_unref(b->agent_default_slot);
	if (bz_reply_error(m, text, sizeof(text)) < 0)
		bz_set_error(b, "RequestDefaultAgent: %s", text);
	return 0;
}

static int on_register_reply(sd_bus_message *m, void *user_data, sd_bus_error *ret_error)
{
	struct fgw_bluez *b = user_data;
	char text[256];
	int r;

	b->agent_reg_slot = sd_bus_slot_unref(b->agent_reg_slot);
	r = bz_reply_error(m, text, sizeof(text));
	if (r < 0 && r != -EEXIST) {
		bz_set_error(b, "RegisterAgent: %s (pairing will use NoInputNoOutput)", text);
		fgw_warning("bluez: %s", b->last_error);
		return 0;
	}
	fgw_info("bluez: pairing agent registered (%s)", b->agent_capability);
	return 0;
}

static int agent_call(struct fgw_bluez *b, const char *member, bool with_cap, sd_bus_slot **slot,
		      sd_bus_message_handler_t cb)
{
	sd_bus_message *m = NULL;
	int r;

	r = sd_bus_message_new_method_call(b->bus, &m, BLUEZ_SERVICE, "/org/bluez",
					   BLUEZ_AGENT_MANAGER_IFACE, member);
	if (r >= 0)
		r = sd_bus_message_append(m, "o", FGW_AGENT_PATH);
	if (r >= 0 && with_cap)
		r = sd_bus_message_append(m, "s", b->agent_capability);
	if (r >= 0)
		r = bz_call(b, m, slot, cb, b, 0);
	sd_bus_message_unref(m);
	return r;
}

void bz_agent_register(struct fgw_bluez *b)
{
	int r;

	if (!b->agent_on || !b->bluez_owner || b->freeing)
		return;
	b->agent_reg_slot = sd_bus_slot_unref(b->agent_reg_slot);
	b->agent_default_slot = sd_bus_slot_unref(b->agent_default_slot);
	r = agent_call(b, "RegisterAgent", true, &b->agent_reg_slot, on_register_reply);
	if (r >= 0 && b->agent.make_default)
		r = agent_call(b, "RequestDefaultAgent", false, &b->agent_default_slot,
			       on_default_reply);
	if (r < 0)
		bz_set_error(b, "cannot register the pairing agent: %s", strerror(-r));
}

void bz_agent_free(struct fgw_bluez *b)
{
	b->agent_reg_slot = sd_bus_slot_unref(b->agent_reg_slot);
	b->agent_default_slot = sd_bus_slot_unref(b->agent_default_slot);
	b->agent_vtable_slot = sd_bus_slot_unref(b->agent_vtable_slot);
	free(b->agent_capability);
	b->agent_capability = NULL;
	b->agent_on = false;
}

FGW_EXPORT int fgw_bluez_agent_start(struct fgw_bluez *b, const struct fgw_bluez_agent_options *o)
{
	static const char *const caps[] = {"KeyboardOnly", "NoInputNoOutput", "KeyboardDisplay",
					   "DisplayYesNo", "DisplayOnly"};
	bool known = false;
	int r;

	if (!b || !o || !o->capability || b->freeing)
		return -EINVAL;
	if (b->agent_on)
		return -EALREADY;
	for (size_t i = 0; i < ARRAY_SIZE(caps); i++)
		known = known || strcmp(o->capability, caps[i]) == 0;
	if (!known)
		return -EINVAL;
	b->agent_capability = strdup(o->capability);
	if (!b->agent_capability)
		return -ENOMEM;
	b->agent = *o;
	b->agent.capability = b->agent_capability;
	r = sd_bus_add_object_vtable(b->bus, &b->agent_vtable_slot, FGW_AGENT_PATH,
				     BLUEZ_AGENT_IFACE, agent_vtable, b);
	if (r < 0) {
		bz_agent_free(b);
		return r;
	}
	b->agent_on = true;
	bz_agent_register(b);
	return 0;
}

FGW_EXPORT int fgw_bluez_agent_set_capability(struct fgw_bluez *b, const char *capability)
{
	char *cap;

	if (!b || !b->agent_on || !capability)
		return -EINVAL;
	if (strcmp(b->agent_capability, capability) == 0)
		return 0;
	if (strcmp(capability, "KeyboardOnly") != 0 && strcmp(capability, "NoInputNoOutput") != 0)
		return -EINVAL;
	cap = strdup(capability);
	if (!cap)
		return -ENOMEM;
	free(b->agent_capability);
	b->agent_capability = cap;
	b->agent.capability = cap;
	/*
	 * bluetoothd keeps an agent's capability from RegisterAgent: unregister (no reply
	 * needed; calls on one connection are handled in order) and register again.
	 */
	if (b->bluez_owner && !b->freeing)
		(void) agent_call(b, "UnregisterAgent", false, NULL, NULL);
	bz_agent_register(b);
	return 0;
}

/* ---- forgetting a bond ---- */

struct remove_req {
	struct fgw_bluez *b;
	fgw_bluez_done_cb_t cb;
	void *user_data;
};

static int on_remove_reply(sd_bus_message *m, void *user_data, sd_bus_error *ret_error)
{
	struct remove_req *q = user_data;
	char text[256] = "";
	int r = bz_reply_error(m, text, sizeof(text));

	q->cb(q->b, r, text, q->user_data);
	free(q);
	return 0;
}

FGW_EXPORT int fgw_bluez_remove_device(struct fgw_bluez *b, const char *addr,
				       fgw_bluez_done_cb_t cb, void *user_data)
{
	struct bz_device *d;
	struct remove_req *q;
	sd_bus_message *m = NULL;
	char a[18];
	int r;

	if (!b || !cb || bz_addr_normalize(addr, a) < 0)
		return -EINVAL;
	if (b->adapter_state == FGW_BLUEZ_ADAPTER_STATE_ABSENT)
		return -ENETDOWN;
	/* The bond of the adapter that serves it; another adapter keeps its own. */
	d = bz_device_find_addr(b, a);
	if (!d)
		return -ENOENT;
	q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	q->b = b;
	q->cb = cb;
	q->user_data = user_data;
	r = sd_bus_message_new_method_call(b->bus, &m, BLUEZ_SERVICE, d->adapter,
					   BLUEZ_ADAPTER_IFACE, "RemoveDevice");
	if (r >= 0)
		r = sd_bus_message_append(m, "o", d->path);
	/* floating: the answer comes even if nothing else of ours is left */
	if (r >= 0)
		r = bz_call(b, m, NULL, on_remove_reply, q, 0);
	sd_bus_message_unref(m);
	if (r < 0)
		free(q);
	return r;
}

/* ---- passkeys ---- */

FGW_EXPORT int fgw_bluez_passkey_parse(const char *text, size_t len, uint32_t *ret)
{
	size_t i = 0, digits = 0;
	uint32_t v = 0;

	if (!text || !ret)
		return -EINVAL;
	while (i < len && isspace((unsigned char) text[i]))
		i++;
	while (i < len && text[i] >= '0' && text[i] <= '9' && digits < 7) {
		v = v * 10 + (uint32_t) (text[i] - '0');
		digits++;
		i++;
	}
	while (i < len && isspace((unsigned char) text[i]))
		i++;
	if (digits != 6 || i != len)
		return -EINVAL;
	*ret = v;
	return 0;
}

FGW_EXPORT int fgw_bluez_passkey_read(const char *path, uint32_t *ret)
{
	char buf[65];
	ssize_t n;
	int fd, r;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf));
	r = n < 0 ? -errno : 0;
	close(fd);
	if (r < 0)
		return r;
	if ((size_t) n >= sizeof(buf))
		return -EINVAL; /* longer than any passkey file */
	r = fgw_bluez_passkey_parse(buf, (size_t) n, ret);
	explicit_bzero(buf, sizeof(buf));
	return r;
}
