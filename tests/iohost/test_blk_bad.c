/* SPDX-License-Identifier: MIT */
/*
 * The I/O host under bad input and failures: malformed hellos and requests
 * get their status (the queue and everyone else go on); a client that dies
 * with requests in flight and buffers on loan releases its queue; a client
 * that does not read its replies stalls only itself; a full backend answers
 * -ENOSPC; a user the device does not admit gets -EACCES.
 *
 * Runs its own broker (public, so that another user can reach it) and its
 * own I/O hosts.
 */
#include <grp.h>

#include "ioh_test.h"

static struct zl_ctx *ctx;
static struct ioh_proc ioh;

static struct zl_chan *raw_open(const char *dev)
{
	char svc[64];
	snprintf(svc, sizeof(svc), "blk.%s", dev);
	struct zl_chan *ch;
	struct zl_chan_opts o = {.mode = ZL_MODE_SHARED};
	CHECK_EQ(zl_connect(ctx, svc, &o, &ch), 0);
	return ch;
}

static int recv_info(struct zl_chan *ch, struct zl_blk_info_msg *in)
{
	int r = zl_chan_recv(ch, in, sizeof(*in), 0);
	if (r < 0)
		return r;
	CHECK_EQ(r, sizeof(*in));
	CHECK_EQ(in->magic, ZL_BLK_MAGIC);
	CHECK_EQ(in->op, ZL_BLK_OP_INFO);
	return in->status;
}

static struct zl_chan *raw_queue(const char *dev, uint32_t depth)
{
	struct zl_chan *ch = raw_open(dev);
	struct zl_blk_hello h = {.magic = ZL_BLK_MAGIC,
				 .op = ZL_BLK_OP_HELLO,
				 .version = ZL_BLK_VERSION,
				 .depth = depth,
				 .cookie = 42};
	CHECK_EQ(zl_chan_send(ch, &h, sizeof(h), 0), sizeof(h));
	struct zl_blk_info_msg in;
	CHECK_EQ(recv_info(ch, &in), 0);
	CHECK_EQ(in.cookie, 42);
	CHECK_EQ(in.depth, depth);
	return ch;
}

/* One request on a raw queue; returns the reply's status (and checks the id). */
static int raw_req(struct zl_chan *ch, const struct zl_blk_req_hdr *h, struct zl_pool *pool,
		   uint32_t data)
{
	int r;
	if (data) {
		struct zl_buf b;
		CHECK_EQ(zl_buf_alloc(pool, data, &b), 0);
		memset(b.data, 0xab, data);
		r = zl_chan_send_hdr_bufs(ch, h, sizeof(*h), &b, &data, 1, 0);
	} else {
		r = zl_chan_send(ch, h, sizeof(*h), 0);
	}
	CHECK(r > 0);
	struct zl_msg m;
	CHECK_EQ(zl_chan_recv_msg(ch, &m, 0), 1);
	struct zl_blk_rep_hdr rep;
	CHECK_EQ(m.seg[0].len, sizeof(rep));
	memcpy(&rep, m.seg[0].base, sizeof(rep));
	CHECK(rep.id == h->id);
	CHECK_EQ(rep.op, h->op);
	if (rep.status == 0 && h->op == ZL_BLK_OP_READ)
		CHECK_EQ(m.len, sizeof(rep) + h->len);
	else
		CHECK_EQ(m.len, sizeof(rep));
	zl_msg_release(&m);
	return rep.status;
}

static void bad_hellos(const char *dev)
{
	struct zl_blk_info_msg in;
	/* wrong magic */
	struct zl_chan *ch = raw_open(dev);
	struct zl_blk_hello h = {
		.magic = 1, .op = ZL_BLK_OP_HELLO, .version = ZL_BLK_VERSION, .depth = 8};
	CHECK_EQ(zl_chan_send(ch, &h, sizeof(h), 0), sizeof(h));
	CHECK_EQ(recv_info(ch, &in), ZL_BLK_S_EINVAL);
	char b[64];
	CHECK(zl_chan_recv(ch, b, sizeof(b), 0) <= 0); /* and the queue is closed */
	zl_chan_close(ch);
	/* a future version */
	ch = raw_open(dev);
	h.magic = ZL_BLK_MAGIC;
	h.version = 9;
	CHECK_EQ(zl_chan_send(ch, &h, sizeof(h), 0), sizeof(h));
	CHECK_EQ(recv_info(ch, &in), ZL_BLK_S_EOPNOTSUPP);
	zl_chan_close(ch);
	/* too short */
	ch = raw_open(dev);
	CHECK_EQ(zl_chan_send(ch, "hello", 5, 0), 5);
	CHECK_EQ(recv_info(ch, &in), ZL_BLK_S_EINVAL);
	zl_chan_close(ch);
	/* depth 0 */
	ch = raw_open(dev);
	h.version = ZL_BLK_VERSION;
	h.depth = 0;
	CHECK_EQ(zl_chan_send(ch, &h, sizeof(h), 0), sizeof(h));
	CHECK_EQ(recv_info(ch, &in), ZL_BLK_S_EINVAL);
	zl_chan_close(ch);
}

static void bad_requests(const char *dev, struct zl_pool *pool)
{
	struct zl_chan *ch = raw_queue(dev, 8);
	const uint64_t size = 64ull << 20;
	struct {
		struct zl_blk_req_hdr h;
		uint32_t data;
		int want;
	} cases[] = {
		{{.op = 99, .id = 1}, 0, ZL_BLK_S_EINVAL},
		{{.op = 0, .id = 2, .len = 512}, 0, ZL_BLK_S_EINVAL},
		{{.op = ZL_BLK_OP_READ, .id = 3, .len = 512, .offset = 100}, 0, ZL_BLK_S_EINVAL},
		{{.op = ZL_BLK_OP_READ, .id = 4, .len = 0}, 0, ZL_BLK_S_EINVAL},
		{{.op = ZL_BLK_OP_READ, .id = 5, .len = 100}, 0, ZL_BLK_S_EINVAL},
		{{.op = ZL_BLK_OP_READ, .id = 6, .len = 2u << 20}, 0, ZL_BLK_S_EINVAL},
		{{.op = ZL_BLK_OP_READ, .id = 7, .len = 4096, .offset = size}, 0, ZL_BLK_S_ERANGE},
		{{.op = ZL_BLK_OP_READ, .id = 8, .len = 4096, .offset = size - 512},
		 0,
		 ZL_BLK_S_ERANGE},
		{{.op = ZL_BLK_OP_READ, .id = 9, .len = 4096, .offset = ~0ull - 511},
		 0,
		 ZL_BLK_S_ERANGE},
		{{.op = ZL_BLK_OP_READ, .id = 10, .len = 4096, .flags = ZL_BLK_F_FUA},
		 0,
		 ZL_BLK_S_EINVAL},
		{{.op = ZL_BLK_OP_READ, .id = 11, .len = 4096, .rsvd0 = 1}, 0, ZL_BLK_S_EINVAL},
		{{.op = ZL_BLK_OP_READ, .id = 12, .len = 4096}, 4096, ZL_BLK_S_EINVAL},
		{{.op = ZL_BLK_OP_WRITE, .id = 13, .len = 4096}, 0, ZL_BLK_S_EINVAL},
		{{.op = ZL_BLK_OP_WRITE, .id = 14, .len = 8192}, 4096, ZL_BLK_S_EINVAL},
		{{.op = ZL_BLK_OP_WRITE, .id = 15, .len = 4096, .flags = 0x80},
		 4096,
		 ZL_BLK_S_EINVAL},
		{{.op = ZL_BLK_OP_WRITE, .id = 16, .len = 4096, .offset = size},
		 4096,
		 ZL_BLK_S_ERANGE},
		{{.op = ZL_BLK_OP_FLUSH, .id = 17, .len = 512}, 0, ZL_BLK_S_EINVAL},
		{{.op = ZL_BLK_OP_FLUSH, .id = 18}, 4096, ZL_BLK_S_EINVAL},
		{{.op = ZL_BLK_OP_DISCARD, .id = 19, .len = 512, .flags = ZL_BLK_F_NOUNMAP},
		 0,
		 ZL_BLK_S_EINVAL},
		{{.op = ZL_BLK_OP_WRITE_ZEROES, .id = 20, .len = 512, .offset = size},
		 0,
		 ZL_BLK_S_ERANGE},
		/* and good ones in between, on the same queue */
		{{.op = ZL_BLK_OP_WRITE, .id = 21, .len = 4096, .offset = 8192}, 4096, 0},
		{{.op = ZL_BLK_OP_READ, .id = 22, .len = 4096, .offset = 8192}, 0, 0},
		{{.op = ZL_BLK_OP_FLUSH, .id = 23}, 0, 0},
		{{.op = ZL_BLK_OP_READ, .id = 24, .len = 4096, .offset = size - 4096}, 0, 0},
	};
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int st = raw_req(ch, &cases[i].h, pool, cases[i].data);
		if (st != cases[i].want) {
			fprintf(stderr, "case %u (id %llu): status %d, expected %d\n", i,
				(unsigned long long)cases[i].h.id, st, cases[i].want);
			exit(1);
		}
	}
	/* a message that is not even a request header breaks this queue only */
	struct zl_blk_req_hdr ok = {.op = ZL_BLK_OP_READ, .id = 30, .len = 512};
	CHECK_EQ(zl_chan_send(ch, "junk", 4, 0), 4);
	char b[64];
	int r = zl_chan_recv(ch, b, sizeof(b), 0);
	CHECK(r == 0 || r == -EPIPE || r == -ECONNRESET);
	zl_chan_close(ch);
	ch = raw_queue(dev, 8);
	CHECK_EQ(raw_req(ch, &ok, pool, 0), 0);
	zl_chan_close(ch);
}

/* A child opens the device, leaves requests in flight and views held, and
 * dies. Its queue goes away; ours goes on. */
static void client_death(const char *dev, struct zl_blk_queue *mine)
{
	for (int round = 0; round < 4; round++) {
		int pfd[2];
		CHECK_EQ(pipe(pfd), 0);
		pid_t pid = fork();
		if (pid == 0) {
			struct zl_ctx *c = test_ctx("blk-victim");
			struct zl_blk *d;
			struct zl_blk_opts o = {.depth = 64};
			if (zl_blk_open(c, dev, &o, &d))
				_exit(2);
			struct zl_blk_queue *q = zl_blk_queue(d, 0);
			struct zl_blk_req rq[64];
			for (unsigned i = 0; i < 64; i++) {
				rq[i] = (struct zl_blk_req){.len = 65536,
							    .offset = (uint64_t)i * 65536};
				if (i % 2) {
					rq[i].op = ZL_BLK_OP_WRITE;
					if (zl_blk_buf_alloc(q, 65536, &rq[i].buf))
						_exit(3);
				} else {
					rq[i].op = ZL_BLK_OP_READ; /* views, never released */
				}
			}
			unsigned sent = 0;
			while (sent < 64) {
				int n = zl_blk_submit(q, rq + sent, 64 - sent, 0);
				if (n <= 0)
					_exit(4);
				sent += (unsigned)n;
			}
			/* some done, some maybe not; views held */
			struct zl_blk_cpl cp[8];
			zl_blk_reap(q, cp, 8, 0);
			if (write(pfd[1], "x", 1) != 1)
				_exit(5);
			if (round % 2)
				raise(SIGKILL);
			_exit(0); /* without closing anything */
		}
		close(pfd[1]);
		char x;
		CHECK_EQ(read(pfd[0], &x, 1), 1);
		close(pfd[0]);
		int st;
		CHECK_EQ(waitpid(pid, &st, 0), pid);
		/* our queue works meanwhile */
		char b[4096];
		CHECK_EQ(zl_blk_read(mine, b, 4096, 0), 4096);
		/* the victim's queue is gone within a few seconds */
		bool gone = false;
		for (int i = 0; i < 500 && !gone; i++) {
			char *a = ioh_ok(&ioh, "prom");
			char key[128];
			snprintf(key, sizeof(key), "zerolink_iohost_queues{device=\"%s\"} 1\n",
				 dev);
			gone = strstr(a, key) != NULL;
			free(a);
			if (!gone)
				usleep(10000);
		}
		CHECK(gone);
	}
}

/* A client that neither reads its replies nor gives back read buffers
 * stalls its own queue only. */
static void lazy_client(const char *dev, struct zl_blk_queue *mine)
{
	struct zl_chan *ch = raw_queue(dev, 8);
	for (unsigned i = 0; i < 40; i++) {
		struct zl_blk_req_hdr h = {
			.op = ZL_BLK_OP_READ, .id = 100 + i, .len = 4096, .offset = 4096ull * i};
		CHECK_EQ(zl_chan_send(ch, &h, sizeof(h), 0), sizeof(h));
	}
	usleep(50000);
	/* everyone else goes on */
	char b[4096];
	for (int i = 0; i < 100; i++)
		CHECK_EQ(zl_blk_read(mine, b, 4096, 4096), 4096);
	/* the replies that came, held (their buffers on loan): the host
	 * lends this queue's pool at most, then waits */
	struct zl_msg m[40];
	unsigned got = 0;
	for (;;) {
		int n = zl_chan_recv_burst(ch, m + got, 40 - got, ZL_DONTWAIT);
		if (n <= 0)
			break;
		got += (unsigned)n;
	}
	CHECK(got > 0 && got < 40);
	/* give them back: the rest comes */
	for (unsigned i = 0; i < got; i++)
		zl_msg_release(&m[i]);
	unsigned total = got;
	while (total < 40) {
		struct zl_msg one;
		CHECK_EQ(zl_chan_recv_msg(ch, &one, 0), 1);
		struct zl_blk_rep_hdr rep;
		memcpy(&rep, one.seg[0].base, sizeof(rep));
		CHECK_EQ(rep.status, 0);
		zl_msg_release(&one);
		total++;
	}
	zl_chan_close(ch);
}

/* crypt: the same through the encryption module, which writes a file in
 * memory through its mapping (a full tmpfs faults there: SIGBUS, turned
 * into the same status) */
static void full_backend(bool crypt)
{
	/* a sparse 4 MiB file on a 1 MiB tmpfs that only the I/O host sees:
	 * writes beyond what fits fail as on any full file system */
	if (geteuid() != 0) {
		fprintf(stderr, "full backend: not root, no tmpfs of our own; skipped\n");
		return;
	}
	char dir[96], spec[320], key[96];
	snprintf(dir, sizeof(dir), "/tmp/zl-test-blk-full-%d", (int)getpid());
	snprintf(key, sizeof(key), "/tmp/zl-test-blk-full-%d.key", (int)getpid());
	CHECK(mkdir(dir, 0700) == 0 || errno == EEXIST);
	const char *dev = ioh_dev(crypt ? "fullc" : "full");
	if (crypt) {
		unsigned char k[64];
		fill_pattern(k, sizeof(k), 5);
		int fd = open(key, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		CHECK(fd >= 0 && write(fd, k, sizeof(k)) == (ssize_t)sizeof(k));
		close(fd);
		snprintf(spec, sizeof(spec),
			 "%s:backend=file,path=%s/img,size=4M,direct=no,modules=crypt,crypt_key=%s",
			 dev, dir, key);
	} else {
		snprintf(spec, sizeof(spec), "%s:backend=file,path=%s/img,size=4M,direct=no", dev,
			 dir);
	}
	struct ioh_proc p2 = {.tmpfs = dir, .tmpfs_opts = "size=1m"};
	const char *args[] = {"--sidecores", "1", "--workers", "0", "--device", spec, NULL};
	ioh_start(&p2, args);
	struct zl_blk *d;
	CHECK_EQ(zl_blk_open(ctx, dev, NULL, &d), 0);
	struct zl_blk_queue *q = zl_blk_queue(d, 0);
	char b[65536];
	memset(b, 7, sizeof(b));
	/* fill it: the first failure is -ENOSPC, after about 1 MiB */
	int full = -1;
	for (int i = 0; i < 64 && full < 0; i++) {
		int r = zl_blk_write(q, b, sizeof(b), (uint64_t)i * sizeof(b), 0);
		if (r != (int)sizeof(b)) {
			CHECK_EQ(r, -ENOSPC);
			full = i;
		}
	}
	CHECK(full >= 8 && full <= 16);
	CHECK_EQ(zl_blk_write(q, b, sizeof(b), 3 << 20, ZL_BLK_F_FUA), -ENOSPC);
	/* and the queue still works: what was written reads back */
	memset(b, 0, sizeof(b));
	CHECK_EQ(zl_blk_read(q, b, sizeof(b), 0), (int)sizeof(b));
	CHECK_EQ(b[100], 7);
	CHECK_EQ(zl_blk_flush(q), 0);
	if (crypt) { /* no discard through encryption */
		CHECK_EQ(zl_blk_discard(q, 0, 4 * sizeof(b)), -EOPNOTSUPP);
		zl_blk_close(d);
		ioh_stop(&p2);
		rmdir(dir);
		unlink(key);
		return;
	}
	/* room made by a discard is usable again */
	CHECK_EQ(zl_blk_discard(q, 0, 4 * sizeof(b)), 0);
	memset(b, 9, sizeof(b));
	CHECK_EQ(zl_blk_write(q, b, sizeof(b), 3 << 20, ZL_BLK_F_FUA), (int)sizeof(b));
	CHECK_EQ(zl_blk_read(q, b, sizeof(b), 0), (int)sizeof(b));
	CHECK_EQ(b[100], 0);
	zl_blk_close(d);
	ioh_stop(&p2);
	rmdir(dir);
}

/* zerolink-iohost run with args (NULL-terminated): its exit status, and
 * what it said on stderr in err. */
static int run_ioh(const char *const *args, char *err, size_t errlen)
{
	int pfd[2];
	CHECK(pipe(pfd) == 0);
	pid_t pid = fork();
	if (pid == 0) {
		dup2(pfd[1], 2);
		alarm(20); /* one that starts after all is killed, not waited for */
		const char *argv[16] = {getenv("ZEROLINK_IOHOST_BIN")};
		for (int i = 0; args[i] && i < 14; i++)
			argv[i + 1] = args[i];
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(pfd[1]);
	size_t n = 0;
	ssize_t k;
	while (n + 1 < errlen && (k = read(pfd[0], err + n, errlen - 1 - n)) > 0)
		n += (size_t)k;
	err[n] = 0;
	close(pfd[0]);
	int st;
	CHECK_EQ(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Workers, given on the command line or in [iohost]: a bad list is
 * refused before anything starts; a good one is used (ls). */
static void worker_args(void)
{
	char err[512], conf[96], line[128];
	static const char *const bad[] = {"x", "3-1", "1-", "99999"};
	for (unsigned i = 0; i < 4; i++) {
		const char *args[] = {"--workers", bad[i], NULL};
		CHECK_EQ(run_ioh(args, err, sizeof(err)), 2);
		snprintf(line, sizeof(line), "bad --workers '%s'", bad[i]);
		if (!strstr(err, line)) {
			fprintf(stderr, "--workers %s: said '%s'\n", bad[i], err);
			exit(1);
		}
	}
	snprintf(conf, sizeof(conf), "/tmp/zl-test-blk-conf-%d", (int)getpid());
	FILE *f = fopen(conf, "w");
	CHECK(f);
	fprintf(f, "[iohost]\nworkers = nine\n");
	fclose(f);
	const char *args[] = {"-c", conf, NULL};
	CHECK_EQ(run_ioh(args, err, sizeof(err)), 2);
	CHECK(strstr(err, ":2: bad value for workers: 'nine'"));
	f = fopen(conf, "w");
	CHECK(f);
	fprintf(f, "[iohost]\nsidecores = 1\nworkers = 0-1\n");
	fclose(f);
	struct ioh_proc p = {0};
	ioh_start(&p, args);
	char *ls = ioh_ok(&p, "ls");
	CHECK(strstr(ls, "workers\n  2 (cpus 0,1); 0 requests shared"));
	free(ls);
	ioh_stop(&p);
	unlink(conf);
}

static int try_as(uid_t uid, gid_t gid, const char *dev)
{
	pid_t pid = fork();
	if (pid == 0) {
		if (setgroups(0, NULL) || setgid(gid) || setuid(uid))
			_exit(100);
		struct zl_ctx *c;
		struct zl_ctx_opts o = {.name = "blk-acl", .flags = ZL_CTX_NO_SPAWN};
		if (zl_ctx_open(&c, &o))
			_exit(101);
		struct zl_blk *d;
		int err = zl_blk_open(c, dev, NULL, &d);
		if (err == 0)
			zl_blk_close(d);
		_exit(-err);
	}
	return wait_status(pid);
}

int main(void)
{
	const char *brokerd = getenv("ZEROLINKD");
	if (!brokerd)
		SKIP("ZEROLINKD not set");
	/* our own public broker, so that another user can reach it */
	static char sock[96];
	snprintf(sock, sizeof(sock), "/tmp/zl-blkbad-%d.sock", (int)getpid());
	pid_t bpid = fork();
	if (bpid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execl(brokerd, "zerolinkd", "--socket", sock, "--public", "--idle-exit", "0",
		      (char *)NULL);
		_exit(127);
	}
	setenv("ZEROLINK_BROKER", sock, 1);
	struct zl_ctx_opts co = {.name = "test_blk_bad", .flags = ZL_CTX_NO_SPAWN};
	int err = -1;
	for (int i = 0; i < 200 && err; i++)
		if ((err = zl_ctx_open(&ctx, &co)))
			usleep(10000);
	CHECK_EQ(err, 0);

	char spec[2][160];
	const char *dev = ioh_dev("bad"), *pub = ioh_dev("pub");
	snprintf(spec[0], sizeof(spec[0]), "%s:backend=ram,size=64M", dev);
	snprintf(spec[1], sizeof(spec[1]), "%s:backend=ram,size=64M,users=65534", pub);
	const char *args[] = {"--sidecores", "1", "--device", spec[0], "--device", spec[1], NULL};
	ioh_start(&ioh, args);

	struct zl_pool *pool;
	CHECK_EQ(zl_pool_create(ctx, NULL, &pool), 0);
	struct zl_blk *good;
	CHECK_EQ(zl_blk_open(ctx, dev, NULL, &good), 0);
	struct zl_blk_queue *mine = zl_blk_queue(good, 0);

	bad_hellos(dev);
	bad_requests(dev, pool);
	client_death(dev, mine);
	lazy_client(dev, mine);
	full_backend(false);
	full_backend(true);
	worker_args();
	if (geteuid() == 0) {
		/* root and the I/O host's user are admitted; others if listed */
		CHECK_EQ(try_as(65534, 65534, dev), EACCES);
		CHECK_EQ(try_as(65534, 65534, pub), 0);
		CHECK_EQ(try_as(1234, 1234, pub), EACCES);
	}
	/* after all that, the device and the host are fine */
	char b[4096];
	CHECK_EQ(zl_blk_read(mine, b, 4096, 0), 4096);
	zl_blk_close(good);
	zl_pool_destroy(pool);
	ioh_stop(&ioh);
	zl_ctx_close(ctx);
	kill(bpid, SIGTERM);
	waitpid(bpid, NULL, 0);
	unlink(sock);
	printf("ok\n");
	return 0;
}
