/* SPDX-License-Identifier: MIT */
/*
 * Lost wake-ups: two processes whose waits end in sleep as often as in a
 * spin, with random gaps around the publishes, in both directions (a
 * consumer waiting for data, a producer waiting for room in a small lane).
 * Run with the asymmetric fences (membarrier, when the kernel offers it)
 * and with plain fences. A lost wake-up hangs the pair: the alarm fails the
 * test.
 */
#include "../zltest.h"

extern bool zl__mb_ready;

static uint64_t rng = 88172645463325252ull;

static unsigned rnd(unsigned n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (unsigned)(rng % n);
}

/* A busy gap of 0 to about max_us microseconds. */
static void gap(unsigned max_us)
{
	struct timespec t0, t;
	unsigned ns = rnd(max_us * 1000 + 1);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do
		clock_gettime(CLOCK_MONOTONIC, &t);
	while ((uint64_t)(t.tv_sec - t0.tv_sec) * 1000000000u + (uint64_t)t.tv_nsec -
		       (uint64_t)t0.tv_nsec <
	       ns);
}

/* Returns how many of its waits ended in sleep. */
static uint64_t round_trips_once(struct zl_ctx *ctx)
{
	/* a spin budget of 1 us (checked every few microseconds) against gaps
	 * of up to 16 us: many waits end in sleep */
	struct zl_chan_opts o = {.spin_ns = 1000};
	struct zl_chan *p[2];
	CHECK_EQ(zl_chan_pair(ctx, &o, p), 0);
	const int n = 40000;
	pid_t pid = fork();
	if (pid == 0) {
		rng ^= 0x9e3779b97f4a7c15ull;
		uint64_t v;
		for (int i = 0; i < n; i++) {
			if (zl_chan_recv(p[1], &v, sizeof(v), 0) != sizeof(v) || v != (uint64_t)i)
				_exit(1);
			gap(16);
			if (zl_chan_send(p[1], &v, sizeof(v), 0) != sizeof(v))
				_exit(1);
		}
		_exit(0);
	}
	for (uint64_t i = 0; i < (uint64_t)n; i++) {
		uint64_t v = i;
		CHECK_EQ(zl_chan_send(p[0], &v, sizeof(v), 0), sizeof(v));
		gap(16);
		CHECK_EQ(zl_chan_recv(p[0], &v, sizeof(v), 0), sizeof(v));
		CHECK_EQ(v, i);
	}
	CHECK_EQ(wait_status(pid), 0);
	struct zl_chan_info ci;
	zl_chan_info(p[0], &ci);
	fprintf(stderr, "round trips: %llu sleeps, %llu kicks\n", (unsigned long long)ci.sleeps,
		(unsigned long long)ci.kicks);
	zl_chan_close(p[0]);
	zl_chan_close(p[1]);
	return ci.sleeps;
}

static void round_trips(struct zl_ctx *ctx)
{
	/* the race must actually be run: on a loaded machine both processes
	 * may share a core, and a spin that yields to the peer then finds
	 * its answer every time; run again then */
	uint64_t sleeps = 0;
	for (int k = 0; k < 5 && sleeps == 0; k++)
		sleeps = round_trips_once(ctx);
	CHECK(sleeps > 0);
}

static void stream(struct zl_ctx *ctx)
{
	/* a small lane: the producer waits for room as often as the consumer
	 * waits for data */
	struct zl_chan_opts o = {.spin_ns = 2000, .slots = 64};
	struct zl_chan *p[2];
	CHECK_EQ(zl_chan_pair(ctx, &o, p), 0);
	const uint64_t n = 200000;
	pid_t pid = fork();
	if (pid == 0) {
		rng ^= 0x2545f4914f6cdd1dull;
		for (uint64_t i = 0; i < n; i++) {
			char b[200];
			size_t len = 8 + rnd(190);
			memcpy(b, &i, 8);
			if (zl_chan_send(p[1], b, len, 0) != (int)len)
				_exit(1);
			if (rnd(64) == 0)
				gap(20);
		}
		_exit(0);
	}
	for (uint64_t i = 0; i < n; i++) {
		char b[200];
		uint64_t v;
		CHECK(zl_chan_recv(p[0], b, sizeof(b), 0) >= 8);
		memcpy(&v, b, 8);
		CHECK_EQ(v, i);
		if (rnd(64) == 0)
			gap(20);
	}
	CHECK_EQ(wait_status(pid), 0);
	struct zl_chan_info ci;
	zl_chan_info(p[0], &ci);
	fprintf(stderr, "stream: %llu sleeps, %llu kicks\n", (unsigned long long)ci.sleeps,
		(unsigned long long)ci.kicks);
	zl_chan_close(p[0]);
	zl_chan_close(p[1]);
}

/* A zero-copy sender whose pool of four buffers is dry most of the time,
 * waiting for returns: the returns that end a wait may be collected at the
 * very start of it, and must end it then. */
static void loans(struct zl_ctx *ctx)
{
	struct zl_chan_opts o = {.spin_ns = 2000};
	struct zl_chan *p[2];
	CHECK_EQ(zl_chan_pair(ctx, &o, p), 0);
	struct zl_pool_opts po = {.nclasses = 1, .classes = {{64, 4}}};
	struct zl_pool *pool;
	CHECK_EQ(zl_pool_create(ctx, &po, &pool), 0);
	const uint64_t n = 100000;
	pid_t pid = fork();
	if (pid == 0) {
		rng ^= 0x9e3779b97f4a7c15ull;
		for (uint64_t got = 0; got < n;) {
			struct zl_msg m[4];
			int k = zl_chan_recv_burst(p[1], m, 1 + (unsigned)rnd(4), 0);
			if (k <= 0)
				_exit(1);
			for (int i = 0; i < k; i++) {
				uint64_t v;
				memcpy(&v, m[i].seg[0].base, 8);
				if (v != got + (uint64_t)i)
					_exit(2);
			}
			got += (uint64_t)k;
			if (rnd(64) == 0)
				gap(20);
			zl_msg_release_burst(m, (unsigned)k);
		}
		_exit(0);
	}
	for (uint64_t i = 0; i < n;) {
		struct zl_buf b;
		int r = zl_buf_alloc(pool, 64, &b);
		if (r == -ENOBUFS) {
			CHECK(zl_chan_wait_returns(p[0]) >= 0);
			continue;
		}
		CHECK_EQ(r, 0);
		memcpy(b.data, &i, 8);
		CHECK_EQ(zl_chan_send_buf(p[0], &b, 64, 0), 64);
		i++;
	}
	CHECK_EQ(wait_status(pid), 0);
	zl_chan_close(p[0]);
	zl_chan_close(p[1]);
	zl_pool_destroy(pool);
}

int main(void)
{
	alarm(120); /* a lost wake-up hangs: fail instead */
	struct zl_ctx *ctx = test_ctx("test_wakeup");
	fprintf(stderr, "asymmetric fences (membarrier): %s\n",
		zl__mb_ready ? "available" : "not available here");
	round_trips(ctx);
	stream(ctx);
	loans(ctx);
	/* the same with plain fences on both sides */
	zl__mb_ready = false;
	round_trips(ctx);
	stream(ctx);
	loans(ctx);
	zl_ctx_close(ctx);
	return 0;
}
