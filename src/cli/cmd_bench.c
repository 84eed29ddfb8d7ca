/* SPDX-License-Identifier: MIT */
#include <getopt.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "cli.h"

static int usage(int code)
{
	FILE *f = code ? stderr : stdout;
	fprintf(f, "usage: zerolink bench [--quick] [--json FILE] [--png FILE] [--cpus A,B]\n"
		   "                      [--only floor|rtt|stream|pipeline|apps|blk|qos] [--paths "
		   "LIST]\n"
		   "  Measures, in one run and side by side: the physical floor (cache-line\n"
		   "  round trip, bare ring, memcpy, eventfd wake-up), round-trip latency and\n"
		   "  streaming throughput of zerolink against TCP loopback, Unix sockets and\n"
		   "  pipes, a three-stage pipeline against a monolith, and real programs\n"
		   "  (sockperf, iperf3, redis, nginx + wrk) under `zerolink run` against the\n"
		   "  kernel path, and block I/O through the I/O host against local io_uring\n"
		   "  and NBD servers. The two sides run on two different cores. Prints a table\n"
		   "  and the target ratios.\n"
		   "  --quick       fewer samples: the whole run takes under a minute\n"
		   "  --json FILE   one record per measurement (path, test, size, metric, unit,\n"
		   "                median, p99, p999)\n"
		   "  --png FILE    a chart (needs gnuplot)\n"
		   "  --cpus A,B    the two cores to use (default: the first two allowed)\n"
		   "  --only GROUP  run one group of measurements\n"
		   "  --paths LIST  measure only these paths, comma-separated (zerolink,\n"
		   "                monolith, tcp, unix, pipe; a name matches every path it\n"
		   "                begins: zerolink covers zerolink-poll and zerolink-zc)\n");
	return code;
}

int cmd_bench(int argc, char **argv)
{
	static const struct option lo[] = {
		{"quick", no_argument, 0, 'q'},      {"json", required_argument, 0, 'j'},
		{"png", required_argument, 0, 'p'},  {"cpus", required_argument, 0, 'c'},
		{"only", required_argument, 0, 'o'}, {"paths", required_argument, 0, 'P'},
		{"help", no_argument, 0, 'h'},       {0, 0, 0, 0},
	};
	memset(&bo, 0, sizeof(bo));
	bo.cpu[0] = -1;
	int o;
	while ((o = getopt_long(argc, argv, "qj:p:c:o:P:h", lo, NULL)) != -1) {
		switch (o) {
		case 'q':
			bo.quick = true;
			break;
		case 'j':
			bo.json = optarg;
			break;
		case 'p':
			bo.png = optarg;
			break;
		case 'c':
			if (sscanf(optarg, "%d,%d", &bo.cpu[0], &bo.cpu[1]) != 2)
				return usage(2);
			break;
		case 'o':
			bo.only = optarg;
			break;
		case 'P':
			bo.paths = optarg;
			break;
		case 'h':
			return usage(0);
		default:
			return usage(2);
		}
	}
	cpu_set_t set;
	sched_getaffinity(0, sizeof(set), &set);
	if (bo.cpu[0] < 0) {
		int k = 0;
		for (int c = 0; c < CPU_SETSIZE && k < 2; c++)
			if (CPU_ISSET(c, &set))
				bo.cpu[k++] = c;
		bo.pinned = k == 2;
		if (!bo.pinned)
			fprintf(stderr, "bench: only one core available: sides are NOT pinned to "
					"different cores\n");
	} else {
		bo.pinned = true;
	}
	bo.stream_s = bo.quick ? 0.25 : 1.0;
	bo.runs = bo.quick ? 1 : 5;
	bo.lat_iters = bo.quick ? 2000 : 20000;
	lat_clock_init();
	uint64_t t0 = now_ns();
	if (!bo.only || strstr("floor", bo.only))
		bench_floor();
	if (!bo.only || strstr("rtt", bo.only))
		bench_latency();
	if (!bo.only || strstr("stream", bo.only))
		bench_stream();
	if (!bo.only || strstr("pipeline", bo.only))
		bench_pipeline();
	if (!bo.only || strstr("apps", bo.only))
		bench_apps();
	if (!bo.only || strstr("blk", bo.only))
		bench_blk();
	if (!bo.only || strstr("qos", bo.only))
		bench_qos();
	fprintf(stderr, "%sbench: done in %.1f s\n", isatty(2) ? "\r\033[K" : "",
		(double)(now_ns() - t0) / 1e9);
	report_table();
	report_ratios();
	if (bo.json) {
		if (report_json(bo.json))
			fprintf(stderr, "bench: cannot write %s\n", bo.json);
		else
			printf("\nJSON written to %s\n", bo.json);
	}
	if (bo.png) {
		if (report_chart(bo.png))
			fprintf(stderr, "bench: gnuplot failed: is it installed? (apt-get install "
					"gnuplot-nox)\n");
		else
			printf("chart written to %s\n", bo.png);
		/* the QoS timeline beside it: NAME-qos.png */
		char q[4096];
		const char *dot = strrchr(bo.png, '.');
		int stem = dot ? (int)(dot - bo.png) : (int)strlen(bo.png);
		snprintf(q, sizeof(q), "%.*s-qos.png", stem, bo.png);
		if (chart_qos(q))
			fprintf(stderr, "bench: gnuplot failed on %s\n", q);
		else if (result_find("qos", "qos-reserve", 4096, "rate"))
			printf("chart written to %s\n", q);
	}
	return 0;
}
