/* SPDX-License-Identifier: MIT */
/*
 * The interposition modules. crypt: what is written reads back the same;
 * the file holds, for each block, exactly AES-256-XTS of it under the key
 * with the block's number as the tweak (computed here independently with
 * libcrypto: the format is dm-crypt's aes-xts-plain64), never the
 * plaintext; another key reads something else; a key file of the wrong
 * size, equal halves or no key at all are refused with a clear error;
 * discard and write-zeroes are not offered. ro: reads work, every change
 * is refused. meter: the client's requests, bytes and latencies appear per
 * tenant in `ls` and as a Prometheus histogram that adds up.
 *
 * crypt runs three ways, all checked alike: on a disk file through the
 * backend, and on a file in memory (/dev/shm) and a RAM disk, where it
 * transforms between the client's buffer and the mapped bytes itself, its
 * 128 KiB parts shared with two workers. A plain device on a file in memory
 * is copied to and from its warm mapping; a discard's holes read as zeroes.
 * A file in memory cut short under its mapping fails the requests it no
 * longer covers (SIGBUS caught), and the I/O host goes on.
 */
#include <openssl/evp.h>

#include "../../src/iohost/aes_xts.h"
#include "ioh_test.h"

#define DEV_SIZE (16u << 20)

static struct ioh_proc ioh;
static struct zl_ctx *ctx;

static void write_key(const char *path, unsigned char *key, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0);
	CHECK_EQ(write(fd, key, len), (ssize_t)len);
	close(fd);
}

/* AES-256-XTS of one unit, tweak = unit number (little-endian). */
static void xts(const unsigned char *key, uint64_t unit, const unsigned char *in,
		unsigned char *out, int len)
{
	unsigned char iv[16] = {0};
	for (int i = 0; i < 8; i++)
		iv[i] = (unsigned char)(unit >> (8 * i));
	EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
	int n = 0;
	CHECK(x && EVP_EncryptInit_ex(x, EVP_aes_256_xts(), NULL, key, iv));
	CHECK(EVP_EncryptUpdate(x, out, &n, in, len) && n == len);
	EVP_CIPHER_CTX_free(x);
}

static void crypt_device(const char *dev, const char *img, const unsigned char *key, uint32_t bs)
{
	struct zl_blk *d;
	CHECK_EQ(zl_blk_open(ctx, dev, NULL, &d), 0);
	struct zl_blk_info in;
	zl_blk_info(d, &in);
	CHECK(!(in.flags & (ZL_BLK_INFO_DISCARD | ZL_BLK_INFO_WRITE_ZEROES)));
	struct zl_blk_queue *q = zl_blk_queue(d, 0);
	const uint32_t len = 256 << 10;
	unsigned char *p = malloc(len), *b = malloc(len), *f = malloc(len), *e = malloc(bs);
	fill_pattern(p, len, 77);
	/* a copying write, and a zero-copy one */
	CHECK_EQ(zl_blk_write(q, p, len, 0, 0), (int)len);
	ioh_write_zc(q, p, len, 1 << 20, 0);
	CHECK_EQ(zl_blk_flush(q), 0);
	struct zl_blk_cpl c;
	/* both read back as written: copied, and as a view */
	CHECK_EQ(zl_blk_read(q, b, len, 0), (int)len);
	CHECK(!memcmp(b, p, len));
	struct zl_blk_req rr = {.op = ZL_BLK_OP_READ, .len = len, .offset = 1 << 20};
	CHECK_EQ(zl_blk_submit(q, &rr, 1, 0), 1);
	CHECK_EQ(zl_blk_reap(q, &c, 1, 0), 1);
	CHECK_EQ(c.status, 0);
	CHECK(!memcmp(c.data, p, len));
	zl_blk_cpl_release(q, &c);
	/* small reads in the middle */
	CHECK_EQ(zl_blk_read(q, b, bs, 5 * bs), (int)bs);
	CHECK(!memcmp(b, p + 5 * bs, bs));
	/* larger than a part, not aligned to one, both ways */
	const uint32_t big = (1u << 20) - 3 * bs; /* the largest request is 1 MiB */
	unsigned char *bp = malloc(big), *bb = malloc(big);
	fill_pattern(bp, big, 78);
	CHECK_EQ(zl_blk_write(q, bp, big, 2 << 20, 0), (int)big);
	CHECK_EQ(zl_blk_read(q, bb, big, 2 << 20), (int)big);
	CHECK(!memcmp(bb, bp, big));
	free(bp);
	free(bb);
	if (!img) /* a RAM disk: no file to look into */
		goto done;
	/* the file: the ciphertext of each block, never the plaintext */
	int fd = open(img, O_RDONLY);
	CHECK(fd >= 0);
	CHECK_EQ(pread(fd, f, len, 1 << 20), (ssize_t)len);
	close(fd);
	for (uint32_t u = 0; u < len / bs; u++) {
		xts(key, ((1u << 20) / bs) + u, p + u * bs, e, (int)bs);
		if (memcmp(f + u * bs, e, bs)) {
			fprintf(stderr, "block %u of the file is not its AES-XTS ciphertext\n", u);
			exit(1);
		}
		CHECK(memcmp(f + u * bs, p + u * bs, bs) != 0);
	}
done:
	/* what encryption cannot offer */
	CHECK_EQ(zl_blk_discard(q, 0, bs), -EOPNOTSUPP);
	CHECK_EQ(zl_blk_write_zeroes(q, 0, bs, 0), -EOPNOTSUPP);
	zl_blk_close(d);
	free(p);
	free(b);
	free(f);
	free(e);
}

/* A file in memory filled before the I/O host starts: its data is mapped
 * and warmed, and then reached without system calls. */
static void fill_file(const char *path)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0);
	unsigned char *b = malloc(1 << 20);
	for (unsigned i = 0; i < DEV_SIZE >> 20; i++) {
		fill_pattern(b, 1 << 20, 1000 + i);
		CHECK_EQ(pwrite(fd, b, 1 << 20, (off_t)i << 20), 1 << 20);
	}
	close(fd);
	free(b);
}

/* Until no mapping is still warming (bounded). */
static void wait_warm(void)
{
	for (int i = 0;; i++) {
		char *ls = ioh_ok(&ioh, "ls");
		bool warming = strstr(ls, "(warming)") != NULL;
		free(ls);
		if (!warming)
			return;
		CHECK(i < 600);
		usleep(50000);
	}
}

/* The plain device p on a warm file in memory: copies to and from the
 * mapping; a discard makes holes (read as zeroes, written again through
 * system calls); the file sees every write. */
static void plain_mem(const char *path)
{
	char want[96];
	char *ls = ioh_ok(&ioh, "ls");
	snprintf(want, sizeof(want), "mapped: %u bytes warm (done)", DEV_SIZE);
	char *at = strstr(ls, ioh_dev("p"));
	CHECK(at && strstr(at, want));
	free(ls);
	struct zl_blk *d;
	CHECK_EQ(zl_blk_open(ctx, ioh_dev("p"), NULL, &d), 0);
	struct zl_blk_queue *q = zl_blk_queue(d, 0);
	unsigned char *p = malloc(1 << 20), *b = malloc(1 << 20), *f = malloc(1 << 20);
	/* what was there before the I/O host started */
	fill_pattern(p, 1 << 20, 1003);
	CHECK_EQ(zl_blk_read(q, b, 1 << 20, 3 << 20), 1 << 20);
	CHECK(!memcmp(b, p, 1 << 20));
	static const uint32_t sz[] = {512, 4096, 65536 + 512, 1 << 20};
	int fd = open(path, O_RDONLY);
	CHECK(fd >= 0);
	for (unsigned i = 0; i < 4; i++) {
		uint64_t off = (uint64_t)(5 + i) * (1 << 20) - (i & 1 ? 512 : 0);
		fill_pattern(p, sz[i], 50 + i);
		CHECK_EQ(zl_blk_write(q, p, sz[i], off, 0), (int)sz[i]);
		CHECK_EQ(zl_blk_read(q, b, sz[i], off), (int)sz[i]);
		CHECK(!memcmp(b, p, sz[i]));
		CHECK_EQ(pread(fd, f, sz[i], (off_t)off), (ssize_t)sz[i]);
		CHECK(!memcmp(f, p, sz[i]));
	}
	/* holes: zeroes, then written again */
	CHECK_EQ(zl_blk_discard(q, 5 << 20, 1 << 20), 0);
	CHECK_EQ(zl_blk_read(q, b, 1 << 20, 5 << 20), 1 << 20);
	memset(f, 0, 1 << 20);
	CHECK(!memcmp(b, f, 1 << 20));
	fill_pattern(p, 1 << 20, 60);
	CHECK_EQ(zl_blk_write(q, p, 1 << 20, 5 << 20, 0), 1 << 20);
	CHECK_EQ(zl_blk_read(q, b, 1 << 20, 5 << 20), 1 << 20);
	CHECK(!memcmp(b, p, 1 << 20));
	close(fd);
	zl_blk_close(d);
	free(p);
	free(b);
	free(f);
}

/* The file in memory behind device name cut to 1 MiB under the I/O host,
 * and grown back. */
static void shrunk(const char *name, const char *shm)
{
	struct zl_blk *d;
	CHECK_EQ(zl_blk_open(ctx, name, NULL, &d), 0);
	struct zl_blk_queue *q = zl_blk_queue(d, 0);
	unsigned char *p = malloc(65536), *b = malloc(65536);
	fill_pattern(p, 65536, 79);
	CHECK_EQ(zl_blk_write(q, p, 65536, 0, 0), 65536);
	CHECK_EQ(truncate(shm, 1 << 20), 0);
	/* beyond the end of the file: failed, not a crash, nothing handed out */
	memset(b, 0x5a, 65536);
	CHECK_EQ(zl_blk_read(q, b, 65536, 3 << 20), -EIO);
	CHECK_EQ(zl_blk_write(q, p, 65536, 3 << 20, 0), -EIO);
	/* straddling the end: fails too */
	CHECK_EQ(zl_blk_read(q, b, 65536, (1 << 20) - 32768), -EIO);
	/* what the file still holds reads as before, and the host goes on */
	CHECK_EQ(zl_blk_read(q, b, 65536, 0), 65536);
	CHECK(!memcmp(b, p, 65536));
	free(ioh_ok(&ioh, "ping"));
	CHECK_EQ(truncate(shm, DEV_SIZE), 0);
	CHECK_EQ(zl_blk_write(q, p, 65536, 3 << 20, 0), 65536);
	CHECK_EQ(zl_blk_read(q, b, 65536, 3 << 20), 65536);
	CHECK(!memcmp(b, p, 65536));
	zl_blk_close(d);
	free(p);
	free(b);
}

/* Each device's engine as ls and prom tell it, both engines' bytes the
 * same (the file one wrote reads back through the other), and the values
 * crypt_engine refuses. */
static void crypt_engines(bool vaes, const char *imgo, const char *k1)
{
	const char *fast = vaes ? "vaes-avx512" : "openssl";
	char *ls = ioh_ok(&ioh, "ls"), *pr = ioh_ok(&ioh, "prom");
	const struct {
		const char *dev, *engine;
	} want[] = {{"c512", fast}, {"s4k", fast}, {"r4k", fast}, {"o4k", "openssl"}};
	for (unsigned i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		char *at = strstr(ls, ioh_dev(want[i].dev)), *nl;
		char exp[64], line[256];
		CHECK(at && (at = strstr(at, "crypt: ")) && (nl = strchr(at, '\n')));
		snprintf(line, sizeof(line), "%.*s", (int)(nl - at), at);
		snprintf(exp, sizeof(exp), "aes-xts-plain64 (%s)", want[i].engine);
		if (!strstr(line, exp)) {
			fprintf(stderr, "%s: '%s' lacks '%s'\n", want[i].dev, line, exp);
			exit(1);
		}
		snprintf(line, sizeof(line),
			 "zerolink_iohost_crypt_engine_info{device=\"%s\",engine=\"%s\"} 1",
			 ioh_dev(want[i].dev), want[i].engine);
		CHECK(strstr(pr, line));
	}
	free(ls);
	free(pr);
	/* o512's file (OpenSSL wrote it) through the fast engine, and back */
	char line[512];
	snprintf(line, sizeof(line), "add %s backend=file path=%s modules=crypt crypt_key=%s",
		 ioh_dev("o512b"), imgo, k1);
	free(ioh_ok(&ioh, line));
	struct zl_blk *a, *b;
	CHECK_EQ(zl_blk_open(ctx, ioh_dev("o512"), NULL, &a), 0);
	CHECK_EQ(zl_blk_open(ctx, ioh_dev("o512b"), NULL, &b), 0);
	const uint32_t len = 192 << 10;
	unsigned char *p = malloc(len), *r = malloc(len);
	fill_pattern(p, len, 91);
	CHECK_EQ(zl_blk_write(zl_blk_queue(a, 0), p, len, 512 * 7, ZL_BLK_F_FUA), (int)len);
	CHECK_EQ(zl_blk_read(zl_blk_queue(b, 0), r, len, 512 * 7), (int)len);
	CHECK(!memcmp(p, r, len));
	fill_pattern(p, len, 92);
	CHECK_EQ(zl_blk_write(zl_blk_queue(b, 0), p, len, 512 * 9, ZL_BLK_F_FUA), (int)len);
	CHECK_EQ(zl_blk_read(zl_blk_queue(a, 0), r, len, 512 * 9), (int)len);
	CHECK(!memcmp(p, r, len));
	zl_blk_close(a);
	zl_blk_close(b);
	free(p);
	free(r);
	snprintf(line, sizeof(line), "rm %s", ioh_dev("o512b"));
	free(ioh_ok(&ioh, line));
	/* values refused, with the reason */
	snprintf(line, sizeof(line),
		 "add %s backend=ram size=1M modules=crypt crypt_key=%s crypt_engine=fast",
		 ioh_dev("badeng"), k1);
	char *e = ioh_ctl(&ioh, line);
	CHECK(e && strstr(e, "error: ") && strstr(e, "crypt_engine: 'fast' (auto, vaes, openssl)"));
	free(e);
	snprintf(line, sizeof(line),
		 "add %s backend=ram size=1M modules=crypt crypt_key=%s crypt_engine=vaes",
		 ioh_dev("vaeseng"), k1);
	e = ioh_ctl(&ioh, line);
	if (vaes) {
		CHECK(e && !strncmp(e, "ok", 2));
		snprintf(line, sizeof(line), "rm %s", ioh_dev("vaeseng"));
		free(ioh_ok(&ioh, line));
	} else {
		CHECK(e && strstr(e, "error: ") && strstr(e, "lacks VAES"));
	}
	free(e);
}

int main(void)
{
	char dir[64], k1[96], k2[96], kshort[96], keq[96], img[96], img4k[96];
	snprintf(dir, sizeof(dir), "/tmp/zl-test-mod-%d", (int)getpid());
	CHECK(mkdir(dir, 0700) == 0 || errno == EEXIST);
	snprintf(k1, sizeof(k1), "%s/k1", dir);
	snprintf(k2, sizeof(k2), "%s/k2", dir);
	snprintf(kshort, sizeof(kshort), "%s/kshort", dir);
	snprintf(keq, sizeof(keq), "%s/keq", dir);
	snprintf(img, sizeof(img), "%s/img", dir);
	snprintf(img4k, sizeof(img4k), "%s/img4k", dir);
	unsigned char key1[64], key2[64], keyeq[64];
	fill_pattern(key1, 64, 1);
	fill_pattern(key2, 64, 2);
	memset(keyeq, 9, sizeof(keyeq));
	write_key(k1, key1, 64);
	write_key(k2, key2, 64);
	write_key(kshort, key1, 32);
	write_key(keq, keyeq, 64);

	char shm[96], shm4k[96], shmp[96];
	snprintf(shm, sizeof(shm), "/dev/shm/zl-test-mod-%d", (int)getpid());
	snprintf(shm4k, sizeof(shm4k), "/dev/shm/zl-test-mod-%d.4k", (int)getpid());
	snprintf(shmp, sizeof(shmp), "/dev/shm/zl-test-mod-%d.p", (int)getpid());
	fill_file(shm);
	fill_file(shm4k);
	fill_file(shmp);
	char s0[320], s1[320], s2[320], s3[320], s4[320], s5[320], s6[320], s7[320];
	snprintf(s0, sizeof(s0), "%s:backend=file,path=%s,size=%u,modules=meter+crypt,crypt_key=%s",
		 ioh_dev("c512"), img, DEV_SIZE, k1);
	snprintf(s1, sizeof(s1),
		 "%s:backend=file,path=%s,size=%u,block_size=4096,modules=crypt,crypt_key=%s",
		 ioh_dev("c4k"), img4k, DEV_SIZE, k1);
	snprintf(s2, sizeof(s2), "%s:backend=ram,size=%u,modules=ro", ioh_dev("ro"), DEV_SIZE);
	snprintf(s3, sizeof(s3), "%s:backend=ram,size=%u,modules=meter", ioh_dev("m"), DEV_SIZE);
	snprintf(s4, sizeof(s4), "%s:backend=file,path=%s,size=%u,modules=meter+crypt,crypt_key=%s",
		 ioh_dev("s512"), shm, DEV_SIZE, k1);
	snprintf(s5, sizeof(s5),
		 "%s:backend=file,path=%s,size=%u,block_size=4096,modules=crypt,crypt_key=%s",
		 ioh_dev("s4k"), shm4k, DEV_SIZE, k1);
	snprintf(s6, sizeof(s6),
		 "%s:backend=ram,size=%u,block_size=4096,modules=crypt,crypt_key=%s",
		 ioh_dev("r4k"), DEV_SIZE, k1);
	snprintf(s7, sizeof(s7), "%s:backend=file,path=%s", ioh_dev("p"), shmp);
	/* OpenSSL's engine, on a file in memory (its parts do the I/O) and
	 * on one that is not */
	char s8[320], s9[320], shmo[96], imgo[96];
	snprintf(shmo, sizeof(shmo), "/dev/shm/zl-test-mod-%d.o", (int)getpid());
	snprintf(imgo, sizeof(imgo), "%s/imgo", dir);
	fill_file(shmo);
	snprintf(s8, sizeof(s8),
		 "%s:backend=file,path=%s,size=%u,block_size=4096,modules=crypt,crypt_key=%s,"
		 "crypt_engine=openssl",
		 ioh_dev("o4k"), shmo, DEV_SIZE, k1);
	snprintf(s9, sizeof(s9),
		 "%s:backend=file,path=%s,size=%u,modules=crypt,crypt_key=%s,crypt_engine=openssl",
		 ioh_dev("o512"), imgo, DEV_SIZE, k1);
	const char *args[] = {"--sidecores", "0", "--workers", "0,1", "--device", s0,
			      "--device",    s1,  "--device",  s2,    "--device", s3,
			      "--device",    s4,  "--device",  s5,    "--device", s6,
			      "--device",    s7,  "--device",  s8,    "--device", s9,
			      NULL};
	ioh_start(&ioh, args);
	ctx = test_ctx("test_blk_mod");
	wait_warm();

	crypt_device(ioh_dev("c512"), img, key1, 512);
	crypt_device(ioh_dev("c4k"), img4k, key1, 4096);
	crypt_device(ioh_dev("s512"), shm, key1, 512);
	crypt_device(ioh_dev("s4k"), shm4k, key1, 4096);
	crypt_device(ioh_dev("r4k"), NULL, key1, 4096);
	crypt_device(ioh_dev("o4k"), shmo, key1, 4096);
	crypt_device(ioh_dev("o512"), imgo, key1, 512);
	crypt_engines(aes_xts_usable(), imgo, k1);
	plain_mem(shmp);
	shrunk(ioh_dev("p"), shmp);
	shrunk(ioh_dev("s512"), shm);

	/* the same file under another key reads as something else */
	char line[512];
	snprintf(line, sizeof(line), "add %s backend=file path=%s modules=crypt crypt_key=%s",
		 ioh_dev("wrongkey"), img, k2);
	free(ioh_ok(&ioh, line));
	{
		struct zl_blk *d;
		CHECK_EQ(zl_blk_open(ctx, ioh_dev("wrongkey"), NULL, &d), 0);
		unsigned char *b = malloc(65536), *p = malloc(65536);
		fill_pattern(p, 65536, 77);
		CHECK_EQ(zl_blk_read(zl_blk_queue(d, 0), b, 65536, 0), 65536);
		CHECK(memcmp(b, p, 65536) != 0);
		zl_blk_close(d);
		free(b);
		free(p);
	}
	/* keys that are refused, with a reason */
	static const struct {
		const char *key, *why;
	} bad[] = {{NULL, "needs crypt_key"},
		   {"", "exactly 64 bytes"},
		   {"", "halves are equal"},
		   {"/nonexistent/key", "No such file"}};
	for (unsigned i = 0; i < 4; i++) {
		const char *kp = i == 1 ? kshort : i == 2 ? keq : bad[i].key;
		if (kp)
			snprintf(line, sizeof(line),
				 "add %s backend=ram size=1M modules=crypt crypt_key=%s",
				 ioh_dev("badkey"), kp);
		else
			snprintf(line, sizeof(line), "add %s backend=ram size=1M modules=crypt",
				 ioh_dev("badkey"));
		char *a = ioh_ctl(&ioh, line);
		CHECK(a && !strncmp(a, "error: ", 7));
		if (!strstr(a, bad[i].why)) {
			fprintf(stderr, "bad key %u: answer '%s' lacks '%s'\n", i, a, bad[i].why);
			exit(1);
		}
		free(a);
	}
	snprintf(line, sizeof(line), "add %s backend=ram size=1M modules=nosuch",
		 ioh_dev("badmod"));
	char *a = ioh_ctl(&ioh, line);
	CHECK(a && strstr(a, "unknown module 'nosuch'"));
	free(a);

	/* ro: reads, nothing else */
	{
		struct zl_blk *d;
		CHECK_EQ(zl_blk_open(ctx, ioh_dev("ro"), NULL, &d), 0);
		struct zl_blk_info in;
		zl_blk_info(d, &in);
		CHECK(in.flags & ZL_BLK_INFO_RO);
		struct zl_blk_queue *q = zl_blk_queue(d, 0);
		char b[4096];
		CHECK_EQ(zl_blk_read(q, b, sizeof(b), 0), (int)sizeof(b));
		CHECK_EQ(zl_blk_write(q, b, sizeof(b), 0, 0), -EROFS);
		CHECK_EQ(zl_blk_discard(q, 0, 4096), -EROFS);
		CHECK_EQ(zl_blk_write_zeroes(q, 0, 4096, 0), -EROFS);
		CHECK_EQ(zl_blk_flush(q), 0);
		zl_blk_close(d);
	}

	/* meter: 100 reads, 50 writes, 1 flush of 4 KiB from this user */
	{
		struct zl_blk *d;
		CHECK_EQ(zl_blk_open(ctx, ioh_dev("m"), NULL, &d), 0);
		struct zl_blk_queue *q = zl_blk_queue(d, 0);
		char b[4096] = {1};
		for (int i = 0; i < 50; i++)
			CHECK_EQ(zl_blk_write(q, b, sizeof(b), (uint64_t)i * 4096, 0), 4096);
		for (int i = 0; i < 100; i++)
			CHECK_EQ(zl_blk_read(q, b, sizeof(b), (uint64_t)i * 4096), 4096);
		CHECK_EQ(zl_blk_flush(q), 0);
		zl_blk_close(d);
		char want[160];
		char *ls = ioh_ok(&ioh, "ls");
		snprintf(want, sizeof(want), "uid %u ", (unsigned)geteuid());
		char *at = strstr(ls, ioh_dev("m"));
		CHECK(at && strstr(at, want));
		unsigned long long rd, wr, ot, rb, wb;
		CHECK_EQ(sscanf(strstr(at, want) + strlen(want), "%llu %llu %llu %llu %llu", &rd,
				&wr, &ot, &rb, &wb),
			 5);
		CHECK(rd == 100 && wr == 50 && ot == 1 && rb == 409600 && wb == 204800);
		free(ls);
		char *pr = ioh_ok(&ioh, "prom");
		prom_check_grouped(pr);
		snprintf(want, sizeof(want),
			 "zerolink_iohost_tenant_latency_seconds_count{device=\"%s\",tenant=\"uid "
			 "%u\"} ",
			 ioh_dev("m"), (unsigned)geteuid());
		char *c = strstr(pr, want);
		CHECK(c);
		CHECK_EQ(strtoull(c + strlen(want), NULL, 10), 151ull);
		snprintf(want, sizeof(want),
			 "zerolink_iohost_tenant_latency_seconds_bucket{device=\"%s\",tenant=\"uid "
			 "%u\",le=\"+Inf\"} ",
			 ioh_dev("m"), (unsigned)geteuid());
		c = strstr(pr, want);
		CHECK(c);
		CHECK_EQ(strtoull(c + strlen(want), NULL, 10), 151ull);
		free(pr);
	}
	ioh_stop(&ioh);
	zl_ctx_close(ctx);
	unlink(k1);
	unlink(k2);
	unlink(kshort);
	unlink(keq);
	unlink(img);
	unlink(img4k);
	unlink(imgo);
	unlink(shmo);
	unlink(shm);
	unlink(shm4k);
	unlink(shmp);
	rmdir(dir);
	printf("ok\n");
	return 0;
}
