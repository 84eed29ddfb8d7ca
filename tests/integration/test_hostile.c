/* SPDX-License-Identifier: MIT */
/*
 * Hostile peers: exec'd peers that write garbage in their own half (bad slot
 * kinds, an index that jumps, descriptors past the region or naming regions
 * never handed over, returns of buffers never lent, inline entries that lie
 * about their size, bad padding). The victim closes that channel with
 * -EPROTO, does not crash or hang, gets its buffers back, and keeps serving
 * a well-behaved peer on another channel throughout.
 */
#include <sys/prctl.h>

#include "../zltest.h"

int main(void)
{
	struct zl_ctx *ctx = test_ctx("test_hostile");
	const char *good = test_service("good"), *bad = test_service("bad");
	struct zl_listener *lg, *lb;
	CHECK_EQ(zl_listen(ctx, good, NULL, &lg), 0);
	CHECK_EQ(zl_listen(ctx, bad, NULL, &lb), 0);
	pid_t gpid = spawn_peer((char *[]){"peer", "echo", (char *)good, NULL});
	struct zl_chan *gch;
	CHECK_EQ(zl_accept(lg, NULL, &gch, 10000), 0);
	struct zl_pool *pool;
	CHECK_EQ(zl_pool_create(ctx, NULL, &pool), 0);

	static const char *kinds[] = {"badkind",   "jump",   "badlen", "badregion", "badreturn",
				      "badinline", "badpad", "badlen", "badregion"};
	/* the last two again, received in bursts (the descriptor fast path) */
	const size_t nburst = 2, nk = sizeof(kinds) / sizeof(kinds[0]);
	for (size_t k = 0; k < nk; k++) {
		bool burst = k >= nk - nburst;
		pid_t hpid = spawn_peer(
			(char *[]){"peer", "hostile", (char *)bad, (char *)kinds[k], NULL});
		struct zl_chan *hch;
		CHECK_EQ(zl_accept(lb, NULL, &hch, 10000), 0);
		/* lend the hostile peer a buffer, so that it has something to lie about */
		struct zl_buf b;
		CHECK_EQ(zl_buf_alloc(pool, 100, &b), 0);
		CHECK_EQ(zl_chan_send_buf(hch, &b, 100, 0), 100);
		int r = 0;
		uint64_t t0 = test_now_ns();
		char buf[8192];
		while (test_now_ns() - t0 < 10000000000ull) {
			if (burst) {
				struct zl_msg ms[8];
				r = zl_chan_recv_burst(hch, ms, 8, ZL_DONTWAIT);
				if (r > 0) {
					zl_msg_release_burst(ms, (unsigned)r);
					continue;
				}
			} else {
				r = zl_chan_recv(hch, buf, sizeof(buf), ZL_DONTWAIT);
			}
			if (r == -EAGAIN)
				r = zl_chan_poll(hch);
			if (r < 0 && r != -EAGAIN)
				break;
			usleep(1000);
		}
		if (r != -EPROTO)
			fprintf(stderr, "kind %s%s: got %d (%s)\n", kinds[k],
				burst ? " (burst)" : "", r, zl_strerror(r));
		CHECK_EQ(r, -EPROTO);
		struct zl_chan_info ci;
		zl_chan_info(hch, &ci);
		CHECK_EQ(ci.state, ZL_CHAN_BROKEN);
		CHECK_EQ(ci.lent, 0); /* the loan came back to us */
		CHECK_EQ(zl_chan_send(hch, "x", 1, 0), -EPROTO);
		/* the well-behaved peer is still served */
		fill(buf, 3000, k);
		CHECK_EQ(zl_chan_send(gch, buf, 3000, 0), 3000);
		CHECK_EQ(zl_chan_recv(gch, buf, sizeof(buf), 0), 3000);
		CHECK(verify(buf, 3000, k) == 0);
		zl_chan_close(hch);
		kill(hpid, SIGKILL);
		wait_status(hpid);
	}
	/* A peer that publishes the start of a message and never its rest
	 * breaks no rule, but must not make the receiver spin: a blocked
	 * receive sleeps (here it uses under 10% of a core over 300 ms). */
	{
		pid_t hpid = spawn_peer(
			(char *[]){"peer", "hostile", (char *)bad, (char *)"partial", NULL});
		struct zl_chan *hch;
		CHECK_EQ(zl_accept(lb, NULL, &hch, 10000), 0);
		CHECK_EQ(zl_chan_send(hch, "go", 2, 0), 2); /* the peer acts once it has it */
		pid_t rpid = fork();
		if (rpid == 0) {
			/* dies with the test, should a check fail while it spins */
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			char buf[64];
			zl_chan_recv(hch, buf, sizeof(buf), 0); /* blocks until killed */
			_exit(0);
		}
		usleep(50000);
		uint64_t c0 = zl_proc_cpu_ns(rpid);
		usleep(300000);
		uint64_t c1 = zl_proc_cpu_ns(rpid);
		fprintf(stderr,
			"receiver waiting for the rest of a message: %.1f ms of CPU in 300 ms\n",
			(double)(c1 - c0) / 1e6);
		CHECK(c1 - c0 < 30000000ull);
		kill(rpid, SIGKILL);
		wait_status(rpid);
		zl_chan_close(hch);
		kill(hpid, SIGKILL);
		wait_status(hpid);
	}

	struct zl_pool_stats st;
	zl_pool_stats(pool, &st);
	CHECK_EQ(st.cls[0].free, st.cls[0].count);
	zl_chan_close(gch);
	CHECK_EQ(wait_status(gpid), 0);
	zl_pool_destroy(pool);
	zl_listener_close(lg);
	zl_listener_close(lb);
	zl_ctx_close(ctx);
	return 0;
}
