/*
 * fotagw-sim --peripheral: the devices' side of pairing with the REAL bluetoothd. A device
 * with a passkey (scenario key passkey = NNNNNN) shows it on its display; here, as in the
 * reference harness (../shared/vm-bluez §5), that is a KeyboardOnly agent made the default
 * agent, because bluetoothd always asks the default agent for the responder's passkey, and LE
 * passkey entry with KeyboardOnly on both sides makes each side enter the same number.
 * RequestPasskey answers for the device behind the adapter the request comes through;
 * anything else is refused.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

#define AGENT_PATH "/org/fotagw/sim/agent"

struct periph_agent {
	struct sim *sim;
	sd_bus_slot *vtable, *reg, *def;
};

static int passkey_for(struct periph_agent *a, const char *dev_path)
{
	for (unsigned i = 0; i < a->sim->n_devs; i++) {
		char prefix[64];
		size_t n = (size_t) snprintf(prefix, sizeof(prefix), "/org/bluez/%s/",
					     a->sim->opt.adapters[i]);
		if (strncmp(dev_path, prefix, n) == 0)
			return a->sim->devs[i].cfg.passkey;
	}
	return -1;
}

static int ag_passkey(sd_bus_message *m, void *userdata, sd_bus_error *e)
{
	struct periph_agent *a = userdata;
	const char *dev;
	int pk;

	if (sd_bus_message_read(m, "o", &dev) < 0)
		return sd_bus_reply_method_errorf(m, "org.bluez.Error.Rejected", "bad request");
	pk = passkey_for(a, dev);
	if (pk < 0) {
		fgw_notice(
		    "event: periph-agent, request: RequestPasskey, peer: %s, answer: rejected",
		    dev);
		return sd_bus_reply_method_errorf(m, "org.bluez.Error.Rejected",
						  "no device of ours behind %s", dev);
	}
	fgw_notice("event: periph-agent, request: RequestPasskey, peer: %s, answer: passkey", dev);
	return sd_bus_reply_method_return(m, "u", (uint32_t) pk);
}

static int ag_ok(sd_bus_message *m, void *userdata, sd_bus_error *e)
{
	return sd_bus_reply_method_return(m, NULL);
}

static int ag_reject(sd_bus_message *m, void *userdata, sd_bus_error *e)
{
	fgw_notice("event: periph-agent, request: %s, answer: rejected",
		   sd_bus_message_get_member(m));
	return sd_bus_reply_method_errorf(m, "org.bluez.Error.Rejected", "not supported");
}

static const sd_bus_vtable agent_vtable[] = {
    SD_BUS_VTABLE_START(0),
    SD_BUS_METHOD("Release", "", "", ag_ok, 0),
    SD_BUS_METHOD("RequestPinCode", "o", "s", ag_reject, 0),
    SD_BUS_METHOD("DisplayPinCode", "os", "", ag_reject, 0),
    SD_BUS_METHOD("RequestPasskey", "o", "u", ag_passkey, 0),
    SD_BUS_METHOD("DisplayPasskey", "ouq", "", ag_ok, 0),
    SD_BUS_METHOD("RequestConfirmation", "ou", "", ag_reject, 0),
    SD_BUS_METHOD("RequestAuthorization", "o", "", ag_reject, 0),
    SD_BUS_METHOD("AuthorizeService", "os", "", ag_reject, 0),
    SD_BUS_METHOD("Cancel", "", "", ag_ok, 0),
    SD_BUS_VTABLE_END,
};

static int on_reply(sd_bus_message *m, void *userdata, sd_bus_error *e)
{
	const sd_bus_error *err = sd_bus_message_get_error(m);

	if (err)
		fgw_warning("periph agent: %s: %s", err->name, err->message);
	else
		fgw_notice("event: periph-agent-registered");
	return 0;
}

void *sim_periph_agent_start(sd_bus *bus, struct sim *sim)
{
	struct periph_agent *a;
	bool any = false;
	int r;

	for (unsigned i = 0; i < sim->n_devs; i++)
		any = any || sim->devs[i].cfg.passkey >= 0;
	if (!any)
		return NULL;
	a = calloc(1, sizeof(*a));
	if (!a)
		return NULL;
	a->sim = sim;
	r = sd_bus_add_object_vtable(bus, &a->vtable, AGENT_PATH, "org.bluez.Agent1", agent_vtable,
				     a);
	if (r >= 0)
		r = sd_bus_call_method_async(bus, &a->reg, "org.bluez", "/org/bluez",
					     "org.bluez.AgentManager1", "RegisterAgent", on_reply,
					     a, "os", AGENT_PATH, "KeyboardOnly");
	/* bluetoothd handles them in order: the default request finds the agent registered */
	if (r >= 0)
		r = sd_bus_call_method_async(bus, &a->def, "org.bluez", "/org/bluez",
					     "org.bluez.AgentManager1", "RequestDefaultAgent",
					     on_reply, a, "o", AGENT_PATH);
	if (r < 0) {
		fgw_log_errno(LOG_WARNING, r, "periph agent: cannot register");
		return sim_periph_agent_free(a);
	}
	return a;
}

void *sim_periph_agent_free(void *p)
{
	struct periph_agent *a = p;

	if (!a)
		return NULL;
	sd_bus_slot_unref(a->vtable);
	sd_bus_slot_unref(a->reg);
	sd_bus_slot_unref(a->def);
	free(a);
	return NULL;
}
