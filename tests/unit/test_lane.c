/* SPDX-License-Identifier: MIT */
/*
 * Lanes: ordering and content across wrap-around, every inline entry size,
 * messages larger than the lane, EMSGSIZE without loss, a full lane with
 * ZL_DONTWAIT, bursts, and ring indices crossing 2^32. Run over several
 * lane sizes. Then entries found by their slot's lap bit, with payloads
 * that imitate the headers of the next lap, a sender and a receiver in two
 * processes.
 */
#include "../zltest.h"
#include <zerolink/abi/lane.h>

extern uint32_t zl__test_start_index;

static void one_config(struct zl_ctx *ctx, uint32_t slots, uint32_t start)
{
	zl__test_start_index = start;
	struct zl_chan_opts o = {.slots = slots, .flags = ZL_CHAN_NOSPIN};
	struct zl_chan *p[2];
	CHECK_EQ(zl_chan_pair(ctx, &o, p), 0);
	zl__test_start_index = 0;
	size_t maxmsg = (size_t)slots * 64 * 3; /* larger than the lane */
	char *buf = malloc(maxmsg), *out = malloc(maxmsg);

	/* every inline size around slot boundaries, interleaved send/recv so
	 * the ring wraps many times */
	uint64_t seq = 0;
	for (int round = 0; round < 40; round++) {
		for (size_t len = 1; len <= 300; len += (len < 130 ? 1 : 17)) {
			fill(buf, len, seq);
			CHECK_EQ(zl_chan_send(p[0], buf, len, 0), len);
			CHECK_EQ(zl_chan_peek_len(p[1], 0), len);
			CHECK_EQ(zl_chan_recv(p[1], out, maxmsg, 0), len);
			CHECK(verify(out, len, seq) == 0);
			seq++;
		}
	}

	/* fill the lane without a reader: ZL_DONTWAIT says EAGAIN, nothing is lost */
	int sent = 0;
	for (;;) {
		fill(buf, 100, seq + (uint64_t)sent);
		int r = zl_chan_send(p[0], buf, 100, ZL_DONTWAIT);
		if (r == -EAGAIN)
			break;
		CHECK_EQ(r, 100);
		sent++;
	}
	/* 100 B take 2 slots; the consumer publishes its index every quarter
	 * lane (or when it finds the lane empty), so up to a quarter may still
	 * look taken */
	CHECK(sent >= (int)(slots * 3 / 8) - 2);
	CHECK(sent <= (int)slots / 2);
	for (int i = 0; i < sent; i++) {
		CHECK_EQ(zl_chan_recv(p[1], out, maxmsg, ZL_DONTWAIT), 100);
		CHECK(verify(out, 100, seq + (uint64_t)i) == 0);
	}
	CHECK_EQ(zl_chan_recv(p[1], out, maxmsg, ZL_DONTWAIT), -EAGAIN);
	seq += (uint64_t)sent;

	/* a message too large for the receiver's buffer stays queued */
	fill(buf, 1000, seq);
	CHECK_EQ(zl_chan_send(p[0], buf, 1000, 0), 1000);
	CHECK_EQ(zl_chan_recv(p[1], out, 999, 0), -EMSGSIZE);
	CHECK_EQ(zl_chan_recv(p[1], out, 1000, 0), 1000);
	CHECK(verify(out, 1000, seq++) == 0);

	/* bursts of in-place views, released out of order */
	struct zl_msg m[8];
	for (int i = 0; i < 8; i++) {
		fill(buf, 40 + (size_t)i, seq + (uint64_t)i);
		CHECK(zl_chan_send(p[0], buf, 40 + (size_t)i, 0) > 0);
	}
	CHECK_EQ(zl_chan_recv_burst(p[1], m, 8, 0), 8);
	for (int i = 0; i < 8; i++) {
		CHECK_EQ(m[i].len, 40 + i);
		CHECK(verify(m[i].seg[0].base, m[i].len, seq + (uint64_t)i) == 0);
	}
	for (int i = 7; i >= 0; i -= 2)
		zl_msg_release(&m[i]);
	for (int i = 0; i < 8; i += 2)
		zl_msg_release(&m[i]);
	seq += 8;

	/* messages larger than the lane: streamed in fragments by a second
	 * thread of control (here: alternate sends and receives by size) */
	pid_t pid = fork();
	if (pid == 0) {
		/* the child only sends; the parent's endpoint stays untouched */
		for (int i = 0; i < 5; i++) {
			size_t len = maxmsg - (size_t)i * 1001;
			fill(buf, len, 1000 + (uint64_t)i);
			if (zl_chan_send(p[0], buf, len, 0) != (int)len)
				_exit(1);
		}
		_exit(0);
	}
	for (int i = 0; i < 5; i++) {
		size_t len = maxmsg - (size_t)i * 1001;
		CHECK_EQ(zl_chan_recv(p[1], out, maxmsg, 0), len);
		CHECK(verify(out, len, 1000 + (uint64_t)i) == 0);
	}
	CHECK_EQ(wait_status(pid), 0);

	struct zl_chan_info info;
	zl_chan_info(p[1], &info);
	CHECK(info.rx_msgs > 0);
	CHECK_EQ(info.state, ZL_CHAN_OPEN);
	zl_chan_close(p[0]);
	CHECK_EQ(zl_chan_recv(p[1], out, maxmsg, 0), 0); /* EOF */
	zl_chan_close(p[1]);
	free(buf);
	free(out);
}

/* Payload whose 8-byte words alternate between a sequence-dependent value
 * and an inline header word of either lap (as a continuation slot would
 * show it to a receiver that watched the wrong slot). */
static void lap_fill(uint64_t *w, size_t nw, uint64_t seq)
{
	for (size_t j = 0; j < nw; j++) {
		if (j & 1)
			w[j] = ZL_SLOT_INLINE |
			       (uint64_t)(((j >> 1 ^ seq) & 1) ? ZL_SLOT_F_LAP : 0) << 8 |
			       1ull << 16 | 8ull << 32;
		else
			w[j] = seq * 1000003u + j;
	}
}

static size_t lap_len(uint64_t seq)
{
	/* 1 to 3 slots, changing from one message to the next, so that header
	 * and payload positions move from lap to lap */
	static const size_t lens[] = {8, 64, 120, 16, 56, 184, 8, 8, 72, 40};
	return lens[(seq * 7 + seq / 13) % 10];
}

static void lap_config(struct zl_ctx *ctx, uint32_t slots, uint32_t start)
{
	zl__test_start_index = start;
	struct zl_chan_opts o = {.slots = slots};
	struct zl_chan *p[2];
	CHECK_EQ(zl_chan_pair(ctx, &o, p), 0);
	zl__test_start_index = 0;
	const uint64_t n = 200000;
	pid_t pid = fork();
	if (pid == 0) {
		uint64_t w[32];
		for (uint64_t seq = 0; seq < n; seq++) {
			size_t len = lap_len(seq);
			lap_fill(w, 32, seq);
			if (zl_chan_send(p[0], w, len, 0) != (int)len)
				_exit(1);
			/* often slower than the receiver, which then watches
			 * the slot of the next entry before it is written */
			for (volatile unsigned k = 0; k < (seq * 2654435761u >> 24) % 200; k++)
				;
		}
		_exit(0);
	}
	uint64_t w[32], got[32];
	for (uint64_t seq = 0; seq < n; seq++) {
		size_t len = lap_len(seq);
		lap_fill(w, 32, seq);
		if (seq % 3 == 2) {
			/* the view path (general scan) between fast receives */
			struct zl_msg m;
			CHECK_EQ(zl_chan_recv_msg(p[1], &m, 0), 1);
			CHECK_EQ(m.len, len);
			CHECK(memcmp(m.seg[0].base, w, len) == 0);
			zl_msg_release(&m);
		} else {
			CHECK_EQ(zl_chan_recv(p[1], got, sizeof(got), 0), len);
			CHECK(memcmp(got, w, len) == 0);
		}
	}
	CHECK_EQ(wait_status(pid), 0);
	zl_chan_close(p[0]);
	zl_chan_close(p[1]);
}

int main(void)
{
	struct zl_ctx *ctx = test_ctx("test_lane");
	static const uint32_t slots[] = {64, 256, 1024};
	for (int i = 0; i < 3; i++) {
		one_config(ctx, slots[i], 0);
		one_config(ctx, slots[i], UINT32_MAX - 500); /* indices cross 2^32 */
		lap_config(ctx, slots[i], 0);
		lap_config(ctx, slots[i], UINT32_MAX - 3000);
	}
	/* bad options */
	struct zl_chan *p[2];
	struct zl_chan_opts bad = {.slots = 100};
	CHECK_EQ(zl_chan_pair(ctx, &bad, p), -EINVAL);
	zl_ctx_close(ctx);
	return 0;
}
