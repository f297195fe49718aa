#include <errno.h>
#include <string.h>

#include "api.h"
#include "daemon.h"
#include "provider.h"
#include "util.h"

static int provider_health(void *user_data, struct fgw_api_health *ret)
{
	struct fgw_daemon *d = user_data;

	*ret = (struct fgw_api_health){
	    .version = FGW_VERSION,
	    .uptime_ms = (int64_t) (fgw_now_ms() - d->started_ms),
	    .adapter_state = NULL, /* no Bluetooth part wired in yet: unknown, not guessed */
	};
	return 0;
}

int fgw_daemon_api_start(struct fgw_daemon *d)
{
	const struct fgw_api_provider prov = {
	    .user_data = d,
	    .health = provider_health,
	};
	struct fgw_api_options o = {
	    .listen = d->cfg.api_listen,
	    .port = (uint16_t) d->cfg.api_port,
	    .max_connections = (unsigned) d->cfg.api_max_connections,
	    .connection_timeout_s = (unsigned) d->cfg.api_timeout_s,
	};
	_cleanup_free_ char *token = NULL;
	int r;

	if (!d->cfg.api_enabled)
		return 0;
	if (d->cfg.api_token_file && *d->cfg.api_token_file) {
		r = fgw_api_token_read(d->cfg.api_token_file, &token);
		if (r == -EINVAL)
			return fgw_log_errno(LOG_ERR, r,
					     "API token file '%s' must hold 16 to 4096 visible "
					     "ASCII characters",
					     d->cfg.api_token_file);
		if (r < 0)
			return fgw_log_errno(LOG_ERR, r, "Failed to read API token file '%s'",
					     d->cfg.api_token_file);
		o.token = token;
	} else {
		fgw_warning("api: no token_file configured, every POST will be refused");
	}
	r = fgw_api_new(d->loop, d->store, &o, &prov, &d->api);
	if (token)
		explicit_bzero(token, strlen(token));
	if (r < 0)
		return fgw_log_errno(LOG_ERR, r, "Failed to start the REST API on '%s' port %d",
				     d->cfg.api_listen, d->cfg.api_port);
	fgw_notice("event: api-listening, address: %s, port: %u", d->cfg.api_listen,
		   (unsigned) fgw_api_port(d->api));
	return 0;
}
