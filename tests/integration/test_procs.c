/* SPDX-License-Identifier: MIT */
/*
 * Channels between processes set up by name through the broker, with an
 * exec'd peer: inline, fragmented and zero-copy messages in shared mode; an
 * isolated service where the peer maps nothing of ours but the lane; naming
 * errors; and `zerolink ls` showing the channel with its counters.
 */
#include "../zltest.h"

static void roundtrips(struct zl_chan *ch, struct zl_pool *pool, int n)
{
	static char buf[300000], out[300000];
	for (int i = 0; i < n; i++) {
		size_t len = (size_t[]){1, 56, 57, 1000, 4088, 4089, 70000, 250000}[i % 8];
		if (i % 3 == 2 && len <= 65536) {
			struct zl_buf b;
			CHECK_EQ(zl_buf_alloc(pool, len, &b), 0);
			fill(b.data, len, (uint64_t)i);
			CHECK_EQ(zl_chan_send_buf(ch, &b, len, 0), len);
		} else {
			fill(buf, len, (uint64_t)i);
			CHECK_EQ(zl_chan_send(ch, buf, len, 0), len);
		}
		CHECK_EQ(zl_chan_recv(ch, out, sizeof(out), 0), len);
		CHECK(verify(out, len, (uint64_t)i) == 0);
		CHECK(zl_chan_poll(ch) >= 0);
	}
}

static void check_ls(const char *svc)
{
	const char *cli = getenv("ZEROLINK_CLI");
	if (!cli)
		return;
	char cmd[512], line[512];
	snprintf(cmd, sizeof(cmd), "%s ls", cli);
	FILE *f = popen(cmd, "r");
	CHECK(f != NULL);
	int seen_svc = 0, seen_chan = 0;
	while (fgets(line, sizeof(line), f)) {
		if (strstr(line, svc) && strstr(line, "shared"))
			seen_svc++;
		if (strstr(line, svc) && strstr(line, "cli"))
			seen_chan++;
	}
	CHECK_EQ(pclose(f), 0);
	CHECK(seen_svc >= 1);
	CHECK(seen_chan >= 1);
}

int main(void)
{
	struct zl_ctx *ctx = test_ctx("test_procs");
	struct zl_pool *pool;
	CHECK_EQ(zl_pool_create(ctx, NULL, &pool), 0);

	/* shared */
	const char *svc = test_service("procs");
	struct zl_listener *lis;
	CHECK_EQ(zl_listen(ctx, svc, NULL, &lis), 0);
	struct zl_listener *dup;
	CHECK_EQ(zl_listen(ctx, svc, NULL, &dup), -EADDRINUSE);
	CHECK_EQ(zl_listen(ctx, "bad/name", NULL, &dup), -EINVAL);
	struct zl_chan *ch;
	CHECK_EQ(zl_connect(ctx, "no.such.service", NULL, &ch), -ECONNREFUSED);
	pid_t pid = spawn_peer((char *[]){"peer", "echo", (char *)svc, NULL});
	CHECK_EQ(zl_accept(lis, NULL, &ch, 10000), 0);
	roundtrips(ch, pool, 200);
	struct zl_chan_info ci;
	zl_chan_info(ch, &ci);
	CHECK(ci.chan != 0);
	CHECK_EQ(ci.mode, ZL_MODE_SHARED);
	CHECK_EQ(ci.rx_msgs, 200);
	check_ls(svc);
	/* the peer maps our pool read-only */
	CHECK(count_maps(pid, "zerolink:pool") >= 1);
	zl_chan_close(ch);
	CHECK_EQ(wait_status(pid), 0);
	zl_listener_close(lis);

	/* isolated: the peer maps nothing of ours but the lane */
	const char *iso = test_service("procs-iso");
	struct zl_listen_opts lo = {.mode = ZL_MODE_ISOLATED};
	CHECK_EQ(zl_listen(ctx, iso, &lo, &lis), 0);
	pid = spawn_peer((char *[]){"peer", "echo", (char *)iso, NULL}); /* asks for shared */
	CHECK_EQ(zl_accept(lis, NULL, &ch, 10000), 0);
	zl_chan_info(ch, &ci);
	CHECK_EQ(ci.mode, ZL_MODE_ISOLATED);
	roundtrips(ch, pool, 100);
	CHECK_EQ(count_maps(pid, "zerolink:pool"), 0);
	CHECK_EQ(count_maps(pid, "zerolink:lane"), 2); /* its own lane and ours */
	zl_chan_close(ch);
	CHECK_EQ(wait_status(pid), 0);
	zl_listener_close(lis);

	struct zl_pool_stats st;
	zl_pool_stats(pool, &st);
	for (unsigned c = 0; c < st.nclasses; c++)
		CHECK_EQ(st.cls[c].free, st.cls[c].count);
	zl_pool_destroy(pool);
	zl_ctx_close(ctx);
	return 0;
}
