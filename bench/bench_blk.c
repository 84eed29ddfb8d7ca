/* SPDX-License-Identifier: MIT */
/*
 * zerolink bench, group "blk": block I/O on one RAM-backed file (tmpfs),
 * through every path in the same run, alternately:
 *
 *   uring         io_uring in this process on the file (the ceiling)
 *   fio-uring     fio's io_uring engine on the file (a cross-check of it)
 *   zerolink      a block channel to a zerolink-iohost serving the file,
 *                 reads as views of the I/O host's buffer, writes from pool
 *                 buffers (zero-copy)
 *   zerolink-nbd  the same device through the I/O host's NBD export (TCP
 *                 loopback), with fio's nbd engine
 *   nbdkit        nbdkit's file plugin over TCP loopback, fio's nbd engine
 *   qemu-nbd      qemu-nbd over TCP loopback, fio's nbd engine
 *   zerolink-crypt  the zerolink path through the AES-XTS-256 module, on a
 *                 device with 4 KiB blocks (cryptsetup's LUKS2 choice on
 *                 4K disks), its large requests shared with a worker of the
 *                 I/O host on the client's core (it sleeps when idle); the
 *                 module's default engine (VAES where the CPU has it)
 *   crypt-openssl the same with OpenSSL's engine (crypt_engine = openssl),
 *                 1 MiB tests only: what the VAES engine gains
 *
 * Tests: 4 KiB random read and write at queue depth 1 and 32, 1 MiB
 * sequential read and write at depth 8. Servers (the I/O host's sidecore,
 * nbdkit, qemu-nbd) run on core A, clients on core B; the local paths run
 * on core B alone. Queue-depth-1 latencies are per request, submission to
 * completion (fio: its total latency, lat_ns, with --lat_percentiles).
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <zerolink/blk.h>

#include "bench.h"
#include "cli.h"

struct blk_test {
	const char *name;
	bool write, seq;
	uint32_t bs;
	unsigned qd;
};

static const struct blk_test tests[] = {
	{"randread-qd1", false, false, 4096, 1},   {"randwrite-qd1", true, false, 4096, 1},
	{"randread-qd32", false, false, 4096, 32}, {"randwrite-qd32", true, false, 4096, 32},
	{"seqread-1m", false, true, 1 << 20, 8},   {"seqwrite-1m", true, true, 1 << 20, 8},
};
#define NTESTS (sizeof(tests) / sizeof(tests[0]))

enum path {
	P_URING,
	P_FIO_URING,
	P_ZL,
	P_ZL_NBD,
	P_NBDKIT,
	P_QEMU_NBD,
	P_ZL_CRYPT,
	P_ZL_CRYPT_OSSL,
	NPATHS
};
static const char *const path_name[NPATHS] = {"uring",          "fio-uring",    "zerolink",
					      "zerolink-nbd",   "nbdkit",       "qemu-nbd",
					      "zerolink-crypt", "crypt-openssl"};

/* the I/O host's devices: plain, encrypted, encrypted with OpenSSL's engine */
enum { D_PLAIN, D_CRYPT, D_OSSL, NDEVS };

/* One run's outcome. */
struct blk_out {
	double iops;
	double gbps;
	double lat50, lat99, lat999; /* us, queue depth 1 */
};

static struct {
	char dir[64];
	/* the plain device's image; the encrypted ones' and their key */
	char img[96], cimg[96], oimg[96], ckey[96];
	uint64_t size;
	pid_t ioh;
	char control[100];
	char dev[NDEVS][48];
	int nbd_port;
	struct zl_ctx *ctx;
	/* per device: [0] for the 4 KiB tests, whose client spins (their
	 * requests take microseconds); [1] for the 1 MiB tests, whose client
	 * spins for the library's default (10 us) and then sleeps */
	struct zl_blk *blk[NDEVS][2];
	pid_t nbdkit, qemu;
	int nbdkit_port, qemu_port;
	bool have_fio;
} B;

/* ---- latency samples ---- */

struct lat {
	uint64_t *v;
	size_t n, cap;
};

static void lat_add(struct lat *l, uint64_t ns)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 65536;
		uint64_t *v = realloc(l->v, cap * sizeof(*v));
		if (!v)
			return;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = ns;
}

static void lat_done(struct lat *l, struct blk_out *o)
{
	sort_u64(l->v, l->n);
	o->lat50 = pct_u64(l->v, l->n, 0.5) / 1e3;
	o->lat99 = pct_u64(l->v, l->n, 0.99) / 1e3;
	o->lat999 = pct_u64(l->v, l->n, 0.999) / 1e3;
	free(l->v);
	*l = (struct lat){0};
}

/* ---- offsets ---- */

struct offgen {
	uint64_t x, next, blocks;
	uint32_t bs;
	bool seq;
};

static uint64_t off_next(struct offgen *g)
{
	if (g->seq) {
		uint64_t o = g->next;
		g->next = (g->next + g->bs) % (g->blocks * g->bs);
		return o;
	}
	return (xorshift64(&g->x) % g->blocks) * g->bs;
}

static void run_done(const struct blk_test *t, uint64_t ops, uint64_t ns, struct lat *l,
		     struct blk_out *o)
{
	o->iops = (double)ops * 1e9 / (double)ns;
	o->gbps = o->iops * t->bs / 1e9;
	if (t->qd == 1)
		lat_done(l, o);
	else
		free(l->v);
}

/* ---- local io_uring: the ceiling ---- */

static int run_uring(const struct blk_test *t, double secs, struct blk_out *o)
{
	int fd = open(B.img, O_RDWR | O_DIRECT | O_CLOEXEC);
	if (fd < 0)
		fd = open(B.img, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct io_uring ring;
	int err = io_uring_queue_init(64, &ring, 0);
	if (err) {
		close(fd);
		return err;
	}
	char *buf;
	if (posix_memalign((void **)&buf, 4096, (size_t)t->bs * t->qd)) {
		io_uring_queue_exit(&ring);
		close(fd);
		return -ENOMEM;
	}
	memset(buf, 0x5a, (size_t)t->bs * t->qd);
	unsigned freel[64], nfree = 0;
	uint64_t t_sub[64];
	for (unsigned i = 0; i < t->qd; i++)
		freel[nfree++] = i;
	struct offgen g = {
		.x = 88172645463325252ull, .blocks = B.size / t->bs, .bs = t->bs, .seq = t->seq};
	struct lat l = {0};
	uint64_t ops = 0, start = now_ns(), end = start + (uint64_t)(secs * 1e9);
	bool stop = false;
	unsigned inflight = 0;
	while (!stop || inflight) {
		while (!stop && nfree) {
			unsigned s = freel[--nfree];
			struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
			if (t->write)
				io_uring_prep_write(sqe, fd, buf + (size_t)s * t->bs, t->bs,
						    off_next(&g));
			else
				io_uring_prep_read(sqe, fd, buf + (size_t)s * t->bs, t->bs,
						   off_next(&g));
			io_uring_sqe_set_data64(sqe, s);
			t_sub[s] = now_ns();
			inflight++;
		}
		int r = io_uring_submit_and_wait(&ring, 1);
		if (r < 0 && r != -EINTR) {
			err = r;
			break;
		}
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;
		uint64_t now = now_ns();
		io_uring_for_each_cqe(&ring, head, cqe)
		{
			unsigned s = (unsigned)io_uring_cqe_get_data64(cqe);
			if (cqe->res != (int)t->bs && !err)
				err = cqe->res < 0 ? cqe->res : -EIO;
			if (t->qd == 1)
				lat_add(&l, now - t_sub[s]);
			freel[nfree++] = s;
			inflight--;
			ops++;
			seen++;
		}
		io_uring_cq_advance(&ring, seen);
		if (now >= end || err)
			stop = true;
	}
	run_done(t, ops, now_ns() - start, &l, o);
	free(buf);
	io_uring_queue_exit(&ring);
	close(fd);
	return err;
}

/* ---- zerolink block channel ---- */

struct zl_run {
	const struct blk_test *t;
	struct zl_blk_queue *q;
	struct offgen g;
	struct lat l;
	uint64_t ops;
};

static int zl_next(void *arg, struct zl_blk_req *r)
{
	struct zl_run *z = arg;
	*r = (struct zl_blk_req){
		.op = z->t->write ? ZL_BLK_OP_WRITE : ZL_BLK_OP_READ,
		.len = z->t->bs,
		.offset = off_next(&z->g),
		.user_data = now_ns(),
	};
	return z->t->write ? zl_blk_buf_alloc(z->q, z->t->bs, &r->buf) : 0;
}

static void zl_done(void *arg, const struct zl_blk_cpl *c, uint64_t now)
{
	struct zl_run *z = arg;
	if (z->t->qd == 1)
		lat_add(&z->l, now - c->user_data);
	z->ops++;
}

static int run_zl(struct zl_blk *dev, const struct blk_test *t, double secs, struct blk_out *o)
{
	struct zl_run z = {
		.t = t,
		.q = zl_blk_queue(dev, 0),
		.g = {.x = 88172645463325252ull,
		      .blocks = B.size / t->bs,
		      .bs = t->bs,
		      .seq = t->seq},
	};
	uint64_t start = now_ns();
	int err = blk_loop(z.q, t->qd, start + (uint64_t)(secs * 1e9), zl_next, zl_done, &z);
	run_done(t, z.ops, now_ns() - start, &z.l, o);
	return err;
}

/* ---- fio ---- */

/* The number after "key" : in text (from p on), or NAN. */
static double json_num(const char *p, const char *key)
{
	char k[64];
	snprintf(k, sizeof(k), "\"%s\" :", key);
	const char *q = p ? strstr(p, k) : NULL;
	if (!q)
		return NAN;
	char *e;
	double v = strtod(q + strlen(k), &e);
	return e == q + strlen(k) ? NAN : v;
}

static int run_fio(enum path p, const struct blk_test *t, double secs, struct blk_out *o)
{
	char bs[16], qd[16], rt[32], sz[32], uri[128], out[128];
	snprintf(bs, sizeof(bs), "%u", t->bs);
	snprintf(qd, sizeof(qd), "%u", t->qd);
	snprintf(rt, sizeof(rt), "%dms", (int)(secs * 1000));
	snprintf(sz, sizeof(sz), "%llu", (unsigned long long)B.size);
	snprintf(out, sizeof(out), "%s/fio.json", B.dir);
	int port = p == P_ZL_NBD ? B.nbd_port : p == P_NBDKIT ? B.nbdkit_port : B.qemu_port;
	snprintf(uri, sizeof(uri), "nbd://127.0.0.1:%d/%s", port,
		 p == P_ZL_NBD ? B.dev[D_PLAIN] : "");
	const char *rw =
		t->seq ? (t->write ? "write" : "read") : (t->write ? "randwrite" : "randread");
	char rwa[32], bsa[32], qda[32], rta[48], sza[48], uria[160], fna[128];
	snprintf(rwa, sizeof(rwa), "--rw=%s", rw);
	snprintf(bsa, sizeof(bsa), "--bs=%s", bs);
	snprintf(qda, sizeof(qda), "--iodepth=%s", qd);
	snprintf(rta, sizeof(rta), "--runtime=%s", rt);
	snprintf(sza, sizeof(sza), "--size=%s", sz);
	snprintf(uria, sizeof(uria), "--uri=%s", uri);
	snprintf(fna, sizeof(fna), "--filename=%s", B.img);
	const char *argv[24];
	int n = 0;
	argv[n++] = "fio";
	argv[n++] = "--name=blk";
	if (p == P_FIO_URING) {
		argv[n++] = "--ioengine=io_uring";
		argv[n++] = fna;
		argv[n++] = "--direct=1";
	} else {
		argv[n++] = "--ioengine=nbd";
		argv[n++] = uria;
	}
	argv[n++] = rwa;
	argv[n++] = bsa;
	argv[n++] = qda;
	argv[n++] = "--time_based";
	argv[n++] = rta;
	argv[n++] = sza;
	argv[n++] = "--norandommap";
	argv[n++] = "--randrepeat=0";
	argv[n++] = "--lat_percentiles=1";
	argv[n++] = "--output-format=json";
	argv[n] = NULL;
	int st = proc_run(argv, false, out, 30 + (int)secs);
	char *txt = slurp(out);
	if (st != 0 || !txt) {
		if (txt && strstr(txt, "error"))
			fprintf(stderr, "bench blk: fio (%s) failed; see %s\n", path_name[p], out);
		free(txt);
		return -EIO;
	}
	const char *sec = strstr(txt, t->write ? "\"write\" :" : "\"read\" :");
	o->iops = json_num(sec, "iops");
	o->gbps = o->iops * t->bs / 1e9;
	/* submission to completion, as ours (with io_uring on tmpfs the copy
	 * happens at submission: fio's clat would leave it out) */
	const char *lat = sec ? strstr(sec, "\"lat_ns\" :") : NULL;
	o->lat50 = json_num(lat, "50.000000") / 1e3;
	o->lat99 = json_num(lat, "99.000000") / 1e3;
	o->lat999 = json_num(lat, "99.900000") / 1e3;
	double errs = json_num(txt, "error");
	free(txt);
	return isnan(o->iops) || o->iops <= 0 || (!isnan(errs) && errs != 0) ? -EIO : 0;
}

/* ---- set-up ---- */

static int start_iohost(void)
{
	char prog[4096], sc[16], wk[16], d0[256], d1[320], d2[340], nbd[32];
	cli_iohost_path(prog, sizeof(prog));
	snprintf(B.control, sizeof(B.control), "%s/iohost.sock", B.dir);
	snprintf(sc, sizeof(sc), "%d", bo.cpu[0]);
	/* a worker on the client's core shares large requests' encryption;
	 * it sleeps when there is none */
	snprintf(wk, sizeof(wk), "%d", bo.cpu[1]);
	snprintf(B.dev[D_PLAIN], sizeof(B.dev[0]), "bench-%d", (int)getpid());
	snprintf(B.dev[D_CRYPT], sizeof(B.dev[0]), "bench-crypt-%d", (int)getpid());
	snprintf(B.dev[D_OSSL], sizeof(B.dev[0]), "bench-crypt-ossl-%d", (int)getpid());
	/* users=*: the NBD export over TCP, which carries no credentials */
	snprintf(d0, sizeof(d0), "%s:backend=file,path=%s,users=*", B.dev[D_PLAIN], B.img);
	/* the same, encrypted (AES-XTS-256), on an image of its own */
	snprintf(d1, sizeof(d1),
		 "%s:backend=file,path=%s,block_size=4096,modules=crypt,crypt_key=%s",
		 B.dev[D_CRYPT], B.cimg, B.ckey);
	/* and with OpenSSL's engine */
	snprintf(d2, sizeof(d2),
		 "%s:backend=file,path=%s,block_size=4096,modules=crypt,crypt_key=%s,"
		 "crypt_engine=openssl",
		 B.dev[D_OSSL], B.oimg, B.ckey);
	B.nbd_port = port_new();
	snprintf(nbd, sizeof(nbd), "127.0.0.1:%d", B.nbd_port);
	const char *argv[] = {prog, "--control", B.control, "--sidecores", sc, "--workers",
			      wk,   "--device",  d0,        "--device",    d1, "--device",
			      d2,   "--nbd",     nbd,       NULL};
	B.ioh = iohost_spawn(argv, B.control);
	return B.ioh ? 0 : -1;
}

/* The I/O host maps files in memory and touches their pages once, in the
 * background (first touches are slow on a VM with shadow page tables):
 * measure once that is done, as fio's ramp_time would, up to 2 minutes. */
static void wait_warm(void)
{
	for (int i = 0; i < 1200; i++) {
		char *txt = NULL;
		size_t n = 0;
		FILE *f = open_memstream(&txt, &n);
		if (!f)
			return;
		int e = cli_iohost_call(B.control, "ls", f);
		fclose(f);
		bool warming = e || !txt || strstr(txt, "(warming)");
		free(txt);
		if (!warming)
			return;
		if (i == 0)
			progress("blk: the I/O host warms its mappings");
		usleep(100000);
	}
	printf("blk: the I/O host's mappings are still warming; measuring anyway\n");
}

static pid_t start_nbd_server(enum path p, int *port)
{
	char ps[16];
	*port = port_new();
	snprintf(ps, sizeof(ps), "%d", *port);
	pid_t pid;
	if (p == P_NBDKIT) {
		const char *argv[] = {"nbdkit", "-f",   "-i",  "127.0.0.1", "-p",
				      ps,       "file", B.img, NULL};
		pid = proc_spawn(argv, false, 0, NULL);
	} else {
		const char *argv[] = {
			"qemu-nbd", "-f", "raw", "-b",           "127.0.0.1",      "-p",  ps,
			"-t",       "-e", "4",   "--cache=none", "--aio=io_uring", B.img, NULL};
		pid = proc_spawn(argv, false, 0, NULL);
	}
	if (!port_wait(*port, pid)) {
		proc_stop(pid);
		return 0;
	}
	return pid;
}

/* A file of size bytes in /dev/shm, written through, so that reads find
 * data, not holes. */
static int fill_file(const char *path, uint64_t size)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	size_t chunk = 1 << 20;
	char *b = malloc(chunk);
	if (!b) {
		close(fd);
		return -ENOMEM;
	}
	for (size_t i = 0; i < chunk; i++)
		b[i] = (char)(i * 131 + 7);
	int err = 0;
	for (uint64_t off = 0; off < size && !err; off += chunk)
		if (pwrite(fd, b, chunk, (off_t)off) != (ssize_t)chunk)
			err = -errno;
	free(b);
	close(fd);
	return err;
}

static int make_image(uint64_t size)
{
	snprintf(B.dir, sizeof(B.dir), "/tmp/zl-bench-blk.XXXXXX");
	if (!mkdtemp(B.dir))
		return -errno;
	snprintf(B.img, sizeof(B.img), "/dev/shm/zl-bench-blk-%d.img", (int)getpid());
	snprintf(B.cimg, sizeof(B.cimg), "/dev/shm/zl-bench-blk-%d.crypt.img", (int)getpid());
	snprintf(B.oimg, sizeof(B.oimg), "/dev/shm/zl-bench-blk-%d.ossl.img", (int)getpid());
	snprintf(B.ckey, sizeof(B.ckey), "%s/key", B.dir);
	B.size = size;
	/* a key of 64 bytes that are not all the same */
	unsigned char key[64];
	for (int i = 0; i < 64; i++)
		key[i] = (unsigned char)(i * 37 + 11);
	int fd = open(B.ckey, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, key, sizeof(key)) != (ssize_t)sizeof(key)) {
		if (fd >= 0)
			close(fd);
		return -EIO;
	}
	close(fd);
	int err = fill_file(B.img, size);
	if (!err)
		err = fill_file(B.cimg, size);
	return err ? err : fill_file(B.oimg, size);
}

static void teardown(void)
{
	for (int i = 0; i < NDEVS; i++)
		for (int j = 0; j < 2; j++)
			if (B.blk[i][j])
				zl_blk_close(B.blk[i][j]);
	if (B.ctx)
		zl_ctx_close(B.ctx);
	proc_stop(B.ioh);
	proc_stop(B.nbdkit);
	proc_stop(B.qemu);
	unlink(B.img);
	unlink(B.cimg);
	unlink(B.oimg);
	unlink(B.ckey);
	char p[160];
	snprintf(p, sizeof(p), "%s/fio.json", B.dir);
	unlink(p);
	rmdir(B.dir);
	memset(&B, 0, sizeof(B));
}

static bool path_on(enum path p)
{
	if (!path_wanted(path_name[p]))
		return false;
	switch (p) {
	case P_URING:
		return true;
	case P_FIO_URING:
		return B.have_fio;
	case P_ZL:
		return B.blk[D_PLAIN][0] != NULL;
	case P_ZL_CRYPT:
		return B.blk[D_CRYPT][0] != NULL;
	case P_ZL_CRYPT_OSSL:
		return B.blk[D_OSSL][1] != NULL;
	case P_ZL_NBD:
		return B.have_fio && B.ioh && B.nbd_port;
	case P_NBDKIT:
		return B.have_fio && B.nbdkit;
	case P_QEMU_NBD:
		return B.have_fio && B.qemu;
	default:
		return false;
	}
}

static int run_one(enum path p, const struct blk_test *t, double secs, struct blk_out *o)
{
	memset(o, 0, sizeof(*o));
	switch (p) {
	case P_URING:
		return run_uring(t, secs, o);
	case P_ZL:
	case P_ZL_CRYPT:
	case P_ZL_CRYPT_OSSL: {
		int dev = p == P_ZL ? D_PLAIN : p == P_ZL_CRYPT ? D_CRYPT : D_OSSL;
		struct zl_blk *b = B.blk[dev][t->bs >= (1u << 20)];
		return b ? run_zl(b, t, secs, o) : -ENODEV;
	}
	default:
		return run_fio(p, t, secs, o);
	}
}

#define RUNS_MAX 7

void bench_blk(void)
{
	uint64_t size = bo.quick ? 256ull << 20 : 1ull << 30;
	int err = make_image(size);
	if (err) {
		printf("blk: cannot make the image in /dev/shm: %s; skipped\n", strerror(-err));
		teardown();
		return;
	}
	B.have_fio = prog_have("fio");
	if (!B.have_fio)
		printf("blk: fio is not installed (apt-get install fio): the NBD paths are "
		       "skipped\n");
	struct zl_ctx_opts co = {.name = "bench-blk"};
	if ((err = zl_ctx_open(&B.ctx, &co))) {
		printf("blk: zl_ctx_open: %s; skipped\n", strerror(-err));
		teardown();
		return;
	}
	if (start_iohost())
		printf("blk: zerolink-iohost did not start; the zerolink paths are skipped\n");
	static const enum path dev_path[NDEVS] = {P_ZL, P_ZL_CRYPT, P_ZL_CRYPT_OSSL};
	for (int i = 0; i < NDEVS && B.ioh; i++)
		for (int big = 0; big < 2; big++) {
			struct zl_blk_opts bopt = {.queues = 1,
						   .depth = 32,
						   .spin_ns = big ? ZL_SPIN_DEFAULT : 50000000};
			if ((i && !path_wanted(path_name[dev_path[i]])) || (i == D_OSSL && !big))
				continue;
			if ((err = zl_blk_open(B.ctx, B.dev[i], &bopt, &B.blk[i][big])))
				printf("blk: zl_blk_open (%s): %s\n", B.dev[i], strerror(-err));
		}
	if (B.have_fio && prog_have("nbdkit") && path_wanted("nbdkit"))
		B.nbdkit = start_nbd_server(P_NBDKIT, &B.nbdkit_port);
	if (B.ioh)
		wait_warm();
	if (B.have_fio && prog_have("qemu-nbd") && path_wanted("qemu-nbd"))
		B.qemu = start_nbd_server(P_QEMU_NBD, &B.qemu_port);
	pin_to(1);
	int runs = bo.quick ? 1 : 5;
	double secs = bo.quick ? 0.3 : 1.0;
	/* ZEROLINK_BENCH_BLK_TESTS=randread-qd32,...: only these tests (for
	 * profiling one of them) */
	const char *only = getenv("ZEROLINK_BENCH_BLK_TESTS");
	for (size_t ti = 0; ti < NTESTS; ti++) {
		const struct blk_test *t = &tests[ti];
		if (only && !strstr(only, t->name))
			continue;
		struct blk_out o[NPATHS][RUNS_MAX];
		int ok[NPATHS] = {0};
		for (int r = 0; r < runs; r++) {
			for (int p = 0; p < NPATHS; p++) {
				if (!path_on((enum path)p) ||
				    (p == P_ZL_CRYPT_OSSL && t->bs < (1u << 20)))
					continue;
				progress("blk %s, %s, run %d/%d", t->name, path_name[p], r + 1,
					 runs);
				int e = run_one((enum path)p, t, secs, &o[p][ok[p]]);
				if (e)
					fprintf(stderr, "\nbench blk: %s %s: %s\n", path_name[p],
						t->name, strerror(-e));
				else
					ok[p]++;
			}
		}
		char test[24];
		snprintf(test, sizeof(test), "blk-%s", t->name);
		for (int p = 0; p < NPATHS; p++) {
			if (!ok[p])
				continue;
			double v[RUNS_MAX], a[RUNS_MAX], b[RUNS_MAX], c[RUNS_MAX];
			for (int i = 0; i < ok[p]; i++)
				v[i] = o[p][i].iops / 1e3;
			result_add(path_name[p], test, t->bs, "iops", "kIOPS", median_d(v, ok[p]),
				   0, 0);
			for (int i = 0; i < ok[p]; i++)
				v[i] = o[p][i].gbps;
			result_add(path_name[p], test, t->bs, "throughput", "GB/s",
				   median_d(v, ok[p]), 0, 0);
			if (t->qd == 1) {
				for (int i = 0; i < ok[p]; i++) {
					a[i] = o[p][i].lat50;
					b[i] = o[p][i].lat99;
					c[i] = o[p][i].lat999;
				}
				result_add(path_name[p], test, t->bs, "latency", "us",
					   median_d(a, ok[p]), median_d(b, ok[p]),
					   median_d(c, ok[p]));
			}
		}
	}
	teardown();
}

/* ---- report ---- */

static double bval(const char *path, const char *test, const char *metric)
{
	char tn[32];
	snprintf(tn, sizeof(tn), "blk-%s", test);
	for (size_t i = 0; i < result_count(); i++) {
		const struct result *r = result_at(i);
		if (!strcmp(r->path, path) && !strcmp(r->test, tn) && !strcmp(r->metric, metric))
			return r->median;
	}
	return NAN;
}

void report_blk(void)
{
	bool any = false;
	for (size_t i = 0; i < result_count() && !any; i++)
		any = strncmp(result_at(i)->test, "blk-", 4) == 0;
	if (!any)
		return;
	printf("\nblock I/O on a RAM-backed file (k IOPS; GB/s for 1 MiB; us for QD1 latency)\n");
	printf("  %-22s", "");
	for (int p = 0; p < NPATHS; p++)
		printf(" %13s", path_name[p]);
	printf("\n");
	for (size_t ti = 0; ti < NTESTS; ti++) {
		const struct blk_test *t = &tests[ti];
		const char *metric = t->bs >= (1u << 20) ? "throughput" : "iops";
		printf("  %-22s", t->name);
		for (int p = 0; p < NPATHS; p++) {
			double v = bval(path_name[p], t->name, metric);
			if (isnan(v))
				printf(" %13s", "-");
			else
				printf(" %13.2f", v);
		}
		printf("\n");
		if (t->qd == 1) {
			printf("  %-22s", "  latency p50");
			for (int p = 0; p < NPATHS; p++) {
				double v = bval(path_name[p], t->name, "latency");
				if (isnan(v))
					printf(" %13s", "-");
				else
					printf(" %13.2f", v);
			}
			printf("\n");
		}
	}
	double plain_r = bval("zerolink", "seqread-1m", "throughput"),
	       plain_w = bval("zerolink", "seqwrite-1m", "throughput");
	if (!isnan(bval("crypt-openssl", "seqread-1m", "throughput")))
		printf("  AES-XTS cost at 1 MiB (1 - crypt / plain): default engine read %.0f%%, "
		       "write %.0f%%; OpenSSL's read %.0f%%, write %.0f%%\n",
		       100 * (1 - bval("zerolink-crypt", "seqread-1m", "throughput") / plain_r),
		       100 * (1 - bval("zerolink-crypt", "seqwrite-1m", "throughput") / plain_w),
		       100 * (1 - bval("crypt-openssl", "seqread-1m", "throughput") / plain_r),
		       100 * (1 - bval("crypt-openssl", "seqwrite-1m", "throughput") / plain_w));
}

/* The better (higher IOPS) of the two NBD servers people use today. */
static double nbd_best(const char *test)
{
	double a = bval("nbdkit", test, "iops"), b = bval("qemu-nbd", test, "iops");
	if (isnan(a))
		return b;
	if (isnan(b))
		return a;
	return a > b ? a : b;
}

void ratios_blk(void (*target)(const char *, double, double, bool))
{
	if (isnan(bval("uring", "randread-qd1", "iops")))
		return;
	target("blk 4K QD1 read latency, zerolink / local io_uring",
	       bval("zerolink", "randread-qd1", "latency") /
		       bval("uring", "randread-qd1", "latency"),
	       1.5, true);
	target("blk 4K QD32 read IOPS, zerolink / local io_uring",
	       bval("zerolink", "randread-qd32", "iops") / bval("uring", "randread-qd32", "iops"),
	       0.8, false);
	target("blk 4K QD32 write IOPS, zerolink / local io_uring",
	       bval("zerolink", "randwrite-qd32", "iops") / bval("uring", "randwrite-qd32", "iops"),
	       0.8, false);
	target("blk 4K QD32 read IOPS, zerolink / best NBD (TCP)",
	       bval("zerolink", "randread-qd32", "iops") / nbd_best("randread-qd32"), 3, false);
	target("blk 4K QD32 write IOPS, zerolink / best NBD (TCP)",
	       bval("zerolink", "randwrite-qd32", "iops") / nbd_best("randwrite-qd32"), 3, false);
	target("blk 1M seq read, zerolink / local io_uring",
	       bval("zerolink", "seqread-1m", "throughput") /
		       bval("uring", "seqread-1m", "throughput"),
	       0.8, false);
	target("blk 1M seq write, zerolink / local io_uring",
	       bval("zerolink", "seqwrite-1m", "throughput") /
		       bval("uring", "seqwrite-1m", "throughput"),
	       0.8, false);
	target("blk 1M seq read, AES-XTS cost (1 - crypt / plain)",
	       1 - bval("zerolink-crypt", "seqread-1m", "throughput") /
			       bval("zerolink", "seqread-1m", "throughput"),
	       0.3, true);
	target("blk 1M seq write, AES-XTS cost (1 - crypt / plain)",
	       1 - bval("zerolink-crypt", "seqwrite-1m", "throughput") /
			       bval("zerolink", "seqwrite-1m", "throughput"),
	       0.3, true);
}
