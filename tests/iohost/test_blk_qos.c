/* SPDX-License-Identifier: MIT */
/*
 * QoS tenants. A limit holds: a tenant limited to 2000 operations per
 * second, reading as fast as it can, gets about that many (and is served);
 * removed at run time, the limit is gone. Tenant specs that make no sense
 * are refused with a reason: no device, an unknown device, a reservation
 * above the limit, everyone as users, a user in two tenants, an unknown
 * key, burst classes without a reservation or out of order; removing a
 * tenant that does not exist says so. `ls` and `prom` show the tenants.
 * Burst classes: requests are classed by their envelopes, counted, and
 * counted late past their bound. (Reservations under contention are measured by
 * `zerolink bench --only qos`, not asserted on timing here.)
 */
#include "ioh_test.h"

static struct ioh_proc ioh;

/* 4 KiB reads at queue depth 8 for secs seconds: operations per second */
/* Reap n completions (at least one if n is 0), each a success; how many. */
static int reap_ok(struct zl_blk_queue *q, int n)
{
	struct zl_blk_cpl c[16];
	int got = 0;
	do {
		int k = zl_blk_reap(q, c, 16, 0);
		CHECK(k > 0);
		for (int i = 0; i < k; i++) {
			CHECK_EQ(c[i].status, 0);
			zl_blk_cpl_release(q, &c[i]);
		}
		got += k;
	} while (got < n);
	return got;
}

static double rate(struct zl_blk_queue *q, double secs)
{
	struct zl_blk_req r[8];
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
		int n = reap_ok(q, 0);
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

	/* burst classes (Nested QoS): the buckets start full and refill at
	 * the reservation (1 op/s here: nothing in this test's time). Of 80
	 * reads arriving 16 at a time, the first 16 fit class 1, the next 48
	 * class 2 (64 less the 16 that class 1 took from it), the last 16
	 * neither; all are served. */
	snprintf(line, sizeof(line), "tenant bursty device=%s users=%u reserve=1 burst=16@1s,64@2s",
		 dev, (unsigned)geteuid());
	free(ioh_ok(&ioh, line));
	for (int round = 0; round < 5; round++) {
		struct zl_blk_req r[16];
		for (int i = 0; i < 16; i++)
			r[i] = (struct zl_blk_req){
				.op = ZL_BLK_OP_READ, .len = 4096, .offset = (uint64_t)i * 4096};
		for (int s = 0; s < 16;) {
			int n = zl_blk_submit(q, r + s, (unsigned)(16 - s), 0);
			CHECK(n > 0);
			s += n;
		}
		reap_ok(q, 16);
	}
	ls = ioh_ok(&ioh, "ls");
	printf("%s", ls);
	CHECK(strstr(ls, "burst class 1: 16 ops within 1000.000 ms; 16 requests, 0 late"));
	CHECK(strstr(ls, "burst class 2: 64 ops within 2000.000 ms; 48 requests, 0 late"));
	CHECK(strstr(ls, "    qos: spare unlimited, depth unlimited (0 out); "));
	free(ls);
	pr = ioh_ok(&ioh, "prom");
	CHECK(strstr(pr, "zerolink_iohost_qos_burst_requests_total{device=\""));
	CHECK(strstr(pr, "tenant=\"bursty (uid "));
	CHECK(strstr(pr, ",class=\"2\"} 48\n"));
	/* the controller's: cuts of rate and depth, and the depth (-1: none
	 * here, nobody else used spare capacity) */
	CHECK(strstr(pr, "zerolink_iohost_qos_cuts_total{device=\""));
	CHECK(strstr(pr, "\",of=\"depth\"} 0\n"));
	CHECK(strstr(pr, "zerolink_iohost_qos_spare_depth{device=\""));
	prom_check_grouped(pr); /* two tenants' lines, and those of the devices */
	free(pr);
	/* a request done later than its class's bound is counted late: 1 MiB
	 * cannot be copied within 1 us */
	snprintf(line, sizeof(line), "tenant bursty device=%s users=%u reserve=1 burst=256@1us",
		 dev, (unsigned)geteuid());
	free(ioh_ok(&ioh, line));
	{
		struct zl_blk_req r = {.op = ZL_BLK_OP_READ, .len = 1 << 20, .offset = 0};
		struct zl_blk_cpl c;
		CHECK_EQ(zl_blk_submit(q, &r, 1, 0), 1);
		CHECK_EQ(zl_blk_reap(q, &c, 1, 0), 1);
		CHECK_EQ(c.status, 0);
		zl_blk_cpl_release(q, &c);
	}
	ls = ioh_ok(&ioh, "ls");
	CHECK(strstr(ls, "burst class 1: 256 ops within 0.001 ms; 1 requests, 1 late ("));
	free(ls);
	/* late while the I/O host stood still (stopped for 5 ms, as a VM's
	 * stall would stop it) is told apart: reads in flight when it stops
	 * are counted across a long round of the sidecore; tried until one
	 * was caught in flight (the sidecore may be between requests) */
	{
		unsigned long long reqs = 0, late = 0, late_long = 0;
		/* a bucket for every read of the loop (1 MiB costs 256 ops) */
		snprintf(line, sizeof(line),
			 "tenant bursty device=%s users=%u reserve=1 burst=250000@1us", dev,
			 (unsigned)geteuid());
		free(ioh_ok(&ioh, line));
		for (int tries = 0; tries < 100 && !late_long; tries++) {
			struct zl_blk_req r[8];
			for (int i = 0; i < 8; i++)
				r[i] = (struct zl_blk_req){.op = ZL_BLK_OP_READ,
							   .len = 1 << 20,
							   .offset = (uint64_t)(i % 2) << 20};
			CHECK_EQ(zl_blk_submit(q, r, 8, 0), 8);
			usleep(20);
			CHECK_EQ(kill(ioh.pid, SIGSTOP), 0);
			usleep(5000);
			CHECK_EQ(kill(ioh.pid, SIGCONT), 0);
			reap_ok(q, 8);
			ls = ioh_ok(&ioh, "ls");
			const char *at = strstr(ls, "burst class 1: 250000 ops within 0.001 ms;");
			CHECK(at &&
			      sscanf(strchr(at, ';'), "; %llu requests, %llu late (%llu across",
				     &reqs, &late, &late_long) == 3);
			free(ls);
		}
		printf("stopped for 5 ms: %llu of %llu late class requests across a long round\n",
		       late_long, late);
		CHECK(late_long > 0 && late_long <= late && late <= reqs);
		pr = ioh_ok(&ioh, "prom");
		CHECK(strstr(pr, "zerolink_iohost_sidecore_long_rounds_total{sidecore=\"0\"} "));
		CHECK(!strstr(pr,
			      "zerolink_iohost_sidecore_long_rounds_total{sidecore=\"0\"} 0\n"));
		/* the time in them: at least the 5 ms stop */
		const char *ls_s = strstr(
			pr, "zerolink_iohost_sidecore_long_round_seconds_total{sidecore=\"0\"} ");
		CHECK(ls_s && strtod(strchr(ls_s, '}') + 1, NULL) >= 0.004);
		CHECK(strstr(pr, "zerolink_iohost_qos_burst_late_long_round_total{device=\""));
		prom_check_grouped(pr);
		free(pr);
	}
	snprintf(line, sizeof(line), "untenant %s bursty", dev);
	free(ioh_ok(&ioh, line));

	/* refused, with a reason */
	snprintf(line, sizeof(line), "tenant t users=1");
	ioh_refused(&ioh, line, "which device");
	snprintf(line, sizeof(line), "tenant t device=nosuch-%d users=1", (int)getpid());
	ioh_refused(&ioh, line, "no device");
	static const struct {
		const char *keys, *why; /* after "tenant t device=DEV" */
	} bad[] = {
		{"", "who?"},
		{"users=1 reserve=5000 limit=100", "above its limit"},
		{"users=*", "names its users"},
		{"users=1 speed=9", "unknown tenant key 'speed'"},
		{"users=1 weight=0", "bad value for weight"},
		{"users=1 burst=32@2ms", "burst classes refill at the reservation"},
		{"users=1 reserve=10 burst=32", "bad value for burst: '32'"},
		{"users=1 reserve=10 burst=0@2ms", "bad value for burst"},
		{"users=1 reserve=10 burst=32@2", "bad value for burst"},
		{"users=1 reserve=10 burst=32@500ns", "at least 1us"},
		{"users=1 reserve=10 burst=32@2ms,16@5ms", "larger than the one before it"},
		{"users=1 reserve=10 burst=1@1ms,2@2ms,3@3ms,4@4ms,5@5ms", "at most 4 classes"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(line, sizeof(line), "tenant t device=%s %s", dev, bad[i].keys);
		ioh_refused(&ioh, line, bad[i].why);
	}
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
