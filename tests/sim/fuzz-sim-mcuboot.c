/* libFuzzer: MCUboot image parsing and boot-time validation of the simulated bootloader. */
#define _GNU_SOURCE
#include <sys/mman.h>
#include <unistd.h>

#include "sim.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sim_img_info info;
	const char *why;
	int fd = memfd_create("img", MFD_CLOEXEC);

	if (fd < 0)
		return 0;
	if (write(fd, data, size) == (ssize_t) size) {
		int r = sim_img_read_info(fd, &info);
		if (r == 0 && info.total_len > size)
			__builtin_trap(); /* TLVs must lie inside the file */
		(void) sim_img_validate(fd, NULL, &why);
	}
	close(fd);
	return 0;
}
