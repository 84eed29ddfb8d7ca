/* SPDX-License-Identifier: MIT */
/* zerolink bench: shared declarations of the benchmark programs. */
#ifndef ZL_BENCH_H
#define ZL_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <zerolink/zerolink.h>

#include "../src/lib/proc_cpu.h"

struct bench_opts {
	bool quick;
	double stream_s; /* seconds per throughput run */
	int runs;        /* runs per throughput point (median taken) */
	int lat_iters;   /* round trips per latency point */
	int cpu[2];      /* the two cores: side A, side B */
	bool pinned;     /* false when the machine has one core */
	const char *json;
	const char *png;
	const char *only;  /* run only tests whose name contains this */
	const char *paths; /* comma-separated path names to measure, or NULL */
};

extern struct bench_opts bo;

/* One measurement, as printed and as written to JSON. */
struct result {
	char path[32];
	char test[24];
	uint64_t size;
	char metric[24];
	char unit[12];
	double median, p99, p999;
};

void result_add(const char *path, const char *test, uint64_t size, const char *metric,
		const char *unit, double median, double p99, double p999);
const struct result *result_find(const char *path, const char *test, uint64_t size,
				 const char *metric);
size_t result_count(void);
const struct result *result_at(size_t i);

/* utilities */
uint64_t now_ns(void);
/* Round-trip timing: lat_clock() ticks, lat_ns() converts a difference. */
void lat_clock_init(void);
uint64_t lat_clock(void);
double lat_ns(uint64_t ticks);
void pin_to(int which); /* 0: side A core, 1: side B core */
void sort_u64(uint64_t *v, size_t n);
double pct_u64(const uint64_t *sorted, size_t n, double p);
double median_d(double *v, size_t n);
uint64_t xorshift64(uint64_t *x); /* the next of a xorshift sequence (x not 0) */
uint64_t cpu_ns_self(void);       /* user+sys of this process */
/* Whether --paths asks for the path named label (every path without it). */
bool path_wanted(const char *label);
pid_t fork_child(int (*fn)(void *), void *arg, int cpu_side);
int wait_child(pid_t pid);
void *shared_page(size_t size);
void progress(const char *fmt, ...);

/* The machine's stalls (bench_stall.c): gaps over 1 ms seen by a thread
 * spinning on core A for secs, while core B reads file (if not NULL). */
struct stall {
	uint64_t gaps, gap_ns, max_ns, span_ns;
};
int stall_measure(double secs, const char *file, struct stall *out);

/* real programs (bench_proc.c) */
const char *bench_self_exe(void); /* this program's path, "" if unknown */
bool prog_have(const char *prog); /* in PATH or /usr/sbin */
int port_new(void);               /* a free port on 127.0.0.1, below the ephemeral ones */
bool port_listens(int port);
bool unix_answers(const char *path); /* something listens on this Unix socket */
/* Start argv on core `side` (0 or 1), under `zerolink run` if zl, in a
 * process group of its own, its output in file out (NULL: discarded). */
pid_t proc_spawn(const char *const *argv, bool zl, int side, const char *out);
void proc_stop(pid_t pid); /* SIGTERM to its group, SIGKILL if it lingers */
/* zerolink-iohost started with argv, once its control socket answers (up
 * to 5 s); 0 if it died or never answered. */
pid_t iohost_spawn(const char *const *argv, const char *control);

struct zl_blk_queue;
struct zl_blk_req;
struct zl_blk_cpl;
/* A closed loop on q: up to qd (at most 32) requests in flight until the
 * clock passes end (ns), each made by next() (0, or -ENOBUFS: not now),
 * each completion shown to done() with the time it was reaped, then
 * released. 0, or the first error: a call's, or a request's status. */
int blk_loop(struct zl_blk_queue *q, unsigned qd, uint64_t end,
	     int (*next)(void *arg, struct zl_blk_req *r),
	     void (*done)(void *arg, const struct zl_blk_cpl *c, uint64_t now), void *arg);
bool port_wait(int port, pid_t pid); /* until it listens on port (5 s), or it exits */
char *slurp(const char *path);       /* a file's text, malloc'd, or NULL */
/* The number after the last occurrence of key in the file, or NAN. */
double number_after(const char *file, const char *key);
/* Run argv on core 1 to completion; killed after limit_s. Its exit status, or -1. */
int proc_run(const char *const *argv, bool zl, const char *out, int limit_s);
double median_nan(double *v, int n); /* median of the values that are not NAN */

/* the groups of measurements */
void bench_floor(void);
void bench_latency(void);
void bench_stream(void);
void bench_pipeline(void);
void bench_apps(void); /* real programs under zerolink run (bench_apps.c) */
void bench_blk(void);  /* block devices: the I/O host against local io_uring and NBD */
void bench_qos(void);  /* two tenants of one device, without and with QoS */

/* output */
void report_table(void);
int report_json(const char *path);
int report_chart(const char *png);
/* Run gnuplot on a script file, then remove it: 0 if gnuplot succeeded. */
int gnuplot_run(char *script);
void report_ratios(void);
void report_blk(void);
void ratios_blk(void (*target)(const char *name, double ratio, double limit, bool at_most));
void report_qos(void);
void ratios_qos(void (*target)(const char *name, double ratio, double limit, bool at_most));
int chart_qos(const char *png); /* the QoS timeline (nothing if it did not run) */

#endif
