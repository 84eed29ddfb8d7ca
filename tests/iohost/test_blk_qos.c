/* SPDX-License-Identifier: MIT */
/*
 * QoS tenants. A limit holds: a tenant limited to 2000 operations per
 * second, reading as fast as it can, gets about that many (and is served);
 * removed at run time, the limit is gone. Tenant specs that make no sense
 * are refused with a reason: no device, an unknown device, a reservation
 * above the limit, everyone as users, a user in two tenants, an unknown
 * key; removing a tenant that does not exist says so. `ls` and `prom`
 * show the tenants. (Reservations under contention are measured by
 * `zerolink bench --only qos`, not asserted on timing here.)
 */
#include "ioh_test.h"

static struct ioh_proc ioh;

/* 4 KiB reads at queue depth 8 for secs seconds: operations per second */
static double rate(struct zl_blk_queue *q, double secs)
{
	struct zl_blk_req r[8];
	struct zl_blk_cpl c[8];
	uint64_t ops = 0, t0 = test_now_ns(), end = t0 + (uint64_t)(secs * 1e9);
	unsigned inflight = 0;
	bool stop = false;
	uint64_t off = 0;
	while (!stop || inflight) {
		unsigned k = 0;
		while (!stop && inflight + k < 8) {
			r[k] = (struct zl_blk_req){
				.op = ZL_BLK_OP_READ, .len = 4096, .offset = off};
			off = (off + 4096) % (1 << 20);
			k++;
		}
		for (unsigned s = 0; s < k;) {
			int n = zl_blk_submit(q, r + s, k - s, 0);
			CHECK(n > 0);
			s += (unsigned)n;
		}
		inflight += k;
		int n = zl_blk_reap(q, c, 8, 0);
		CHECK(n > 0);
		for (int i = 0; i < n; i++) {
			CHECK_EQ(c[i].status, 0);
			zl_blk_cpl_release(q, &c[i]);
		}
		inflight -= (unsigned)n;
		ops += (unsigned)n;
		if (test_now_ns() >= end)
			stop = true;
	}
	return (double)ops / ((double)(test_now_ns() - t0) / 1e9);
}

int main(void)
{
	char s0[160];
	const char *dev = ioh_dev("q");
	snprintf(s0, sizeof(s0), "%s:backend=ram,size=4M", dev);
	const char *args[] = {"--sidecores", "0", "--device", s0, NULL};
	ioh_start(&ioh, args);
	struct zl_ctx *ctx = test_ctx("test_blk_qos");
	struct zl_blk *d;
	CHECK_EQ(zl_blk_open(ctx, dev, NULL, &d), 0);
	struct zl_blk_queue *q = zl_blk_queue(d, 0);

	double free_rate = rate(q, 0.3);
	char line[512];
	snprintf(line, sizeof(line), "tenant lim device=%s users=%u limit=2000 weight=3", dev,
		 (unsigned)geteuid());
	free(ioh_ok(&ioh, line));
	double lim = rate(q, 1.0);
	printf("free %.0f ops/s, limited to 2000: %.0f ops/s\n", free_rate, lim);
	CHECK(lim <= 2000 * 1.15);
	CHECK(lim >= 0.7 * (free_rate < 2000 ? free_rate : 2000));
	char *ls = ioh_ok(&ioh, "ls");
	CHECK(strstr(ls, "tenant lim (uid "));
	CHECK(strstr(ls, "limit 2000 weight 3"));
	free(ls);
	char *pr = ioh_ok(&ioh, "prom");
	CHECK(strstr(pr, "zerolink_iohost_qos_deferred_total{device=\""));
	free(pr);
	/* changed at run time, down: a bound that load cannot blur (CI runs
	 * under load and ASan delivered less than a raised limit allowed:
	 * 1794 and 3457 ops/s of 5000) */
	snprintf(line, sizeof(line), "tenant lim device=%s users=%u limit=500", dev,
		 (unsigned)geteuid());
	free(ioh_ok(&ioh, line));
	ls = ioh_ok(&ioh, "ls");
	CHECK(strstr(ls, "limit 500 weight 1"));
	free(ls);
	double lim2 = rate(q, 1.0);
	printf("limit changed to 500: %.0f ops/s\n", lim2);
	CHECK(lim2 <= 500 * 1.15);
	CHECK(lim2 < 0.5 * lim);
	/* removed: free again */
	snprintf(line, sizeof(line), "untenant %s lim", dev);
	free(ioh_ok(&ioh, line));
	double again = rate(q, 0.3);
	/* (relative to this machine's rate: sanitizers and load slow it) */
	double want = 0.5 * free_rate < 1.5 * 5000 ? 0.5 * free_rate : 1.5 * 5000;
	printf("limit removed: %.0f ops/s (at least %.0f)\n", again, want);
	CHECK(again > want);

	/* refused, with a reason */
	snprintf(line, sizeof(line), "tenant t users=1");
	ioh_refused(&ioh, line, "which device");
	snprintf(line, sizeof(line), "tenant t device=nosuch-%d users=1", (int)getpid());
	ioh_refused(&ioh, line, "no device");
	snprintf(line, sizeof(line), "tenant t device=%s", dev);
	ioh_refused(&ioh, line, "who?");
	snprintf(line, sizeof(line), "tenant t device=%s users=1 reserve=5000 limit=100", dev);
	ioh_refused(&ioh, line, "above its limit");
	snprintf(line, sizeof(line), "tenant t device=%s users=*", dev);
	ioh_refused(&ioh, line, "names its users");
	snprintf(line, sizeof(line), "tenant t device=%s users=1 speed=9", dev);
	ioh_refused(&ioh, line, "unknown tenant key 'speed'");
	snprintf(line, sizeof(line), "tenant t device=%s users=1 weight=0", dev);
	ioh_refused(&ioh, line, "bad value for weight");
	snprintf(line, sizeof(line), "tenant a device=%s users=1,2", dev);
	free(ioh_ok(&ioh, line));
	snprintf(line, sizeof(line), "tenant b device=%s users=2", dev);
	ioh_refused(&ioh, line, "user 2 is in tenant a already");
	snprintf(line, sizeof(line), "untenant %s nosuch", dev);
	ioh_refused(&ioh, line, "has no tenant nosuch");
	snprintf(line, sizeof(line), "untenant %s a", dev);
	free(ioh_ok(&ioh, line));

	zl_blk_close(d);
	zl_ctx_close(ctx);
	ioh_stop(&ioh);
	printf("ok\n");
	return 0;
}
