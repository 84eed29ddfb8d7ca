/* SPDX-License-Identifier: MIT */
/*
 * Block devices served by zerolink-iohost: data written through every
 * backend reads back the same, through the synchronous calls, the
 * asynchronous queue (copies and views), zero-copy writes, several queues
 * from several threads, flush, FUA, discard and write-zeroes; the file
 * backend's file holds what was written (RAM disks and files in memory:
 * large requests copied in parts, by the sidecore and a worker); a
 * read-only device refuses writes.
 */
#include <pthread.h>

#include "ioh_test.h"

#define DEV_SIZE (64ull << 20)

static struct ioh_proc ioh;
static struct zl_ctx *ctx;

struct shadow {
	unsigned char *mem;
	uint64_t size;
};

static void check_read(struct zl_blk_queue *q, const struct shadow *sh, uint64_t off, uint32_t len)
{
	unsigned char *b = malloc(len);
	CHECK_EQ(zl_blk_read(q, b, len, off), (int)len);
	if (sh && memcmp(b, sh->mem + off, len)) {
		fprintf(stderr, "read at %llu+%u differs\n", (unsigned long long)off, len);
		exit(1);
	}
	free(b);
}

/* A write of len bytes at off through whichever way `how` picks. */
static void do_write(struct zl_blk_queue *q, struct shadow *sh, uint64_t off, uint32_t len,
		     unsigned how, uint64_t seed)
{
	unsigned char *b = malloc(len);
	fill_pattern(b, len, seed);
	if (how % 2 == 0) {
		CHECK_EQ(zl_blk_write(q, b, len, off, how % 4 == 2 ? ZL_BLK_F_FUA : 0), (int)len);
	} else {
		/* zero-copy: the data is written in a pool buffer and sent as is */
		ioh_write_zc(q, b, len, off, 0);
	}
	if (sh)
		memcpy(sh->mem + off, b, len);
	free(b);
}

/* depth reads in flight at once, half into memory, half as views. */
static void async_reads(struct zl_blk_queue *q, const struct shadow *sh, uint32_t bs,
			unsigned depth)
{
	struct zl_blk_req r[64];
	unsigned char *dst[64];
	CHECK(depth <= 64);
	for (unsigned i = 0; i < depth; i++) {
		uint32_t len = bs * (1 + (unsigned)rand() % 16);
		uint64_t off = ((uint64_t)rand() * bs) % (sh->size - len);
		off -= off % bs;
		dst[i] = i % 2 ? malloc(len) : NULL;
		r[i] = (struct zl_blk_req){.op = ZL_BLK_OP_READ,
					   .len = len,
					   .offset = off,
					   .user_data = i,
					   .dst = dst[i]};
	}
	unsigned sent = 0, done = 0;
	while (sent < depth) {
		int n = zl_blk_submit(q, r + sent, depth - sent, 0);
		CHECK(n > 0);
		sent += (unsigned)n;
	}
	struct zl_blk_cpl held[64];
	unsigned nheld = 0;
	while (done < depth) {
		struct zl_blk_cpl c[16];
		int n = zl_blk_reap(q, c, 16, 0);
		CHECK(n > 0);
		for (int k = 0; k < n; k++) {
			unsigned i = (unsigned)c[k].user_data;
			CHECK(i < depth);
			CHECK_EQ(c[k].status, 0);
			CHECK_EQ(c[k].len, r[i].len);
			CHECK(c[k].data != NULL);
			if (memcmp(c[k].data, sh->mem + r[i].offset, r[i].len)) {
				fprintf(stderr, "async read %u differs\n", i);
				exit(1);
			}
			if (dst[i]) {
				CHECK(c[k].data == dst[i]);
				free(dst[i]);
			} else {
				held[nheld++] = c[k]; /* views are held until the end */
			}
			done++;
		}
	}
	CHECK_EQ(zl_blk_inflight(q), nheld);
	for (unsigned i = 0; i < nheld; i++)
		zl_blk_cpl_release(q, &held[i]);
	CHECK_EQ(zl_blk_inflight(q), 0);
}

static void exercise(const char *name, bool data, const char *path)
{
	struct zl_blk *dev;
	struct zl_blk_opts o = {.queues = 2, .depth = 64};
	CHECK_EQ(zl_blk_open(ctx, name, &o, &dev), 0);
	struct zl_blk_info in;
	zl_blk_info(dev, &in);
	CHECK_EQ(in.size, DEV_SIZE);
	CHECK(in.block_size == 512 || in.block_size == 4096);
	CHECK_EQ(in.max_io, ZL_BLK_MAX_IO);
	CHECK_EQ(in.queues, 2);
	CHECK_EQ(in.depth, 64);
	uint32_t bs = in.block_size;
	struct zl_blk_queue *q = zl_blk_queue(dev, 0);
	CHECK(zl_blk_queue(dev, 2) == NULL);
	struct shadow sh = {.size = DEV_SIZE};
	struct shadow *shp = NULL;
	if (data) {
		sh.mem = calloc(1, DEV_SIZE);
		shp = &sh;
	}
	/* sizes from one block to max_io, at the start, the end, and inside */
	uint32_t lens[] = {bs, 8192, 65536, 65536 + bs, 1u << 20};
	for (unsigned i = 0; i < 5; i++) {
		do_write(q, shp, 0, lens[i], i, i + 1);
		do_write(q, shp, DEV_SIZE - lens[i], lens[i], i + 1, i + 100);
		do_write(q, shp, (uint64_t)bs * 1000 * (i + 1), lens[i], i + 2, i + 200);
		if (data) {
			check_read(q, shp, 0, lens[i]);
			check_read(q, shp, DEV_SIZE - lens[i], lens[i]);
			check_read(q, shp, (uint64_t)bs * 1000 * (i + 1), lens[i]);
		}
	}
	/* random writes and reads */
	for (unsigned i = 0; i < 600; i++) {
		uint32_t len = bs * (1 + (unsigned)rand() % 64);
		uint64_t off = ((uint64_t)rand() * 4096) % (DEV_SIZE - len);
		off -= off % bs;
		if (rand() % 2)
			do_write(q, shp, off, len, (unsigned)rand(), i + 1000);
		else if (data)
			check_read(q, shp, off, len);
	}
	if (data)
		async_reads(q, shp, bs, 48);
	/* flush; FUA was used above */
	CHECK_EQ(zl_blk_flush(q), 0);
	/* write-zeroes reads back zeroes, with and without keeping blocks */
	CHECK_EQ(zl_blk_write_zeroes(q, 1 << 20, 3 << 20, 0), 0);
	CHECK_EQ(zl_blk_write_zeroes(q, 8 << 20, 8192, ZL_BLK_F_NOUNMAP), 0);
	CHECK_EQ(zl_blk_discard(q, 16 << 20, 1 << 20), 0);
	if (data) {
		memset(sh.mem + (1 << 20), 0, 3 << 20);
		memset(sh.mem + (8 << 20), 0, 8192);
		check_read(q, shp, 1 << 20, 1 << 20);
		check_read(q, shp, 3 << 20, 1 << 20);
		check_read(q, shp, 8 << 20, 8192);
		/* what was discarded reads as anything; make it known again */
		do_write(q, shp, 16 << 20, 1 << 20, 0, 77);
	}
	/* the library refuses what the I/O host would, with the same status */
	char small[512];
	CHECK_EQ(zl_blk_read(q, small, 100, 0), -EINVAL);
	CHECK_EQ(zl_blk_read(q, small, 512, 1), -EINVAL);
	CHECK_EQ(zl_blk_read(q, small, bs > 512 ? 512 : bs, DEV_SIZE),
		 bs > 512 ? -EINVAL : -ERANGE);
	{
		unsigned char *big = malloc(2u << 20);
		CHECK_EQ(zl_blk_read(q, big, 2u << 20, 0), -EINVAL);
		free(big);
	}
	/* the second queue sees the same data */
	if (data) {
		struct zl_blk_queue *q1 = zl_blk_queue(dev, 1);
		check_read(q1, shp, 0, 1 << 20);
		check_read(q1, shp, DEV_SIZE - (1 << 20), 1 << 20);
	}
	/* the file holds what was written (after a flush) */
	if (data && path) {
		CHECK_EQ(zl_blk_flush(q), 0);
		int fd = open(path, O_RDONLY);
		CHECK(fd >= 0);
		unsigned char *b = malloc(1 << 20);
		for (uint64_t off = 0; off < DEV_SIZE; off += 1 << 20) {
			CHECK_EQ(pread(fd, b, 1 << 20, (off_t)off), 1 << 20);
			if (memcmp(b, sh.mem + off, 1 << 20)) {
				fprintf(stderr, "file %s differs in MiB %llu\n", path,
					(unsigned long long)(off >> 20));
				exit(1);
			}
		}
		free(b);
		close(fd);
	}
	zl_blk_close(dev);
	free(sh.mem);
}

struct thr {
	struct zl_blk_queue *q;
	unsigned idx;
	uint32_t bs;
	int ok;
};

/* Each thread writes and checks its own quarter of the device. */
static void *thr_main(void *arg)
{
	struct thr *t = arg;
	uint64_t base = (DEV_SIZE / 4) * t->idx;
	unsigned char *w = malloc(65536), *r = malloc(65536);
	for (unsigned i = 0; i < 300; i++) {
		uint64_t off = base + ((uint64_t)(i * 7919u) % 200) * 65536;
		fill_pattern(w, 65536, t->idx * 100000 + i);
		if (zl_blk_write(t->q, w, 65536, off, 0) != 65536 ||
		    zl_blk_read(t->q, r, 65536, off) != 65536 || memcmp(w, r, 65536)) {
			t->ok = 0;
			break;
		}
	}
	free(w);
	free(r);
	return NULL;
}

static void threads(const char *name)
{
	struct zl_blk *dev;
	struct zl_blk_opts o = {.queues = 4, .depth = 16};
	CHECK_EQ(zl_blk_open(ctx, name, &o, &dev), 0);
	pthread_t th[4];
	struct thr t[4];
	for (unsigned i = 0; i < 4; i++) {
		t[i] = (struct thr){.q = zl_blk_queue(dev, i), .idx = i, .ok = 1};
		CHECK_EQ(pthread_create(&th[i], NULL, thr_main, &t[i]), 0);
	}
	for (unsigned i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		CHECK(t[i].ok);
	}
	zl_blk_close(dev);
}

int main(void)
{
	srand(7);
	char spec[8][256], p512[128], p4k[128], pbuf[128], pro[128];
	snprintf(p512, sizeof(p512), "/dev/shm/zl-test-blk-%d-512", (int)getpid());
	snprintf(p4k, sizeof(p4k), "/dev/shm/zl-test-blk-%d-4k", (int)getpid());
	snprintf(pbuf, sizeof(pbuf), "/tmp/zl-test-blk-%d-buf", (int)getpid());
	snprintf(pro, sizeof(pro), "/dev/shm/zl-test-blk-%d-ro", (int)getpid());
	/* the read-only device's file exists beforehand, with known data */
	{
		int fd = open(pro, O_CREAT | O_RDWR | O_TRUNC, 0600);
		CHECK(fd >= 0);
		unsigned char *b = malloc(1 << 20);
		fill_pattern(b, 1 << 20, 4242);
		for (int i = 0; i < 64; i++)
			CHECK_EQ(pwrite(fd, b, 1 << 20, (off_t)i << 20), 1 << 20);
		free(b);
		close(fd);
	}
	snprintf(spec[0], 256, "%s:backend=ram,size=64M", ioh_dev("ram"));
	snprintf(spec[1], 256, "%s:backend=null,size=64M", ioh_dev("null"));
	snprintf(spec[2], 256, "%s:backend=file,path=%s,size=64M", ioh_dev("f512"), p512);
	snprintf(spec[3], 256, "%s:backend=file,path=%s,size=64M,block_size=4096", ioh_dev("f4k"),
		 p4k);
	snprintf(spec[4], 256, "%s:backend=file,path=%s,size=64M,direct=no", ioh_dev("fbuf"), pbuf);
	snprintf(spec[5], 256, "%s:backend=file,path=%s,readonly=yes", ioh_dev("ro"), pro);
	snprintf(spec[6], 256, "%s:backend=ram,size=64M,block_size=4096", ioh_dev("ram4k"));
	/* a worker: large reads and writes of the RAM disks and the files in
	 * memory (f512, f4k) are copied in parts shared with it */
	const char *args[] = {"--sidecores", "0,1",      "--workers", "1",        "--device",
			      spec[0],       "--device", spec[1],     "--device", spec[2],
			      "--device",    spec[3],    "--device",  spec[4],    "--device",
			      spec[5],       "--device", spec[6],     NULL};
	ioh_start(&ioh, args);
	ctx = test_ctx("test_blk_io");

	exercise(ioh_dev("ram"), true, NULL);
	exercise(ioh_dev("ram4k"), true, NULL);
	exercise(ioh_dev("null"), false, NULL);
	exercise(ioh_dev("f512"), true, p512);
	exercise(ioh_dev("f4k"), true, p4k);
	exercise(ioh_dev("fbuf"), true, pbuf);
	{
		/* the 1 MiB requests of ram, ram4k, f512 and f4k went in parts */
		char *pr = ioh_ok(&ioh, "prom");
		const char *j = strstr(pr, "\nzerolink_iohost_worker_jobs_total ");
		CHECK(j);
		printf("requests shared with the worker: %s", j + 1);
		CHECK(strtoull(j + 35, NULL, 10) > 0);
		free(pr);
	}
	threads(ioh_dev("ram"));
	threads(ioh_dev("f512"));

	/* read-only: reads work, writes are refused */
	{
		struct zl_blk *dev;
		CHECK_EQ(zl_blk_open(ctx, ioh_dev("ro"), NULL, &dev), 0);
		struct zl_blk_info in;
		zl_blk_info(dev, &in);
		CHECK(in.flags & ZL_BLK_INFO_RO);
		CHECK_EQ(in.size, DEV_SIZE);
		struct zl_blk_queue *q = zl_blk_queue(dev, 0);
		unsigned char *b = malloc(1 << 20), *e = malloc(1 << 20);
		fill_pattern(e, 1 << 20, 4242);
		CHECK_EQ(zl_blk_read(q, b, 1 << 20, 5 << 20), 1 << 20);
		CHECK(!memcmp(b, e, 1 << 20));
		CHECK_EQ(zl_blk_write(q, b, 4096, 0, 0), -EROFS);
		CHECK_EQ(zl_blk_write_zeroes(q, 0, 4096, 0), -EROFS);
		free(b);
		free(e);
		zl_blk_close(dev);
	}
	/* no such device */
	{
		struct zl_blk *dev;
		CHECK_EQ(zl_blk_open(ctx, ioh_dev("nosuch"), NULL, &dev), -ENOENT);
		CHECK_EQ(zl_blk_open(ctx, "bad/name", NULL, &dev), -EINVAL);
		struct zl_blk_opts o = {.queues = 65};
		CHECK_EQ(zl_blk_open(ctx, ioh_dev("ram"), &o, &dev), -EINVAL);
	}
	char *ls = ioh_ok(&ioh, "ls");
	CHECK(strstr(ls, ioh_dev("f512")) != NULL);
	free(ls);
	ioh_stop(&ioh);
	zl_ctx_close(ctx);
	unlink(p512);
	unlink(p4k);
	unlink(pbuf);
	unlink(pro);
	printf("ok\n");
	return 0;
}
