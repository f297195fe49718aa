/* org.bluez.Error.* and bus errors to negative errno, in one place (bluez.h lists the map). */
#define _GNU_SOURCE /* strcasestr */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "bluez-private.h"
#include "util.h"

struct error_map {
	const char *name;
	int err;
};

static const struct error_map error_map[] = {
    {"org.bluez.Error.InProgress", -EINPROGRESS},
    {"org.bluez.Error.AlreadyConnected", -EALREADY},
    {"org.bluez.Error.NotAvailable", -EAGAIN},
    {"org.bluez.Error.NotReady", -ENETDOWN},
    {"org.bluez.Error.NoSuchAdapter", -ENETDOWN},
    {"org.bluez.Error.NotPermitted", -EPERM},
    {"org.bluez.Error.NotAuthorized", -EACCES},
    {"org.bluez.Error.AuthenticationFailed", -EACCES},
    {"org.bluez.Error.AuthenticationCanceled", -EACCES},
    {"org.bluez.Error.AuthenticationRejected", -EACCES},
    {"org.bluez.Error.AuthenticationTimeout", -EACCES},
    {"org.bluez.Error.DoesNotExist", -ENODEV},
    {"org.bluez.Error.NotSupported", -EOPNOTSUPP},
    {"org.bluez.Error.NotConnected", -ENOTCONN},
    {"org.bluez.Error.InvalidArguments", -EINVAL},
    {"org.bluez.Error.InvalidOffset", -EINVAL},
    {"org.bluez.Error.InvalidValueLength", -EINVAL},
    {"org.bluez.Error.ImproperlyConfigured", -EINVAL},
    {"org.bluez.Error.AlreadyExists", -EEXIST},
    {"org.freedesktop.DBus.Error.UnknownObject", -ENODEV},
    {"org.freedesktop.DBus.Error.UnknownMethod", -EOPNOTSUPP},
    {"org.freedesktop.DBus.Error.UnknownInterface", -EOPNOTSUPP},
    {"org.freedesktop.DBus.Error.UnknownProperty", -EOPNOTSUPP},
    {"org.freedesktop.DBus.Error.InvalidArgs", -EINVAL},
    {"org.freedesktop.DBus.Error.InvalidSignature", -EBADMSG},
    {"org.freedesktop.DBus.Error.NoReply", -ETIMEDOUT},
    {"org.freedesktop.DBus.Error.Timeout", -ETIMEDOUT},
    {"org.freedesktop.DBus.Error.TimedOut", -ETIMEDOUT},
    {"org.freedesktop.DBus.Error.ServiceUnknown", -ENETDOWN},
    {"org.freedesktop.DBus.Error.NameHasNoOwner", -ENETDOWN},
    {"org.freedesktop.DBus.Error.Disconnected", -ENETDOWN},
    {"org.freedesktop.DBus.Error.AccessDenied", -EACCES},
    {"org.freedesktop.DBus.Error.NoMemory", -ENOMEM},
};

FGW_EXPORT int fgw_bluez_error_to_errno(const char *name, const char *message)
{
	if (!name)
		return -EIO;
	if (strcmp(name, "org.bluez.Error.Failed") == 0) {
		/*
		 * Failed carries its detail in the text: a connection attempt bluetoothd gave up
		 * itself ("le-connection-abort-by-local", "...-timeout") is a timeout, other
		 * connection failures are refusals, "Not connected" is what it says.
		 */
		if (!message)
			return -EIO;
		if (strstr(message, "abort-by-local") || strstr(message, "connection-timeout") ||
		    strstr(message, "page-timeout"))
			return -ETIMEDOUT;
		/* One LE Create Connection at a time: the kernel's EBUSY, passed on by
		 * bluetoothd (src/error.h ERR_LE_CONN_BUSY, ..._SYNC_CONNECT_LIMIT). */
		if (strstr(message, "connection-busy") ||
		    strstr(message, "concurrent-connection-limit") ||
		    strcasestr(message, "resource busy"))
			return -EBUSY;
		if (strstr(message, "le-connection-") || strstr(message, "br-connection-"))
			return -ECONNREFUSED;
		if (strcasestr(message, "not connected"))
			return -ENOTCONN;
		return -EIO;
	}
	for (size_t i = 0; i < ARRAY_SIZE(error_map); i++)
		if (strcmp(error_map[i].name, name) == 0)
			return error_map[i].err;
	return -EIO;
}

int bz_reply_error(sd_bus_message *m, char *buf, size_t size)
{
	const sd_bus_error *e = sd_bus_message_get_error(m);

	if (!e)
		return 0;
	snprintf(buf, size, "%s: %s", e->name ? e->name : "?", e->message ? e->message : "");
	/* sd-bus' own local errors (a timeout it measured, a broken connection) carry the
	 * standard names too, so the table covers them. */
	return fgw_bluez_error_to_errno(e->name, e->message);
}

bool bz_is_security_error(const char *text)
{
	/* gatt-client.c create_gatt_dbus_error(): 0x05, 0x0f and 0x0c all read "Not paired";
	 * 0x0e is what StartNotify ends with after bluetoothd's own security raise failed. */
	return strstr(text, "org.bluez.Error.NotPermitted: Not paired") ||
	       strstr(text, "Operation failed with ATT error: 0x05") ||
	       strstr(text, "Operation failed with ATT error: 0x0e") ||
	       strstr(text, "Operation failed with ATT error: 0x0f");
}

bool bz_is_notify_wedged(const char *text)
{
	return strstr(text, "org.bluez.Error.NotPermitted: Notify acquired") != NULL;
}
