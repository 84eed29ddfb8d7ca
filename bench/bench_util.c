/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdbool.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <zerolink/blk.h>

#include "bench.h"

struct bench_opts bo;

static struct result *res;
static size_t nres, capres;

void result_add(const char *path, const char *test, uint64_t size, const char *metric,
		const char *unit, double median, double p99, double p999)
{
	if (nres == capres) {
		capres = capres ? capres * 2 : 64;
		res = realloc(res, capres * sizeof(*res));
		if (!res)
			abort();
	}
	struct result *r = &res[nres++];
	memset(r, 0, sizeof(*r));
	snprintf(r->path, sizeof(r->path), "%s", path);
	snprintf(r->test, sizeof(r->test), "%s", test);
	r->size = size;
	snprintf(r->metric, sizeof(r->metric), "%s", metric);
	snprintf(r->unit, sizeof(r->unit), "%s", unit);
	r->median = median;
	r->p99 = p99;
	r->p999 = p999;
}

const struct result *result_find(const char *path, const char *test, uint64_t size,
				 const char *metric)
{
	for (size_t i = 0; i < nres; i++)
		if (!strcmp(res[i].path, path) && !strcmp(res[i].test, test) &&
		    res[i].size == size && !strcmp(res[i].metric, metric))
			return &res[i];
	return NULL;
}

size_t result_count(void)
{
	return nres;
}

const struct result *result_at(size_t i)
{
	return &res[i];
}

uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Round-trip timing: the time-stamp counter where it is invariant (reading
 * it costs about a third of clock_gettime() in a virtual machine), else the
 * monotonic clock. Ticks are converted with a rate measured against the
 * monotonic clock. */
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <x86intrin.h>
static double tsc_ns_per_tick;

static bool tsc_invariant(void)
{
	unsigned a, b, c, d;
	if (!__get_cpuid(0x80000007u, &a, &b, &c, &d))
		return false;
	return (d >> 8) & 1; /* invariant TSC */
}

void lat_clock_init(void)
{
	if (!tsc_invariant())
		return;
	uint64_t n0 = now_ns(), t0 = __rdtsc();
	while (now_ns() - n0 < 20000000)
		;
	uint64_t n1 = now_ns(), t1 = __rdtsc();
	if (t1 > t0)
		tsc_ns_per_tick = (double)(n1 - n0) / (double)(t1 - t0);
}

uint64_t lat_clock(void)
{
	return tsc_ns_per_tick > 0 ? __rdtsc() : now_ns();
}

double lat_ns(uint64_t ticks)
{
	return tsc_ns_per_tick > 0 ? (double)ticks * tsc_ns_per_tick : (double)ticks;
}
#else
void lat_clock_init(void)
{
}

uint64_t lat_clock(void)
{
	return now_ns();
}

double lat_ns(uint64_t ticks)
{
	return (double)ticks;
}
#endif

void pin_to(int which)
{
	if (!bo.pinned)
		return;
	cpu_set_t s;
	CPU_ZERO(&s);
	CPU_SET(bo.cpu[which], &s);
	sched_setaffinity(0, sizeof(s), &s);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

void sort_u64(uint64_t *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_u64);
}

double pct_u64(const uint64_t *s, size_t n, double p)
{
	if (n == 0)
		return 0;
	size_t i = (size_t)(p * (double)(n - 1) + 0.5);
	return (double)s[i < n ? i : n - 1];
}

double median_d(double *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_d);
	if (n == 0)
		return 0;
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

uint64_t cpu_ns_self(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000ull +
	       (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000ull;
}

bool path_wanted(const char *label)
{
	if (!bo.paths)
		return true;
	for (const char *t = bo.paths; *t;) {
		size_t n = strcspn(t, ",");
		if (n && strncmp(label, t, n) == 0)
			return true;
		t += n + (t[n] == ',');
	}
	return false;
}

pid_t fork_child(int (*fn)(void *), void *arg, int cpu_side)
{
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid == 0) {
		pin_to(cpu_side);
		_exit(fn(arg));
	}
	return pid;
}

int wait_child(pid_t pid)
{
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

uint64_t xorshift64(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

void *shared_page(size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	memset(p, 0, size);
	return p;
}

void progress(const char *fmt, ...)
{
	if (!isatty(2))
		return; /* progress is for people watching, not for logs */
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "\r\033[K  ");
	vfprintf(stderr, fmt, ap);
	va_end(ap);
}

int blk_loop(struct zl_blk_queue *q, unsigned qd, uint64_t end,
	     int (*next)(void *arg, struct zl_blk_req *r),
	     void (*done)(void *arg, const struct zl_blk_cpl *c, uint64_t now), void *arg)
{
	struct zl_blk_req r[32];
	struct zl_blk_cpl c[32];
	unsigned inflight = 0;
	bool stop = false;
	int err = 0;
	if (qd > 32)
		qd = 32;
	while (!stop || inflight) {
		unsigned k = 0;
		while (!stop && inflight + k < qd) {
			r[k] = (struct zl_blk_req){0};
			if ((err = next(arg, &r[k])))
				break;
			k++;
		}
		if (err && err != -ENOBUFS)
			break;
		err = 0;
		unsigned sent = 0;
		while (sent < k) {
			int n = zl_blk_submit(q, r + sent, k - sent, 0);
			if (n < 0) {
				err = n;
				break;
			}
			sent += (unsigned)n;
		}
		if (err) {
			for (unsigned i = sent; i < k; i++)
				if (r[i].buf.pool)
					zl_buf_free(&r[i].buf);
			break;
		}
		inflight += k;
		int n = zl_blk_reap(q, c, 32, 0);
		if (n < 0) {
			err = n;
			break;
		}
		uint64_t now = now_ns();
		for (int i = 0; i < n; i++) {
			if (c[i].status && !err)
				err = c[i].status;
			done(arg, &c[i], now);
			zl_blk_cpl_release(q, &c[i]);
		}
		inflight -= (unsigned)n;
		if (now >= end || err)
			stop = true;
	}
	return err;
}
