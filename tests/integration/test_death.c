/* SPDX-License-Identifier: MIT */
/*
 * Peer death is seen within 100 ms whether the survivor is blocked, spinning
 * or idle, and with the broker down too: ECONNRESET, the fd polls readable,
 * buffers lent to the dead peer come back.
 */
#include <poll.h>
#include <pthread.h>

#include "../zltest.h"

struct killer {
	pid_t pid;
	int delay_ms;
	uint64_t at;
};

static void *kill_later(void *p)
{
	struct killer *k = p;
	usleep((useconds_t)k->delay_ms * 1000);
	k->at = test_now_ns();
	kill(k->pid, SIGKILL);
	return NULL;
}

static void one(struct zl_ctx *ctx, struct zl_listener *lis, const char *svc, int how,
		struct zl_pool *pool)
{
	/* how: 0 blocked in recv, 1 spinning in recv, 2 idle then poll(2) */
	pid_t pid = spawn_peer((char *[]){"peer", "drain", (char *)svc, NULL});
	struct zl_chan_opts o = {.spin_ns = how == 1 ? ZL_SPIN_FOREVER : 0,
				 .flags = how == 1 ? 0 : ZL_CHAN_NOSPIN};
	struct zl_chan *ch;
	CHECK_EQ(zl_accept(lis, &o, &ch, 10000), 0);
	struct zl_buf b;
	CHECK_EQ(zl_buf_alloc(pool, 64, &b), 0);
	CHECK_EQ(zl_chan_send_buf(ch, &b, 64, 0), 64); /* a loan to the doomed peer */
	struct killer k = {pid, 50, 0};
	pthread_t t;
	pthread_create(&t, NULL, kill_later, &k);
	uint64_t seen;
	if (how == 2) {
		/* an epoll/poll user: armed, asleep in poll(2) */
		for (;;) {
			if (zl_chan_arm(ch) == 0) {
				struct pollfd p = {zl_chan_fd(ch), POLLIN, 0};
				CHECK(poll(&p, 1, 5000) == 1);
			}
			char c;
			int r = zl_chan_recv(ch, &c, 1, ZL_DONTWAIT);
			if (r == -ECONNRESET)
				break;
			CHECK_EQ(r, -EAGAIN);
		}
	} else {
		char c;
		CHECK_EQ(zl_chan_recv(ch, &c, 1, 0), -ECONNRESET);
	}
	seen = test_now_ns();
	pthread_join(t, NULL);
	double ms = (double)(seen - k.at) / 1e6;
	fprintf(stderr, "death seen after %.2f ms (%s)\n", ms,
		how == 0   ? "blocked"
		: how == 1 ? "spinning"
			   : "poll");
	CHECK(ms < 100.0);
	wait_status(pid);
	CHECK(zl_chan_poll(ch) == -ECONNRESET);
	struct zl_chan_info ci;
	zl_chan_info(ch, &ci);
	CHECK_EQ(ci.state, ZL_CHAN_PEER_DEAD);
	CHECK_EQ(ci.lent, 0);
	CHECK_EQ(zl_chan_send(ch, "x", 1, 0), -ECONNRESET);
	zl_chan_close(ch);
	(void)ctx;
}

/* A zero-copy sender waiting for its buffers while the peer that holds
 * them dies: the wait ends with ECONNRESET and the buffers are home. */
static void wait_returns_death(struct zl_listener *lis, const char *svc, struct zl_pool *pool)
{
	pid_t pid = spawn_peer((char *[]){"peer", "hold", (char *)svc, NULL});
	struct zl_chan_opts o = {.spin_ns = 1000};
	struct zl_chan *ch;
	CHECK_EQ(zl_accept(lis, &o, &ch, 10000), 0);
	struct zl_buf b;
	for (int i = 0; i < 100; i++) {
		CHECK_EQ(zl_buf_alloc(pool, 64, &b), 0);
		CHECK_EQ(zl_chan_send_buf(ch, &b, 64, 0), 64);
	}
	struct killer k = {pid, 50, 0};
	pthread_t t;
	pthread_create(&t, NULL, kill_later, &k);
	CHECK_EQ(zl_chan_wait_returns(ch), -ECONNRESET);
	uint64_t seen = test_now_ns();
	pthread_join(t, NULL);
	double ms = (double)(seen - k.at) / 1e6;
	fprintf(stderr, "death seen after %.2f ms (waiting for returns)\n", ms);
	CHECK(ms < 100.0);
	wait_status(pid);
	struct zl_chan_info ci;
	zl_chan_info(ch, &ci);
	CHECK_EQ(ci.lent, 0);
	zl_chan_close(ch);
}

int main(void)
{
	struct zl_ctx *ctx = test_ctx("test_death");
	struct zl_pool *pool;
	CHECK_EQ(zl_pool_create(ctx, NULL, &pool), 0);
	const char *svc = test_service("death");
	struct zl_listener *lis;
	CHECK_EQ(zl_listen(ctx, svc, NULL, &lis), 0);
	for (int how = 0; how < 3; how++)
		one(ctx, lis, svc, how, pool);
	wait_returns_death(lis, svc, pool);
	struct zl_pool_stats st;
	zl_pool_stats(pool, &st);
	CHECK_EQ(st.cls[0].free, st.cls[0].count);
	zl_listener_close(lis);
	zl_pool_destroy(pool);
	zl_ctx_close(ctx);
	return 0;
}
