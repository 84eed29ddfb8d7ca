/* SPDX-License-Identifier: MIT */
/*
 * Zero-copy: ownership moves with the descriptor, the receiver sees the
 * sender's bytes in place (same physical memory, read-only), scatter-gather,
 * the lend capacity, transitive forwarding through four endpoints with
 * buffers returning hop by hop, the owner's forwarding policy, and isolated
 * channels that copy instead.
 */
#include <setjmp.h>
#include <signal.h>

#include "../zltest.h"

static sigjmp_buf jb;
static void on_segv(int sig)
{
	(void)sig;
	siglongjmp(jb, 1);
}

static void pump(struct zl_chan **chs, int n)
{
	for (int i = 0; i < n; i++)
		CHECK(zl_chan_poll(chs[i]) >= 0);
}

int main(void)
{
	struct zl_ctx *ctx = test_ctx("test_zerocopy");
	struct zl_chan_opts o = {.lend = 16, .flags = ZL_CHAN_NOSPIN};
	struct zl_chan *ab[2], *bc[2], *cd[2];
	CHECK_EQ(zl_chan_pair(ctx, &o, ab), 0);
	CHECK_EQ(zl_chan_pair(ctx, &o, bc), 0);
	CHECK_EQ(zl_chan_pair(ctx, &o, cd), 0);
	struct zl_pool_opts po = {.nclasses = 1, .classes = {{4096, 64}}, .flags = ZL_POOL_FORWARD};
	struct zl_pool *pool;
	CHECK_EQ(zl_pool_create(ctx, &po, &pool), 0);

	/* one buffer A -> B: the view is the same bytes, read-only */
	struct zl_buf b;
	CHECK_EQ(zl_buf_alloc(pool, 4000, &b), 0);
	fill(b.data, 4000, 1);
	CHECK_EQ(zl_chan_send_buf(ab[0], &b, 4000, 0), 4000);
	struct zl_msg m;
	CHECK_EQ(zl_chan_recv_msg(ab[1], &m, 0), 1);
	CHECK_EQ(m.len, 4000);
	CHECK_EQ(m.nsegs, 1);
	CHECK(verify(m.seg[0].base, 4000, 1) == 0);
	((uint8_t *)b.data)[5] = 0xEE; /* the owner's write shows through: no copy */
	CHECK_EQ(((const uint8_t *)m.seg[0].base)[5], 0xEE);
	struct sigaction sa = {.sa_handler = on_segv}, old;
	sigaction(SIGSEGV, &sa, &old);
	int faulted = 0;
	if (sigsetjmp(jb, 1) == 0)
		*(volatile uint8_t *)m.seg[0].base = 1; /* must fault: mapped read-only */
	else
		faulted = 1;
	sigaction(SIGSEGV, &old, NULL);
	CHECK(faulted);
	zl_msg_release(&m);
	pump(ab, 1);
	struct zl_pool_stats st;
	zl_pool_stats(pool, &st);
	CHECK_EQ(st.cls[0].free, 64);

	/* scatter-gather: three buffers, one message */
	struct zl_buf sg[3];
	uint32_t lens[3] = {100, 4096, 7};
	for (int i = 0; i < 3; i++) {
		CHECK_EQ(zl_buf_alloc(pool, lens[i], &sg[i]), 0);
		fill(sg[i].data, lens[i], 10 + (uint64_t)i);
	}
	CHECK_EQ(zl_chan_send_bufs(ab[0], sg, lens, 3, 0), 4203);
	char flat[8192];
	CHECK_EQ(zl_chan_peek_len(ab[1], 0), 4203);
	CHECK_EQ(zl_chan_recv(ab[1], flat, sizeof(flat), 0), 4203); /* copying receive */
	CHECK(verify(flat, 100, 10) == 0);
	CHECK(verify(flat + 100, 4096, 11) == 0);
	CHECK(verify(flat + 4196, 7, 12) == 0);

	/* lend capacity: 16 buffers out, the 17th waits (EAGAIN here) */
	struct zl_buf many[17];
	for (int i = 0; i < 17; i++)
		CHECK_EQ(zl_buf_alloc(pool, 64, &many[i]), 0);
	for (int i = 0; i < 16; i++)
		CHECK_EQ(zl_chan_send_buf(ab[0], &many[i], 64, 0), 64);
	CHECK_EQ(zl_chan_send_buf(ab[0], &many[16], 64, ZL_DONTWAIT), -EAGAIN);
	struct zl_msg ms[16];
	CHECK_EQ(zl_chan_recv_burst(ab[1], ms, 16, 0), 16);
	zl_msg_release(&ms[3]);
	CHECK_EQ(zl_chan_send_buf(ab[0], &many[16], 64, ZL_DONTWAIT), 64);
	for (int i = 0; i < 16; i++)
		if (i != 3)
			zl_msg_release(&ms[i]);
	CHECK_EQ(zl_chan_recv_msg(ab[1], &m, 0), 1);
	zl_msg_release(&m);
	pump(ab, 1);

	/* forwarding A -> B -> C -> D: D sees A's bytes, buffers come home */
	for (uint64_t k = 0; k < 200; k++) {
		CHECK_EQ(zl_buf_alloc(pool, 4096, &b), 0);
		fill(b.data, 4096, 100 + k);
		CHECK_EQ(zl_chan_send_buf(ab[0], &b, 4096, 0), 4096);
		CHECK_EQ(zl_chan_recv_msg(ab[1], &m, 0), 1);
		CHECK_EQ(zl_chan_forward(bc[0], &m, 0), 4096);
		CHECK_EQ(zl_chan_recv_msg(bc[1], &m, 0), 1);
		CHECK_EQ(zl_chan_forward(cd[0], &m, 0), 4096);
		CHECK_EQ(zl_chan_recv_msg(cd[1], &m, 0), 1);
		CHECK(verify(m.seg[0].base, 4096, 100 + k) == 0);
		zl_msg_release(&m);
		struct zl_chan *all[] = {cd[0], bc[0], ab[0]};
		pump(all, 3);
	}
	zl_pool_stats(pool, &st);
	CHECK_EQ(st.cls[0].free, 64);
	struct zl_chan_info ci;
	zl_chan_info(ab[0], &ci);
	CHECK_EQ(ci.lent, 0);

	/* inline messages forward too (copied, they are small) */
	CHECK_EQ(zl_chan_send(ab[0], "hello", 5, 0), 5);
	CHECK_EQ(zl_chan_recv_msg(ab[1], &m, 0), 1);
	CHECK_EQ(zl_chan_forward(bc[0], &m, 0), 5);
	CHECK_EQ(zl_chan_recv(bc[1], flat, sizeof(flat), 0), 5);
	CHECK(memcmp(flat, "hello", 5) == 0);

	/* the owner's policy: a pool without ZL_POOL_FORWARD cannot travel on */
	struct zl_pool *priv;
	struct zl_pool_opts pp = {.nclasses = 1, .classes = {{256, 4}}};
	CHECK_EQ(zl_pool_create(ctx, &pp, &priv), 0);
	CHECK_EQ(zl_buf_alloc(priv, 10, &b), 0);
	CHECK_EQ(zl_chan_send_buf(ab[0], &b, 10, 0), 10);
	CHECK_EQ(zl_chan_recv_msg(ab[1], &m, 0), 1);
	CHECK_EQ(zl_chan_forward(bc[0], &m, 0), -EPERM);
	zl_msg_release(&m);
	pump(ab, 1);

	/* isolated channel: same calls, data copied through the lane */
	struct zl_chan *iso[2];
	struct zl_chan_opts io = {.mode = ZL_MODE_ISOLATED, .flags = ZL_CHAN_NOSPIN};
	CHECK_EQ(zl_chan_pair(ctx, &io, iso), 0);
	CHECK_EQ(zl_buf_alloc(pool, 3000, &b), 0);
	fill(b.data, 3000, 77);
	CHECK_EQ(zl_chan_send_buf(iso[0], &b, 3000, 0), 3000);
	CHECK_EQ(zl_chan_recv_msg(iso[1], &m, 0), 1);
	CHECK(verify(m.seg[0].base, 3000, 77) == 0);
	zl_msg_release(&m);
	zl_chan_info(iso[0], &ci);
	CHECK_EQ(ci.lent, 0);
	CHECK_EQ(ci.mode, ZL_MODE_ISOLATED);

	zl_chan_close(iso[0]);
	zl_chan_close(iso[1]);

	/* a sender whose pool runs dry waits for its buffers to come home */
	struct zl_chan *wr[2];
	struct zl_chan_opts wo = {.spin_ns = 1000};
	CHECK_EQ(zl_chan_pair(ctx, &wo, wr), 0);
	CHECK_EQ(zl_chan_wait_returns(wr[0]), 0); /* nothing lent: no wait */
	int sent = 0;
	while (zl_buf_alloc(pool, 100, &b) == 0) {
		memcpy(b.data, &sent, sizeof(sent));
		CHECK_EQ(zl_chan_send_buf(wr[0], &b, 100, 0), 100);
		sent++;
	}
	CHECK(sent > 0);
	pid_t pid = fork();
	if (pid == 0) {
		/* the receiver takes its time, then gives everything back */
		usleep(50000);
		for (int i = 0; i < sent; i++) {
			if (zl_chan_recv_msg(wr[1], &m, 0) != 1)
				_exit(1);
			zl_msg_release(&m);
		}
		pause(); /* keeps its end open until killed */
		_exit(0);
	}
	int got = 0;
	while (got < sent) {
		int r = zl_chan_wait_returns(wr[0]);
		if (r <= 0) {
			/* say what came back, and do not leave the receiver
			 * paused for ever (it holds the test's output open) */
			int st = 0;
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			fprintf(stderr,
				"zl_chan_wait_returns: %d after %d of %d buffers (receiver %s "
				"%d)\n",
				r, got, sent, WIFEXITED(st) ? "exited" : "killed",
				WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
			exit(1);
		}
		got += r;
	}
	CHECK_EQ(got, sent);
	CHECK_EQ(zl_buf_alloc(pool, 100, &b), 0); /* the pool has buffers again */
	zl_buf_free(&b);
	CHECK_EQ(zl_chan_wait_returns(wr[0]), 0); /* all home */
	kill(pid, SIGKILL);
	CHECK_EQ(wait_status(pid), 128 + SIGKILL);
	zl_chan_close(wr[0]);
	zl_chan_close(wr[1]);

	for (int i = 0; i < 2; i++) {
		zl_chan_close(ab[i]);
		zl_chan_close(bc[i]);
		zl_chan_close(cd[i]);
	}
	zl_pool_stats(pool, &st);
	CHECK_EQ(st.cls[0].free, 64);
	zl_pool_destroy(priv);
	zl_pool_destroy(pool);
	CHECK_EQ(count_maps(0, "zerolink:"), 0);
	zl_ctx_close(ctx);
	return 0;
}
