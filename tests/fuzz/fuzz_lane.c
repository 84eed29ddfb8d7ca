/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer: a hostile peer. Both endpoints of a channel live in this
 * process; the input overwrites arbitrary bytes of endpoint A's shared half
 * (header, indices, slots, return ring) between legitimate operations, and
 * endpoint B must never crash, read out of bounds or hang: it either works
 * or breaks the channel with an error, after which a new pair is made.
 * B also forwards what it receives to a third endpoint (C, over a second
 * pair), so that forged descriptors meet the forwarding path as well.
 */
#include <stdlib.h>
#include <string.h>

#include "../../src/lib/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct zl_ctx *ctx;
static struct zl_pool *pool, *apool;
static struct zl_chan *p[2], *q[2];

static void fresh(void)
{
	if (p[0]) {
		zl_chan_close(p[0]);
		zl_chan_close(p[1]);
		zl_chan_close(q[0]);
		zl_chan_close(q[1]);
	}
	struct zl_chan_opts o = {.slots = 64, .lend = 16, .flags = ZL_CHAN_NOSPIN};
	if (zl_chan_pair(ctx, &o, p) || zl_chan_pair(ctx, &o, q))
		abort();
}

/* Read every byte of the messages, as a receiver would. */
static void touch(const struct zl_msg *m, int n)
{
	for (int k = 0; k < n; k++)
		for (unsigned s = 0; s < m[k].nsegs; s++) {
			const volatile uint8_t *c = m[k].seg[s].base;
			for (uint32_t x = 0; x < m[k].seg[s].len; x++)
				(void)c[x];
		}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!ctx) {
		setenv("ZEROLINK_BROKER", "/tmp/zl-fuzz/broker.sock", 0);
		struct zl_pool_opts fw = {.flags = ZL_POOL_FORWARD};
		if (zl_ctx_open(&ctx, NULL) || zl_pool_create(ctx, NULL, &pool) ||
		    zl_pool_create(ctx, &fw, &apool))
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
		switch (op % 9) {
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
			touch(m, n);
			for (int k = 0; k < n; k++)
				zl_msg_release(&m[k]);
			break;
		}
		case 4: /* B receives by copy */
			zl_chan_recv(b, buf, sizeof(buf), ZL_DONTWAIT);
			break;
		case 5: /* B collects returns */
			zl_chan_poll(b);
			break;
		case 6: { /* A sends a burst of its buffers, zero-copy */
			struct zl_buf zb[8];
			unsigned want = off % 8 + 1;
			int n = zl_buf_alloc_burst(apool, (size_t)(off >> 3) % 4000 + 1, zb, want);
			if (n <= 0)
				break;
			uint32_t lens[8];
			for (int k = 0; k < n; k++)
				lens[k] = (uint32_t)((off >> 3) % 4000) + 1;
			int sent = zl_chan_send_buf_burst(a, zb, lens, (unsigned)n, ZL_DONTWAIT);
			for (int k = sent > 0 ? sent : 0; k < n; k++)
				zl_buf_free(&zb[k]);
			break;
		}
		case 7: { /* B takes a burst and releases it in one call */
			struct zl_msg m[32];
			int n = zl_chan_recv_burst(b, m, 32, ZL_DONTWAIT);
			if (n > 0) {
				touch(m, n);
				zl_msg_release_burst(m, (unsigned)n);
			}
			break;
		}
		case 8: { /* B forwards a burst to C, which reads and releases it */
			struct zl_msg m[16];
			int n = zl_chan_recv_burst(b, m, off % 16 + 1, ZL_DONTWAIT);
			if (n > 0) {
				int f = zl_chan_forward_burst(q[0], m, (unsigned)n, ZL_DONTWAIT);
				for (int k = f > 0 ? f : 0; k < n; k++)
					zl_msg_release(&m[k]);
			}
			n = zl_chan_recv_burst(q[1], m, 16, ZL_DONTWAIT);
			if (n > 0) {
				touch(m, n);
				zl_msg_release_burst(m, (unsigned)n);
			}
			zl_chan_poll(q[0]);
			break;
		}
		}
		struct zl_chan_info ci;
		zl_chan_info(b, &ci);
		int bad = ci.error || ci.state != ZL_CHAN_OPEN;
		zl_chan_info(q[0], &ci);
		if (bad || ci.error || ci.state != ZL_CHAN_OPEN)
			fresh();
	}
	return 0;
}
