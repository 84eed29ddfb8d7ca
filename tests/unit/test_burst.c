/* SPDX-License-Identifier: MIT */
/*
 * Burst paths: zl_buf_alloc_burst(), zl_chan_send_buf_burst(),
 * zl_chan_recv_burst(), zl_chan_forward_burst() and zl_msg_release_burst()
 * take runs of one-buffer messages as a whole. They must give what the
 * one-at-a-time calls give: order, content, partial results at the lend and
 * lane limits, errors on the message that has them, ring slots freed while
 * views of pool buffers are held, and messages of every other shape mixed in.
 */
#include "../zltest.h"

/* write a sequence number at the start of a buffer, read it back */
static void put_seq(void *p, uint32_t v)
{
	memcpy(p, &v, sizeof(v));
}

static uint32_t get_seq(const void *p)
{
	uint32_t v;
	memcpy(&v, p, sizeof(v));
	return v;
}

static void pump(struct zl_chan *ch)
{
	CHECK(zl_chan_poll(ch) >= 0);
}

static void alloc_burst(struct zl_ctx *ctx)
{
	struct zl_pool_opts po = {.nclasses = 2, .classes = {{256, 8}, {4096, 4}}};
	struct zl_pool *pool;
	CHECK_EQ(zl_pool_create(ctx, &po, &pool), 0);
	struct zl_buf b[16];
	CHECK_EQ(zl_buf_alloc_burst(pool, 100, b, 0), -EINVAL);
	CHECK_EQ(zl_buf_alloc_burst(pool, 5000, b, 4), -EMSGSIZE);
	/* the small class first, then the larger one, as zl_buf_alloc() */
	CHECK_EQ(zl_buf_alloc_burst(pool, 100, b, 10), 10);
	for (int i = 0; i < 8; i++)
		CHECK_EQ(b[i].cap, 256);
	CHECK_EQ(b[8].cap, 4096);
	CHECK_EQ(b[9].cap, 4096);
	for (int i = 0; i < 10; i++)
		for (int k = 0; k < i; k++)
			CHECK(b[i].data != b[k].data);
	/* fewer than asked when the classes run dry, then none */
	CHECK_EQ(zl_buf_alloc_burst(pool, 100, b + 10, 6), 2);
	CHECK_EQ(zl_buf_alloc_burst(pool, 100, b + 12, 1), -ENOBUFS);
	/* what comes back from another thread is found again */
	for (int i = 0; i < 12; i++)
		zl_buf_free(&b[i]);
	CHECK_EQ(zl_buf_alloc_burst(pool, 300, b, 16), 4);
	CHECK_EQ(zl_buf_alloc_burst(pool, 1, b + 4, 16), 8);
	for (int i = 0; i < 12; i++)
		zl_buf_free(&b[i]);
	zl_pool_destroy(pool);
}

/* Send n one-buffer messages numbered from seq in bursts of up to 16,
 * as far as the lane and the loans allow; returns how many went. */
static unsigned send_run(struct zl_chan *ch, struct zl_pool *pool, uint32_t seq, unsigned n)
{
	unsigned sent = 0;
	while (sent < n) {
		struct zl_buf b[16];
		uint32_t lens[16];
		unsigned want = n - sent < 16 ? n - sent : 16;
		int got = zl_buf_alloc_burst(pool, 64, b, want);
		CHECK(got > 0);
		for (int i = 0; i < got; i++) {
			put_seq(b[i].data, seq + sent + (uint32_t)i);
			lens[i] = 4 + (seq + sent + (uint32_t)i) % 60;
		}
		int r = zl_chan_send_buf_burst(ch, b, lens, (unsigned)got, ZL_DONTWAIT);
		if (r == -EAGAIN)
			r = 0;
		CHECK(r >= 0);
		for (int i = r; i < got; i++)
			zl_buf_free(&b[i]); /* not sent: still ours */
		sent += (unsigned)r;
		if (r < got)
			break;
	}
	return sent;
}

static void send_recv(struct zl_ctx *ctx)
{
	/* a small lane (64 slots) and 96 loans: both limits are met */
	struct zl_chan_opts o = {.slots = 64, .lend = 96, .flags = ZL_CHAN_NOSPIN};
	struct zl_chan *ch[2];
	CHECK(zl_chan_pair(ctx, &o, ch) == -EINVAL); /* 96: not a power of two */
	o.lend = 128;
	CHECK_EQ(zl_chan_pair(ctx, &o, ch), 0);
	struct zl_pool_opts po = {.nclasses = 1, .classes = {{64, 256}}};
	struct zl_pool *pool;
	CHECK_EQ(zl_pool_create(ctx, &po, &pool), 0);

	/* the lane holds 64 entries: a run of 70 sends 64, and says so */
	CHECK_EQ(send_run(ch[0], pool, 0, 70), 64);
	struct zl_msg m[32], m2[32], m3[32];
	CHECK_EQ(zl_chan_recv_burst(ch[1], m, 32, 0), 32);
	CHECK_EQ(zl_chan_recv_burst(ch[1], m2, 32, 0), 32);
	for (unsigned i = 0; i < 32; i++) {
		CHECK_EQ(m[i].nsegs, 1);
		CHECK_EQ(get_seq(m[i].seg[0].base), i);
		CHECK_EQ(m[i].len, 4 + i % 60);
		CHECK_EQ(get_seq(m2[i].seg[0].base), 32 + i);
	}
	/* the views hold buffers, not slots: the lane takes more, up to the
	 * loans (128, 64 out) */
	pump(ch[0]);
	CHECK_EQ(send_run(ch[0], pool, 64, 70), 64);
	CHECK_EQ(zl_chan_recv_burst(ch[1], m3, 32, 0), 32);
	CHECK_EQ(get_seq(m3[31].seg[0].base), 95);
	/* a copying receive is not blocked by the views either */
	struct zl_msg rest[32];
	CHECK_EQ(zl_chan_recv_burst(ch[1], rest, 32, 0), 32);
	CHECK_EQ(zl_chan_send(ch[0], "abc", 3, 0), 3);
	char buf[16];
	CHECK_EQ(zl_chan_recv(ch[1], buf, sizeof(buf), 0), 3);
	CHECK(memcmp(buf, "abc", 3) == 0);
	/* all 128 loans out: nothing more goes until some come home */
	CHECK_EQ(send_run(ch[0], pool, 128, 1), 0);
	zl_msg_release_burst(m, 32);
	zl_msg_release_burst(m2, 32);
	zl_msg_release_burst(m3, 32);
	zl_msg_release_burst(rest, 32);
	CHECK_EQ(zl_chan_poll(ch[0]), 128);

	/* a long stream through the small lane: order and content kept, the
	 * lane wraps many times in the middle of bursts */
	uint32_t next_tx = 0, next_rx = 0;
	while (next_rx < 5000) {
		pump(ch[0]);
		next_tx += send_run(ch[0], pool, next_tx, 13);
		int n = zl_chan_recv_burst(ch[1], m, 7, ZL_DONTWAIT);
		if (n == -EAGAIN)
			continue;
		CHECK(n > 0);
		for (int i = 0; i < n; i++) {
			CHECK_EQ(get_seq(m[i].seg[0].base), next_rx);
			CHECK_EQ(m[i].len, 4 + next_rx % 60);
			next_rx++;
		}
		zl_msg_release_burst(m, (unsigned)n);
	}

	/* messages of other shapes mixed in: inline, scatter-gather, and
	 * one-buffer messages around them, received in one burst */
	while (next_rx < next_tx) {
		int n = zl_chan_recv_burst(ch[1], m, 32, 0);
		CHECK(n > 0);
		next_rx += (uint32_t)n;
		zl_msg_release_burst(m, (unsigned)n);
	}
	pump(ch[0]);
	CHECK_EQ(send_run(ch[0], pool, 100, 2), 2);
	CHECK_EQ(zl_chan_send(ch[0], "inline", 6, 0), 6);
	struct zl_buf sg[2];
	CHECK_EQ(zl_buf_alloc_burst(pool, 64, sg, 2), 2);
	put_seq(sg[0].data, 200);
	put_seq(sg[1].data, 201);
	uint32_t sl[2] = {8, 12};
	CHECK_EQ(zl_chan_send_bufs(ch[0], sg, sl, 2, 0), 20);
	CHECK_EQ(send_run(ch[0], pool, 102, 2), 2);
	CHECK_EQ(zl_chan_recv_burst(ch[1], m, 32, 0), 6);
	CHECK_EQ(get_seq(m[0].seg[0].base), 100);
	CHECK_EQ(get_seq(m[1].seg[0].base), 101);
	CHECK_EQ(m[2].len, 6);
	CHECK(memcmp(m[2].seg[0].base, "inline", 6) == 0);
	CHECK_EQ(m[3].nsegs, 2);
	CHECK_EQ(m[3].len, 20);
	CHECK_EQ(get_seq(m[3].seg[1].base), 201);
	CHECK_EQ(get_seq(m[4].seg[0].base), 102);
	CHECK_EQ(get_seq(m[5].seg[0].base), 103);
	zl_msg_release_burst(m, 6);

	/* a one-buffer message received alone, released in a burst: its
	 * slots are free at once (a lane of 64 takes 150 of them in turn) */
	for (uint32_t i = 0; i < 150; i++) {
		pump(ch[0]);
		CHECK_EQ(send_run(ch[0], pool, 300 + i, 1), 1);
		CHECK_EQ(zl_chan_recv_msg(ch[1], &m[0], 0), 1);
		CHECK_EQ(get_seq(m[0].seg[0].base), 300 + i);
		zl_msg_release_burst(m, 1);
	}

	/* a bad buffer in the middle: the ones before it go, the caller
	 * keeps it and the rest; a bad first one is the call's error */
	pump(ch[0]);
	struct zl_buf b[4];
	uint32_t lens[4] = {10, 10, 0, 10};
	CHECK_EQ(zl_buf_alloc_burst(pool, 64, b, 4), 4);
	CHECK_EQ(zl_chan_send_buf_burst(ch[0], b, lens, 4, 0), 2);
	CHECK_EQ(zl_chan_send_buf_burst(ch[0], b + 2, lens + 2, 2, 0), -EINVAL);
	lens[2] = 65; /* more than the buffer holds */
	CHECK_EQ(zl_chan_send_buf_burst(ch[0], b + 2, lens + 2, 2, 0), -EINVAL);
	zl_buf_free(&b[2]);
	zl_buf_free(&b[3]);
	CHECK_EQ(zl_chan_recv_burst(ch[1], m, 32, 0), 2);
	zl_msg_release_burst(m, 2);

	zl_chan_close(ch[0]);
	zl_chan_close(ch[1]);
	struct zl_pool_stats st;
	zl_pool_stats(pool, &st);
	CHECK_EQ(st.cls[0].free, st.cls[0].count);
	zl_pool_destroy(pool);
}

static void forward(struct zl_ctx *ctx)
{
	struct zl_chan_opts o = {.slots = 64, .lend = 64, .flags = ZL_CHAN_NOSPIN};
	struct zl_chan *ab[2], *cb[2], *bd[2];
	CHECK_EQ(zl_chan_pair(ctx, &o, ab), 0);
	CHECK_EQ(zl_chan_pair(ctx, &o, cb), 0);
	CHECK_EQ(zl_chan_pair(ctx, &o, bd), 0);
	struct zl_pool_opts po = {.nclasses = 1, .classes = {{64, 64}}, .flags = ZL_POOL_FORWARD};
	struct zl_pool_opts pn = {.nclasses = 1, .classes = {{64, 64}}};
	struct zl_pool *fwd, *nofwd;
	CHECK_EQ(zl_pool_create(ctx, &po, &fwd), 0);
	CHECK_EQ(zl_pool_create(ctx, &pn, &nofwd), 0);

	/* B receives from A and from C, and forwards one burst made of both
	 * to D: the burst changes input channel in its middle */
	CHECK_EQ(send_run(ab[0], fwd, 0, 6), 6);
	CHECK_EQ(send_run(cb[0], fwd, 50, 4), 4);
	struct zl_msg m[16];
	CHECK_EQ(zl_chan_recv_burst(ab[1], m, 6, 0), 6);
	CHECK_EQ(zl_chan_recv_burst(cb[1], m + 6, 4, 0), 4);
	/* an inline message in the run too */
	CHECK_EQ(zl_chan_send(ab[0], "hi", 2, 0), 2);
	CHECK_EQ(zl_chan_recv_burst(ab[1], m + 10, 1, 0), 1);
	CHECK_EQ(zl_chan_forward_burst(bd[0], m, 11, 0), 11);
	struct zl_msg d[16];
	CHECK_EQ(zl_chan_recv_burst(bd[1], d, 16, 0), 11);
	for (int i = 0; i < 6; i++)
		CHECK_EQ(get_seq(d[i].seg[0].base), (uint32_t)i);
	for (int i = 0; i < 4; i++)
		CHECK_EQ(get_seq(d[6 + i].seg[0].base), 50u + (uint32_t)i);
	CHECK(memcmp(d[10].seg[0].base, "hi", 2) == 0);
	/* D's releases come home hop by hop, to A and to C */
	zl_msg_release_burst(d, 11);
	pump(bd[0]);
	CHECK_EQ(zl_chan_poll(ab[0]), 6);
	CHECK_EQ(zl_chan_poll(cb[0]), 4);

	/* a buffer of a pool that may not travel on stops the burst there:
	 * those before it go, it stays with the caller, and forwarding it
	 * alone says why */
	CHECK_EQ(send_run(ab[0], fwd, 10, 2), 2);
	CHECK_EQ(send_run(ab[0], nofwd, 12, 1), 1);
	CHECK_EQ(send_run(ab[0], fwd, 13, 1), 1);
	CHECK_EQ(zl_chan_recv_burst(ab[1], m, 16, 0), 4);
	CHECK_EQ(zl_chan_forward_burst(bd[0], m, 4, 0), 2);
	CHECK_EQ(zl_chan_forward_burst(bd[0], m + 2, 2, 0), -EPERM);
	zl_msg_release(&m[2]);
	CHECK_EQ(zl_chan_forward_burst(bd[0], m + 3, 1, 0), 1);
	/* forwarding onto the channel a message came in on is refused */
	CHECK_EQ(send_run(ab[0], fwd, 20, 1), 1);
	CHECK_EQ(zl_chan_recv_burst(ab[1], m, 1, 0), 1);
	CHECK_EQ(zl_chan_forward_burst(ab[1], m, 1, 0), -EINVAL);
	zl_msg_release(&m[0]);
	CHECK_EQ(zl_chan_recv_burst(bd[1], d, 16, 0), 3);
	CHECK_EQ(get_seq(d[0].seg[0].base), 10);
	CHECK_EQ(get_seq(d[1].seg[0].base), 11);
	CHECK_EQ(get_seq(d[2].seg[0].base), 13);
	zl_msg_release_burst(d, 3);

	/* the loans of the outgoing channel run out in the middle of a
	 * burst: it says how many went, the rest go once they come home */
	struct zl_chan_opts small = {.slots = 64, .lend = 16, .flags = ZL_CHAN_NOSPIN};
	struct zl_chan *be[2];
	CHECK_EQ(zl_chan_pair(ctx, &small, be), 0);
	pump(ab[0]);
	CHECK_EQ(send_run(ab[0], fwd, 500, 30), 30);
	CHECK_EQ(zl_chan_recv_burst(ab[1], m, 16, 0), 16);
	struct zl_msg m2[16];
	CHECK_EQ(zl_chan_recv_burst(ab[1], m2, 16, 0), 14);
	unsigned done = 0, seen = 0, rounds = 0;
	while (seen < 30) {
		CHECK(++rounds < 100);
		struct zl_msg *src = done < 16 ? m + done : m2 + (done - 16);
		unsigned left = done < 16 ? 16 - done : 30 - done;
		int r = zl_chan_forward_burst(be[0], src, left, ZL_DONTWAIT);
		CHECK(r > 0 || r == -EAGAIN);
		if (r > 0) {
			CHECK(r <= 16);
			done += (unsigned)r;
		}
		int n = zl_chan_recv_burst(be[1], d, 16, ZL_DONTWAIT);
		if (n > 0) {
			for (int i = 0; i < n; i++)
				CHECK_EQ(get_seq(d[i].seg[0].base), 500 + seen++);
			zl_msg_release_burst(d, (unsigned)n);
		}
		pump(be[0]);
	}
	pump(bd[0]); /* the three forwarded to D earlier */
	pump(ab[0]);
	struct zl_chan_info ci;
	zl_chan_info(ab[0], &ci);
	CHECK_EQ(ci.lent, 0); /* every buffer came home to A */
	zl_chan_close(be[0]);
	zl_chan_close(be[1]);
	zl_chan_close(ab[0]);
	zl_chan_close(ab[1]);
	zl_chan_close(cb[0]);
	zl_chan_close(cb[1]);
	zl_chan_close(bd[0]);
	zl_chan_close(bd[1]);
	zl_pool_destroy(fwd);
	zl_pool_destroy(nofwd);
}

int main(void)
{
	struct zl_ctx *ctx = test_ctx("test_burst");
	alloc_burst(ctx);
	send_recv(ctx);
	forward(ctx);
	zl_ctx_close(ctx);
	return 0;
}
