/*
 * util: what every part needs and no library gives — logging with journald priority
 * prefixes, cleanup helpers, container_of, hex, monotonic/wall clocks and the destroy-callback
 * type. Nothing here allocates behind the caller's back or touches the event loop.
 */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <syslog.h>
#include <sys/types.h>

#define FGW_EXPORT __attribute__((visibility("default")))

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define container_of(ptr, type, member) ((type *) ((char *) (ptr) -offsetof(type, member)))
#define FGW_MIN(a, b) ((a) < (b) ? (a) : (b))
#define FGW_MAX(a, b) ((a) > (b) ? (a) : (b))

#define _cleanup_(f) __attribute__((cleanup(f)))
static inline void fgw_freep(void *p)
{
	free(*(void **) p);
}
#define _cleanup_free_ _cleanup_(fgw_freep)

/* Hands a pointer over: returns it and leaves NULL behind, so a cleanup frees nothing. */
#define TAKE_PTR(p)                                                                                \
	({                                                                                         \
		__typeof__(p) _p = (p);                                                            \
		(p) = NULL;                                                                        \
		_p;                                                                                \
	})

typedef void (*fgw_destroy_cb_t)(void *user_data);

/*
 * Logging. One line per message on stderr, prefixed "<N>" with the syslog priority so that
 * journald files it at the right level. Levels are syslog's LOG_ERR (3) .. LOG_DEBUG (7).
 */
void fgw_log_set_level(int level);
int fgw_log_get_level(void);
/* Accepts err, warning, notice, info, debug (and their syslog spellings). -EINVAL if unknown. */
int fgw_log_level_from_string(const char *s);
void fgw_log(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Logs "<message>: <strerror(-err)>" and returns @err (a negative errno), for `return ...;`. */
int fgw_log_errno(int prio, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/*
 * Escaping of untrusted text (device names, SMP rsn strings, versions, anything from the
 * network) for logs and terminals: printable ASCII and printable UTF-8 stay, the backslash
 * becomes \\ and every other byte \xNN (C0/C1 controls, DEL, invalid UTF-8). Works like
 * snprintf: writes at most @size bytes including the NUL, never cuts an escape in half, and
 * returns the length the whole escaped text needs. fgw_log escapes every message itself.
 */
size_t fgw_escape_text(char *dst, size_t size, const char *src, size_t len);
/* The escaped copy of a C string (NULL as ""), malloc'd; NULL when out of memory. */
char *fgw_escape_dup(const char *src);
/* True when escaping would change nothing. */
bool fgw_text_is_clean(const char *src, size_t len);

#define fgw_error(...) fgw_log(LOG_ERR, __VA_ARGS__)
#define fgw_warning(...) fgw_log(LOG_WARNING, __VA_ARGS__)
#define fgw_notice(...) fgw_log(LOG_NOTICE, __VA_ARGS__)
#define fgw_info(...) fgw_log(LOG_INFO, __VA_ARGS__)
#define fgw_debug(...)                                                                             \
	do {                                                                                       \
		if (fgw_log_get_level() >= LOG_DEBUG)                                              \
			fgw_log(LOG_DEBUG, __VA_ARGS__);                                           \
	} while (0)

/* Lower-case hex of @len bytes into @out (2*len+1 bytes). */
void fgw_hex_encode(const uint8_t *in, size_t len, char *out);
/* Parses exactly @len bytes of hex (either case). -EINVAL on a bad digit or wrong length. */
int fgw_hex_decode(const char *hex, uint8_t *out, size_t len);

/* Monotonic milliseconds (CLOCK_MONOTONIC): for timeouts and rates. */
uint64_t fgw_now_ms(void);
/* Wall-clock milliseconds since the epoch: for what is stored and shown. */
int64_t fgw_wall_ms(void);

/* Parses a whole decimal integer in [min, max]. -EINVAL if not a number, -ERANGE if out. */
int fgw_parse_int64(const char *s, int64_t min, int64_t max, int64_t *ret);

/*
 * @url as it may be logged, stored for display or served: without userinfo ("user:pw@"),
 * query and fragment, which is where URLs carry secrets. Written into @buf (truncated to
 * @size); returns @buf.
 */
char *fgw_url_redact(const char *url, char *buf, size_t size);
/* "scheme://user[:password]@host...": an '@' in the authority. */
bool fgw_url_has_userinfo(const char *url);
#define FGW_URL_LOG_MAX 2100 /* a manifest URL (2048) redacted, and a NUL */
/*
 * Makes the malloc'd buffer *@buf (of capacity *@cap) hold at least @need bytes: doubling, at
 * least 4 KiB, never above @max. false, with *@buf and *@cap unchanged, when @need is over
 * @max or memory is out. The one growth rule of the writers that build answers (JSON, HTML,
 * Prometheus text) and stop at a cap.
 */
bool fgw_buf_grow(char **buf, size_t *cap, size_t need, size_t max);

/*
 * fsync() of the file or directory at @path. Writing a file durably is: write, fsync the file,
 * rename it into place, then fsync its directory, or the new name may be lost in a crash.
 * 0 or -errno.
 */
int fgw_fsync_path(const char *path);

/*
 * Reads from @fd until @size bytes are in @buf or the end of the file, going on after EINTR
 * and short reads. The count (less than @size only at the end of the file), or -errno. To tell
 * a file of exactly @size bytes from a longer one, read with one byte of room to spare.
 */
ssize_t fgw_read_full(int fd, void *buf, size_t size);

/*
 * A BLE device address as fotagw writes it everywhere (config, store, API, logs): six bytes
 * of hex, either case, separated by ':' only, nothing before or after. @ret gets the
 * upper-case form (the one BlueZ shows). 0, or -EINVAL for anything else (also NULL).
 */
#define FGW_BLE_ADDR_STRLEN 18
int fgw_ble_addr_parse(const char *s, char ret[FGW_BLE_ADDR_STRLEN]);

/*
 * Enum <-> name through a table indexed by the enum (designated initializers; a gap is NULL):
 * the one way every part names its states and reasons. fgw_enum_name() gives NULL for a value
 * outside the table; fgw_enum_value() the index of @s, or -EINVAL (also for NULL).
 */
const char *fgw_enum_name(const char *const *names, size_t n, int value);
int fgw_enum_value(const char *const *names, size_t n, const char *s);
#define FGW_ENUM_NAME(names, value) fgw_enum_name(names, ARRAY_SIZE(names), (int) (value))
#define FGW_ENUM_VALUE(names, s) fgw_enum_value(names, ARRAY_SIZE(names), s)

/*
 * A bearer token (the REST API's, shared by fotagwd and fotactl). fgw_token_parse() takes
 * @len bytes less trailing white space, which must be FGW_TOKEN_MIN to FGW_TOKEN_MAX visible
 * ASCII characters: 0 and a malloc'd *@ret, -EINVAL otherwise (@ret untouched), -ENOMEM.
 * fgw_token_read() reads the whole file at @path (e.g. a systemd credential) by that rule:
 * -EPERM if others may read or write it (mode & 006; the group may read it, as a systemd
 * credential's group does: 0600 and 0640 pass, 0644 does not), -EINVAL for content that does
 * not qualify or a file longer than FGW_TOKEN_MAX + 4096 bytes, or -errno from reading.
 */
#define FGW_TOKEN_MIN 16
#define FGW_TOKEN_MAX 4096
int fgw_token_parse(const char *buf, size_t len, char **ret);
int fgw_token_read(const char *path, char **ret);

/*
 * A device address as the registry keys it: a BLE MAC in upper case ("AA:BB:CC:DD:EE:FF", as
 * BlueZ reports it) or "udp:HOST:PORT". 0 and @ret, or -EINVAL.
 */
int fgw_address_normalize(const char *address, char ret[40]);
/* "true/false/yes/no/on/off/1/0". -EINVAL otherwise. */
int fgw_parse_bool(const char *s, bool *ret);

/*
 * A reference-counted byte buffer: one packet built once and shared by whoever must keep it
 * (the SMP client for a resend, a transport while its writes are queued), so that nobody
 * copies it. fgw_buf_new() returns it with one reference and length 0; the holder of the only
 * reference may write into it (fgw_buf_shared() false), others only read.
 */
struct fgw_buf;
struct fgw_buf *fgw_buf_new(size_t capacity); /* NULL when out of memory */
struct fgw_buf *fgw_buf_ref(struct fgw_buf *b);
struct fgw_buf *fgw_buf_unref(struct fgw_buf *b); /* NULL ok; returns NULL */
uint8_t *fgw_buf_data(struct fgw_buf *b);
size_t fgw_buf_len(const struct fgw_buf *b);
size_t fgw_buf_capacity(const struct fgw_buf *b);
/* -EMSGSIZE beyond the capacity. */
int fgw_buf_set_len(struct fgw_buf *b, size_t len);
bool fgw_buf_shared(const struct fgw_buf *b);
