#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "api.h"
#include "daemon.h"
#include "fleet-glue.h"
#include "provider.h"
#include "retention.h"
#include "store.h"
#include "util.h"

static void log_diag(const char *file, int line, const char *section, const char *key,
		     const char *message, void *user_data)
{
	int prio = *(int *) user_data;

	if (file && line > 0)
		fgw_log(prio, "%s:%d: %s", file, line, message);
	else if (file)
		fgw_log(prio, "%s: %s", file, message);
	else
		fgw_log(prio, "config: %s.%s %s", section ? section : "", key ? key : "", message);
}

int fgw_daemon_init(struct fgw_daemon *d, uv_loop_t *loop, const char *config_path)
{
	int prio = LOG_ERR;
	int r;

	*d = (struct fgw_daemon){.loop = loop};
	d->config_path = strdup(config_path);
	if (!d->config_path)
		return -ENOMEM;
	r = fgw_config_load_file(config_path, &d->cfg, log_diag, &prio);
	if (r < 0)
		return r;
	fgw_log_set_level(d->cfg.log_level);
	return 0;
}

static void notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void notify_status(const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	(void) sd_notifyf(0, "STATUS=%s", msg);
}

static void on_handle_closed(uv_handle_t *h)
{
	struct fgw_daemon *d = h->data;

	d->n_handles--;
}

static void close_handle(struct fgw_daemon *d, uv_handle_t *h)
{
	/* A handle never initialised (start failed early) has type UV_UNKNOWN_HANDLE (0). */
	if (h->type != UV_UNKNOWN_HANDLE && !uv_is_closing(h))
		uv_close(h, on_handle_closed);
}

static void on_watchdog(uv_timer_t *t)
{
	(void) sd_notify(0, "WATCHDOG=1");
}

static void reload(struct fgw_daemon *d)
{
	struct fgw_config next = {0};
	int prio = LOG_WARNING;
	int r;

	fgw_notice("event: reload, config: %s", d->config_path);
	(void) sd_notify(0, "RELOADING=1");
	r = fgw_config_load_file(d->config_path, &next, log_diag, &prio);
	if (r < 0) {
		fgw_warning("Config '%s' has errors, keeping the running configuration",
			    d->config_path);
	} else {
		prio = LOG_NOTICE;
		r = fgw_config_apply_reload(&d->cfg, &next, log_diag, &prio);
		fgw_log_set_level(d->cfg.log_level);
		fgw_daemon_fleet_reload(d);
		fgw_notice("event: reloaded, keys-applied: %d", r);
		fgw_config_done(&next);
	}
	(void) sd_notify(0, "READY=1");
	notify_status("running");
}

static void on_signal(uv_signal_t *s, int signum)
{
	struct fgw_daemon *d = s->data;

	if (signum == SIGHUP) {
		reload(d);
		return;
	}
	fgw_notice("event: signal, name: %s", strsignal(signum));
	fgw_daemon_stop(d);
}

static int start_signal(struct fgw_daemon *d, uv_signal_t *s, int signum)
{
	int r = uv_signal_init(d->loop, s);

	if (r < 0)
		return r;
	s->data = d;
	d->n_handles++;
	return uv_signal_start(s, on_signal, signum);
}

int fgw_daemon_start(struct fgw_daemon *d)
{
	int r;

	d->started_ms = fgw_now_ms();
	notify_status("opening database");
	r = fgw_store_open(d->cfg.db_path, d->cfg.busy_timeout_ms, &d->store);
	if (r == -EROFS) {
		/*
		 * A file system remounted read-only after errors: keep answering ops tools from
		 * what is stored, start nothing, and say so, rather than a restart loop.
		 */
		fgw_log_errno(LOG_ERR, r,
			      "Database '%s' cannot be written (read-only file system or "
			      "permissions); running read-only: the API answers, no job starts",
			      d->cfg.db_path);
		r = fgw_store_open_read_only(d->cfg.db_path, &d->store);
		if (r < 0)
			return fgw_log_errno(LOG_ERR, r, "Failed to open database '%s' read-only",
					     d->cfg.db_path);
		d->db_read_only = true;
	}
	if (r < 0)
		return fgw_log_errno(LOG_ERR, r, "Failed to open database '%s'", d->cfg.db_path);
	r = fgw_store_migrate(d->store, NULL, 0);
	if (r < 0)
		return fgw_log_errno(LOG_ERR, r, "Failed to prepare database '%s' (%s)",
				     d->cfg.db_path, fgw_store_errmsg(d->store));
	fgw_info("Database '%s' at schema version %d", d->cfg.db_path, fgw_store_version(d->store));

	r = start_signal(d, &d->sig_term, SIGTERM);
	if (r >= 0)
		r = start_signal(d, &d->sig_int, SIGINT);
	if (r >= 0)
		r = start_signal(d, &d->sig_hup, SIGHUP);
	if (r < 0)
		return fgw_log_errno(LOG_ERR, r, "Failed to install signal handlers");

	r = fgw_daemon_fleet_start(d);
	if (r < 0)
		return r;
	r = fgw_daemon_api_start(d);
	if (r < 0)
		return r;
	r = fgw_daemon_retention_start(d);
	if (r < 0)
		return r;

	/* Ping at half the interval systemd gave, from the loop: a stuck loop stops pinging. */
	if (sd_watchdog_enabled(0, &d->watchdog_usec) > 0 && d->watchdog_usec > 0) {
		uint64_t every_ms = FGW_MAX(d->watchdog_usec / 2000, 1);
		uv_timer_init(d->loop, &d->watchdog);
		d->watchdog.data = d;
		d->n_handles++;
		uv_timer_start(&d->watchdog, on_watchdog, 0, every_ms);
	}

	(void) sd_notify(0, "READY=1");
	notify_status("running");
	fgw_notice("event: started, version: " FGW_VERSION ", pid: %d", (int) getpid());
	return 0;
}

void fgw_daemon_stop(struct fgw_daemon *d)
{
	if (d->stopping)
		return;
	d->stopping = true;
	(void) sd_notify(0, "STOPPING=1");
	notify_status("stopping");
	close_handle(d, (uv_handle_t *) &d->sig_term);
	close_handle(d, (uv_handle_t *) &d->sig_int);
	close_handle(d, (uv_handle_t *) &d->sig_hup);
	close_handle(d, (uv_handle_t *) &d->watchdog);
	close_handle(d, (uv_handle_t *) &d->retention);
	close_handle(d, (uv_handle_t *) &d->ble_retry);
	d->api = fgw_api_free(d->api);
	fgw_daemon_fleet_stop(d);
}

void fgw_daemon_done(struct fgw_daemon *d)
{
	d->store = fgw_store_free(d->store);
	fgw_config_done(&d->cfg);
	free(d->config_path);
	d->config_path = NULL;
}
