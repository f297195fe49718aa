#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

FGW_EXPORT void fgw_hex_encode(const uint8_t *in, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < len; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 0xf];
	}
	out[2 * len] = '\0';
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

FGW_EXPORT int fgw_hex_decode(const char *hex, uint8_t *out, size_t len)
{
	if (!hex || strlen(hex) != 2 * len)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		int hi = hex_digit(hex[2 * i]), lo = hex_digit(hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -EINVAL;
		out[i] = (uint8_t) (hi << 4 | lo);
	}
	return 0;
}

FGW_EXPORT uint64_t fgw_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t) ts.tv_sec * 1000u + (uint64_t) ts.tv_nsec / 1000000u;
}

FGW_EXPORT int64_t fgw_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

FGW_EXPORT int fgw_parse_int64(const char *s, int64_t min, int64_t max, int64_t *ret)
{
	char *end;
	long long v;

	if (!s || !*s)
		return -EINVAL;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (*end != '\0' || end == s)
		return -EINVAL;
	if (errno == ERANGE || v < min || v > max)
		return -ERANGE;
	*ret = v;
	return 0;
}

FGW_EXPORT int fgw_parse_bool(const char *s, bool *ret)
{
	static const char *const yes[] = {"1", "true", "yes", "on"};
	static const char *const no[] = {"0", "false", "no", "off"};

	if (!s)
		return -EINVAL;
	for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*ret = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*ret = false;
			return 0;
		}
	}
	return -EINVAL;
}

FGW_EXPORT char *fgw_url_redact(const char *url, char *buf, size_t size)
{
	const char *sep = strstr(url, "://"), *auth, *host;
	size_t end = strcspn(url, "?#"), alen;

	if (size == 0)
		return buf;
	if (!sep || sep >= url + end) {
		snprintf(buf, size, "%.*s", (int) end, url);
		return buf;
	}
	auth = sep + 3;
	alen = strcspn(auth, "/?#");
	host = auth;
	for (size_t i = 0; i < alen; i++)
		if (auth[i] == '@')
			host = auth + i + 1; /* userinfo ends at the authority's last '@' */
	snprintf(buf, size, "%.*s%.*s", (int) (auth - url), url, (int) (url + end - host), host);
	return buf;
}

FGW_EXPORT bool fgw_url_has_userinfo(const char *url)
{
	const char *auth = strstr(url, "://");

	if (!auth || auth >= url + strcspn(url, "?#"))
		return false;
	auth += 3;
	return memchr(auth, '@', strcspn(auth, "/?#")) != NULL;
}

FGW_EXPORT const char *fgw_enum_name(const char *const *names, size_t n, int value)
{
	return value >= 0 && (size_t) value < n ? names[value] : NULL;
}

FGW_EXPORT int fgw_enum_value(const char *const *names, size_t n, const char *s)
{
	for (size_t i = 0; s && i < n; i++)
		if (names[i] && strcmp(s, names[i]) == 0)
			return (int) i;
	return -EINVAL;
}

FGW_EXPORT int fgw_ble_addr_parse(const char *s, char ret[FGW_BLE_ADDR_STRLEN])
{
	char out[FGW_BLE_ADDR_STRLEN];

	if (!s)
		return -EINVAL;
	/* by hand, not isxdigit(): the rule must not depend on the locale */
	for (int i = 0; i < FGW_BLE_ADDR_STRLEN - 1; i++) {
		char c = s[i];

		if (i % 3 == 2) {
			if (c != ':')
				return -EINVAL;
			out[i] = c;
		} else if ((c >= '0' && c <= '9') || (c >= 'A' && c <= 'F')) {
			out[i] = c;
		} else if (c >= 'a' && c <= 'f') {
			out[i] = (char) (c - 'a' + 'A');
		} else {
			return -EINVAL; /* also the NUL of a short string */
		}
	}
	if (s[FGW_BLE_ADDR_STRLEN - 1] != '\0')
		return -EINVAL;
	out[FGW_BLE_ADDR_STRLEN - 1] = '\0';
	memcpy(ret, out, sizeof(out));
	return 0;
}

FGW_EXPORT int fgw_fsync_path(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), r = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		r = -errno;
	close(fd);
	return r;
}

FGW_EXPORT ssize_t fgw_read_full(int fd, void *buf, size_t size)
{
	size_t got = 0;
	ssize_t n;

	while (got < size) {
		n = read(fd, (char *) buf + got, size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		got += (size_t) n;
	}
	return (ssize_t) got;
}

FGW_EXPORT bool fgw_buf_grow(char **buf, size_t *cap, size_t need, size_t max)
{
	size_t n = FGW_MAX(FGW_MAX(*cap * 2, need), (size_t) 4096);
	char *b;

	if (need <= *cap)
		return true;
	if (need > max)
		return false;
	n = FGW_MIN(n, max);
	b = realloc(*buf, n);
	if (!b)
		return false;
	*buf = b;
	*cap = n;
	return true;
}

static bool udp_host_char(unsigned char c)
{
	return isalnum(c) || c == '.' || c == '-' || c == ':' || c == '[' || c == ']' || c == '_';
}

FGW_EXPORT int fgw_address_normalize(const char *address, char ret[40])
{
	size_t len = address ? strlen(address) : 0;

	if (len == 17)
		return fgw_ble_addr_parse(address, ret);
	if (len < 7 || len >= 40 || strncmp(address, "udp:", 4) != 0)
		return -EINVAL;
	const char *colon = strrchr(address + 4, ':');
	int64_t port;

	if (!colon || colon == address + 4 || fgw_parse_int64(colon + 1, 1, 65535, &port) < 0)
		return -EINVAL;
	for (const char *c = address + 4; c < colon; c++)
		if (!udp_host_char((unsigned char) *c))
			return -EINVAL;
	memcpy(ret, address, len + 1);
	return 0;
}
