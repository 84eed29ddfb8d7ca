/* SPDX-License-Identifier: MIT */
/*
 * The crc32c module. Data already in the file when the device is made is
 * covered (the side file is built by reading it); every entry of the side
 * file is the CRC32C of its block (computed here independently, bit by
 * bit); what is written reads back; a byte changed behind the I/O host's
 * back in the data or in the side file makes reads of that block fail with
 * EIO, and never return the bad bytes, while the blocks around it read
 * fine; writing the block again heals it; discard and write-zeroes leave
 * zeroes that check; the checksums outlive a restart; under encryption a
 * damaged ciphertext is an error, not garbage; side files made for another
 * device, or not side files at all, are refused with a clear error.
 */
#include "ioh_test.h"

#define DEV_SIZE (4u << 20)

static struct ioh_proc ioh;
static struct zl_ctx *ctx;

/* CRC32C, bit by bit (reflected polynomial 0x82F63B78) */
static uint32_t ref_crc(const unsigned char *p, size_t n)
{
	uint32_t c = 0xFFFFFFFFu;
	for (size_t i = 0; i < n; i++) {
		c ^= p[i];
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1)));
	}
	return ~c;
}

static void poke(const char *path, off_t off, unsigned char x)
{
	int fd = open(path, O_RDWR);
	CHECK(fd >= 0);
	unsigned char b;
	CHECK_EQ(pread(fd, &b, 1, off), 1);
	b ^= x;
	CHECK_EQ(pwrite(fd, &b, 1, off), 1);
	close(fd);
}

/* Every side-file entry in [b0, b0+n) is the CRC32C of the data file's block. */
static void side_matches(const char *img, const char *side, uint32_t bs, uint64_t b0, uint64_t n)
{
	int fi = open(img, O_RDONLY), fs = open(side, O_RDONLY);
	CHECK(fi >= 0 && fs >= 0);
	unsigned char *blk = malloc(bs);
	for (uint64_t b = b0; b < b0 + n; b++) {
		CHECK_EQ(pread(fi, blk, bs, (off_t)(b * bs)), (ssize_t)bs);
		unsigned char e[4];
		CHECK_EQ(pread(fs, e, 4, (off_t)(4096 + b * 4)), 4);
		uint32_t v = (uint32_t)e[0] | (uint32_t)e[1] << 8 | (uint32_t)e[2] << 16 |
			     (uint32_t)e[3] << 24;
		if (v != ref_crc(blk, bs)) {
			fprintf(stderr, "side file entry %llu is %08x, the block's CRC32C %08x\n",
				(unsigned long long)b, v, ref_crc(blk, bs));
			exit(1);
		}
	}
	free(blk);
	close(fi);
	close(fs);
}

static unsigned long long mismatches(const char *dev)
{
	char *ls = ioh_ok(&ioh, "ls");
	char *at = strstr(ls, dev);
	CHECK(at);
	at = strstr(at, "crc32c: ");
	CHECK(at);
	char *v = strstr(at, " verified, ");
	CHECK(v);
	unsigned long long m = strtoull(v + strlen(" verified, "), NULL, 10);
	free(ls);
	return m;
}

int main(void)
{
	/* the reference itself: the check value of CRC32C */
	CHECK_EQ(ref_crc((const unsigned char *)"123456789", 9), 0xE3069283u);

	char dir[64], img[96], side[112], img2[96], img3[96], key[96], junk[96];
	snprintf(dir, sizeof(dir), "/tmp/zl-test-crc-%d", (int)getpid());
	CHECK(mkdir(dir, 0700) == 0 || errno == EEXIST);
	snprintf(img, sizeof(img), "%s/img", dir);
	snprintf(side, sizeof(side), "%s/img.crc32c", dir);
	snprintf(img2, sizeof(img2), "%s/img2", dir);
	snprintf(img3, sizeof(img3), "%s/img3", dir);
	snprintf(key, sizeof(key), "%s/key", dir);
	snprintf(junk, sizeof(junk), "%s/junk", dir);

	/* data in the file before the device exists */
	unsigned char *pre = malloc(DEV_SIZE);
	fill_pattern(pre, DEV_SIZE, 5);
	int fd = open(img, O_RDWR | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0);
	CHECK_EQ(write(fd, pre, DEV_SIZE), (ssize_t)DEV_SIZE);
	close(fd);
	unsigned char k[64];
	fill_pattern(k, sizeof(k), 3);
	fd = open(key, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0 && write(fd, k, sizeof(k)) == (ssize_t)sizeof(k));
	close(fd);

	char s0[320], s1[320];
	snprintf(s0, sizeof(s0), "%s:backend=file,path=%s,modules=crc32c", ioh_dev("crc"), img);
	snprintf(
		s1, sizeof(s1),
		"%s:backend=file,path=%s,size=%u,block_size=4096,modules=crc32c+crypt,crypt_key=%s",
		ioh_dev("cc"), img2, DEV_SIZE, key);
	const char *args[] = {"--sidecores", "0", "--device", s0, "--device", s1, NULL};
	ioh_start(&ioh, args);
	ctx = test_ctx("test_blk_crc");

	const uint32_t bs = 512, len = 64 << 10;
	unsigned char *b = malloc(len), *p = malloc(len);
	struct zl_blk *d;
	CHECK_EQ(zl_blk_open(ctx, ioh_dev("crc"), NULL, &d), 0);
	struct zl_blk_queue *q = zl_blk_queue(d, 0);

	/* what was there reads back, and every entry is right */
	CHECK_EQ(zl_blk_read(q, b, len, 2 << 20), (int)len);
	CHECK(!memcmp(b, pre + (2 << 20), len));
	side_matches(img, side, bs, 0, DEV_SIZE / bs);

	/* writes: copied, zero-copy with FUA; then a flush */
	fill_pattern(p, len, 11);
	CHECK_EQ(zl_blk_write(q, p, len, 0, 0), (int)len);
	ioh_write_zc(q, p, len, 1 << 20, ZL_BLK_F_FUA);
	CHECK_EQ(zl_blk_flush(q), 0);
	struct zl_blk_cpl c;
	CHECK_EQ(zl_blk_read(q, b, len, 0), (int)len);
	CHECK(!memcmp(b, p, len));
	CHECK_EQ(zl_blk_read(q, b, len, 1 << 20), (int)len);
	CHECK(!memcmp(b, p, len));
	side_matches(img, side, bs, 0, len / bs);
	side_matches(img, side, bs, (1 << 20) / bs, len / bs);
	CHECK_EQ(mismatches(ioh_dev("crc")), 0ull);

	/* one byte of block 5 changed in the file: block 5, and any read
	 * that covers it, fails; its neighbours do not */
	poke(img, 5 * bs + 17, 0x40);
	memset(b, 0x5a, len);
	CHECK_EQ(zl_blk_read(q, b, len, 0), -EIO);
	CHECK_EQ(zl_blk_read(q, b, bs, 5 * bs), -EIO);
	struct zl_blk_req rv = {.op = ZL_BLK_OP_READ, .len = 8 * bs, .offset = 0};
	CHECK_EQ(zl_blk_submit(q, &rv, 1, 0), 1);
	CHECK_EQ(zl_blk_reap(q, &c, 1, 0), 1);
	CHECK_EQ(c.status, -EIO);
	CHECK(!c.data || c.len == 0);
	zl_blk_cpl_release(q, &c);
	CHECK_EQ(zl_blk_read(q, b, 5 * bs, 0), (int)(5 * bs));
	CHECK(!memcmp(b, p, 5 * bs));
	CHECK_EQ(zl_blk_read(q, b, bs, 6 * bs), (int)bs);
	CHECK(!memcmp(b, p + 6 * bs, bs));
	CHECK(mismatches(ioh_dev("crc")) >= 3);
	/* written again, it heals */
	CHECK_EQ(zl_blk_write(q, p + 5 * bs, bs, 5 * bs, 0), (int)bs);
	CHECK_EQ(zl_blk_read(q, b, len, 0), (int)len);
	CHECK(!memcmp(b, p, len));

	/* an entry of the side file damaged: its block fails */
	poke(side, 4096 + 200 * 4 + 1, 0x01);
	CHECK_EQ(zl_blk_read(q, b, bs, 200 * bs), -EIO);
	CHECK_EQ(zl_blk_read(q, b, bs, 201 * bs), (int)bs);
	CHECK(!memcmp(b, pre + 201 * bs, bs));

	/* discard and write-zeroes: zeroes, which check */
	CHECK_EQ(zl_blk_discard(q, 1 << 20, 8 * bs), 0);
	CHECK_EQ(zl_blk_write_zeroes(q, (1 << 20) + 8 * bs, 8 * bs, 0), 0);
	CHECK_EQ(zl_blk_read(q, b, 32 * bs, 1 << 20), (int)(32 * bs));
	for (uint32_t i = 0; i < 16 * bs; i++)
		CHECK(b[i] == 0);
	CHECK(!memcmp(b + 16 * bs, p + 16 * bs, 16 * bs));
	CHECK_EQ(zl_blk_flush(q), 0);
	zl_blk_close(d);

	/* the 4 KiB device with crc32c before crypt: the sums are of the
	 * plaintext; damaged ciphertext is an error, not garbage */
	CHECK_EQ(zl_blk_open(ctx, ioh_dev("cc"), NULL, &d), 0);
	q = zl_blk_queue(d, 0);
	CHECK_EQ(zl_blk_write(q, p, len, 0, 0), (int)len);
	CHECK_EQ(zl_blk_flush(q), 0);
	CHECK_EQ(zl_blk_read(q, b, len, 0), (int)len);
	CHECK(!memcmp(b, p, len));
	poke(img2, 3 * 4096 + 100, 0x01);
	CHECK_EQ(zl_blk_read(q, b, 4096, 3 * 4096), -EIO);
	CHECK_EQ(zl_blk_read(q, b, 4096, 2 * 4096), 4096);
	CHECK(!memcmp(b, p + 2 * 4096, 4096));
	zl_blk_close(d);

	/* refused, with a reason */
	char line[512];
	snprintf(line, sizeof(line), "add %s backend=null size=1M modules=crc32c", ioh_dev("n"));
	ioh_refused(&ioh, line, "ram or file backend");
	snprintf(line, sizeof(line),
		 "add %s backend=file path=%s size=1M block_size=4096 modules=crc32c crc_file=%s",
		 ioh_dev("other"), img3, side);
	ioh_refused(&ioh, line, "was made for 8192 blocks of 512 bytes");
	fd = open(junk, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0 && write(fd, "not a checksum file, not at all", 31) == 31);
	close(fd);
	snprintf(line, sizeof(line), "add %s backend=ram size=1M modules=crc32c crc_file=%s",
		 ioh_dev("junk"), junk);
	ioh_refused(&ioh, line, "not a zerolink CRC32C file");
	snprintf(line, sizeof(line),
		 "add %s backend=file path=%s size=1M modules=crc32c crc_file=/nonexistent/x",
		 ioh_dev("nodir"), img3);
	ioh_refused(&ioh, line, "No such file");
	/* a RAM device keeps its sums in memory */
	snprintf(line, sizeof(line), "add %s backend=ram size=1M modules=crc32c", ioh_dev("ram"));
	free(ioh_ok(&ioh, line));
	CHECK_EQ(zl_blk_open(ctx, ioh_dev("ram"), NULL, &d), 0);
	q = zl_blk_queue(d, 0);
	CHECK_EQ(zl_blk_read(q, b, len, 0), (int)len);
	CHECK_EQ(zl_blk_write(q, p, len, 4096, 0), (int)len);
	CHECK_EQ(zl_blk_read(q, b, len, 4096), (int)len);
	CHECK(!memcmp(b, p, len));
	zl_blk_close(d);

	/* a restart: the sums were kept (block 200 still fails) */
	ioh_stop(&ioh);
	const char *args2[] = {"--sidecores", "0", "--device", s0, NULL};
	ioh_start(&ioh, args2);
	CHECK_EQ(zl_blk_open(ctx, ioh_dev("crc"), NULL, &d), 0);
	q = zl_blk_queue(d, 0);
	CHECK_EQ(zl_blk_read(q, b, len, 0), (int)len);
	CHECK(!memcmp(b, p, len));
	CHECK_EQ(zl_blk_read(q, b, bs, 200 * bs), -EIO);
	CHECK_EQ(zl_blk_read(q, b, 16 * bs, (1 << 20) + 16 * bs), (int)(16 * bs));
	CHECK(!memcmp(b, p + 16 * bs, 16 * bs));
	zl_blk_close(d);
	char *pr = ioh_ok(&ioh, "prom");
	CHECK(strstr(pr, "zerolink_iohost_crc32c_mismatches_total{device=\""));
	free(pr);
	ioh_stop(&ioh);

	zl_ctx_close(ctx);
	free(pre);
	free(b);
	free(p);
	unlink(img);
	unlink(side);
	unlink(img2);
	char s2[128];
	snprintf(s2, sizeof(s2), "%s.crc32c", img2);
	unlink(s2);
	unlink(img3);
	unlink(key);
	unlink(junk);
	rmdir(dir);
	printf("ok\n");
	return 0;
}
