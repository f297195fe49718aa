/*
 * Requests: one in flight at a time, each with its command's answer handler. A timed-out
 * request is sent again --retries times (a lost datagram), except reset: a reset the device
 * acted on must not be repeated.
 */
#include <errno.h>

#include "tool.h"
#include "util.h"

static void on_rsp(int err, const struct fgw_smp_rsp *rsp, void *user_data)
{
	struct tool *tl = user_data;

	if (tl->exit_code >= 0)
		return; /* the run has ended: requests closed with it carry no news */
	if (err == -ETIMEDOUT && tl->tries_left > 0) {
		tl->tries_left--;
		send_req(tl, tl->last_build, tl->last_ms, tl->answer);
		return;
	}
	tl->answer(tl, err, rsp);
}

int send_req(struct tool *tl, tool_build_fn build, unsigned ms, tool_answer_fn answer)
{
	struct fgw_smp_req req;
	size_t req_len;
	int r;

	if (build != tl->last_build) {
		tl->last_build = build;
		tl->tries_left = tl->cmd == CMD_RESET ? 0 : tl->retries;
	}
	tl->answer = answer;
	tl->last_ms = ms ? ms : tl->timeout_ms;
	r = build(tl, &req);
	if (r < 0)
		return tool_fail(tl, "cannot build request", r, NULL);
	req_len = req.len;
	r = fgw_smp_client_request(tl->c, &req, tl->last_ms, on_rsp, tl, NULL, NULL);
	fgw_smp_req_done(&req);
	if (r == -EMSGSIZE)
		return tool_failf(tl, 1, "request too large",
				  "%zu bytes, over the %zu-byte packet limit of %s", req_len + 8,
				  fgw_smp_client_max_packet(tl->c), tl->spec);
	if (r < 0)
		return tool_fail(tl, "cannot send request", r, NULL);
	return 0;
}

void run_command(struct tool *tl)
{
	switch (tl->cmd) {
	case CMD_ECHO:
	case CMD_RESET:
	case CMD_PARAMS:
	case CMD_INFO:
		os_run(tl);
		break;
	case CMD_IMAGE_LIST:
	case CMD_IMAGE_SLOTS:
	case CMD_IMAGE_TEST:
	case CMD_IMAGE_CONFIRM:
	case CMD_IMAGE_ERASE:
		image_run(tl);
		break;
	case CMD_IMAGE_UPLOAD:
		upload_run(tl);
		break;
	case CMD_NONE:
	case CMD_IMAGE:
	case CMD_SCAN: /* handled in main(), without a transport */
	case CMD_PAIR:
	case CMD_UNPAIR:
	case _CMD_MAX:
		tool_finish(tl, 2);
		break;
	}
}
