/* SPDX-License-Identifier: MIT */
/*
 * meter: per-tenant accounting. A tenant is the client's user (its uid;
 * NBD clients over TCP, who have none, are the tenant "tcp"). For each:
 * requests and bytes read and written, other requests, errors, and a
 * latency histogram (submission to the device to completion, powers of two
 * of microseconds). Shown by `zerolink iohost ls` and as Prometheus text
 * (`prom`): counters, and a histogram with cumulative le buckets.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iohost.h"

#define METER_TENANTS 64
#define METER_BUCKETS 22 /* <= 1 us, 2, 4, ... 2^20 us, more */

struct tenant {
	uint64_t key; /* uid + 1; 0: free (claimed with a compare-and-swap) */
	uint64_t reads, writes, others, errors;
	uint64_t bytes_read, bytes_written;
	uint64_t lat_sum_ns;
	uint64_t hist[METER_BUCKETS];
};

struct meter {
	struct tenant t[METER_TENANTS + 1]; /* the last: every tenant beyond */
};

static int meter_open(struct device *d, void **state, char *err, size_t errlen)
{
	(void)d;
	(void)err;
	(void)errlen;
	struct meter *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->t[METER_TENANTS].key = UINT64_MAX;
	*state = m;
	return 0;
}

static void meter_close(void *state)
{
	free(state);
}

static int32_t meter_submit(void *state, struct ioreq *r, void **priv)
{
	(void)priv;
	(void)state;
	(void)r;
	return 0;
}

static struct tenant *tenant_of(struct meter *m, uint32_t uid)
{
	uint64_t key = (uint64_t)uid + 1;
	for (unsigned i = 0; i < METER_TENANTS; i++) {
		uint64_t k = __atomic_load_n(&m->t[i].key, __ATOMIC_ACQUIRE);
		if (k == key)
			return &m->t[i];
		if (k == 0) {
			uint64_t zero = 0;
			if (__atomic_compare_exchange_n(&m->t[i].key, &zero, key, false,
							__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE) ||
			    zero == key)
				return &m->t[i];
		}
	}
	return &m->t[METER_TENANTS];
}

static unsigned bucket_of(uint64_t ns)
{
	uint64_t us = (ns + 999) / 1000;
	unsigned b = 0;
	while (b < METER_BUCKETS - 1 && us > (1ull << b))
		b++;
	return b;
}

static void meter_complete(void *state, struct ioreq *r, void **priv)
{
	(void)priv;
	struct meter *m = state;
	struct tenant *t = tenant_of(m, r->fe ? r->fe->uid : UINT32_MAX);
	uint64_t ns = ioh_now_ns() - r->t_start;
	if (r->status)
		__atomic_fetch_add(&t->errors, 1, __ATOMIC_RELAXED);
	if (r->op == ZL_BLK_OP_READ) {
		__atomic_fetch_add(&t->reads, 1, __ATOMIC_RELAXED);
		if (!r->status)
			__atomic_fetch_add(&t->bytes_read, r->len, __ATOMIC_RELAXED);
	} else if (r->op == ZL_BLK_OP_WRITE) {
		__atomic_fetch_add(&t->writes, 1, __ATOMIC_RELAXED);
		if (!r->status)
			__atomic_fetch_add(&t->bytes_written, r->len, __ATOMIC_RELAXED);
	} else {
		__atomic_fetch_add(&t->others, 1, __ATOMIC_RELAXED);
	}
	__atomic_fetch_add(&t->lat_sum_ns, ns, __ATOMIC_RELAXED);
	__atomic_fetch_add(&t->hist[bucket_of(ns)], 1, __ATOMIC_RELAXED);
}

static void tenant_name(const struct tenant *t, uint64_t key, char *b, size_t n)
{
	(void)t;
	if (key == UINT64_MAX)
		snprintf(b, n, "other");
	else if (key == (uint64_t)UINT32_MAX + 1)
		snprintf(b, n, "tcp");
	else
		snprintf(b, n, "uid %llu", (unsigned long long)(key - 1));
}

#define LD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)

/* The upper bound of the histogram bucket where the q-quantile falls, us. */
static double quantile_us(const uint64_t *h, uint64_t n, double q)
{
	uint64_t want = (uint64_t)(q * (double)n + 0.5), acc = 0;
	for (unsigned b = 0; b < METER_BUCKETS; b++) {
		acc += h[b];
		if (acc >= want && acc)
			return b == METER_BUCKETS - 1 ? INFINITY : (double)(1ull << b);
	}
	return 0;
}

static void meter_report(void *state, const struct device *d, struct out *o, bool prom)
{
	struct meter *m = state;
	if (!prom)
		outf(o, "    meter: %-10s %10s %10s %8s %14s %14s %7s %9s %9s\n", "tenant", "reads",
		     "writes", "other", "read_bytes", "written_bytes", "errors",
		     "p50_us<=", "p99_us<=");
	for (unsigned i = 0; i <= METER_TENANTS; i++) {
		struct tenant *t = &m->t[i];
		uint64_t key = LD(t->key);
		if (!key)
			continue;
		uint64_t h[METER_BUCKETS], n = 0;
		for (unsigned b = 0; b < METER_BUCKETS; b++)
			n += h[b] = LD(t->hist[b]);
		if (i == METER_TENANTS && !n)
			continue;
		char name[32];
		tenant_name(t, key, name, sizeof(name));
		if (!prom) {
			outf(o,
			     "           %-10s %10llu %10llu %8llu %14llu %14llu %7llu %9.0f "
			     "%9.0f\n",
			     name, (unsigned long long)LD(t->reads),
			     (unsigned long long)LD(t->writes), (unsigned long long)LD(t->others),
			     (unsigned long long)LD(t->bytes_read),
			     (unsigned long long)LD(t->bytes_written),
			     (unsigned long long)LD(t->errors), quantile_us(h, n, 0.5),
			     quantile_us(h, n, 0.99));
			continue;
		}
		const char *dn = d->conf.name;
		outf(o,
		     "zerolink_iohost_tenant_requests_total{device=\"%s\",tenant=\"%s\",op="
		     "\"read\"} %llu\n",
		     dn, name, (unsigned long long)LD(t->reads));
		outf(o,
		     "zerolink_iohost_tenant_requests_total{device=\"%s\",tenant=\"%s\",op="
		     "\"write\"} %llu\n",
		     dn, name, (unsigned long long)LD(t->writes));
		outf(o,
		     "zerolink_iohost_tenant_requests_total{device=\"%s\",tenant=\"%s\",op="
		     "\"other\"} %llu\n",
		     dn, name, (unsigned long long)LD(t->others));
		outf(o,
		     "zerolink_iohost_tenant_bytes_total{device=\"%s\",tenant=\"%s\",dir=\"read\"} "
		     "%llu\n",
		     dn, name, (unsigned long long)LD(t->bytes_read));
		outf(o,
		     "zerolink_iohost_tenant_bytes_total{device=\"%s\",tenant=\"%s\",dir=\"write\"}"
		     " %llu\n",
		     dn, name, (unsigned long long)LD(t->bytes_written));
		outf(o, "zerolink_iohost_tenant_errors_total{device=\"%s\",tenant=\"%s\"} %llu\n",
		     dn, name, (unsigned long long)LD(t->errors));
		uint64_t acc = 0;
		for (unsigned b = 0; b < METER_BUCKETS - 1; b++) {
			acc += h[b];
			outf(o,
			     "zerolink_iohost_tenant_latency_seconds_bucket{device=\"%s\",tenant="
			     "\"%s\",le=\"%g\"} %llu\n",
			     dn, name, (double)(1ull << b) / 1e6, (unsigned long long)acc);
		}
		outf(o,
		     "zerolink_iohost_tenant_latency_seconds_bucket{device=\"%s\",tenant=\"%s\",le="
		     "\"+Inf\"} %llu\n",
		     dn, name, (unsigned long long)n);
		outf(o,
		     "zerolink_iohost_tenant_latency_seconds_sum{device=\"%s\",tenant=\"%s\"} "
		     "%.9f\n",
		     dn, name, (double)LD(t->lat_sum_ns) / 1e9);
		outf(o,
		     "zerolink_iohost_tenant_latency_seconds_count{device=\"%s\",tenant=\"%s\"} "
		     "%llu\n",
		     dn, name, (unsigned long long)n);
	}
}

const struct mod_ops mod_meter = {
	.name = "meter",
	.open = meter_open,
	.close = meter_close,
	.submit = meter_submit,
	.complete = meter_complete,
	.report = meter_report,
};
