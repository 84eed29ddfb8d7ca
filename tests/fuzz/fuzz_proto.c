/* SPDX-License-Identifier: MIT */
/* libFuzzer: the control-message checker and the lane-header checker must
 * refuse anything malformed without reading out of bounds. */
#include <string.h>

#include "../../src/lib/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	int nfds = data[0] % 4;
	int type = zl__proto_check(data + 1, size - 1, nfds);
	if (type >= 0) {
		/* a message that passes must have exactly its type's body */
		int body = zl__proto_body_size((uint8_t)type);
		if (body < 0 || (size_t)body + sizeof(struct zl_proto_hdr) != size - 1)
			__builtin_trap();
	}
	if (size - 1 >= sizeof(struct zl_abi_half)) {
		struct zl_abi_half h;
		memcpy(&h, data + 1, sizeof(h));
		struct zl_half_geom g;
		uint64_t region = (uint64_t)h.total_size;
		if (zl__half_check(&h, region, &g) == 0) {
			if ((uint64_t)g.slots_off + (uint64_t)g.slot_count * 64 > region ||
			    (uint64_t)g.ret_off + (uint64_t)g.ret_count * 4 > region)
				__builtin_trap();
		}
	}
	return 0;
}
