/* SPDX-License-Identifier: MIT */
/*
 * Transitive zero-copy through several domains: this process sends pool
 * buffers into a chain of N exec'd forwarders and receives them at the end.
 * The bytes arrive unchanged, every forwarder mapped our pool (read-only)
 * instead of copying, and every buffer comes home hop by hop.
 */
#include <poll.h>

#include "../zltest.h"

static void chain(struct zl_ctx *ctx, int hops, int count)
{
	char svc[8][64];
	for (int i = 0; i <= hops; i++)
		snprintf(svc[i], sizeof(svc[i]), "%s", test_service("fwd"));
	struct zl_listener *sink_lis;
	CHECK_EQ(zl_listen(ctx, svc[hops], NULL, &sink_lis), 0);
	pid_t pids[8];
	for (int i = 0; i < hops; i++)
		pids[i] = spawn_peer((char *[]){"peer", "forward", svc[i], svc[i + 1], NULL});
	/* each forwarder dials downstream before it accepts: take the sink first */
	struct zl_chan *src, *sink;
	CHECK_EQ(zl_accept(sink_lis, NULL, &sink, 10000), 0);
	int err = -1;
	for (int k = 0; k < 500 && err; k++) {
		err = zl_connect(ctx, svc[0], NULL, &src);
		if (err == -ECONNREFUSED)
			usleep(10000);
		else
			CHECK_EQ(err, 0);
	}
	CHECK_EQ(err, 0);
	struct zl_pool_opts po = {
		.nclasses = 1, .classes = {{65536, 64}}, .flags = ZL_POOL_FORWARD};
	struct zl_pool *pool;
	CHECK_EQ(zl_pool_create(ctx, &po, &pool), 0);
	int sent = 0, got = 0;
	while (got < count) {
		if (sent < count) {
			struct zl_buf b;
			int r = zl_buf_alloc(pool, 65536, &b);
			if (r == 0) {
				size_t len = 1000 + (size_t)(sent * 977) % 64000;
				fill(b.data, len, (uint64_t)sent);
				CHECK_EQ(zl_chan_send_buf(src, &b, len, 0), len);
				sent++;
			} else {
				CHECK_EQ(r, -ENOBUFS);
			}
		}
		struct zl_msg m;
		int r = zl_chan_recv_msg(sink, &m, ZL_DONTWAIT);
		if (r == 1) {
			size_t len = 1000 + (size_t)(got * 977) % 64000;
			CHECK_EQ(m.len, len);
			CHECK(verify(m.seg[0].base, len, (uint64_t)got) == 0);
			zl_msg_release(&m);
			got++;
		} else {
			CHECK_EQ(r, -EAGAIN);
			CHECK(zl_chan_poll(src) >= 0);
			if (zl_chan_arm(sink) == 0 && zl_chan_arm(src) == 0) {
				struct pollfd p[2] = {{zl_chan_fd(sink), POLLIN, 0},
						      {zl_chan_fd(src), POLLIN, 0}};
				poll(p, 2, 50);
			}
		}
	}
	/* every forwarder mapped our pool rather than copying */
	for (int i = 0; i < hops; i++)
		CHECK(count_maps(pids[i], "zerolink:pool") >= 1);
	/* EOF flows down the chain; the forwarders wait for their loans */
	zl_chan_shutdown(src);
	struct zl_msg m;
	CHECK_EQ(zl_chan_recv_msg(sink, &m, 0), 0);
	for (int i = 0; i < hops; i++)
		CHECK_EQ(wait_status(pids[i]), 0);
	CHECK(zl_chan_poll(src) >= 0);
	struct zl_pool_stats st;
	zl_pool_stats(pool, &st);
	CHECK_EQ(st.cls[0].free, 64);
	zl_chan_close(src);
	zl_chan_close(sink);
	zl_listener_close(sink_lis);
	zl_pool_destroy(pool);
}

int main(void)
{
	struct zl_ctx *ctx = test_ctx("test_forward");
	chain(ctx, 1, 500);
	chain(ctx, 3, 1000);
	chain(ctx, 5, 300);
	zl_ctx_close(ctx);
	return 0;
}
