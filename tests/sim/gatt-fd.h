/*
 * What the simulator's two GATT sides share (bluez-gatt.c, the fake bluetoothd's client side;
 * periph-gatt.c, the SMP application bluetoothd calls into): the fds of AcquireWrite and
 * AcquireNotify, a SOCK_SEQPACKET pair of which the peer gets one end and each datagram is one
 * ATT value, and the a{sv} of options their methods take.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <systemd/sd-bus.h>
#include <uv.h>

/* The longest datagram read whole (an ATT value is at most 512 bytes). */
#define GATT_FD_MAX_VALUE 4096

/* Opens an acquisition's pair and watches our end (*@fd, *@poll) with @cb, @data as the
 * poll's data. Returns the peer's end (answer with it, then close it), or -errno. */
int gatt_fd_open(uv_loop_t *loop, int *fd, uv_poll_t **poll, uv_poll_cb cb, void *data);
/* Stops watching and closes our end. False if it was not open. */
bool gatt_fd_close(int *fd, uv_poll_t **poll);
/* Hands @each up to 64 datagrams waiting on @fd (then the loop's other work goes first). @len
 * is the datagram's real length: over GATT_FD_MAX_VALUE, only that much of it is in @buf.
 * 0: nothing more waiting; -1: the peer closed its end, or the fd failed. */
int gatt_fd_read(int fd, void (*each)(void *data, const uint8_t *buf, size_t len), void *data);
/* Reads and drops what waits on a notify fd (the peer has nothing to say there). 0, or -1 as
 * gatt_fd_read(). */
int gatt_fd_drain(int fd);

/* Walks an a{sv} of options: @each gets every key with its value's type and reads the value
 * (returns 1), leaves it to be skipped (returns 0), or fails (< 0, returned). */
int gatt_read_options(sd_bus_message *m,
		      int (*each)(sd_bus_message *m, const char *key, const char *type, void *data),
		      void *data);
