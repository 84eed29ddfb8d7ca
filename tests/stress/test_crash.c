/* SPDX-License-Identifier: MIT */
/*
 * A hundred crashes: a peer (sender or receiver, listener or connector) is
 * killed with SIGKILL at a random point of its traffic. The survivor never
 * hangs, sees ECONNRESET (or EOF/EPIPE), gets every lent buffer back, and
 * leaks no descriptor, mapping or memfd.
 */
#include <pthread.h>

#include "../zltest.h"

struct killer {
	pid_t pid;
	unsigned delay_us;
};

static void *kill_later(void *p)
{
	struct killer *k = p;
	usleep(k->delay_us);
	kill(k->pid, SIGKILL);
	return NULL;
}

int main(int argc, char **argv)
{
	int iters = argc > 1 ? atoi(argv[1]) : 100;
	struct zl_ctx *ctx = test_ctx("test_crash");
	struct zl_pool *pool;
	CHECK_EQ(zl_pool_create(ctx, NULL, &pool), 0);
	const char *svc = test_service("crash");
	struct zl_listener *lis;
	CHECK_EQ(zl_listen(ctx, svc, NULL, &lis), 0);
	int fds0 = count_fds(), maps0 = count_maps(0, "zerolink:");
	srand((unsigned)getpid());
	char *buf = malloc(1 << 20);
	for (int it = 0; it < iters; it++) {
		int role = rand() % 3;          /* 0 peer blasts, 1 peer drains, 2 echo */
		bool peer_listens = rand() % 2; /* who is the listener */
		char svc2[64];
		snprintf(svc2, sizeof(svc2), "%s.%d", svc, it);
		const char *r = role == 0 ? "blast" : role == 1 ? "drain" : "echo";
		pid_t pid;
		struct zl_chan *ch;
		struct zl_chan_opts o = {.lend = 64,
					 .spin_ns = rand() % 2 ? 0 : 20000,
					 .flags = rand() % 3 == 0 ? ZL_CHAN_NOSPIN : 0};
		if (peer_listens && role == 2) {
			pid = spawn_peer((char *[]){"peer", "listen-echo", svc2, NULL});
			int err = -1;
			for (int k = 0; k < 500 && err; k++) {
				err = zl_connect(ctx, svc2, &o, &ch);
				if (err == -ECONNREFUSED)
					usleep(5000);
			}
			CHECK_EQ(err, 0);
		} else {
			pid = spawn_peer((char *[]){"peer", (char *)r, (char *)svc, NULL});
			CHECK_EQ(zl_accept(lis, &o, &ch, 10000), 0);
		}
		struct killer k = {pid, (unsigned)(rand() % 20000)};
		pthread_t t;
		pthread_create(&t, NULL, kill_later, &k);
		int err = 0;
		for (uint64_t i = 0; !err; i++) {
			if (role == 0) { /* peer sends: we receive */
				struct zl_msg m[8];
				int n = zl_chan_recv_burst(ch, m, 8, 0);
				for (int j = 0; j < n; j++)
					zl_msg_release(&m[j]);
				if (n <= 0)
					err = n ? n : -EPIPE;
			} else if (role == 1 || i % 2) { /* we send */
				struct zl_buf b;
				int x = zl_buf_alloc(pool, 2048, &b);
				if (x == 0) {
					x = zl_chan_send_buf(ch, &b, 2048, 0);
					if (x < 0)
						zl_buf_free(&b);
				} else {
					x = zl_chan_poll(ch);
				}
				if (x < 0)
					err = x;
			} else {
				int n = zl_chan_recv(ch, buf, 1 << 20, ZL_DONTWAIT);
				if (n < 0 && n != -EAGAIN)
					err = n;
			}
		}
		pthread_join(t, NULL);
		CHECK(err == -ECONNRESET || err == -EPIPE);
		wait_status(pid);
		CHECK(zl_chan_poll(ch) <= 0);
		struct zl_chan_info ci;
		zl_chan_info(ch, &ci);
		CHECK_EQ(ci.lent, 0);
		zl_chan_close(ch);
		struct zl_pool_stats st;
		zl_pool_stats(pool, &st);
		CHECK_EQ(st.cls[0].free, st.cls[0].count);
		CHECK_EQ(count_fds(), fds0);
		CHECK_EQ(count_maps(0, "zerolink:"), maps0);
	}
	free(buf);
	zl_listener_close(lis);
	zl_pool_destroy(pool);
	zl_ctx_close(ctx);
	return 0;
}
