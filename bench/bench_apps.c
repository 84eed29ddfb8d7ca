/* SPDX-License-Identifier: MIT */
/*
 * zerolink bench, group "apps": real, unmodified programs on TCP loopback,
 * each run on the kernel path and under `zerolink run`, alternately, in the
 * same run: sockperf ping-pong (64 B, 1 KiB, 16 KiB), iperf3 (1 and 4
 * streams), redis-benchmark (-c 1 -P 1 and -c 50 -P 16, SET and GET) and
 * nginx with wrk. The server runs on core A, the client on core B. A third
 * path, "fallback", runs the client under zerolink against a server that is
 * not: the connection stays on the kernel path, and what the shim costs it
 * is measured.
 *
 * A program that is not installed is skipped with a note (make deps
 * installs them all).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

enum mode { M_KERNEL, M_ZEROLINK, M_FALLBACK };
static const char *const mode_path[] = {"tcp", "zerolink-run", "fallback"};

static char tmpdir[64];

static void outfile(char *b, size_t n, const char *what)
{
	snprintf(b, n, "%s/%s.out", tmpdir, what);
}

#define RUNS_MAX 5

/* ---- sockperf ping-pong ---- */

static void bench_sockperf(int runs, double secs)
{
	if (!prog_have("sockperf")) {
		printf("  sockperf: not installed, skipped\n");
		return;
	}
	static const int sizes[] = {64, 1024, 16384};
	char t[16], mlen[16], out[PATH_MAX], portb[16];
	snprintf(t, sizeof(t), "%.0f", secs < 1 ? 1 : secs);
	for (int s = 0; s < 3; s++) {
		double v[3][RUNS_MAX];
		for (int r = 0; r < runs; r++) {
			for (int m = 0; m < 3; m++) {
				if (m == M_FALLBACK && sizes[s] != 64) {
					v[m][r] = NAN;
					continue;
				}
				progress("apps: sockperf %d B, %s, run %d", sizes[s], mode_path[m],
					 r + 1);
				int port = port_new();
				snprintf(portb, sizeof(portb), "%d", port);
				const char *sv[] = {"sockperf",  "server", "--tcp", "-i",
						    "127.0.0.1", "-p",     portb,   NULL};
				pid_t srv = proc_spawn(sv, m == M_ZEROLINK, 0, NULL);
				v[m][r] = NAN;
				if (!port_wait(port, srv)) {
					proc_stop(srv);
					continue;
				}
				snprintf(mlen, sizeof(mlen), "%d", sizes[s]);
				/* a message rate cap above what either path reaches:
				 * sockperf's sequence buffer overflows without one */
				const char *cv[] = {
					"sockperf", "ping-pong",     "--tcp", "-i", "127.0.0.1",
					"-p",       portb,           "-t",    t,    "-m",
					mlen,       "--mps=1000000", NULL};
				outfile(out, sizeof(out), "sockperf");
				if (proc_run(cv, m != M_KERNEL, out, 60) == 0)
					v[m][r] = number_after(out, "percentile 50.000 =");
				proc_stop(srv);
			}
		}
		for (int m = 0; m < 3; m++) {
			double med = median_nan(v[m], runs);
			if (!isnan(med))
				result_add(mode_path[m], "sockperf", (uint64_t)sizes[s], "latency",
					   "us", med, NAN, NAN);
		}
	}
}

/* ---- iperf3 ---- */

static void bench_iperf3(int runs, double secs)
{
	if (!prog_have("iperf3")) {
		printf("  iperf3: not installed, skipped\n");
		return;
	}
	static const int streams[] = {1, 4};
	char t[16], np[16], out[PATH_MAX], portb[16];
	snprintf(t, sizeof(t), "%.0f", secs < 1 ? 1 : secs);
	for (int s = 0; s < 2; s++) {
		double v[2][RUNS_MAX];
		for (int r = 0; r < runs; r++) {
			for (int m = 0; m < 2; m++) {
				progress("apps: iperf3 -P %d, %s, run %d", streams[s], mode_path[m],
					 r + 1);
				int port = port_new();
				snprintf(portb, sizeof(portb), "%d", port);
				/* not one-off (-1): the probe for the port is a client */
				const char *sv[] = {"iperf3", "-s",        "-p", portb,
						    "-B",     "127.0.0.1", NULL};
				pid_t srv = proc_spawn(sv, m == M_ZEROLINK, 0, NULL);
				v[m][r] = NAN;
				if (!port_wait(port, srv)) {
					proc_stop(srv);
					continue;
				}
				snprintf(np, sizeof(np), "%d", streams[s]);
				const char *cv[] = {"iperf3", "-c", "127.0.0.1", "-p", portb, "-t",
						    t,        "-P", np,          "-J", NULL};
				outfile(out, sizeof(out), "iperf3");
				if (proc_run(cv, m == M_ZEROLINK, out, 60) == 0) {
					/* the receiver's sum comes last in the JSON */
					double bps = number_after(out, "\"bits_per_second\":");
					v[m][r] = bps / 1e9;
				}
				proc_stop(srv);
			}
		}
		for (int m = 0; m < 2; m++) {
			double med = median_nan(v[m], runs);
			if (!isnan(med))
				result_add(mode_path[m], "iperf3", (uint64_t)streams[s],
					   "throughput", "Gbit/s", med, NAN, NAN);
		}
	}
}

/* ---- redis-benchmark ---- */

/* A Unix socket at path accepts connections (the server started). */
static bool wait_unix(const char *path, pid_t pid)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(a.sun_path))
		return false;
	memcpy(a.sun_path, path, strlen(path) + 1);
	for (int i = 0; i < 200; i++) {
		int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		bool ok = s >= 0 && connect(s, (struct sockaddr *)&a, sizeof(a)) == 0;
		if (s >= 0)
			close(s);
		if (ok)
			return true;
		if (waitpid(pid, NULL, WNOHANG) == pid)
			return false;
		usleep(25000);
	}
	return false;
}

/* redis-benchmark -c 1 -P 1 and -c 50 -P 16 over TCP, and -c 1 -P 1 over
 * the server's Unix socket (tests redis-unix-set/-get). */
static void bench_redis(int runs, int requests_1, int requests_50)
{
	if (!prog_have("redis-server") || !prog_have("redis-benchmark")) {
		printf("  redis: not installed, skipped\n");
		return;
	}
	static const char *const conf[][2] = {{"1", "1"}, {"50", "16"}, {"1", "1"}};
	static const uint64_t size[] = {1, 50, 1};
	char n[16], out[PATH_MAX], portb[16], upath[PATH_MAX];
	snprintf(upath, sizeof(upath), "%s/redis.sock", tmpdir);
	for (int c = 0; c < 3; c++) {
		bool unix_ = c == 2;
		/* enough requests for a run of a second or more on either path */
		snprintf(n, sizeof(n), "%d", c == 1 ? requests_50 : requests_1);
		double v[3][2][RUNS_MAX];
		for (int r = 0; r < runs; r++) {
			for (int m = 0; m < 3; m++) {
				v[m][0][r] = v[m][1][r] = NAN;
				if (m == M_FALLBACK && c != 0)
					continue;
				progress("apps: redis -c %s -P %s%s, %s, run %d", conf[c][0],
					 conf[c][1], unix_ ? " (unix socket)" : "", mode_path[m],
					 r + 1);
				int port = unix_ ? 0 : port_new();
				snprintf(portb, sizeof(portb), "%d", port);
				unlink(upath);
				const char *sv[] = {"redis-server",
						    "--port",
						    portb,
						    "--bind",
						    "127.0.0.1",
						    "--save",
						    "",
						    "--appendonly",
						    "no",
						    unix_ ? "--unixsocket" : NULL,
						    upath,
						    NULL};
				pid_t srv = proc_spawn(sv, m == M_ZEROLINK, 0, NULL);
				if (!(unix_ ? wait_unix(upath, srv) : port_wait(port, srv))) {
					proc_stop(srv);
					continue;
				}
				const char *cv[] = {"redis-benchmark",
						    unix_ ? "-s" : "-p",
						    unix_ ? upath : portb,
						    "-c",
						    conf[c][0],
						    "-P",
						    conf[c][1],
						    "-t",
						    "set,get",
						    "-n",
						    n,
						    "-q",
						    NULL};
				outfile(out, sizeof(out), "redis");
				if (proc_run(cv, m != M_KERNEL, out, 120) == 0) {
					v[m][0][r] = number_after(out, "SET: ") / 1000;
					v[m][1][r] = number_after(out, "GET: ") / 1000;
				}
				proc_stop(srv);
			}
		}
		for (int m = 0; m < 3; m++)
			for (int k = 0; k < 2; k++) {
				double med = median_nan(v[m][k], runs);
				static const char *const tn[2][2] = {
					{"redis-set", "redis-get"},
					{"redis-unix-set", "redis-unix-get"}};
				if (!isnan(med))
					result_add(mode_path[m], tn[unix_][k], size[c], "rate",
						   "k req/s", med, NAN, NAN);
			}
	}
	unlink(upath);
}

/* ---- nginx + wrk ---- */

static void bench_nginx(int runs, double secs)
{
	if (!prog_have("nginx") || !prog_have("wrk")) {
		printf("  nginx/wrk: not installed, skipped\n");
		return;
	}
	char dir[PATH_MAX], path[PATH_MAX + 32], out[PATH_MAX], d[16], url[64];
	snprintf(dir, sizeof(dir), "%s/nginx", tmpdir);
	mkdir(dir, 0755);
	snprintf(path, sizeof(path), "%s/html", dir);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/html/index.html", dir);
	FILE *f = fopen(path, "w");
	if (!f)
		return;
	for (int i = 0; i < 612; i++) /* the size of nginx's own welcome page */
		fputc('a' + i % 26, f);
	fclose(f);
	snprintf(d, sizeof(d), "%.0fs", secs < 1 ? 1 : secs);
	double v[2][RUNS_MAX];
	for (int r = 0; r < runs; r++) {
		for (int m = 0; m < 2; m++) {
			progress("apps: nginx + wrk, %s, run %d", mode_path[m], r + 1);
			int port = port_new();
			snprintf(path, sizeof(path), "%s/nginx.conf", dir);
			f = fopen(path, "w");
			if (!f)
				return;
			fprintf(f,
				"worker_processes 2;\ndaemon off;\nmaster_process on;\n"
				"pid %s/nginx.pid;\nerror_log %s/error.log warn;\n"
				"events { worker_connections 1024; }\n"
				"http { access_log off; sendfile on; keepalive_requests 1000000;\n"
				"  client_body_temp_path %s;\n"
				"  server { listen 127.0.0.1:%d; root %s/html; } }\n",
				dir, dir, dir, port, dir);
			fclose(f);
			const char *sv[] = {"nginx", "-c", path, "-p", dir, NULL};
			pid_t srv = proc_spawn(sv, m == M_ZEROLINK, 0, NULL);
			v[m][r] = NAN;
			if (!port_wait(port, srv)) {
				proc_stop(srv);
				continue;
			}
			snprintf(url, sizeof(url), "http://127.0.0.1:%d/", port);
			const char *cv[] = {"wrk", "-t", "1", "-c", "20", "-d", d, url, NULL};
			outfile(out, sizeof(out), "wrk");
			if (proc_run(cv, m == M_ZEROLINK, out, 60) == 0)
				v[m][r] = number_after(out, "Requests/sec:") / 1000;
			proc_stop(srv);
		}
	}
	for (int m = 0; m < 2; m++) {
		double med = median_nan(v[m], runs);
		if (!isnan(med))
			result_add(mode_path[m], "nginx-wrk", 20, "rate", "k req/s", med, NAN, NAN);
	}
}

void bench_apps(void)
{
	if (!bench_self_exe()[0]) {
		printf("apps: cannot find this program's path; skipped\n");
		return;
	}
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/zl-bench-apps.XXXXXX");
	if (!mkdtemp(tmpdir)) {
		printf("apps: mkdtemp: %s; skipped\n", strerror(errno));
		return;
	}
	chmod(tmpdir, 0755); /* nginx's workers change user */
	/* a broker of the benchmark's own, started by the first program */
	char broker[128];
	snprintf(broker, sizeof(broker), "%s/broker.sock", tmpdir);
	char *old = getenv("ZEROLINK_BROKER") ? strdup(getenv("ZEROLINK_BROKER")) : NULL;
	setenv("ZEROLINK_BROKER", broker, 1);
	int runs = bo.quick ? 1 : 3;
	double secs = bo.quick ? 1 : 3;
	bench_sockperf(runs, secs);
	bench_iperf3(runs, secs);
	bench_redis(runs, bo.quick ? 30000 : 100000, bo.quick ? 500000 : 2000000);
	bench_nginx(runs, secs);
	if (old) {
		setenv("ZEROLINK_BROKER", old, 1);
		free(old);
	} else {
		unsetenv("ZEROLINK_BROKER");
	}
	char cmd[PATH_MAX + 64];
	snprintf(cmd, sizeof(cmd),
		 "pkill -f 'zerolinkd --embedded --socket %s' 2>/dev/null; rm -rf '%s'", broker,
		 tmpdir);
	if (system(cmd) != 0) {
		/* nothing to end, or nothing to remove */
	}
}
