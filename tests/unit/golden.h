/* Golden SMP frames for the unit tests: tests/data/smp/NAME.hex, '#' comments, hex bytes. */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* Loads tests/data/smp/@name.hex into a new buffer (free() it); aborts the test on failure. */
uint8_t *golden_load(const char *name, size_t *ret_len);
