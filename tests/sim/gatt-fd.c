/* The GATT plumbing of gatt-fd.h, shared by the fake bluetoothd and the peripheral. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gatt-fd.h"

static void poll_closed(uv_handle_t *h)
{
	free(h);
}

int gatt_fd_open(uv_loop_t *loop, int *fd, uv_poll_t **poll, uv_poll_cb cb, void *data)
{
	uv_poll_t *p;
	int sv[2];

	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	/* SOCK_NONBLOCK is a file status flag: it travels with the fd to the peer. */
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0) {
		free(p);
		return -errno;
	}
	uv_poll_init(loop, p, sv[0]);
	p->data = data;
	uv_poll_start(p, UV_READABLE | UV_DISCONNECT, cb);
	*fd = sv[0];
	*poll = p; /* one handle per acquisition: a closing one is never reused */
	return sv[1];
}

bool gatt_fd_close(int *fd, uv_poll_t **poll)
{
	if (*fd < 0)
		return false;
	uv_close((uv_handle_t *) *poll, poll_closed);
	*poll = NULL;
	close(*fd);
	*fd = -1;
	return true;
}

int gatt_fd_read(int fd, void (*each)(void *data, const uint8_t *buf, size_t len), void *data)
{
	uint8_t buf[GATT_FD_MAX_VALUE];

	for (int i = 0; i < 64; i++) {
		ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT | MSG_TRUNC);

		if (n < 0)
			return errno == EAGAIN || errno == EINTR ? 0 : -1;
		if (n == 0)
			return -1; /* the peer closed its end */
		each(data, buf, (size_t) n);
	}
	return 0;
}

int gatt_fd_drain(int fd)
{
	uint8_t buf[64];

	for (;;) {
		ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

		if (n > 0)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return 0;
		return -1;
	}
}

int gatt_read_options(sd_bus_message *m,
		      int (*each)(sd_bus_message *m, const char *key, const char *type, void *data),
		      void *data)
{
	int r;

	r = sd_bus_message_enter_container(m, 'a', "{sv}");
	if (r < 0)
		return r;
	while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
		const char *key, *contents;
		char t;

		r = sd_bus_message_read(m, "s", &key);
		if (r >= 0)
			r = sd_bus_message_peek_type(m, &t, &contents);
		if (r >= 0)
			r = each(m, key, contents, data);
		if (r == 0)
			r = sd_bus_message_skip(m, "v");
		if (r >= 0)
			r = sd_bus_message_exit_container(m);
		if (r < 0)
			return r;
	}
	if (r < 0)
		return r;
	return sd_bus_message_exit_container(m);
}
