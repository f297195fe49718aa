/*
 * Reading a{sv} property maps from bluetoothd defensively: a property of the wrong type is
 * skipped and counted (never trusted), a container of the wrong signature is -EBADMSG.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bluez-private.h"
#include "util.h"

static const char *const type_sig[] = {
    [BZ_PROP_STRING] = "s", [BZ_PROP_PATH] = "o",  [BZ_PROP_BOOL] = "b",   [BZ_PROP_INT16] = "n",
    [BZ_PROP_UINT16] = "q", [BZ_PROP_STRV] = "as", [BZ_PROP_BYTES] = "ay",
};

/* Cap on strings in a list (UUIDs): bluetoothd lists a handful; anything huge is hostile. */
#define STRV_MAX 256

void bz_strv_free(char **v)
{
	if (!v)
		return;
	for (char **p = v; *p; p++)
		free(*p);
	free(v);
}

int bz_read_strv(sd_bus_message *m, char ***ret)
{
	char **v = NULL;
	size_t n = 0;
	const char *s;
	int r;

	r = sd_bus_message_enter_container(m, 'a', "s");
	if (r <= 0)
		return -EBADMSG;
	v = calloc(1, sizeof(char *));
	if (!v)
		return -ENOMEM;
	while ((r = sd_bus_message_read_basic(m, 's', &s)) > 0) {
		char **nv;

		if (n >= STRV_MAX) {
			r = -E2BIG;
			break;
		}
		nv = realloc(v, (n + 2) * sizeof(char *));
		if (!nv) {
			r = -ENOMEM;
			break;
		}
		v = nv;
		v[n] = strdup(s);
		v[n + 1] = NULL;
		if (!v[n]) {
			r = -ENOMEM;
			break;
		}
		n++;
	}
	if (r < 0) {
		bz_strv_free(v);
		return r == -ENOMEM ? r : -EBADMSG;
	}
	r = sd_bus_message_exit_container(m);
	if (r < 0) {
		bz_strv_free(v);
		return -EBADMSG;
	}
	*ret = v;
	return 0;
}

bool bz_strv_contains_case(char *const *v, const char *s)
{
	if (!v)
		return false;
	for (; *v; v++)
		if (strcasecmp(*v, s) == 0)
			return true;
	return false;
}

/* Reads the variant's value (already entered) as @type. */
static int read_value(sd_bus_message *m, enum bz_prop_type type, struct bz_prop_value *v)
{
	const void *data;
	size_t len;
	int r;

	v->type = type;
	switch (type) {
	case BZ_PROP_STRING:
		return sd_bus_message_read_basic(m, 's', &v->s);
	case BZ_PROP_PATH:
		return sd_bus_message_read_basic(m, 'o', &v->s);
	case BZ_PROP_BOOL: {
		int b;
		r = sd_bus_message_read_basic(m, 'b', &b);
		v->b = b;
		return r;
	}
	case BZ_PROP_INT16:
		return sd_bus_message_read_basic(m, 'n', &v->n);
	case BZ_PROP_UINT16:
		return sd_bus_message_read_basic(m, 'q', &v->q);
	case BZ_PROP_STRV:
		r = bz_read_strv(m, &v->strv);
		return r < 0 ? r : 1;
	case BZ_PROP_BYTES:
		r = sd_bus_message_read_array(m, 'y', &data, &len);
		v->bytes.data = data;
		v->bytes.len = len;
		return r;
	}
	return -EINVAL;
}

int bz_read_props(sd_bus_message *m, const struct bz_prop_def *defs, size_t n_defs,
		  void (*cb)(void *obj, int id, const struct bz_prop_value *v), void *obj,
		  unsigned *ret_bad)
{
	unsigned bad = 0;
	int r;

	r = sd_bus_message_enter_container(m, 'a', "{sv}");
	if (r <= 0)
		return -EBADMSG;
	while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
		const struct bz_prop_def *def = NULL;
		const char *name, *contents;
		char type;

		r = sd_bus_message_read_basic(m, 's', &name);
		if (r <= 0)
			return -EBADMSG;
		for (size_t i = 0; i < n_defs; i++)
			if (strcmp(defs[i].name, name) == 0) {
				def = &defs[i];
				break;
			}
		r = sd_bus_message_peek_type(m, &type, &contents);
		if (r <= 0 || type != 'v')
			return -EBADMSG;
		if (def && strcmp(contents, type_sig[def->type]) != 0) {
			bad++;
			def = NULL;
		}
		if (!def) {
			r = sd_bus_message_skip(m, "v");
			if (r < 0)
				return -EBADMSG;
		} else {
			struct bz_prop_value v = {0};

			r = sd_bus_message_enter_container(m, 'v', contents);
			if (r <= 0)
				return -EBADMSG;
			r = read_value(m, def->type, &v);
			if (r <= 0)
				return r == -ENOMEM ? r : -EBADMSG;
			r = sd_bus_message_exit_container(m);
			if (r < 0) {
				if (def->type == BZ_PROP_STRV)
					bz_strv_free(v.strv);
				return -EBADMSG;
			}
			cb(obj, def->id, &v);
			if (def->type == BZ_PROP_STRV)
				bz_strv_free(v.strv);
		}
		r = sd_bus_message_exit_container(m);
		if (r < 0)
			return -EBADMSG;
	}
	if (r < 0)
		return -EBADMSG;
	r = sd_bus_message_exit_container(m);
	if (r < 0)
		return -EBADMSG;
	if (ret_bad)
		*ret_bad += bad;
	return 0;
}

int bz_addr_normalize(const char *in, char ret[18])
{
	return fgw_ble_addr_parse(in, ret);
}

/* ".../dev_AA_BB_CC_DD_EE_FF": BlueZ writes the address with '_' in object paths. */
int bz_path_to_addr(const char *path, char ret[18])
{
	const char *p = strrchr(path, '/');
	char addr[FGW_BLE_ADDR_STRLEN];

	if (!p || strncmp(p + 1, "dev_", 4) != 0 || strlen(p + 5) != sizeof(addr) - 1)
		return -EINVAL;
	memcpy(addr, p + 5, sizeof(addr));
	for (size_t i = 2; i < sizeof(addr) - 1; i += 3)
		addr[i] = addr[i] == '_' ? ':' : '?';
	return fgw_ble_addr_parse(addr, ret);
}

bool bz_path_has_prefix(const char *path, const char *prefix)
{
	size_t n = strlen(prefix);

	if (!path || strncmp(path, prefix, n) != 0)
		return false;
	return path[n] == '\0' || path[n] == '/';
}
