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

static char self_exe[PATH_MAX];
static char tmpdir[64];
static int next_port;

static bool have(const char *prog)
{
	const char *path = getenv("PATH");
	if (!path)
		path = "/usr/bin:/bin:/usr/sbin:/sbin";
	char buf[PATH_MAX];
	const char *p = path;
	while (*p) {
		const char *e = strchr(p, ':');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		snprintf(buf, sizeof(buf), "%.*s/%s", (int)n, p, prog);
		if (access(buf, X_OK) == 0)
			return true;
		if (!e)
			break;
		p = e + 1;
	}
	/* /usr/sbin is not always in PATH (nginx) */
	snprintf(buf, sizeof(buf), "/usr/sbin/%s", prog);
	return access(buf, X_OK) == 0;
}

/* Whether bind (connect false) or connect (true) to 127.0.0.1:port works. */
static bool loopback_try(int port, bool connect_to)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	bool ok = (connect_to ? connect(fd, (struct sockaddr *)&a, sizeof(a))
			      : bind(fd, (struct sockaddr *)&a, sizeof(a))) == 0;
	close(fd);
	return ok;
}

static int port_new(void)
{
	/* below the ephemeral ports (32768 and up by default), so that no
	 * client's port or TIME_WAIT is in the way */
	if (!next_port)
		next_port = 20000 + (int)(getpid() % 1000) * 8;
	while (!loopback_try(next_port, false))
		next_port++;
	return next_port++;
}

static bool port_listens(int port)
{
	return loopback_try(port, true);
}

/* Start argv on core `side`, under zerolink or not, its output in `out`. */
static pid_t spawn(const char *const *argv, bool zl, int side, const char *out)
{
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	pin_to(side);
	setpgid(0, 0); /* a group of its own: nginx's workers end with it */
	int fd = open(out ? out : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd >= 0) {
		dup2(fd, 1);
		dup2(fd, 2);
	}
	int nul = open("/dev/null", O_RDONLY);
	if (nul >= 0)
		dup2(nul, 0);
	const char *v[40];
	int n = 0;
	if (zl) {
		v[n++] = self_exe;
		v[n++] = "run";
		v[n++] = "--";
	}
	for (int i = 0; argv[i] && n < 39; i++)
		v[n++] = argv[i];
	v[n] = NULL;
	execvp(v[0], (char *const *)v);
	if (!strchr(v[0], '/')) {
		char alt[PATH_MAX];
		snprintf(alt, sizeof(alt), "/usr/sbin/%s", v[0]);
		execv(alt, (char *const *)v);
	}
	_exit(127);
}

static void stop(pid_t pid)
{
	if (pid <= 0)
		return;
	kill(-pid, SIGTERM);
	for (int i = 0; i < 100; i++) {
		if (waitpid(pid, NULL, WNOHANG) == pid)
			goto done;
		usleep(20000);
	}
	kill(-pid, SIGKILL);
	waitpid(pid, NULL, 0);
done:
	kill(-pid, SIGKILL); /* what is left of its group (workers) */
}

static bool wait_listen(int port, pid_t pid)
{
	for (int i = 0; i < 200; i++) {
		if (port_listens(port))
			return true;
		if (waitpid(pid, NULL, WNOHANG) == pid)
			return false;
		usleep(25000);
	}
	return false;
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	size_t cap = 1 << 16, n = 0;
	char *b = malloc(cap);
	size_t k;
	while (b && (k = fread(b + n, 1, cap - n - 1, f)) > 0) {
		n += k;
		if (cap - n < 4096) {
			char *nb = realloc(b, cap * 2);
			if (!nb) {
				free(b);
				b = NULL;
				break;
			}
			b = nb;
			cap *= 2;
		}
	}
	fclose(f);
	if (b)
		b[n] = '\0';
	return b;
}

/* The number after the last occurrence of key in the file, or NAN. */
static double number_after(const char *file, const char *key)
{
	char *t = slurp(file);
	if (!t)
		return NAN;
	double v = NAN;
	for (char *p = t; (p = strstr(p, key)); p += strlen(key)) {
		char *e;
		double x = strtod(p + strlen(key), &e);
		if (e != p + strlen(key))
			v = x;
	}
	free(t);
	return v;
}

static void outfile(char *b, size_t n, const char *what)
{
	snprintf(b, n, "%s/%s.out", tmpdir, what);
}

/* Run the client to completion (it must end by itself within limit_s). */
static int run_client(const char *const *argv, bool zl, const char *out, int limit_s)
{
	pid_t pid = spawn(argv, zl, 1, out);
	for (int i = 0; i < limit_s * 50; i++) {
		int st;
		if (waitpid(pid, &st, WNOHANG) == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		usleep(20000);
	}
	stop(pid);
	return -1;
}

static double median_of(double *v, int n)
{
	int k = 0;
	for (int i = 0; i < n; i++)
		if (!isnan(v[i]))
			v[k++] = v[i];
	return k ? median_d(v, (size_t)k) : NAN;
}

#define RUNS_MAX 5

/* ---- sockperf ping-pong ---- */

static void bench_sockperf(int runs, double secs)
{
	if (!have("sockperf")) {
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
				pid_t srv = spawn(sv, m == M_ZEROLINK, 0, NULL);
				v[m][r] = NAN;
				if (!wait_listen(port, srv)) {
					stop(srv);
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
				if (run_client(cv, m != M_KERNEL, out, 60) == 0)
					v[m][r] = number_after(out, "percentile 50.000 =");
				stop(srv);
			}
		}
		for (int m = 0; m < 3; m++) {
			double med = median_of(v[m], runs);
			if (!isnan(med))
				result_add(mode_path[m], "sockperf", (uint64_t)sizes[s], "latency",
					   "us", med, NAN, NAN);
		}
	}
}

/* ---- iperf3 ---- */

static void bench_iperf3(int runs, double secs)
{
	if (!have("iperf3")) {
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
				pid_t srv = spawn(sv, m == M_ZEROLINK, 0, NULL);
				v[m][r] = NAN;
				if (!wait_listen(port, srv)) {
					stop(srv);
					continue;
				}
				snprintf(np, sizeof(np), "%d", streams[s]);
				const char *cv[] = {"iperf3", "-c", "127.0.0.1", "-p", portb, "-t",
						    t,        "-P", np,          "-J", NULL};
				outfile(out, sizeof(out), "iperf3");
				if (run_client(cv, m == M_ZEROLINK, out, 60) == 0) {
					/* the receiver's sum comes last in the JSON */
					double bps = number_after(out, "\"bits_per_second\":");
					v[m][r] = bps / 1e9;
				}
				stop(srv);
			}
		}
		for (int m = 0; m < 2; m++) {
			double med = median_of(v[m], runs);
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
	if (!have("redis-server") || !have("redis-benchmark")) {
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
				pid_t srv = spawn(sv, m == M_ZEROLINK, 0, NULL);
				if (!(unix_ ? wait_unix(upath, srv) : wait_listen(port, srv))) {
					stop(srv);
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
				if (run_client(cv, m != M_KERNEL, out, 120) == 0) {
					v[m][0][r] = number_after(out, "SET: ") / 1000;
					v[m][1][r] = number_after(out, "GET: ") / 1000;
				}
				stop(srv);
			}
		}
		for (int m = 0; m < 3; m++)
			for (int k = 0; k < 2; k++) {
				double med = median_of(v[m][k], runs);
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
	if (!have("nginx") || !have("wrk")) {
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
			pid_t srv = spawn(sv, m == M_ZEROLINK, 0, NULL);
			v[m][r] = NAN;
			if (!wait_listen(port, srv)) {
				stop(srv);
				continue;
			}
			snprintf(url, sizeof(url), "http://127.0.0.1:%d/", port);
			const char *cv[] = {"wrk", "-t", "1", "-c", "20", "-d", d, url, NULL};
			outfile(out, sizeof(out), "wrk");
			if (run_client(cv, m == M_ZEROLINK, out, 60) == 0)
				v[m][r] = number_after(out, "Requests/sec:") / 1000;
			stop(srv);
		}
	}
	for (int m = 0; m < 2; m++) {
		double med = median_of(v[m], runs);
		if (!isnan(med))
			result_add(mode_path[m], "nginx-wrk", 20, "rate", "k req/s", med, NAN, NAN);
	}
}

void bench_apps(void)
{
	ssize_t n = readlink("/proc/self/exe", self_exe, sizeof(self_exe) - 1);
	if (n <= 0) {
		printf("apps: cannot find this program's path; skipped\n");
		return;
	}
	self_exe[n] = '\0';
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
