/* SPDX-License-Identifier: MIT */
/* Half-close, close, EOF after the data, EPIPE, buffers lent to a peer that
 * closes come back, views held across close stay readable, a context closed
 * before its channels and pools, nothing leaks. */
#include "../zltest.h"

int main(void)
{
	struct zl_ctx *ctx = test_ctx("test_close");
	int fds0 = count_fds();
	struct zl_chan_opts o = {.flags = ZL_CHAN_NOSPIN};
	struct zl_chan *p[2];
	char buf[256];

	/* shutdown: the peer reads the data, then EOF; the other way still works */
	CHECK_EQ(zl_chan_pair(ctx, &o, p), 0);
	CHECK_EQ(zl_chan_send(p[0], "abc", 3, 0), 3);
	CHECK_EQ(zl_chan_shutdown(p[0]), 0);
	CHECK_EQ(zl_chan_send(p[0], "x", 1, 0), -EPIPE);
	CHECK_EQ(zl_chan_recv(p[1], buf, sizeof(buf), 0), 3);
	CHECK_EQ(zl_chan_recv(p[1], buf, sizeof(buf), 0), 0);
	CHECK_EQ(zl_chan_recv(p[1], buf, sizeof(buf), 0), 0);
	CHECK_EQ(zl_chan_send(p[1], "back", 4, 0), 4);
	CHECK_EQ(zl_chan_recv(p[0], buf, sizeof(buf), 0), 4);
	zl_chan_close(p[0]);
	CHECK_EQ(zl_chan_send(p[1], "late", 4, 0), -EPIPE);
	zl_chan_close(p[1]);

	/* close with data in flight: the peer still reads it, then EOF */
	CHECK_EQ(zl_chan_pair(ctx, &o, p), 0);
	for (int i = 0; i < 10; i++)
		CHECK_EQ(zl_chan_send(p[0], buf, 100, 0), 100);
	zl_chan_close(p[0]);
	for (int i = 0; i < 10; i++)
		CHECK_EQ(zl_chan_recv(p[1], buf, sizeof(buf), 0), 100);
	CHECK_EQ(zl_chan_recv(p[1], buf, sizeof(buf), 0), 0);
	struct zl_chan_info ci;
	zl_chan_info(p[1], &ci);
	CHECK_EQ(ci.state, ZL_CHAN_PEER_CLOSED);
	zl_chan_close(p[1]);

	/* buffers lent to a peer that closes come back to the pool; views the
	 * peer still holds stay readable until it releases them */
	struct zl_pool *pool;
	CHECK_EQ(zl_pool_create(ctx, NULL, &pool), 0);
	CHECK_EQ(zl_chan_pair(ctx, &o, p), 0);
	struct zl_buf b;
	for (int i = 0; i < 5; i++) {
		CHECK_EQ(zl_buf_alloc(pool, 2048, &b), 0);
		fill(b.data, 2048, (uint64_t)i);
		CHECK_EQ(zl_chan_send_buf(p[0], &b, 2048, 0), 2048);
	}
	struct zl_msg m[5];
	CHECK_EQ(zl_chan_recv_burst(p[1], m, 5, 0), 5);
	zl_chan_close(p[1]); /* closes with 5 views held */
	CHECK(verify(m[2].seg[0].base, 2048, 2) == 0);
	for (int i = 0; i < 5; i++)
		zl_msg_release(&m[i]);
	CHECK_EQ(zl_chan_send(p[0], "x", 1, 0), -EPIPE);
	CHECK(zl_chan_poll(p[0]) >= 0);
	zl_chan_info(p[0], &ci);
	CHECK_EQ(ci.lent, 0);
	zl_chan_close(p[0]);
	struct zl_pool_stats st;
	zl_pool_stats(pool, &st);
	CHECK_EQ(st.cls[0].free, st.cls[0].count);
	zl_pool_destroy(pool);

	/* the context closed first: its channels, pool and listener keep
	 * working, and it is gone (broker connection included) after the last
	 * of them */
	CHECK_EQ(zl_pool_create(ctx, NULL, &pool), 0);
	CHECK_EQ(zl_chan_pair(ctx, &o, p), 0);
	struct zl_listener *lis;
	CHECK_EQ(zl_listen(ctx, test_service("close"), NULL, &lis), 0);
	int fds1 = count_fds();
	zl_ctx_close(ctx);
	CHECK_EQ(count_fds(), fds1);
	CHECK_EQ(zl_buf_alloc(pool, 100, &b), 0);
	fill(b.data, 100, 7);
	CHECK_EQ(zl_chan_send_buf(p[0], &b, 100, 0), 100);
	CHECK_EQ(zl_chan_recv_burst(p[1], m, 1, 0), 1);
	CHECK(verify(m[0].seg[0].base, 100, 7) == 0);
	zl_msg_release(&m[0]);
	CHECK_EQ(zl_chan_send(p[1], "back", 4, 0), 4);
	CHECK_EQ(zl_chan_recv(p[0], buf, sizeof(buf), 0), 4);
	zl_listener_close(lis);
	zl_chan_close(p[0]);
	zl_chan_close(p[1]);
	CHECK(count_fds() > fds0); /* the pool still holds the context */
	zl_pool_destroy(pool);

	/* nothing left behind, the context's broker connection included */
	CHECK_EQ(count_fds(), fds0 - 1);
	CHECK_EQ(count_maps(0, "zerolink:"), 0);
	return 0;
}
