/* SPDX-License-Identifier: MIT */
/*
 * kill -9 of the I/O host under writes. A client keeps 16 zero-copy writes
 * of 4 KiB in flight, each block written once with data of its own, and
 * flushes after every 64 acknowledged writes; once it has flushed a few
 * hundred, a killer process sends SIGKILL to the I/O host at a random
 * moment. The client must see the crash as an error (-ECONNRESET or
 * -EPIPE), not hang; the I/O host is started again on the same file, and
 * every block acknowledged before an acknowledged flush must read back
 * whole. Four rounds, each on a fresh part of the device, with the killer's
 * delay varied.
 */
#include <sys/wait.h>

#include "ioh_test.h"

#define BS 4096u
#define ROUND_BLOCKS 16384u /* 64 MiB per round */
#define ROUNDS 4
#define DEPTH 16u

static struct zl_ctx *ctx;

static uint64_t seed_of(int round, uint64_t i)
{
	return ((uint64_t)round << 32 | i) + 1;
}

/* Write until the I/O host dies; returns how many blocks from the round's
 * start are covered by an acknowledged flush. */
static uint64_t write_until_crash(struct zl_blk_queue *q, int round, pid_t ioh_pid,
				  unsigned delay_us)
{
	uint64_t base = (uint64_t)round * ROUND_BLOCKS, next = 0, acked = 0, flushed = 0;
	unsigned inflight = 0;
	pid_t killer = 0;
	int err = 0;
	while (!err) {
		while (inflight < DEPTH && next < ROUND_BLOCKS) {
			struct zl_blk_req r = {.op = ZL_BLK_OP_WRITE,
					       .len = BS,
					       .offset = (base + next) * BS,
					       .user_data = next};
			if ((err = zl_blk_buf_alloc(q, BS, &r.buf)))
				break;
			fill_pattern(r.buf.data, BS, seed_of(round, next));
			int n = zl_blk_submit(q, &r, 1, 0);
			if (n != 1) {
				zl_buf_free(&r.buf);
				err = n < 0 ? n : -EIO;
				break;
			}
			next++;
			inflight++;
		}
		if (err == -ENOBUFS)
			err = 0; /* buffers come back with the completions */
		if (err)
			break;
		if (inflight) {
			struct zl_blk_cpl c[DEPTH];
			int n = zl_blk_reap(q, c, DEPTH, 0);
			if (n < 0) {
				err = n;
				break;
			}
			for (int i = 0; i < n; i++) {
				CHECK_EQ(c[i].status, 0);
				acked++;
			}
			inflight -= (unsigned)n;
		}
		if (inflight == 0 && acked - flushed >= 64) {
			int r = zl_blk_flush(q);
			if (r) {
				err = r;
				break;
			}
			flushed = acked; /* every block below it was acknowledged */
		}
		if (!killer && flushed >= 256) {
			killer = fork();
			CHECK(killer >= 0);
			if (killer == 0) {
				usleep(delay_us);
				kill(ioh_pid, SIGKILL);
				_exit(0);
			}
		}
		if (next == ROUND_BLOCKS && inflight == 0) {
			/* all written before the killer struck: flush until it does */
			CHECK(killer > 0);
			int r = zl_blk_flush(q);
			if (r)
				err = r;
			else
				flushed = acked;
		}
	}
	if (err != -ECONNRESET && err != -EPIPE) {
		fprintf(stderr, "round %d: the crash showed as %d (%s)\n", round, err,
			strerror(-err));
		exit(1);
	}
	CHECK(killer > 0);
	waitpid(killer, NULL, 0);
	return flushed;
}

int main(void)
{
	struct zl_ctx_opts co = {.name = "test_blk_crash"};
	CHECK_EQ(zl_ctx_open(&ctx, &co), 0);
	/* a real file system, not tmpfs: what fdatasync makes durable */
	char img[96], spec[192];
	snprintf(img, sizeof(img), "/var/tmp/zl-test-crash-%d.img", (int)getpid());
	unlink(img);
	const char *dev = ioh_dev("crash");
	snprintf(spec, sizeof(spec), "%s:backend=file,path=%s,size=%u", dev, img,
		 ROUNDS * ROUND_BLOCKS * BS);
	const char *args[] = {"--sidecores", "0", "--device", spec, NULL};
	static const unsigned delays[ROUNDS] = {0, 700, 3000, 15000};
	unsigned char *b = malloc(BS), *want = malloc(BS);
	for (int round = 0; round < ROUNDS; round++) {
		struct ioh_proc p = {0};
		ioh_start(&p, args);
		struct zl_blk *d;
		struct zl_blk_opts o = {.depth = DEPTH};
		CHECK_EQ(zl_blk_open(ctx, dev, &o, &d), 0);
		uint64_t flushed =
			write_until_crash(zl_blk_queue(d, 0), round, p.pid, delays[round]);
		int st;
		CHECK_EQ(waitpid(p.pid, &st, 0), p.pid);
		CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
		/* every call on the dead device fails, none hangs */
		CHECK(zl_blk_read(zl_blk_queue(d, 0), b, BS, 0) < 0);
		zl_blk_close(d);
		unlink(p.control); /* left by the killed I/O host */
		rmdir(p.dir);
		/* until the broker has seen the old I/O host go, its name is taken */
		int e = 0;
		for (int i = 0; i < 500; i++) {
			struct zl_blk *x;
			if ((e = zl_blk_open(ctx, dev, NULL, &x)) == -ENOENT)
				break;
			if (e == 0)
				zl_blk_close(x);
			usleep(10000);
		}
		CHECK_EQ(e, -ENOENT);
		struct ioh_proc p2 = {0};
		ioh_start(&p2, args);
		CHECK_EQ(zl_blk_open(ctx, dev, NULL, &d), 0);
		struct zl_blk_queue *q = zl_blk_queue(d, 0);
		uint64_t base = (uint64_t)round * ROUND_BLOCKS;
		for (uint64_t i = 0; i < flushed; i++) {
			CHECK_EQ(zl_blk_read(q, b, BS, (base + i) * BS), (int)BS);
			fill_pattern(want, BS, seed_of(round, i));
			if (memcmp(b, want, BS)) {
				fprintf(stderr,
					"round %d: block %llu, flushed before the crash, differs\n",
					round, (unsigned long long)i);
				exit(1);
			}
		}
		printf("round %d: killed after %u us; %llu flushed blocks intact\n", round,
		       delays[round], (unsigned long long)flushed);
		zl_blk_close(d);
		ioh_stop(&p2);
	}
	free(b);
	free(want);
	unlink(img);
	zl_ctx_close(ctx);
	printf("ok\n");
	return 0;
}
