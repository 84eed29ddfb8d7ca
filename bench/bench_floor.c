/* SPDX-License-Identifier: MIT */
/*
 * The physical floor, measured in the same run as everything else: the
 * cross-core cache-line round trip, a bare ring of 64-byte slots, single-core
 * memcpy bandwidth, and the cross-core eventfd wake-up round trip.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../src/lib/barrier.h"
#include "bench.h"

/* ---- cache-line round trip ---- */

struct pingpong {
	_Alignas(64) uint64_t flag;
	_Alignas(64) uint64_t stop;
};

static int pong(void *arg)
{
	struct pingpong *pp = arg;
	uint64_t expect = 1;
	for (;;) {
		uint64_t v;
		while ((v = zl_load_acquire(&pp->flag)) != expect)
			if (v == UINT64_MAX)
				return 0;
		zl_store_release(&pp->flag, expect + 1);
		expect += 2;
	}
}

static void floor_cacheline(void)
{
	struct pingpong *pp = shared_page(4096);
	pid_t pid = fork_child(pong, pp, 1);
	pin_to(0);
	int batches = bo.quick ? 2000 : 10000, per = 100;
	uint64_t *s = malloc(sizeof(uint64_t) * (size_t)batches);
	uint64_t v = 0;
	for (int b = -100; b < batches; b++) {
		uint64_t t0 = now_ns();
		for (int i = 0; i < per; i++) {
			zl_store_release(&pp->flag, v + 1);
			while (zl_load_acquire(&pp->flag) != v + 2)
				;
			v += 2;
		}
		if (b >= 0)
			s[b] = (now_ns() - t0) * 10 / (uint64_t)per; /* tenths of ns */
	}
	zl_store_release(&pp->flag, UINT64_MAX);
	wait_child(pid);
	sort_u64(s, (size_t)batches);
	result_add("floor", "cacheline-rtt", 64, "rtt", "us", pct_u64(s, batches, 0.5) / 1e4,
		   pct_u64(s, batches, 0.99) / 1e4, pct_u64(s, batches, 0.999) / 1e4);
	free(s);
	munmap(pp, 4096);
}

/* ---- bare ring of 64-byte slots ---- */

#define RING 1024u
struct bare_ring {
	_Alignas(64) uint32_t prod;
	_Alignas(64) uint32_t cons;
	_Alignas(64) uint64_t done_msgs;
	uint64_t done_ns;
	_Alignas(64) uint8_t slot[RING][64];
};

static uint64_t bare_count;

static int bare_consumer(void *arg)
{
	struct bare_ring *r = arg;
	uint32_t cons = 0, prod = 0;
	uint8_t local[64];
	uint64_t sum = 0;
	for (uint64_t n = 0; n < bare_count;) {
		if (cons == prod) {
			zl_store_release(&r->cons, cons);
			while ((prod = zl_load_acquire(&r->prod)) == cons)
				zl_cpu_relax();
		}
		memcpy(local, r->slot[cons & (RING - 1)], 64);
		sum += local[0];
		cons++;
		n++;
		if ((cons & 31) == 0)
			zl_store_release(&r->cons, cons);
	}
	zl_store_release(&r->cons, cons);
	return (int)(sum & 1) * 0;
}

static void floor_bare_ring(void)
{
	int runs = bo.runs;
	double *rate = malloc(sizeof(double) * (size_t)runs);
	bare_count = bo.quick ? 20000000ull : 100000000ull;
	for (int k = 0; k < runs; k++) {
		struct bare_ring *r = shared_page(sizeof(*r));
		pid_t pid = fork_child(bare_consumer, r, 1);
		pin_to(0);
		uint8_t local[64];
		memset(local, 7, sizeof(local));
		uint32_t prod = 0, cons = 0;
		uint64_t t0 = now_ns();
		for (uint64_t n = 0; n < bare_count; n++) {
			while (prod - cons >= RING) {
				cons = zl_load_acquire(&r->cons);
				if (prod - cons >= RING)
					zl_cpu_relax();
			}
			local[0] = (uint8_t)n;
			memcpy(r->slot[prod & (RING - 1)], local, 64);
			prod++;
			zl_store_release(&r->prod, prod);
		}
		while (zl_load_acquire(&r->cons) != prod)
			zl_cpu_relax();
		uint64_t dt = now_ns() - t0;
		wait_child(pid);
		rate[k] = (double)bare_count / ((double)dt / 1e9);
		munmap(r, sizeof(*r));
	}
	double m = median_d(rate, (size_t)runs);
	result_add("floor", "bare-ring", 64, "rate", "Mmsg/s", m / 1e6, rate[0] / 1e6, 0);
	free(rate);
}

/* ---- memcpy bandwidth (one core) ---- */

static void floor_memcpy(void)
{
	static const size_t sizes[] = {4096, 65536, 1 << 20};
	pin_to(0);
	for (size_t i = 0; i < 3; i++) {
		size_t sz = sizes[i];
		char *a = aligned_alloc(4096, sz), *b = aligned_alloc(4096, sz);
		memset(a, 1, sz);
		memset(b, 2, sz);
		double v[9];
		int runs = bo.quick ? 5 : 9;
		uint64_t bytes = bo.quick ? (256ull << 20) : (1ull << 30);
		for (int k = 0; k < runs; k++) {
			uint64_t t0 = now_ns();
			for (uint64_t done = 0; done < bytes; done += sz) {
				memcpy(b, a, sz);
				__asm__ __volatile__("" ::"r"(b) : "memory");
			}
			v[k] = (double)bytes / (double)(now_ns() - t0); /* GB/s */
		}
		result_add("floor", "memcpy", sz, "bandwidth", "GB/s", median_d(v, (size_t)runs), 0,
			   0);
		free(a);
		free(b);
	}
}

/* ---- eventfd wake-up round trip ---- */

struct efd_pair {
	int a2b, b2a;
	int n;
};

static int efd_echo(void *arg)
{
	struct efd_pair *p = arg;
	for (int i = 0; i < p->n; i++) {
		uint64_t v;
		if (read(p->a2b, &v, 8) != 8 || write(p->b2a, &v, 8) != 8)
			return 1;
	}
	return 0;
}

static void floor_eventfd(void)
{
	struct efd_pair p = {eventfd(0, EFD_CLOEXEC), eventfd(0, EFD_CLOEXEC),
			     bo.quick ? 3000 : 20000};
	pid_t pid = fork_child(efd_echo, &p, 1);
	pin_to(0);
	uint64_t *s = malloc(sizeof(uint64_t) * (size_t)p.n);
	for (int i = 0; i < p.n; i++) {
		uint64_t one = 1, v;
		uint64_t t0 = now_ns();
		if (write(p.a2b, &one, 8) != 8 || read(p.b2a, &v, 8) != 8)
			break;
		s[i] = now_ns() - t0;
	}
	wait_child(pid);
	sort_u64(s, (size_t)p.n);
	result_add("floor", "eventfd-rtt", 8, "rtt", "us", pct_u64(s, p.n, 0.5) / 1e3,
		   pct_u64(s, p.n, 0.99) / 1e3, pct_u64(s, p.n, 0.999) / 1e3);
	free(s);
	close(p.a2b);
	close(p.b2a);
}

void bench_floor(void)
{
	progress("floor: cache-line round trip");
	floor_cacheline();
	progress("floor: bare ring");
	floor_bare_ring();
	progress("floor: memcpy");
	floor_memcpy();
	progress("floor: eventfd round trip");
	floor_eventfd();
}
