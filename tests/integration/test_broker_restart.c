/* SPDX-License-Identifier: MIT */
/*
 * The broker is not on the data path: kill it (SIGKILL) under traffic and
 * the channel keeps working; the next set-up starts a new broker on demand,
 * listeners offer their services again, and domains keep their ids.
 */
#include "../zltest.h"

int main(void)
{
	const char *brokerd = getenv("ZEROLINKD");
	if (!brokerd)
		SKIP("ZEROLINKD not set");
	char sock[128];
	snprintf(sock, sizeof(sock), "/tmp/zl-restart-%d/broker.sock", (int)getpid());
	setenv("ZEROLINK_BROKER", sock, 1); /* our own broker, and our peers' */
	pid_t bpid = fork();
	if (bpid == 0) {
		execl(brokerd, "zerolinkd", "--socket", sock, "--idle-exit", "0", (char *)NULL);
		_exit(127);
	}
	struct zl_ctx *ctx;
	struct zl_ctx_opts o = {.name = "restart", .flags = ZL_CTX_NO_SPAWN};
	int err = -1;
	for (int i = 0; i < 200 && err; i++)
		if ((err = zl_ctx_open(&ctx, &o)))
			usleep(10000);
	CHECK_EQ(err, 0);
	zl_ctx_close(ctx);
	ctx = test_ctx("restart"); /* may spawn a broker later */
	uint32_t dom = zl_ctx_domain(ctx).id;

	const char *svc = test_service("restart"), *svc2 = test_service("restart2");
	struct zl_listener *lis, *lis2;
	CHECK_EQ(zl_listen(ctx, svc, NULL, &lis), 0);
	CHECK_EQ(zl_listen(ctx, svc2, NULL, &lis2), 0);
	pid_t pid = spawn_peer((char *[]){"peer", "echo", (char *)svc, NULL});
	struct zl_chan *ch;
	CHECK_EQ(zl_accept(lis, NULL, &ch, 10000), 0);
	char buf[5000];
	for (int i = 0; i < 3000; i++) {
		if (i == 1000) {
			kill(bpid, SIGKILL); /* mid-traffic */
			wait_status(bpid);
		}
		size_t len = 1 + (size_t)i % 4999;
		fill(buf, len, (uint64_t)i);
		CHECK_EQ(zl_chan_send(ch, buf, len, 0), len);
		CHECK_EQ(zl_chan_recv(ch, buf, sizeof(buf), 0), len);
		CHECK(verify(buf, len, (uint64_t)i) == 0);
	}
	/* a new peer reaches svc2: the library starts a new broker, and our
	 * listener re-offers svc2 to it when it sees the old one gone */
	pid_t pid2 = spawn_peer((char *[]){"peer", "echo", (char *)svc2, NULL});
	struct zl_chan *ch2;
	CHECK_EQ(zl_accept(lis2, NULL, &ch2, 15000), 0);
	CHECK_EQ(zl_chan_send(ch2, "again", 5, 0), 5);
	CHECK_EQ(zl_chan_recv(ch2, buf, sizeof(buf), 0), 5);
	/* our domain keeps its id on the new broker */
	struct zl_pool *pool;
	CHECK_EQ(zl_pool_create(ctx, NULL, &pool), 0); /* talks to the broker */
	struct zl_chan *self;
	CHECK_EQ(zl_connect(ctx, "no.such.service", NULL, &self), -ECONNREFUSED);
	CHECK_EQ(zl_ctx_domain(ctx).id, dom);
	zl_chan_close(ch);
	zl_chan_close(ch2);
	CHECK_EQ(wait_status(pid), 0);
	CHECK_EQ(wait_status(pid2), 0);
	zl_pool_destroy(pool);
	zl_listener_close(lis);
	zl_listener_close(lis2);
	zl_ctx_close(ctx);
	return 0;
}
