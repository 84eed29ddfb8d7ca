/* SPDX-License-Identifier: MIT */
/* zerolink bench output: the table, the target ratios, JSON and the chart. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

static const char *sz(uint64_t s, char *b, size_t n)
{
	if (s >= (1u << 20) && s % (1u << 20) == 0)
		snprintf(b, n, "%lluM", (unsigned long long)(s >> 20));
	else if (s >= 1024 && s % 1024 == 0)
		snprintf(b, n, "%lluK", (unsigned long long)(s >> 10));
	else
		snprintf(b, n, "%llu", (unsigned long long)s);
	return b;
}

static double val(const char *path, const char *test, uint64_t size, const char *metric)
{
	const struct result *r = result_find(path, test, size, metric);
	return r ? r->median : NAN;
}

static void grid(const char *title, const char *test, const char *metric, const char *const *paths,
		 int np, const uint64_t *sizes, int ns, bool pcts)
{
	char b[32];
	printf("\n%s\n  %-6s", title, "size");
	for (int p = 0; p < np; p++)
		printf(" %*s", pcts ? 22 : 13, paths[p]);
	printf("\n");
	for (int s = 0; s < ns; s++) {
		printf("  %-6s", sz(sizes[s], b, sizeof(b)));
		for (int p = 0; p < np; p++) {
			const struct result *r = result_find(paths[p], test, sizes[s], metric);
			if (!r)
				printf(" %*s", pcts ? 22 : 13, "-");
			else if (pcts)
				printf(" %8.2f/%6.1f/%6.1f", r->median, r->p99, r->p999);
			else
				printf(" %13.3f", r->median);
		}
		printf("\n");
	}
}

static void report_apps(void);

void report_table(void)
{
	char b[32];
	printf("\nzerolink bench: medians; sides pinned to cores %d and %d%s\n", bo.cpu[0],
	       bo.cpu[1], bo.pinned ? "" : " (NOT pinned: one core only)");
	printf("\nphysical floor\n");
	printf("  cache-line round trip          %8.3f us\n",
	       val("floor", "cacheline-rtt", 64, "rtt"));
	printf("  bare ring, 64 B slots          %8.1f Mmsg/s\n",
	       val("floor", "bare-ring", 64, "rate"));
	static const uint64_t mc[] = {4096, 65536, 1 << 20};
	for (int i = 0; i < 3; i++)
		printf("  memcpy %-5s (one core)        %8.1f GB/s\n", sz(mc[i], b, sizeof(b)),
		       val("floor", "memcpy", mc[i], "bandwidth"));
	printf("  eventfd wake-up round trip     %8.2f us\n",
	       val("floor", "eventfd-rtt", 8, "rtt"));

	printf("\nround trip 64 B, polling, interleaved with the cache-line floor (blocks of "
	       "100)\n");
	printf("  cache line                     %8.3f us\n",
	       val("floor", "cacheline-rtt-ilv", 64, "rtt"));
	printf("  zerolink, polling              %8.3f us\n",
	       val("zerolink-poll", "rtt-ilv", 64, "rtt"));

	static const char *const lp[] = {"zerolink-poll", "zerolink-block", "tcp", "unix", "pipe"};
	static const uint64_t ls[] = {8, 64, 512, 4096, 65536};
	grid("round trip, us (median/p99/p99.9)", "rtt", "rtt", lp, 5, ls, 5, true);
	static const char *const sp[] = {"zerolink", "zerolink-zc", "tcp", "unix", "pipe"};
	static const uint64_t ss[] = {64, 1024, 4096, 65536, 1 << 20};
	grid("streaming, M messages/s", "stream", "rate", sp, 5, ss, 5, false);
	grid("streaming, GB/s", "stream", "throughput", sp, 5, ss, 5, false);
	grid("streaming, CPU ns per message (both sides)", "stream", "cpu", sp, 5, ss, 5, false);
	static const char *const pp[] = {"zerolink", "monolith", "tcp", "unix"};
	static const uint64_t ps[] = {4096, 65536, 1 << 20};
	grid("three-stage pipeline, M records/s", "pipeline", "rate", pp, 4, ps, 3, false);
	grid("three-stage pipeline, GB/s", "pipeline", "throughput", pp, 4, ps, 3, false);
	grid("three-stage pipeline, CPU ns per record (all stages)", "pipeline", "cpu", pp, 4, ps,
	     3, false);
	report_apps();
	report_blk();
	report_qos();
}

/* Real programs, kernel path against zerolink run (bench_apps.c): the
 * table's rows, and the chart's bars (those with a short name). */
static const struct {
	const char *test, *metric, *label, *bar;
	uint64_t size;
} app_rows[] = {
	{"sockperf", "latency", "sockperf ping-pong 64 B, half round trip, us", "sockperf 64 B",
	 64},
	{"sockperf", "latency", "sockperf ping-pong 1 KiB, half round trip, us", NULL, 1024},
	{"sockperf", "latency", "sockperf ping-pong 16 KiB, half round trip, us", "sockperf 16 KiB",
	 16384},
	{"iperf3", "throughput", "iperf3, 1 stream, Gbit/s", "iperf3 1 stream", 1},
	{"iperf3", "throughput", "iperf3, 4 streams, Gbit/s", "iperf3 4 streams", 4},
	{"redis-set", "rate", "redis-benchmark -c 1 -P 1 SET, k req/s", "redis -c1 SET", 1},
	{"redis-get", "rate", "redis-benchmark -c 1 -P 1 GET, k req/s", "redis -c1 GET", 1},
	{"redis-set", "rate", "redis-benchmark -c 50 -P 16 SET, k req/s", "redis -c50 -P16 SET",
	 50},
	{"redis-get", "rate", "redis-benchmark -c 50 -P 16 GET, k req/s", "redis -c50 -P16 GET",
	 50},
	{"nginx-wrk", "rate", "nginx (2 workers) + wrk -c 20, k req/s", "nginx + wrk", 20},
	{"redis-unix-set", "rate", "redis-benchmark -s (Unix socket) -c 1 SET, k req/s",
	 "redis unix -c1 SET", 1},
	{"redis-unix-get", "rate", "redis-benchmark -s (Unix socket) -c 1 GET, k req/s", NULL, 1},
};

/* How many times better under zerolink run than on the kernel path. */
static double app_gain(size_t i)
{
	double k = val("tcp", app_rows[i].test, app_rows[i].size, app_rows[i].metric);
	double z = val("zerolink-run", app_rows[i].test, app_rows[i].size, app_rows[i].metric);
	return strcmp(app_rows[i].metric, "latency") == 0 ? k / z : z / k;
}

static void report_apps(void)
{
	bool any = false;
	for (size_t i = 0; i < result_count() && !any; i++)
		any = strcmp(result_at(i)->path, "zerolink-run") == 0;
	if (!any)
		return;
	printf("\nreal programs: the kernel path (TCP loopback; the Unix socket for -s),\n"
	       "under zerolink run, and the fallback (client under zerolink, server not:\n"
	       "the kernel path through the shim)\n");
	printf("  %-50s %10s %10s %10s %8s\n", "", "tcp", "zerolink", "fallback", "ratio");
	for (size_t i = 0; i < sizeof(app_rows) / sizeof(app_rows[0]); i++) {
		double k = val("tcp", app_rows[i].test, app_rows[i].size, app_rows[i].metric);
		double z =
			val("zerolink-run", app_rows[i].test, app_rows[i].size, app_rows[i].metric);
		double f = val("fallback", app_rows[i].test, app_rows[i].size, app_rows[i].metric);
		if (isnan(k) && isnan(z))
			continue;
		printf("  %-50s %10.2f %10.2f ", app_rows[i].label, k, z);
		if (isnan(f))
			printf("%10s", "-");
		else
			printf("%10.2f", f);
		printf(" %7.2fx\n", app_gain(i));
	}
}

static void target(const char *name, double ratio, double limit, bool at_most)
{
	if (isnan(ratio) || isinf(ratio)) {
		printf("  %-60s      -   (not measured)\n", name);
		return;
	}
	bool ok = at_most ? ratio <= limit : ratio >= limit;
	printf("  %-60s %7.2fx  %s %.2fx  %s\n", name, ratio, at_most ? "<=" : ">=", limit,
	       ok ? "met" : "MISSED");
	result_add("target", name, 0, "ratio", "x", ratio, limit, at_most ? 1 : 0);
}

static void ratios_apps(void);

void report_ratios(void)
{
	printf("\ntargets (ratios measured in this run)\n");
	double poll64 = val("zerolink-poll", "rtt", 64, "rtt");
	double tcp64 = val("tcp", "rtt", 64, "rtt");
	/* against the floor: the interleaved measurement (same placement,
	 * same neighbours, same block timing) */
	target("64 B round trip, polling / cache-line round trip",
	       val("zerolink-poll", "rtt-ilv", 64, "rtt") /
		       val("floor", "cacheline-rtt-ilv", 64, "rtt"),
	       1.5, true);
	target("64 B round trip, polling / TCP loopback", poll64 / tcp64, 0.1, true);
	target("64 B round trip, blocking / eventfd round trip",
	       val("zerolink-block", "rtt", 64, "rtt") / val("floor", "eventfd-rtt", 8, "rtt"), 1.2,
	       true);
	double st64 = val("zerolink", "stream", 64, "rate");
	target("64 B stream / bare ring", st64 / val("floor", "bare-ring", 64, "rate"), 0.5, false);
	target("64 B stream / TCP loopback", st64 / val("tcp", "stream", 64, "rate"), 15, false);
	double c64k = val("zerolink", "stream", 65536, "throughput");
	target("64 KiB stream, copy / TCP loopback",
	       c64k / val("tcp", "stream", 65536, "throughput"), 3, false);
	target("64 KiB stream, copy / memcpy 64 KiB",
	       c64k / val("floor", "memcpy", 65536, "bandwidth"), 0.4, false);
	static const uint64_t ss[] = {64, 1024, 4096, 65536, 1 << 20};
	double zmin = INFINITY;
	for (int i = 0; i < 5; i++) {
		double v = val("zerolink-zc", "stream", ss[i], "rate");
		if (!isnan(v) && v < zmin)
			zmin = v;
	}
	target("zero-copy stream, slowest size, M buffers/s / 10", isinf(zmin) ? NAN : zmin / 10, 1,
	       false);
	static const uint64_t ps[] = {4096, 65536, 1 << 20};
	char name[96], b[32];
	for (int i = 0; i < 3; i++) {
		snprintf(name, sizeof(name), "pipeline %s: zerolink / monolith",
			 sz(ps[i], b, sizeof(b)));
		target(name,
		       val("zerolink", "pipeline", ps[i], "rate") /
			       val("monolith", "pipeline", ps[i], "rate"),
		       0.8, false);
	}
	target("pipeline 64K: zerolink / TCP loopback",
	       val("zerolink", "pipeline", 65536, "rate") / val("tcp", "pipeline", 65536, "rate"),
	       5, false);
	if (!isnan(val("zerolink-run", "sockperf", 64, "latency")) ||
	    !isnan(val("zerolink-run", "redis-set", 1, "rate")))
		ratios_apps();
	ratios_blk(target);
	ratios_qos(target);
}

static void ratios_apps(void)
{
	char name[96];
	target("sockperf 64 B: zerolink run / kernel TCP",
	       val("zerolink-run", "sockperf", 64, "latency") /
		       val("tcp", "sockperf", 64, "latency"),
	       0.1, true);
	target("iperf3 1 stream: zerolink run / kernel TCP",
	       val("zerolink-run", "iperf3", 1, "throughput") /
		       val("tcp", "iperf3", 1, "throughput"),
	       2.5, false);
	static const char *const rt[] = {"redis-set", "redis-get"};
	for (int i = 0; i < 2; i++) {
		snprintf(name, sizeof(name), "%s -c 1 -P 1: zerolink run / kernel TCP", rt[i]);
		target(name, val("zerolink-run", rt[i], 1, "rate") / val("tcp", rt[i], 1, "rate"),
		       2.5, false);
		snprintf(name, sizeof(name), "%s -c 50 -P 16: zerolink run / kernel TCP", rt[i]);
		target(name, val("zerolink-run", rt[i], 50, "rate") / val("tcp", rt[i], 50, "rate"),
		       1.5, false);
	}
	target("nginx + wrk: zerolink run / kernel TCP",
	       val("zerolink-run", "nginx-wrk", 20, "rate") / val("tcp", "nginx-wrk", 20, "rate"),
	       1.5, false);
	target("fallback sockperf 64 B: latency / kernel TCP",
	       val("fallback", "sockperf", 64, "latency") / val("tcp", "sockperf", 64, "latency"),
	       1.03, true);
	target("fallback redis -c 1 SET: kernel TCP / fallback rate",
	       val("tcp", "redis-set", 1, "rate") / val("fallback", "redis-set", 1, "rate"), 1.03,
	       true);
}

int report_json(const char *path)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	fprintf(f, "[\n");
	size_t n = result_count();
	for (size_t i = 0; i < n; i++) {
		const struct result *r = result_at(i);
		fprintf(f,
			"  {\"path\": \"%s\", \"test\": \"%s\", \"size\": %llu, \"metric\": "
			"\"%s\", "
			"\"unit\": \"%s\", \"median\": %.6g, \"p99\": %.6g, \"p999\": %.6g}%s\n",
			r->path, r->test, (unsigned long long)r->size, r->metric, r->unit,
			isnan(r->median) ? 0 : r->median, r->p99, r->p999, i + 1 < n ? "," : "");
	}
	fprintf(f, "]\n");
	return fclose(f);
}

static void series(FILE *f, const char *path, const char *test, const char *metric,
		   const uint64_t *sizes, int n)
{
	for (int i = 0; i < n; i++) {
		const struct result *r = result_find(path, test, sizes[i], metric);
		if (r && r->median > 0)
			fprintf(f, "%llu %.6g\n", (unsigned long long)sizes[i], r->median);
	}
	fprintf(f, "e\n");
}

int report_chart(const char *png)
{
	char script[] = "/tmp/zl-bench-XXXXXX";
	int fd = mkstemp(script);
	if (fd < 0)
		return -1;
	FILE *f = fdopen(fd, "w");
	bool apps = !isnan(val("zerolink-run", "sockperf", 64, "latency")) ||
		    !isnan(val("zerolink-run", "redis-set", 1, "rate"));
	fprintf(f,
		"set terminal pngcairo size %d,500 font 'sans,10'\n"
		"set output '%s'\n"
		"set multiplot layout 1,%d title 'zerolink bench (medians, same run, sides on two "
		"cores)'\n"
		"set logscale xy\nset grid\nset key top left\nset format x '%%.0s%%cB'\n",
		apps ? 2000 : 1500, png, apps ? 4 : 3);
	static const char *const lp[] = {"zerolink-poll", "zerolink-block", "tcp", "unix", "pipe"};
	static const uint64_t ls[] = {8, 64, 512, 4096, 65536};
	fprintf(f,
		"set title 'round trip (us, lower is better)'\nset xlabel 'message size'\nplot ");
	for (int i = 0; i < 5; i++)
		fprintf(f, "'-' with linespoints title '%s'%s", lp[i], i < 4 ? ", " : "\n");
	for (int i = 0; i < 5; i++)
		series(f, lp[i], "rtt", "rtt", ls, 5);
	static const char *const sp[] = {"zerolink", "zerolink-zc", "tcp", "unix", "pipe"};
	static const uint64_t ss[] = {64, 1024, 4096, 65536, 1 << 20};
	fprintf(f, "set title 'streaming (GB/s, higher is better)'\nset key bottom right\nplot ");
	for (int i = 0; i < 5; i++)
		fprintf(f, "'-' with linespoints title '%s'%s", sp[i], i < 4 ? ", " : "\n");
	for (int i = 0; i < 5; i++)
		series(f, sp[i], "stream", "throughput", ss, 5);
	static const char *const pp[] = {"zerolink", "monolith", "tcp", "unix"};
	static const uint64_t ps[] = {4096, 65536, 1 << 20};
	fprintf(f, "set title 'three-stage pipeline (GB/s)'\nset xlabel 'record size'\nplot ");
	for (int i = 0; i < 4; i++)
		fprintf(f, "'-' with linespoints title '%s'%s", pp[i], i < 3 ? ", " : "\n");
	for (int i = 0; i < 4; i++)
		series(f, pp[i], "pipeline", "throughput", ps, 3);
	if (apps) {
		/* real programs: how many times the kernel path's figure */
		fprintf(f,
			"set title 'real programs: zerolink run / kernel path (x, higher is "
			"better)'\nunset logscale\nset logscale y\nset format x '%%g'\n"
			"unset xlabel\nset style data histograms\nset style fill solid 0.7\n"
			"set boxwidth 0.8\nset xtics rotate by -35 nomirror\nset yrange [0.5:*]\n"
			"set key top right\nplot '-' using 2:xtic(1) title 'speed-up', 1 "
			"with lines lc 'black' title 'kernel'\n");
		for (size_t i = 0; i < sizeof(app_rows) / sizeof(app_rows[0]); i++) {
			double r = app_gain(i);
			if (app_rows[i].bar && !isnan(r))
				fprintf(f, "\"%s\" %g\n", app_rows[i].bar, r);
		}
		fprintf(f, "e\n");
	}
	fprintf(f, "unset multiplot\n");
	fclose(f);
	return gnuplot_run(script);
}

int gnuplot_run(char *script)
{
	pid_t pid = fork();
	if (pid == 0) {
		execlp("gnuplot", "gnuplot", script, (char *)NULL);
		_exit(127);
	}
	int st = 0;
	waitpid(pid, &st, 0);
	unlink(script);
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}
