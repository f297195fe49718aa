/*
 * The fake bluetoothd's pairing agents and LE pairing, as BlueZ 5.66 does them (src/agent.c,
 * src/device.c) over a Linux kernel SMP with LE Secure Connections:
 *   - AgentManager1.RegisterAgent(path, capability): one agent per bus client (AlreadyExists
 *     for a second), capability parsed as parse_io_capability() does ("" is KeyboardDisplay,
 *     an unknown one InvalidArguments); RequestDefaultAgent only for the caller's own agent
 *     (DoesNotExist otherwise); UnregisterAgent; an agent goes when its client leaves.
 *   - Pairing asks the agent of the caller, else the default agent (agent_get()), else runs
 *     with NoInputNoOutput.
 *   - Method (Core spec Vol 3 Part H 2.3.5.1, LE SC): a device that displays a passkey
 *     (DisplayOnly) against KeyboardOnly or KeyboardDisplay: passkey entry on our side
 *     (Agent1.RequestPasskey, 60 s REQUEST_TIMEOUT), authenticated key. Anything else with
 *     such a device, or a device without I/O: Just Works, unauthenticated key.
 *   - A passkey that does not match, or an agent that refuses or does not answer: SMP fails
 *     ("Confirm value failed" / "Passkey Entry Failed") and Pair answers
 *     org.bluez.Error.AuthenticationFailed ("Authentication Failed"), as the VM tier showed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

#define AGENT_REQUEST_TIMEOUT_USEC (60ull * 1000 * 1000)

enum io_cap { CAP_DISPLAY_ONLY, CAP_DISPLAY_YESNO, CAP_KEYBOARD_ONLY, CAP_NONE, CAP_KBD_DISPLAY };

struct agent {
	struct agent *next;
	char sender[64];
	char path[128];
	enum io_cap cap;
	bool is_default;
};

struct sim_agents {
	sd_bus *bus;
	uv_loop_t *loop;
	sd_bus_slot *slot;
	struct agent *agents;
};

struct sim_pairing {
	struct sim_agents *a;
	uv_timer_t timer;
	sd_bus_slot *call;
	int passkey;
	int level; /* reached when the timer fires; < 0: failed */
	const char *err_name, *err_msg;
	sim_pair_done_t cb;
	void *user_data;
	bool freed;
};

static int parse_cap(const char *s, enum io_cap *ret)
{
	static const struct {
		const char *name;
		enum io_cap cap;
	} caps[] = {
	    {"", CAP_KBD_DISPLAY},
	    {"DisplayOnly", CAP_DISPLAY_ONLY},
	    {"DisplayYesNo", CAP_DISPLAY_YESNO},
	    {"KeyboardOnly", CAP_KEYBOARD_ONLY},
	    {"NoInputNoOutput", CAP_NONE},
	    {"KeyboardDisplay", CAP_KBD_DISPLAY},
	};

	for (size_t i = 0; i < ARRAY_SIZE(caps); i++)
		if (!strcmp(s, caps[i].name)) {
			*ret = caps[i].cap;
			return 0;
		}
	return -EINVAL;
}

static struct agent **agent_find(struct sim_agents *a, const char *sender)
{
	for (struct agent **p = &a->agents; *p; p = &(*p)->next)
		if (!strcmp((*p)->sender, sender))
			return p;
	return NULL;
}

static int m_register(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	struct sim_agents *a = userdata;
	const char *sender = sd_bus_message_get_sender(m), *path, *capability;
	struct agent *ag;
	enum io_cap cap;

	if (agent_find(a, sender))
		return sd_bus_reply_method_errorf(m, "org.bluez.Error.AlreadyExists",
						  "Already Exists");
	if (sd_bus_message_read(m, "os", &path, &capability) < 0 ||
	    parse_cap(capability, &cap) < 0 || strlen(path) >= sizeof(ag->path))
		return sd_bus_reply_method_errorf(m, "org.bluez.Error.InvalidArguments",
						  "Invalid arguments in method call");
	ag = calloc(1, sizeof(*ag));
	if (!ag)
		return -ENOMEM;
	snprintf(ag->sender, sizeof(ag->sender), "%s", sender);
	snprintf(ag->path, sizeof(ag->path), "%s", path);
	ag->cap = cap;
	ag->next = a->agents;
	a->agents = ag;
	fgw_notice("event: agent-registered, client: %s, capability: '%s'", sender,
		   capability[0] ? capability : "KeyboardDisplay");
	return sd_bus_reply_method_return(m, NULL);
}

static int m_unregister(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	struct sim_agents *a = userdata;
	struct agent **p = agent_find(a, sd_bus_message_get_sender(m)), *ag;
	const char *path;

	if (!p)
		return sd_bus_reply_method_errorf(m, "org.bluez.Error.DoesNotExist",
						  "Does Not Exist");
	if (sd_bus_message_read(m, "o", &path) < 0)
		return sd_bus_reply_method_errorf(m, "org.bluez.Error.InvalidArguments",
						  "Invalid arguments in method call");
	if (strcmp(path, (*p)->path) != 0)
		return sd_bus_reply_method_errorf(m, "org.bluez.Error.DoesNotExist",
						  "Does Not Exist");
	ag = *p;
	*p = ag->next;
	free(ag);
	return sd_bus_reply_method_return(m, NULL);
}

static int m_request_default(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	struct sim_agents *a = userdata;
	struct agent **p = agent_find(a, sd_bus_message_get_sender(m));
	const char *path;

	if (!p)
		return sd_bus_reply_method_errorf(m, "org.bluez.Error.DoesNotExist",
						  "Does Not Exist");
	if (sd_bus_message_read(m, "o", &path) < 0)
		return sd_bus_reply_method_errorf(m, "org.bluez.Error.InvalidArguments",
						  "Invalid arguments in method call");
	if (strcmp(path, (*p)->path) != 0)
		return sd_bus_reply_method_errorf(m, "org.bluez.Error.DoesNotExist",
						  "Does Not Exist");
	for (struct agent *ag = a->agents; ag; ag = ag->next)
		ag->is_default = false;
	(*p)->is_default = true;
	return sd_bus_reply_method_return(m, NULL);
}

static const sd_bus_vtable agent_manager_vtable[] = {
    SD_BUS_VTABLE_START(0),
    SD_BUS_METHOD("RegisterAgent", "os", "", m_register, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD("UnregisterAgent", "o", "", m_unregister, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD("RequestDefaultAgent", "o", "", m_request_default, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_VTABLE_END,
};

int sim_agents_new(sd_bus *bus, uv_loop_t *loop, struct sim_agents **ret)
{
	struct sim_agents *a = calloc(1, sizeof(*a));
	int r;

	if (!a)
		return -ENOMEM;
	a->bus = bus;
	a->loop = loop;
	r = sd_bus_add_object_vtable(bus, &a->slot, "/org/bluez", "org.bluez.AgentManager1",
				     agent_manager_vtable, a);
	if (r < 0) {
		free(a);
		return r;
	}
	*ret = a;
	return 0;
}

struct sim_agents *sim_agents_free(struct sim_agents *a)
{
	if (!a)
		return NULL;
	while (a->agents) {
		struct agent *ag = a->agents;
		a->agents = ag->next;
		free(ag);
	}
	sd_bus_slot_unref(a->slot);
	free(a);
	return NULL;
}

void sim_agents_client_gone(struct sim_agents *a, const char *sender)
{
	struct agent **p = agent_find(a, sender), *ag;

	if (!p)
		return;
	ag = *p;
	*p = ag->next;
	free(ag);
}

/* ---- pairing ---- */

static void pairing_closed(uv_handle_t *h)
{
	free(container_of((uv_timer_t *) h, struct sim_pairing, timer));
}

struct sim_pairing *sim_pair_free(struct sim_pairing *p)
{
	if (!p || p->freed)
		return NULL;
	p->freed = true;
	p->call = sd_bus_slot_unref(p->call);
	uv_close((uv_handle_t *) &p->timer, pairing_closed);
	return NULL;
}

static void on_pair_timer(uv_timer_t *t)
{
	struct sim_pairing *p = container_of(t, struct sim_pairing, timer);
	sim_pair_done_t cb = p->cb;
	void *ud = p->user_data;
	int level = p->level;
	const char *name = p->err_name, *msg = p->err_msg;

	sim_pair_free(p);
	cb(ud, level, name, msg);
}

static void pair_fail(struct sim_pairing *p, const char *why)
{
	fgw_notice("event: pairing-failed, reason: '%s'", why);
	p->level = -1;
	p->err_name = "org.bluez.Error.AuthenticationFailed";
	p->err_msg = "Authentication Failed";
}

static int on_passkey(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	struct sim_pairing *p = userdata;
	uint32_t passkey;

	p->call = sd_bus_slot_unref(p->call);
	if (sd_bus_message_is_method_error(m, NULL))
		/* bluetoothd answers the kernel with a negative passkey reply */
		pair_fail(p, "the agent refused RequestPasskey");
	else if (sd_bus_message_read(m, "u", &passkey) < 0)
		pair_fail(p, "RequestPasskey answered with a wrong signature");
	else if ((int) passkey != p->passkey)
		pair_fail(p, "confirm value failed (passkey mismatch)");
	else
		p->level = SIM_SEC_AUTHEN;
	/* the rest of the SMP exchange (DHKey check, key distribution) */
	uv_timer_start(&p->timer, on_pair_timer, 30, 0);
	return 0;
}

int sim_pair_start(struct sim_agents *a, const char *caller, const char *dev_path, int passkey,
		   double smp_ms, sim_pair_done_t cb, void *user_data, struct sim_pairing **ret)
{
	struct agent *ag = NULL, **p;
	struct sim_pairing *pr;
	int r;

	if (caller && (p = agent_find(a, caller)))
		ag = *p;
	for (struct agent *x = a->agents; !ag && x; x = x->next)
		if (x->is_default)
			ag = x;
	pr = calloc(1, sizeof(*pr));
	if (!pr)
		return -ENOMEM;
	pr->a = a;
	pr->passkey = passkey;
	pr->cb = cb;
	pr->user_data = user_data;
	uv_timer_init(a->loop, &pr->timer);
	*ret = pr;
	if (passkey >= 0 && ag && (ag->cap == CAP_KEYBOARD_ONLY || ag->cap == CAP_KBD_DISPLAY)) {
		sd_bus_message *m = NULL;

		r = sd_bus_message_new_method_call(a->bus, &m, ag->sender, ag->path,
						   "org.bluez.Agent1", "RequestPasskey");
		if (r >= 0)
			r = sd_bus_message_append(m, "o", dev_path);
		if (r >= 0)
			r = sd_bus_call_async(a->bus, &pr->call, m, on_passkey, pr,
					      AGENT_REQUEST_TIMEOUT_USEC);
		sd_bus_message_unref(m);
		if (r >= 0)
			return 0;
		pair_fail(pr, "cannot call the agent");
	} else {
		/* Just Works: an unauthenticated key, whatever the device needs */
		pr->level = SIM_SEC_ENCRYPT;
	}
	uv_timer_start(&pr->timer, on_pair_timer, (uint64_t) (smp_ms + 0.999), 0);
	return 0;
}
