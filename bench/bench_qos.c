/* SPDX-License-Identifier: MIT */
/*
 * zerolink bench, group "qos": two tenants of one I/O host device.
 *
 *   gold   this program's user: 4 KiB random reads, queue depth 4
 *   bulk   user nobody (65534): 4 KiB random reads, queue depth 32 (floods)
 *
 * Timeline, in steps of T: gold alone [0,T), both [T,3T), bulk alone
 * [3T,4T); completions counted in 50 ms bins. Four times in the same run:
 * without QoS, with gold reserved 80% of what it did alone in the first
 * run, with it again, and without (the disk's own rate drifts over a run;
 * medians over the bins of both of each). Targets: with QoS, gold's median rate while bulk floods
 * within 10% of its reservation (at least 0.9x); alone, each tenant gets what it got without QoS
 * (work-conserving). The device is a 256 MiB file on disk
 * (/var/tmp, or $ZEROLINK_BENCH_QOS_DIR), read with O_DIRECT: the disk is
 * what the tenants contend for. The sidecore runs on core A, both tenants
 * on core B. Needs root (the second tenant is another user).
 *
 * Then burst classes (Nested QoS): tenant silver (user 65533) reads 32 x
 * 4 KiB at once every 10 ms for 2T: alone; beside gold and bulk without
 * QoS; with QoS, silver reserved 4000 ops/s; and with the class 32@2ms
 * too. Silver's latencies (submission to reaping) as percentiles and the
 * share within 2 ms; the I/O host's own count of class requests done
 * late (target: at most 1%).
 * ZEROLINK_BENCH_QOS_LS=1 prints the I/O host's `ls` after the QoS run
 * and after the burst runs.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/sched/types.h>

#include <zerolink/blk.h>

#include "bench.h"
#include "cli.h"

#define BIN_NS 50000000ull
#define NBINS 200

/* the bursty tenant's latencies kept at most */
#define MAXLAT 16384

struct shared {
	uint64_t t0; /* the timeline's start */
	uint64_t bins[2][NBINS];
	int err[3];
	uint32_t nlat;
	uint64_t lat[MAXLAT]; /* ns, submit to reap, of the bursty tenant */
};

struct tenant_arg {
	int who; /* 0 gold, 1 bulk, 2 silver */
	unsigned qd;
	uint64_t from, to; /* ns after t0 */
	const char *dev;
	struct shared *sh;
	uint64_t every; /* gold bursty: qd requests at once, every this many ns */
};

struct qos_run {
	struct tenant_arg *a;
	uint64_t blocks, x;
};

static int qos_next(void *arg, struct zl_blk_req *r)
{
	struct qos_run *z = arg;
	*r = (struct zl_blk_req){.op = ZL_BLK_OP_READ,
				 .len = 4096,
				 .offset = (xorshift64(&z->x) % z->blocks) * 4096};
	return 0;
}

/* completions counted in the time bin they were reaped in */
static void qos_done(void *arg, const struct zl_blk_cpl *c, uint64_t now)
{
	struct qos_run *z = arg;
	(void)c;
	uint64_t bin = (now - z->a->sh->t0) / BIN_NS;
	if (bin < NBINS)
		z->a->sh->bins[z->a->who][bin]++;
}

/* Bursts: qd reads at once every a->every ns (on time, not closed-loop:
 * a late burst does not delay the next one's start), each request's
 * latency from its submission to its reaping. */
static int burst_loop(struct zl_blk_queue *q, struct tenant_arg *a, uint64_t blocks)
{
	struct zl_blk_req r[32];
	struct zl_blk_cpl c[32];
	unsigned qd = a->qd > 32 ? 32 : a->qd;
	uint64_t x = 0x9e3779b97f4a7c15ull;
	for (uint64_t at = a->sh->t0 + a->from; at < a->sh->t0 + a->to; at += a->every) {
		uint64_t now = now_ns();
		if (now < at) {
			struct timespec ts = {(time_t)(at / 1000000000u), (long)(at % 1000000000u)};
			clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
		}
		for (unsigned i = 0; i < qd; i++)
			r[i] = (struct zl_blk_req){.op = ZL_BLK_OP_READ,
						   .len = 4096,
						   .offset = (xorshift64(&x) % blocks) * 4096,
						   .user_data = now_ns()};
		for (unsigned sent = 0; sent < qd;) {
			int n = zl_blk_submit(q, r + sent, qd - sent, 0);
			if (n < 0)
				return n;
			sent += (unsigned)n;
		}
		for (unsigned got = 0; got < qd;) {
			int n = zl_blk_reap(q, c, 32, 0);
			if (n < 0)
				return n;
			uint64_t t = now_ns();
			for (int i = 0; i < n; i++) {
				if (c[i].status)
					return c[i].status;
				if (a->sh->nlat < MAXLAT)
					a->sh->lat[a->sh->nlat++] = t - c[i].user_data;
				zl_blk_cpl_release(q, &c[i]);
			}
			got += (unsigned)n;
		}
	}
	return 0;
}

static int tenant_main(void *p)
{
	struct tenant_arg *a = p;
	static const uid_t uid[3] = {0, 65534, 65533};
	if (a->who && (setgroups(0, NULL) || setgid(uid[a->who]) || setuid(uid[a->who])))
		return 10;
	/* gold's and silver's clients share their core with bulk's: they ask the scheduler
	 * for a short slice (EEVDF, Linux 6.6 and later; older kernels
	 * ignore it), as latency-sensitive tenants would, so that their
	 * wake-ups preempt bulk's client instead of waiting out its slice */
	if (a->who != 1) {
		struct sched_attr at = {.size = sizeof(at), .sched_runtime = 100000};
		long r = syscall(SYS_sched_setattr, 0, &at, 0);
		(void)r; /* not there: the kernel's default slice */
	}
	struct zl_ctx *ctx;
	static const char *const name[3] = {"bench-qos-gold", "bench-qos-bulk", "bench-qos-silver"};
	struct zl_ctx_opts co = {.name = name[a->who]};
	if ((a->sh->err[a->who] = zl_ctx_open(&ctx, &co)))
		return 11;
	struct zl_blk *d;
	/* a short spin: the two tenants share a core, and a spinning waiter
	 * would take it from the other */
	struct zl_blk_opts bo2 = {.queues = 1, .depth = a->qd, .spin_ns = 20000};
	if ((a->sh->err[a->who] = zl_blk_open(ctx, a->dev, &bo2, &d)))
		return 12;
	struct zl_blk_info in;
	zl_blk_info(d, &in);
	struct zl_blk_queue *q = zl_blk_queue(d, 0);
	while (now_ns() < a->sh->t0 + a->from)
		usleep(100);
	struct qos_run z = {
		.a = a, .blocks = in.size / 4096, .x = 88172645463325252ull + (uint64_t)a->who};
	int err = a->every ? burst_loop(q, a, z.blocks)
			   : blk_loop(q, a->qd, a->sh->t0 + a->to, qos_next, qos_done, &z);
	a->sh->err[a->who] = err;
	zl_blk_close(d);
	zl_ctx_close(ctx);
	return err ? 13 : 0;
}

static struct {
	char dir[64], control[100], broker[100], dev[48], img[96];
	pid_t ioh, zld;
	char *old_broker; /* ZEROLINK_BROKER before */
} Q;

/* A broker of its own that every user reaches (the tenants are two users),
 * and the I/O host on it. */
static int start(void)
{
	char prog[4096], zld[4200], sc[16], d0[224];
	cli_iohost_path(prog, sizeof(prog));
	snprintf(zld, sizeof(zld), "%s", prog);
	char *slash = strrchr(zld, '/');
	if (slash)
		snprintf(slash + 1, sizeof(zld) - (size_t)(slash + 1 - zld), "zerolinkd");
	if (!slash || access(zld, X_OK))
		snprintf(zld, sizeof(zld), "zerolinkd");
	snprintf(Q.dir, sizeof(Q.dir), "/tmp/zl-bench-qos-%d", (int)getpid());
	mkdir(Q.dir, 0755);
	chmod(Q.dir, 0755);
	snprintf(Q.broker, sizeof(Q.broker), "%s/broker.sock", Q.dir);
	const char *bargv[] = {zld, "--socket", Q.broker, "--public", "--idle-exit", "0", NULL};
	Q.zld = proc_spawn(bargv, false, 0, NULL);
	struct stat st;
	for (int i = 0; i < 500 && stat(Q.broker, &st); i++)
		usleep(10000);
	if (stat(Q.broker, &st))
		return -1;
	const char *old = getenv("ZEROLINK_BROKER");
	Q.old_broker = old ? strdup(old) : NULL;
	setenv("ZEROLINK_BROKER", Q.broker, 1);
	snprintf(Q.control, sizeof(Q.control), "%s/iohost.sock", Q.dir);
	snprintf(Q.dev, sizeof(Q.dev), "bench-qos-%d", (int)getpid());
	snprintf(sc, sizeof(sc), "%d", bo.cpu[0]);
	/* a file on a disk: the device is what the tenants contend for (on
	 * a RAM device the shared resource would be the client core) */
	const char *where = getenv("ZEROLINK_BENCH_QOS_DIR");
	snprintf(Q.img, sizeof(Q.img), "%s/zl-bench-qos-%d.img", where ? where : "/var/tmp",
		 (int)getpid());
	int fd = open(Q.img, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	static char chunk[1 << 20];
	memset(chunk, 0x5a, sizeof(chunk));
	for (int i = 0; i < 256; i++)
		if (write(fd, chunk, sizeof(chunk)) != (ssize_t)sizeof(chunk)) {
			close(fd);
			return -1;
		}
	fsync(fd);
	close(fd);
	snprintf(d0, sizeof(d0), "%s:backend=file,path=%s,users=*", Q.dev, Q.img);
	const char *argv[] = {prog, "--control", Q.control, "--sidecores",
			      sc,   "--device",  d0,        NULL};
	Q.ioh = iohost_spawn(argv, Q.control);
	return Q.ioh ? 0 : -1;
}

static void stop(void)
{
	if (Q.ioh)
		proc_stop(Q.ioh);
	if (Q.zld)
		proc_stop(Q.zld);
	Q.ioh = Q.zld = 0;
	if (Q.old_broker)
		setenv("ZEROLINK_BROKER", Q.old_broker, 1);
	else
		unsetenv("ZEROLINK_BROKER");
	free(Q.old_broker);
	Q.old_broker = NULL;
	char p[128];
	snprintf(p, sizeof(p), "%s/broker.sock.ids", Q.dir);
	unlink(p);
	snprintf(p, sizeof(p), "%s/broker.sock.lock", Q.dir);
	unlink(p);
	unlink(Q.broker);
	unlink(Q.control);
	rmdir(Q.dir);
	if (Q.img[0])
		unlink(Q.img);
}

/* One timeline; rates (ops/s) per bin into rate[2][NBINS]. */
static int timeline(double T, double rate[2][NBINS], int *nbins)
{
	struct shared *sh = shared_page(sizeof(*sh));
	uint64_t t = (uint64_t)(T * 1e9);
	struct tenant_arg a[2] = {{0, 4, 0, 3 * t, Q.dev, sh, 0}, {1, 32, t, 4 * t, Q.dev, sh, 0}};
	sh->t0 = now_ns() + 300000000ull; /* time to connect */
	pid_t p0 = fork_child(tenant_main, &a[0], 1), p1 = fork_child(tenant_main, &a[1], 1);
	int s0 = wait_child(p0), s1 = wait_child(p1);
	int err = 0;
	if (s0 || s1) {
		fprintf(stderr, "\nbench qos: a tenant failed (%d/%d: %s, %s)\n", s0, s1,
			strerror(-sh->err[0]), strerror(-sh->err[1]));
		err = -EIO;
	}
	*nbins = (int)(4 * t / BIN_NS);
	if (*nbins > NBINS)
		*nbins = NBINS;
	for (int w = 0; w < 2; w++)
		for (int i = 0; i < *nbins; i++)
			rate[w][i] = (double)sh->bins[w][i] / ((double)BIN_NS / 1e9);
	munmap(sh, sizeof(*sh));
	return err;
}

static double Rsv; /* gold's reservation */

/* The machine's own stalls, side by side with the runs (bench_stall.c):
 * idle, and while core B reads the device's file as the tenants do. */
static int stall_probe(double secs, bool disk)
{
	struct stall st;
	int e = stall_measure(secs, disk ? Q.img : NULL, &st);
	if (!e) {
		const char *path = disk ? "stall-disk" : "stall-idle";
		result_add(path, "qos-stall", 4096, "share", "%",
			   100.0 * (double)st.gap_ns / (double)st.span_ns, 0, 0);
		result_add(path, "qos-stall-n", 4096, "rate", "/s", (double)st.gaps / secs,
			   (double)st.max_ns / 1e6, 0);
	}
	return e;
}

/* The burst runs: tenant silver (user 65533) reads BURST x 4 KiB at once
 * every BURST_EVERY ns, a mean of 3200 ops/s; it is reserved BURST_RSV
 * ops/s, and then given the class BURST_CLASS too. Gold (closed loop,
 * reserved as in the QoS run) and bulk (flooding) run beside it, so that
 * the controller holds spare capacity back. */
#define BURST 32
#define BURST_EVERY 10000000ull
#define BURST_RSV 4000
#define BURST_BOUND_MS 2
#define BURST_CLASS "32@2ms"

/* Silver bursting for 2T; gold and bulk beside it, or not; silver's
 * latencies sorted into lat; their number (< 0: an error). */
static int burst_timeline(double T, bool others, uint64_t *lat)
{
	struct shared *sh = shared_page(sizeof(*sh));
	uint64_t t = (uint64_t)(T * 1e9);
	struct tenant_arg s = {2, BURST, t / 10, 2 * t, Q.dev, sh, BURST_EVERY};
	struct tenant_arg g = {0, 4, 0, 2 * t + BURST_EVERY, Q.dev, sh, 0};
	struct tenant_arg b = {1, 32, 0, 2 * t + BURST_EVERY, Q.dev, sh, 0};
	sh->t0 = now_ns() + 300000000ull; /* time to connect */
	pid_t p[3] = {fork_child(tenant_main, &s, 1), others ? fork_child(tenant_main, &g, 1) : 0,
		      others ? fork_child(tenant_main, &b, 1) : 0};
	int st = 0;
	for (int i = 0; i < 3; i++)
		if (p[i] && wait_child(p[i]))
			st = -EIO;
	int n = (int)sh->nlat;
	if (st) {
		fprintf(stderr, "\nbench qos: a tenant failed (%s, %s, %s)\n",
			strerror(-sh->err[0]), strerror(-sh->err[1]), strerror(-sh->err[2]));
		n = st;
	} else {
		memcpy(lat, sh->lat, (size_t)n * sizeof(*lat));
		sort_u64(lat, (size_t)n);
	}
	munmap(sh, sizeof(*sh));
	return n;
}

/* What the I/O host counted: silver's class-1 requests, those late, and
 * of those the ones in flight across a long round; the sidecores' long
 * rounds and their time (ms). From its `ls`. */
struct host_counts {
	double reqs, late, late_long, long_rounds, long_ms;
};

static int burst_host(struct host_counts *h)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f)
		return -1;
	int e = cli_iohost_call(Q.control, "ls", f);
	fclose(f);
	memset(h, 0, sizeof(*h));
	/* sidecore rows: "  ID CPU QUEUES STATE BUSY% REQUESTS SLEEPS N (MS)" */
	const char *sc = e ? NULL : strstr(buf, "long rounds (ms)\n");
	for (const char *l = sc ? strchr(sc, '\n') + 1 : NULL; l && l[0] == ' ' && l[2] != ' ';) {
		const char *nl = strchr(l, '\n'), *par = memchr(l, '(', nl ? (size_t)(nl - l) : 0);
		const char *num = par;
		while (num && num > l && num[-1] == ' ')
			num--;
		while (num && num > l && num[-1] != ' ')
			num--;
		unsigned long long n;
		double ms;
		if (par && sscanf(num, "%llu (%lf)", &n, &ms) == 2) {
			h->long_rounds += (double)n;
			h->long_ms += ms;
		}
		l = nl ? nl + 1 : NULL;
	}
	const char *at = e ? NULL : strstr(buf, "tenant silver");
	at = at ? strstr(at, "burst class 1:") : NULL;
	at = at ? strchr(at, ';') : NULL;
	unsigned long long r, l, ll;
	int rc = at && sscanf(at, "; %llu requests, %llu late (%llu across", &r, &l, &ll) == 3 ? 0
											       : -1;
	if (!rc) {
		h->reqs = (double)r;
		h->late = (double)l;
		h->late_long = (double)ll;
	}
	free(buf);
	return rc;
}

/* The four burst runs: silver alone; beside gold and bulk without QoS;
 * with QoS, silver reserved; and with its burst class too. */
static const char *const burst_path[4] = {"burst-alone", "burst-none", "burst-reserve",
					  "burst-class"};

static int burst_runs(double T)
{
	static uint64_t lat[MAXLAT];
	char uid[16];
	snprintf(uid, sizeof(uid), "%u", (unsigned)geteuid());
	for (int k = 0; k < 4; k++) {
		const char *set[3] = {NULL, NULL, NULL};
		char l0[256], l1[256], l2[256];
		if (k == 2) { /* (none are set at k == 0) */
			snprintf(l0, sizeof(l0), "tenant gold device=%s users=%s reserve=%.0f",
				 Q.dev, uid, Rsv);
			snprintf(l1, sizeof(l1), "tenant bulk device=%s users=65534 weight=1",
				 Q.dev);
			snprintf(l2, sizeof(l2), "tenant silver device=%s users=65533 reserve=%d",
				 Q.dev, BURST_RSV);
			set[0] = l0;
			set[1] = l1;
			set[2] = l2;
		} else if (k == 3) {
			snprintf(l0, sizeof(l0),
				 "tenant silver device=%s users=65533 reserve=%d burst=%s", Q.dev,
				 BURST_RSV, BURST_CLASS);
			set[0] = l0;
		}
		for (int i = 0; i < 3 && set[i]; i++)
			if (cli_iohost_call(Q.control, set[i], stderr))
				return -EINVAL;
		progress("qos: silver's bursts of %d, %s", BURST, burst_path[k] + 6);
		struct host_counts h0 = {0}, h;
		if (k == 3)
			burst_host(&h0); /* (the class is new: only the rounds count) */
		uint64_t t0 = now_ns();
		int n = burst_timeline(T, k > 0, lat);
		double span = (double)(now_ns() - t0) / 1e9;
		if (n < 0)
			return n;
		if (n == 0)
			continue;
		result_add(burst_path[k], "qos-burst", 4096, "lat", "us",
			   pct_u64(lat, (size_t)n, 0.5) / 1e3, pct_u64(lat, (size_t)n, 0.99) / 1e3,
			   pct_u64(lat, (size_t)n, 0.999) / 1e3);
		result_add(burst_path[k], "qos-burst-p90", 4096, "lat", "us",
			   pct_u64(lat, (size_t)n, 0.9) / 1e3, 0, 0);
		size_t in = 0;
		while (in < (size_t)n && lat[in] <= BURST_BOUND_MS * 1000000ull)
			in++;
		result_add(burst_path[k], "qos-burst-in", 4096, "share", "%",
			   100.0 * (double)in / n, 0, 0);
		if (k == 3 && !burst_host(&h) && h.reqs > 0) {
			result_add(burst_path[k], "qos-burst-host", 4096, "share", "%",
				   100.0 * (h.reqs - h.late) / h.reqs, 0, 0);
			/* late though the sidecore never stood still over 1 ms */
			result_add(burst_path[k], "qos-burst-host-steady", 4096, "share", "%",
				   100.0 * (h.late - h.late_long) / h.reqs, 0, 0);
			/* its long rounds during the run: how often, and their
			 * share of the time */
			result_add(burst_path[k], "qos-burst-stall", 4096, "share", "%",
				   100.0 * (h.long_ms - h0.long_ms) / 1e3 / span, 0, 0);
			result_add(burst_path[k], "qos-burst-stall-n", 4096, "rate", "/s",
				   (h.long_rounds - h0.long_rounds) / span, 0, 0);
		}
	}
	if (getenv("ZEROLINK_BENCH_QOS_LS"))
		cli_iohost_call(Q.control, "ls", stderr);
	return 0;
}

/* Timelines run per setting, in the order no QoS, QoS, QoS, no QoS: the
 * disk's own rate drifts over a run (by 10-20% here), and one pair in a
 * fixed order read that drift as a cost of QoS. */
#define REPS 2

/* The median rate of tenant w over [from, to) steps of the timelines,
 * leaving out the first bin of each phase (the other tenant starts or
 * stops there). */
static double phase(double rate[][2][NBINS], int reps, int w, int from, int to, int per)
{
	double v[REPS * NBINS];
	int n = 0;
	for (int k = 0; k < reps; k++)
		for (int i = from * per + 1; i < to * per && i < NBINS; i++)
			v[n++] = rate[k][w][i];
	return n ? median_d(v, (size_t)n) : NAN;
}

/* gold reserved Rsv, bulk its own weight; or neither (untenant) */
static int tenants(bool on)
{
	char line[256], uid[16];
	snprintf(uid, sizeof(uid), "%u", (unsigned)geteuid());
	for (int w = 0; w < 2; w++) {
		if (!on)
			snprintf(line, sizeof(line), "untenant %s %s", Q.dev, w ? "bulk" : "gold");
		else if (w == 0)
			snprintf(line, sizeof(line),
				 "tenant gold device=%s users=%s reserve=%.0f weight=1", Q.dev, uid,
				 Rsv);
		else
			snprintf(line, sizeof(line), "tenant bulk device=%s users=65534 weight=1",
				 Q.dev);
		/* an error is printed by cli_iohost_call */
		if (cli_iohost_call(Q.control, line, stderr))
			return -EINVAL;
	}
	return 0;
}

static char chart_data[128];

void bench_qos(void)
{
	if (geteuid() != 0) {
		printf("qos: the second tenant runs as another user: needs root; skipped\n");
		return;
	}
	if (start()) {
		printf("qos: zerolinkd or zerolink-iohost did not start; skipped\n");
		stop();
		return;
	}
	double T = bo.quick ? 0.5 : 1.5;
	int per = (int)(T * 1e9 / BIN_NS), nb;
	static double none[REPS][2][NBINS], qos[REPS][2][NBINS];
	progress("qos: the machine's stalls, idle and under disk reads");
	int e = stall_probe(T, false);
	if (!e)
		e = stall_probe(T, true);
	/* none, QoS, QoS, none: a drift of the disk's rate over the run
	 * weighs on both alike */
	bool on = false; /* the tenants are set */
	for (int k = 0; k < 2 * REPS && !e; k++) {
		bool with = k % 4 == 1 || k % 4 == 2;
		int rep = k / 2;
		if (with != on) {
			e = tenants(with);
			on = with;
		}
		if (with)
			progress("qos: two tenants, gold reserved %.0f ops/s (%d of %d)", Rsv,
				 rep + 1, REPS);
		else
			progress("qos: two tenants, no QoS (%d of %d)", rep + 1, REPS);
		if (!e)
			e = timeline(T, with ? qos[rep] : none[rep], &nb);
		if (k == 0) {
			/* gold is reserved 80% of what it did alone, more than it
			 * got without QoS while bulk flooded */
			Rsv = floor(phase(none, 1, 0, 0, 1, per) * 0.8 / 100) * 100;
			if (!e && !(Rsv > 0))
				e = -EIO;
		}
	}
	if (on && !e)
		e = tenants(false);
	if (!e && getenv("ZEROLINK_BENCH_QOS_LS"))
		cli_iohost_call(Q.control, "ls", stderr);
	int eb = e ? e : burst_runs(T);
	if (eb)
		fprintf(stderr, "\nbench qos: the burst runs failed (%s)\n", strerror(-eb));
	stop();
	if (e)
		return;
	/* each tenant's median in each phase: which, and its steps */
	static const struct {
		const char *test;
		int w, from, to;
	} ph[4] = {{"qos-gold-alone", 0, 0, 1},
		   {"qos-gold-shared", 0, 1, 3},
		   {"qos-bulk-shared", 1, 1, 3},
		   {"qos-bulk-alone", 1, 3, 4}};
	for (int i = 0; i < 4; i++) {
		result_add("none", ph[i].test, 4096, "rate", "kIOPS",
			   phase(none, REPS, ph[i].w, ph[i].from, ph[i].to, per) / 1e3, 0, 0);
		result_add("qos", ph[i].test, 4096, "rate", "kIOPS",
			   phase(qos, REPS, ph[i].w, ph[i].from, ph[i].to, per) / 1e3, 0, 0);
	}
	result_add("qos", "qos-reserve", 4096, "rate", "kIOPS", Rsv / 1e3, 0, 0);
	/* the time series of the first pair, for the chart */
	snprintf(chart_data, sizeof(chart_data), "/tmp/zl-bench-qos-%d.dat", (int)getpid());
	FILE *f = fopen(chart_data, "w");
	if (f) {
		for (int i = 0; i < nb; i++)
			fprintf(f, "%.3f %.1f %.1f %.1f %.1f\n", (i + 0.5) * (double)BIN_NS / 1e9,
				none[0][0][i] / 1e3, none[0][1][i] / 1e3, qos[0][0][i] / 1e3,
				qos[0][1][i] / 1e3);
		fclose(f);
	} else {
		chart_data[0] = 0;
	}
}

static double qv(const char *path, const char *test)
{
	const struct result *r = result_find(path, test, 4096, "rate");
	return r ? r->median : NAN;
}

void report_qos(void)
{
	if (isnan(qv("qos", "qos-reserve")))
		return;
	printf("\nQoS, two tenants of one device (4 KiB random reads, kIOPS, medians of 50 ms "
	       "bins)\n");
	printf("  %-10s %12s %14s %14s %12s\n", "", "gold alone", "gold, bulk on", "bulk, gold on",
	       "bulk alone");
	static const char *const sc[] = {"none", "qos"};
	for (int i = 0; i < 2; i++)
		printf("  %-10s %12.1f %14.1f %14.1f %12.1f\n", i ? "QoS" : "no QoS",
		       qv(sc[i], "qos-gold-alone"), qv(sc[i], "qos-gold-shared"),
		       qv(sc[i], "qos-bulk-shared"), qv(sc[i], "qos-bulk-alone"));
	printf("  gold's reservation: %.1f kIOPS\n", qv("qos", "qos-reserve"));
	if (!result_find("burst-class", "qos-burst", 4096, "lat"))
		return;
	printf("\nQoS burst class: silver reads %d x 4 KiB at once every %llu ms (reserved %d "
	       "ops/s); gold and bulk as above beside it\n",
	       BURST, BURST_EVERY / 1000000, BURST_RSV);
	printf("  %-36s %9s %9s %9s %9s %12s\n", "silver's latency (us)", "p50", "p90", "p99",
	       "p99.9", "within 2 ms");
	static const char *const what[4] = {"alone, no QoS", "gold and bulk on, no QoS",
					    "QoS, silver reserved",
					    ("QoS, reserved + class " BURST_CLASS)};
	for (int k = 0; k < 4; k++) {
		const struct result *l = result_find(burst_path[k], "qos-burst", 4096, "lat");
		const struct result *l9 = result_find(burst_path[k], "qos-burst-p90", 4096, "lat");
		const struct result *in = result_find(burst_path[k], "qos-burst-in", 4096, "share");
		if (l && l9 && in)
			printf("  %-36s %9.0f %9.0f %9.0f %9.0f %11.1f%%\n", what[k], l->median,
			       l9->median, l->p99, l->p999, in->median);
	}
	const struct result *h = result_find("burst-class", "qos-burst-host", 4096, "share");
	if (h)
		printf("  in the I/O host (arrival to completion): %.1f%% of class-1 requests "
		       "within its bound\n",
		       h->median);
	const struct result *hs =
		result_find("burst-class", "qos-burst-host-steady", 4096, "share");
	if (h && hs)
		printf("  late though their sidecore never went over 1 ms without a round: "
		       "%.2f%% of class-1 requests (the other late ones were in flight while "
		       "it stood still: the VM stopped, or a preemption)\n",
		       hs->median);
	const struct result *ss = result_find("burst-class", "qos-burst-stall", 4096, "share");
	const struct result *sn = result_find("burst-class", "qos-burst-stall-n", 4096, "rate");
	if (ss && sn)
		printf("  the sidecore stood still over 1 ms %.1f times a second in that run, "
		       "%.1f%% of the time\n",
		       sn->median, ss->median);
	static const char *const probe[2] = {"stall-idle", "stall-disk"};
	for (int k = 0; k < 2; k++) {
		const struct result *p = result_find(probe[k], "qos-stall", 4096, "share");
		const struct result *pn = result_find(probe[k], "qos-stall-n", 4096, "rate");
		if (p && pn)
			printf("  the machine: a thread spinning alone on core A stood still over "
			       "1 ms "
			       "%.1f times a second, %.1f%% of the time (longest %.1f ms), %s\n",
			       pn->median, p->median, pn->p99,
			       k ? "while core B read the device's file (O_DIRECT, depth 32)"
				 : "with nothing else running");
	}
}

void ratios_qos(void (*target)(const char *, double, double, bool))
{
	double r = qv("qos", "qos-reserve");
	if (isnan(r))
		return;
	target("QoS: gold while bulk floods / its reservation", qv("qos", "qos-gold-shared") / r,
	       0.9, false);
	target("QoS: gold alone, with QoS / without",
	       qv("qos", "qos-gold-alone") / qv("none", "qos-gold-alone"), 0.9, false);
	target("QoS: bulk alone, with QoS / without",
	       qv("qos", "qos-bulk-alone") / qv("none", "qos-bulk-alone"), 0.9, false);
	const struct result *b = result_find("burst-class", "qos-burst-host", 4096, "share");
	if (b) /* the share of class requests the I/O host served late, at most 1% */
		target("QoS: burst class, late in the I/O host / 1% of requests", 100 - b->median,
		       1.0, true);
	const struct result *bs =
		result_find("burst-class", "qos-burst-host-steady", 4096, "share");
	if (bs) /* ... of them, those late while their sidecore ran */
		target("QoS: burst class, late outside the sidecore's stalls / 1%", bs->median, 1.0,
		       true);
}

int chart_qos(const char *png)
{
	if (!chart_data[0])
		return 0;
	char script[] = "/tmp/zl-bench-qos-XXXXXX";
	int fd = mkstemp(script);
	if (fd < 0)
		return -1;
	FILE *f = fdopen(fd, "w");
	fprintf(f,
		"set terminal pngcairo size 1000,450 font 'sans,10'\n"
		"set output '%s'\n"
		"set title 'QoS: tenant gold (queue depth 4) reserved %.1f kIOPS; tenant bulk "
		"(depth 32) floods from %.1f s to %.1f s; a file on disk, O_DIRECT' noenhanced\n"
		"set xlabel 'time (s)'\nset ylabel 'kIOPS (4 KiB random reads, 50 ms bins)'\n"
		"set grid\nset key outside right\nset yrange [0:*]\n"
		"plot '%s' using 1:4 with lines lw 2 lc rgb '#1f77b4' title 'gold, QoS', "
		"'' using 1:5 with lines lw 2 lc rgb '#d62728' title 'bulk, QoS', "
		"'' using 1:2 with lines dt 2 lc rgb '#1f77b4' title 'gold, no QoS', "
		"'' using 1:3 with lines dt 2 lc rgb '#d62728' title 'bulk, no QoS', "
		"%.3f with lines lc rgb 'black' dt 3 title 'reservation'\n",
		png, Rsv / 1e3, bo.quick ? 0.5 : 1.5, bo.quick ? 1.5 : 4.5, chart_data, Rsv / 1e3);
	fclose(f);
	int r = gnuplot_run(script);
	unlink(chart_data);
	return r;
}
