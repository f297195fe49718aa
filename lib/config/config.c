#define _GNU_SOURCE /* asprintf */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ini.h>

#include "bundle.h" /* FGW_MANIFEST_MAX_KEYS */
#include "config.h"
#include "util.h"

enum key_type {
	KEY_STRING,
	KEY_LIST, /* space-separated words; the key may be given on several lines, each appends */
	KEY_INT,
	KEY_BOOL,
	KEY_LOG_LEVEL,
	KEY_ENROLLMENT, /* "allowlist" or "open", kept as a bool: open */
};

struct key_def {
	const char *section;
	const char *name;
	enum key_type type;
	size_t offset;
	int64_t min, max;	   /* KEY_INT; KEY_LIST: max words (0: no limit) */
	const char *default_value; /* NULL: no default */
	bool required;		   /* must be given and non-empty */
	bool reloadable;	   /* SIGHUP applies it */
};

#define OFF(f) offsetof(struct fgw_config, f)

/* Keep in step with config/fotagw.conf, which documents each key. */
static const struct key_def keys[] = {
    {"log", "level", KEY_LOG_LEVEL, OFF(log_level), 0, 0, "info", false, true},
    {"store", "path", KEY_STRING, OFF(db_path), 0, 0, NULL, true, false},
    {"store", "busy_timeout_ms", KEY_INT, OFF(busy_timeout_ms), 0, 600000, "5000", false, false},
    {"store", "retain_events_days", KEY_INT, OFF(retain_events_days), 0, 36500, "90", false, false},
    {"store", "retain_events_max", KEY_INT, OFF(retain_events_max), 0, 1000000000, "200000", false,
     false},
    {"store", "retain_jobs_days", KEY_INT, OFF(retain_jobs_days), 0, 36500, "180", false, false},
    {"store", "forget_devices_after_days", KEY_INT, OFF(forget_devices_after_days), 0, 36500, "365",
     false, false},
    {"fleet", "group", KEY_STRING, OFF(fleet_group), 0, 0, "default", false, true},
    {"fleet", "udp_devices", KEY_LIST, OFF(udp_devices), 0, 0, "", false, false},
    {"fleet", "retry_limit", KEY_INT, OFF(retry_limit), 0, 1000, "8", false, true},
    {"fleet", "backoff_base_s", KEY_INT, OFF(backoff_base_s), 1, 3600, "5", false, true},
    {"fleet", "backoff_max_s", KEY_INT, OFF(backoff_max_s), 1, 86400, "300", false, true},
    {"fleet", "reboot_timeout_s", KEY_INT, OFF(reboot_timeout_s), 5, 3600, "180", false, true},
    {"fleet", "progress_flush_s", KEY_INT, OFF(progress_flush_s), 1, 600, "5", false, true},
    {"fleet", "netcore_version_group", KEY_INT, OFF(netcore_version_group), 0, 65535, "0", false,
     false},
    {"fleet", "enrollment", KEY_ENROLLMENT, OFF(fleet_enrollment_open), 0, 0, "allowlist", false,
     false},
    {"fleet", "require_board_match", KEY_BOOL, OFF(require_board_match), 0, 0, "true", false, true},
    {"fleet", "max_unenrolled", KEY_INT, OFF(max_unenrolled), 0, 1000000, "1000", false, true},
    {"fleet", "unenrolled_ttl_s", KEY_INT, OFF(unenrolled_ttl_s), 60, 31536000, "86400", false,
     true},
    {"upload", "window", KEY_INT, OFF(upload_window), 0, 64, "0", false, true},
    {"upload", "chunk_timeout_ms", KEY_INT, OFF(chunk_timeout_ms), 100, 600000, "5000", false,
     true},
    {"upload", "first_chunk_timeout_ms", KEY_INT, OFF(first_chunk_timeout_ms), 1000, 600000,
     "40000", false, true},
    {"api", "enabled", KEY_BOOL, OFF(api_enabled), 0, 0, "true", false, false},
    {"api", "listen", KEY_STRING, OFF(api_listen), 0, 0, "127.0.0.1", false, false},
    {"api", "port", KEY_INT, OFF(api_port), 1, 65535, "8370", false, false},
    {"api", "token_file", KEY_STRING, OFF(api_token_file), 0, 0, "", false, false},
    {"api", "max_connections", KEY_INT, OFF(api_max_connections), 1, 1024, "32", false, false},
    {"api", "timeout_s", KEY_INT, OFF(api_timeout_s), 1, 3600, "15", false, false},
    {"api", "allowed_hosts", KEY_LIST, OFF(api_allowed_hosts), 0, 0, "", false, false},
    {"ble", "enabled", KEY_BOOL, OFF(ble_enabled), 0, 0, "true", false, false},
    {"ble", "adapters", KEY_STRING, OFF(ble_adapters), 0, 0, "", false, false},
    {"ble", "adapter", KEY_STRING, OFF(ble_adapter), 0, 0, "", false, false},
    {"ble", "power_on", KEY_BOOL, OFF(ble_power_on), 0, 0, "true", false, false},
    {"ble", "scan", KEY_BOOL, OFF(ble_scan), 0, 0, "true", false, false},
    {"ble", "filter_service", KEY_BOOL, OFF(ble_filter_service), 0, 0, "true", false, false},
    {"ble", "rssi_threshold", KEY_INT, OFF(ble_rssi_threshold), -127, 0, "-90", false, false},
    {"ble", "max_connections", KEY_INT, OFF(ble_max_connections), 1, 64, "8", false, false},
    {"ble", "ceiling_bytes_per_s", KEY_INT, OFF(ble_ceiling_bytes_per_s), 1000, 2000000, "175000",
     false, false},
    {"ble", "connect_timeout_s", KEY_INT, OFF(ble_connect_timeout_s), 1, 600, "20", false, false},
    {"ble", "acquire", KEY_BOOL, OFF(ble_acquire), 0, 0, "true", false, false},
    {"ble", "name_prefix", KEY_STRING, OFF(ble_name_prefix), 0, 0, "", false, true},
    {"ble", "passkey_file", KEY_STRING, OFF(ble_passkey_file), 0, 0, "", false, false},
    {"ble", "allow_numeric_comparison", KEY_BOOL, OFF(ble_allow_numeric_comparison), 0, 0, "false",
     false, false},
    {"ble", "pair_timeout_s", KEY_INT, OFF(ble_pair_timeout_s), 5, 120, "30", false, false},
    {"ble", "default_agent", KEY_BOOL, OFF(ble_default_agent), 0, 0, "true", false, false},
    {"release", "manifest_url", KEY_STRING, OFF(release_manifest_url), 0, 0, "", false, false},
    {"release", "poll_interval_s", KEY_INT, OFF(release_poll_interval_s), 10, 86400, "300", false,
     false},
    {"release", "trusted_keys", KEY_LIST, OFF(release_trusted_keys), 0, FGW_MANIFEST_MAX_KEYS, "",
     false, false},
    {"release", "channel", KEY_STRING, OFF(release_channel), 0, 0, "", false, false},
    {"release", "expired_holds_rollout", KEY_BOOL, OFF(release_expired_holds_rollout), 0, 0, "true",
     false, false},
    {"release", "mcuboot_key", KEY_STRING, OFF(release_mcuboot_key), 0, 0, "", false, false},
    {"release", "cache_dir", KEY_STRING, OFF(release_cache_dir), 0, 0, "/var/cache/fotagw", false,
     false},
    {"release", "cache_budget_mib", KEY_INT, OFF(release_cache_budget_mib), 0, 1048576, "512",
     false, false},
    {"release", "ca_file", KEY_STRING, OFF(release_ca_file), 0, 0, "", false, false},
    {"release", "client_cert", KEY_STRING, OFF(release_client_cert), 0, 0, "", false, false},
    {"release", "client_key", KEY_STRING, OFF(release_client_key), 0, 0, "", false, false},
    {"release", "download_timeout_s", KEY_INT, OFF(release_download_timeout_s), 0, 86400, "1800",
     false, false},
    {"release", "low_speed_limit_bytes", KEY_INT, OFF(release_low_speed_limit_bytes), 0, 1000000000,
     "100", false, false},
    {"release", "low_speed_time_s", KEY_INT, OFF(release_low_speed_time_s), 0, 3600, "60", false,
     false},
};

/* Config files are small; anything bigger is not a config file. */
#define CONFIG_MAX_BYTES (1024 * 1024)

struct parse_ctx {
	const char *file;
	struct fgw_config cfg;
	bool seen[ARRAY_SIZE(keys)];
	int errors;
	fgw_config_diag_cb_t diag;
	void *user_data;
	/* line reader over the in-memory text, so the handler knows which line it is on */
	const char *pos;
	int line;
	bool line_too_long;
};

static void report(struct parse_ctx *p, int line, const char *section, const char *key,
		   const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void report(struct parse_ctx *p, int line, const char *section, const char *key,
		   const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	p->errors++;
	if (p->diag)
		p->diag(p->file, line, section, key, msg, p->user_data);
}

static char *read_line(char *buf, int size, void *stream)
{
	struct parse_ctx *p = stream;
	const char *nl;
	size_t len, take;

	if (!*p->pos)
		return NULL;
	nl = strchr(p->pos, '\n');
	len = nl ? (size_t) (nl - p->pos) + 1 : strlen(p->pos);
	p->line++;
	take = len;
	if (take > (size_t) size - 1) {
		/* inih would read the rest as a new line; report it instead and drop the rest. */
		p->line_too_long = true;
		report(p, p->line, NULL, NULL, "line longer than %d characters", size - 2);
		take = 0;
	}
	memcpy(buf, p->pos, take);
	buf[take] = '\0';
	p->pos += len;
	return buf;
}

static size_t count_words(const char *s)
{
	size_t n = 0;

	for (;;) {
		s += strspn(s, " \t");
		if (!*s)
			return n;
		n++;
		s += strcspn(s, " \t");
	}
}

static int set_value(struct parse_ctx *p, const struct key_def *k, const char *value, bool append)
{
	char *base = (char *) &p->cfg;
	int64_t v;
	bool b;
	int r;

	switch (k->type) {
	case KEY_STRING:
	case KEY_LIST: {
		char **dst = (char **) (base + k->offset);
		char *s;
		if (append && *dst && **dst) {
			if (asprintf(&s, "%s %s", *dst, value) < 0)
				return -ENOMEM;
		} else {
			s = strdup(value);
			if (!s)
				return -ENOMEM;
		}
		if (k->max > 0 && count_words(s) > (size_t) k->max) {
			free(s);
			return -E2BIG;
		}
		free(*dst);
		*dst = s;
		return 0;
	}
	case KEY_INT:
		r = fgw_parse_int64(value, k->min, k->max, &v);
		if (r < 0)
			return r;
		*(int *) (base + k->offset) = (int) v;
		return 0;
	case KEY_BOOL:
		r = fgw_parse_bool(value, &b);
		if (r < 0)
			return r;
		*(bool *) (base + k->offset) = b;
		return 0;
	case KEY_LOG_LEVEL:
		r = fgw_log_level_from_string(value);
		if (r < 0)
			return r;
		*(int *) (base + k->offset) = r;
		return 0;
	case KEY_ENROLLMENT:
		if (strcmp(value, "allowlist") != 0 && strcmp(value, "open") != 0)
			return -EINVAL;
		*(bool *) (base + k->offset) = strcmp(value, "open") == 0;
		return 0;
	}
	return -EINVAL;
}

static const char *type_hint(const struct key_def *k, char *buf, size_t size)
{
	switch (k->type) {
	case KEY_STRING:
		return "a string";
	case KEY_LIST:
		return "space-separated words";
	case KEY_INT:
		snprintf(buf, size, "an integer from %lld to %lld", (long long) k->min,
			 (long long) k->max);
		return buf;
	case KEY_BOOL:
		return "true or false";
	case KEY_LOG_LEVEL:
		return "one of err, warning, notice, info, debug";
	case KEY_ENROLLMENT:
		return "allowlist or open";
	}
	return "?";
}

static const struct key_def *find_key(const char *section, const char *name, size_t *ret_idx)
{
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
		if (strcmp(keys[i].section, section) == 0 && strcmp(keys[i].name, name) == 0) {
			*ret_idx = i;
			return &keys[i];
		}
	return NULL;
}

static bool section_known(const char *section)
{
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
		if (strcmp(keys[i].section, section) == 0)
			return true;
	return false;
}

static int on_key(void *user, const char *section, const char *name, const char *value)
{
	struct parse_ctx *p = user;
	const struct key_def *k;
	char hint[96];
	bool append;
	size_t idx;
	int r;

	if (p->line_too_long) {
		p->line_too_long = false;
		return 1;
	}
	if (!*section) {
		report(p, p->line, NULL, name, "key '%s' outside of any [section]", name);
		return 1;
	}
	k = find_key(section, name, &idx);
	if (!k) {
		if (section_known(section))
			report(p, p->line, section, name, "unknown key '%s' in section [%s]", name,
			       section);
		else
			report(p, p->line, section, name, "unknown section [%s] (key '%s')",
			       section, name);
		return 1;
	}
	if (p->seen[idx] && k->type != KEY_LIST) {
		report(p, p->line, section, name, "key '%s.%s' given twice", section, name);
		return 1;
	}
	append = p->seen[idx];
	p->seen[idx] = true;
	if (k->required && !*value) {
		report(p, p->line, section, name, "key '%s.%s' needs a value", section, name);
		return 1;
	}
	r = set_value(p, k, value, append);
	if (r == -ENOMEM) {
		report(p, p->line, section, name, "out of memory");
		return 0;
	}
	if (r == 0 && k->offset == OFF(release_manifest_url) && fgw_url_has_userinfo(value))
		report(p, p->line, section, name,
		       "'%s.%s' carries credentials (user:password@); they would be logged and "
		       "stored: authenticate with client_cert and client_key instead",
		       section, name);
	else if (r == -E2BIG)
		report(p, p->line, section, name, "'%s.%s' takes at most %lld entries", section,
		       name, (long long) k->max);
	else if (r < 0)
		report(p, p->line, section, name, "bad value '%s' for '%s.%s': expected %s", value,
		       section, name, type_hint(k, hint, sizeof(hint)));
	return 1;
}

FGW_EXPORT void fgw_config_done(struct fgw_config *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
		if (keys[i].type == KEY_STRING || keys[i].type == KEY_LIST) {
			char **s = (char **) ((char *) c + keys[i].offset);
			free(*s);
			*s = NULL;
		}
}

FGW_EXPORT int fgw_config_load_string(const char *text, const char *file, struct fgw_config *ret,
				      fgw_config_diag_cb_t diag, void *user_data)
{
	struct parse_ctx p = {
	    .file = file ? file : "<config>",
	    .diag = diag,
	    .user_data = user_data,
	    .pos = text,
	};
	int r;

	/* Defaults go through the same parser as file values, so a bad default cannot hide. */
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
		if (keys[i].default_value &&
		    set_value(&p, &keys[i], keys[i].default_value, false) < 0) {
			report(&p, 0, keys[i].section, keys[i].name, "built-in default is invalid");
		}

	r = ini_parse_stream(read_line, &p, on_key, &p);
	if (r > 0)
		report(&p, r, NULL, NULL, "syntax error (expected [section] or key = value)");
	else if (r < 0)
		report(&p, 0, NULL, NULL, "could not parse (out of memory)");

	for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
		if (keys[i].required && !p.seen[i])
			report(&p, 0, keys[i].section, keys[i].name,
			       "missing required key '%s' in section [%s]", keys[i].name,
			       keys[i].section);

	if (p.errors > 0) {
		fgw_config_done(&p.cfg);
		return -EINVAL;
	}
	*ret = p.cfg;
	return 0;
}

FGW_EXPORT int fgw_config_load_file(const char *path, struct fgw_config *ret,
				    fgw_config_diag_cb_t diag, void *user_data)
{
	_cleanup_free_ char *text = NULL;
	struct stat st;
	ssize_t n;
	size_t got = 0;
	int fd, r;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		if (diag)
			diag(path, 0, NULL, NULL, strerror(-r), user_data);
		return r;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > CONFIG_MAX_BYTES) {
		close(fd);
		if (diag)
			diag(path, 0, NULL, NULL, "not a regular file of at most 1 MiB", user_data);
		return -EINVAL;
	}
	text = malloc((size_t) st.st_size + 1);
	if (!text) {
		close(fd);
		return -ENOMEM;
	}
	while (got < (size_t) st.st_size) {
		n = read(fd, text + got, (size_t) st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t) n;
	}
	close(fd);
	text[got] = '\0';
	if (strlen(text) != got) {
		if (diag)
			diag(path, 0, NULL, NULL, "file contains a NUL byte", user_data);
		return -EINVAL;
	}
	return fgw_config_load_string(text, path, ret, diag, user_data);
}

static bool value_equal(const struct key_def *k, const struct fgw_config *a,
			const struct fgw_config *b)
{
	const char *pa = (const char *) a + k->offset, *pb = (const char *) b + k->offset;

	switch (k->type) {
	case KEY_STRING:
	case KEY_LIST: {
		const char *sa = *(char *const *) pa, *sb = *(char *const *) pb;
		return (!sa && !sb) || (sa && sb && strcmp(sa, sb) == 0);
	}
	case KEY_INT:
	case KEY_LOG_LEVEL:
		return *(const int *) pa == *(const int *) pb;
	case KEY_BOOL:
	case KEY_ENROLLMENT:
		return *(const bool *) pa == *(const bool *) pb;
	}
	return false;
}

FGW_EXPORT int fgw_config_apply_reload(struct fgw_config *cur, const struct fgw_config *next,
				       fgw_config_diag_cb_t diag, void *user_data)
{
	int applied = 0;

	for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
		const struct key_def *k = &keys[i];
		char *dst = (char *) cur + k->offset;
		const char *src = (const char *) next + k->offset;

		if (value_equal(k, cur, next))
			continue;
		if (!k->reloadable) {
			if (diag)
				diag(NULL, 0, k->section, k->name,
				     "changed, but takes effect only after a restart", user_data);
			continue;
		}
		switch (k->type) {
		case KEY_STRING:
		case KEY_LIST: {
			char *s = *(char *const *) src ? strdup(*(char *const *) src) : NULL;
			free(*(char **) dst);
			*(char **) dst = s;
			break;
		}
		case KEY_INT:
		case KEY_LOG_LEVEL:
			*(int *) dst = *(const int *) src;
			break;
		case KEY_BOOL:
		case KEY_ENROLLMENT:
			*(bool *) dst = *(const bool *) src;
			break;
		}
		if (diag)
			diag(NULL, 0, k->section, k->name, "applied", user_data);
		applied++;
	}
	return applied;
}
