/* Golden SMP frames for the unit tests: tests/data/smp/NAME.hex, '#' comments, hex bytes. */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* Loads tests/data/smp/@name.hex into a new buffer (free() it); aborts the test on failure. */
uint8_t *golden_load(const char *name, size_t *ret_len);
/* The payload of a golden frame, after its SMP header (whose length must match: aborts). */
const uint8_t *golden_payload(const uint8_t *frame, size_t len, size_t *ret_len);
