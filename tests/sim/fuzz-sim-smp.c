/* libFuzzer: the simulator's SMP request decoder (header + CBOR map of text keys). */
#include <stddef.h>
#include <stdint.h>

#include "sim.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smp_req req;
	struct smp_hdr h;
	uint8_t out[SMP_HDR_LEN];

	if (smp_hdr_decode(data, size, &h) == 0) {
		smp_hdr_encode(&h, out);
		/* the reserved bits are dropped on re-encoding; everything else survives */
		if ((out[0] & 0x1f) != (data[0] & 0x1f) || out[7] != data[7])
			__builtin_trap();
	}
	if (smp_req_decode(data, size, &req) == 0) {
		for (size_t i = 0; i < req.n_keys; i++)
			if (!req.keys[i].value || !req.keys[i].name[0])
				__builtin_trap();
		smp_req_done(&req);
	}
	return 0;
}
