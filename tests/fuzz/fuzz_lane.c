/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer: a hostile peer. Both endpoints of a channel live in this
 * process; the input overwrites arbitrary bytes of endpoint A's shared half
 * (header, indices, slots, return ring) between legitimate operations, and
 * endpoint B must never crash, read out of bounds or hang: it either works
 * or breaks the channel with an error, after which a new pair is made.
 */
#include <stdlib.h>
#include <string.h>

#include "../../src/lib/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct zl_ctx *ctx;
static struct zl_pool *pool;
static struct zl_chan *p[2];

static void fresh(void)
{
	if (p[0]) {
		zl_chan_close(p[0]);
		zl_chan_close(p[1]);
	}
	struct zl_chan_opts o = {.slots = 64, .lend = 16, .flags = ZL_CHAN_NOSPIN};
	if (zl_chan_pair(ctx, &o, p))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!ctx) {
		setenv("ZEROLINK_BROKER", "/tmp/zl-fuzz/broker.sock", 0);
		if (zl_ctx_open(&ctx, NULL) || zl_pool_create(ctx, NULL, &pool))
			abort();
		fresh();
	}
	static char buf[1 << 16];
	size_t i = 0;
	while (i + 3 <= size) {
		uint8_t op = data[i];
		uint16_t off;
		memcpy(&off, data + i + 1, 2);
		i += 3;
		struct zl_chan *a = p[0], *b = p[1];
		switch (op % 6) {
		case 0: { /* corrupt: write up to 16 bytes anywhere in A's half */
			size_t n = size - i < 16 ? size - i : 16;
			size_t at = off % a->mine->size;
			if (at + n > a->mine->size)
				n = a->mine->size - at;
			memcpy((char *)a->mine->base + at, data + i, n);
			i += n;
			break;
		}
		case 1: /* A sends legitimately */
			zl_chan_send(a, buf, (size_t)(off % 3000) + 1, ZL_DONTWAIT);
			break;
		case 2: { /* B lends A a buffer, so returns can be forged */
			struct zl_buf zb;
			if (zl_buf_alloc(pool, 100, &zb) == 0 &&
			    zl_chan_send_buf(b, &zb, 100, ZL_DONTWAIT) < 0)
				zl_buf_free(&zb);
			break;
		}
		case 3: { /* B receives in place and reads every byte */
			struct zl_msg m[4];
			int n = zl_chan_recv_burst(b, m, 4, ZL_DONTWAIT);
			for (int k = 0; k < n; k++) {
				for (unsigned s = 0; s < m[k].nsegs; s++) {
					const volatile uint8_t *q = m[k].seg[s].base;
					for (uint32_t x = 0; x < m[k].seg[s].len; x++)
						(void)q[x];
				}
				zl_msg_release(&m[k]);
			}
			break;
		}
		case 4: /* B receives by copy */
			zl_chan_recv(b, buf, sizeof(buf), ZL_DONTWAIT);
			break;
		case 5: /* B collects returns */
			zl_chan_poll(b);
			break;
		}
		struct zl_chan_info ci;
		zl_chan_info(b, &ci);
		if (ci.error || ci.state != ZL_CHAN_OPEN)
			fresh();
	}
	return 0;
}
