/* SPDX-License-Identifier: MIT */
/*
 * crc32c: a CRC32C (Castagnoli) of every block of the device, kept beside
 * the data and checked on every read: a block that no longer matches its
 * checksum fails the read with an I/O error, and its bytes never reach the
 * client. The CRCs are computed by ISA-L (crc32_iscsi, SSE4.2 or PCLMUL).
 *
 * Where the checksums live: for a file backend, in a side file (crc_file,
 * by default the data file's path with ".crc32c" added), mapped shared; for
 * a RAM device, in the I/O host's memory. The side file:
 *
 *   offset 0     "ZLCRC32C", version (le32), block size (le32), blocks
 *                (le64), the CRC32C of these 24 bytes (le32)
 *   offset 4096  one le32 CRC32C per block, block 0 first
 *
 * A side file that does not exist is made by reading the whole device once
 * (so data already there is covered), written under a temporary name and
 * renamed into place. One made for another block size or device size is
 * refused with a message that says so.
 *
 * Order: a write's checksums are computed when it is submitted (from the
 * bytes the backend will write) and stored when it completes without
 * error; a flush makes the side file durable after the data (msync), as
 * does a FUA write for its own checksums. After a crash, a block written
 * but not yet flushed may fail its check (an error, never wrong data).
 * Two overlapping writes in flight at once leave the block undefined, as
 * on any disk; here it may then fail its check until written again.
 * Discard and write-zeroes leave zeroes (every backend's contract), whose
 * checksum is stored.
 */
#include <errno.h>
#include <fcntl.h>
#include <isa-l/crc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "iohost.h"

#define CRC_HDR 4096u
#define CRC_MAGIC "ZLCRC32C"
#define CRC_VERSION 1u
#define CRC_SCAN (1u << 20)
#define CRC_LOG_MAX 16

struct crc {
	uint32_t bs;
	uint64_t blocks;
	uint32_t zero; /* the checksum of a block of zeroes */
	uint32_t *sum; /* blocks entries */
	void *map;     /* the side file's mapping (or the memory) */
	size_t maplen;
	bool file;
	char path[300];
	/* atomic counters */
	uint64_t verified, mismatches, last_bad, syncs, sync_errors;
};

static uint32_t crc32c(const void *p, size_t n)
{
	return ~crc32_iscsi((unsigned char *)p, (int)n, 0xFFFFFFFFu);
}

static void le32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void header(unsigned char *h, uint32_t bs, uint64_t blocks)
{
	memset(h, 0, 28);
	memcpy(h, CRC_MAGIC, 8);
	le32(h + 8, CRC_VERSION);
	le32(h + 12, bs);
	le32(h + 16, (uint32_t)blocks);
	le32(h + 20, (uint32_t)(blocks >> 32));
	le32(h + 24, crc32c(h, 24));
}

/* The stored entries are little-endian; this host is (x86-64, arm64 as
 * Linux runs them), so an entry is read and written as a uint32_t. */
static inline uint32_t sum_get(const struct crc *c, uint64_t b)
{
	return __atomic_load_n(&c->sum[b], __ATOMIC_RELAXED);
}

static inline void sum_set(struct crc *c, uint64_t b, uint32_t v)
{
	__atomic_store_n(&c->sum[b], v, __ATOMIC_RELAXED);
}

/* Checksums of the device's present content, into sum. */
static int scan(struct device *d, struct crc *c, char *err, size_t errlen)
{
	if (d->conf.backend == BK_RAM) {
		for (uint64_t b = 0; b < c->blocks; b++)
			c->sum[b] = crc32c(d->ram + b * c->bs, c->bs);
		return 0;
	}
	int fd = open(d->conf.path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		snprintf(err, errlen, "device %s: crc32c: reading %s: %s", d->conf.name,
			 d->conf.path, strerror(e));
		return -e;
	}
	unsigned char *buf = malloc(CRC_SCAN);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	int r = 0;
	for (uint64_t off = 0; off < d->size;) {
		size_t want = d->size - off < CRC_SCAN ? (size_t)(d->size - off) : CRC_SCAN;
		ssize_t n = pread(fd, buf, want, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			/* a file shorter than the device reads as zeroes */
			if (n == 0) {
				memset(buf, 0, want);
				n = (ssize_t)want;
			} else {
				r = -errno;
				snprintf(err, errlen, "device %s: crc32c: reading %s: %s",
					 d->conf.name, d->conf.path, strerror(-r));
				break;
			}
		}
		size_t whole = (size_t)n - (size_t)n % c->bs;
		if (!whole) {
			/* fewer bytes than a block: read on from there next time */
			memset(buf + n, 0, c->bs - (size_t)n);
			whole = c->bs;
		}
		for (size_t k = 0; k < whole; k += c->bs)
			c->sum[(off + k) / c->bs] = crc32c(buf + k, c->bs);
		off += whole;
	}
	free(buf);
	close(fd);
	return r;
}

static int side_open(struct device *d, struct crc *c, char *err, size_t errlen)
{
	const char *name = d->conf.name;
	size_t need = CRC_HDR + ((c->blocks * 4 + 4095) & ~(size_t)4095);
	int fd = open(c->path, O_RDWR | O_CLOEXEC);
	if (fd >= 0) {
		struct stat st;
		unsigned char h[28], want[28];
		header(want, c->bs, c->blocks);
		if (fstat(fd, &st) < 0 || pread(fd, h, sizeof(h), 0) != (ssize_t)sizeof(h) ||
		    memcmp(h, CRC_MAGIC, 8)) {
			snprintf(err, errlen,
				 "device %s: crc_file %s is not a zerolink CRC32C file", name,
				 c->path);
			close(fd);
			return -EINVAL;
		}
		if (get32(h + 24) != crc32c(h, 24) || get32(h + 8) != CRC_VERSION) {
			snprintf(err, errlen, "device %s: crc_file %s: damaged header", name,
				 c->path);
			close(fd);
			return -EINVAL;
		}
		if (memcmp(h, want, sizeof(h))) {
			unsigned long long blocks = get32(h + 16) | (uint64_t)get32(h + 20) << 32;
			snprintf(err, errlen,
				 "device %s: crc_file %s was made for %llu blocks of %u bytes, the "
				 "device has %llu of %u (remove the file to start afresh)",
				 name, c->path, blocks, get32(h + 12),
				 (unsigned long long)c->blocks, c->bs);
			close(fd);
			return -EINVAL;
		}
		if ((uint64_t)st.st_size < need) {
			snprintf(err, errlen, "device %s: crc_file %s is cut short", name, c->path);
			close(fd);
			return -EINVAL;
		}
		c->map = mmap(NULL, need, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		close(fd);
		if (c->map == MAP_FAILED) {
			int e = errno;
			snprintf(err, errlen, "device %s: crc_file %s: mmap: %s", name, c->path,
				 strerror(e));
			return -e;
		}
		c->maplen = need;
		c->sum = (uint32_t *)((char *)c->map + CRC_HDR);
		return 0;
	}
	if (errno != ENOENT) {
		int e = errno;
		snprintf(err, errlen, "device %s: crc_file %s: %s", name, c->path, strerror(e));
		return -e;
	}
	/* a new one, made whole under another name, then renamed */
	char tmp[320];
	snprintf(tmp, sizeof(tmp), "%s.tmp-%d", c->path, (int)getpid());
	fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		int e = errno;
		snprintf(err, errlen, "device %s: crc_file %s: %s", name, tmp, strerror(e));
		return -e;
	}
	int r = 0;
	if (ftruncate(fd, (off_t)need) < 0) {
		r = -errno;
		snprintf(err, errlen, "device %s: crc_file %s: %s", name, tmp, strerror(-r));
		goto fail;
	}
	c->map = mmap(NULL, need, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (c->map == MAP_FAILED) {
		c->map = NULL;
		r = -errno;
		snprintf(err, errlen, "device %s: crc_file %s: mmap: %s", name, tmp, strerror(-r));
		goto fail;
	}
	c->maplen = need;
	c->sum = (uint32_t *)((char *)c->map + CRC_HDR);
	if ((r = scan(d, c, err, errlen)))
		goto fail;
	header(c->map, c->bs, c->blocks);
	if (msync(c->map, need, MS_SYNC) < 0 || fsync(fd) < 0 || rename(tmp, c->path) < 0) {
		r = -errno;
		snprintf(err, errlen, "device %s: crc_file %s: %s", name, c->path, strerror(-r));
		goto fail;
	}
	close(fd);
	return 0;
fail:
	if (c->map)
		munmap(c->map, need);
	c->map = NULL;
	close(fd);
	unlink(tmp);
	return r;
}

static int crc_open(struct device *d, void **state, char *err, size_t errlen)
{
	if (d->conf.backend == BK_NULL) {
		snprintf(err, errlen,
			 "device %s: module crc32c needs data to check: a ram or file backend",
			 d->conf.name);
		return -EINVAL;
	}
	struct crc *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->bs = d->conf.block_size;
	c->blocks = d->size / c->bs;
	unsigned char *z = calloc(1, c->bs);
	if (!z) {
		free(c);
		return -ENOMEM;
	}
	c->zero = crc32c(z, c->bs);
	free(z);
	int r;
	if (d->conf.backend == BK_RAM && !d->conf.crc_file[0]) {
		c->maplen = (c->blocks * 4 + 4095) & ~(size_t)4095;
		c->map = mmap(NULL, c->maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			      -1, 0);
		if (c->map == MAP_FAILED) {
			free(c);
			return -ENOMEM;
		}
		c->sum = c->map;
		r = scan(d, c, err, errlen);
	} else {
		if (d->conf.crc_file[0]) {
			snprintf(c->path, sizeof(c->path), "%s", d->conf.crc_file);
		} else {
			struct stat st;
			if (stat(d->conf.path, &st) == 0 && !S_ISREG(st.st_mode)) {
				snprintf(err, errlen,
					 "device %s: module crc32c on a block device needs "
					 "crc_file = FILE",
					 d->conf.name);
				free(c);
				return -EINVAL;
			}
			snprintf(c->path, sizeof(c->path), "%s.crc32c", d->conf.path);
		}
		c->file = true;
		r = side_open(d, c, err, errlen);
	}
	if (r) {
		if (c->map && !c->file)
			munmap(c->map, c->maplen);
		free(c);
		return r;
	}
	*state = c;
	return 0;
}

static void crc_close(void *state)
{
	struct crc *c = state;
	if (c->file)
		msync(c->map, c->maplen, MS_SYNC);
	munmap(c->map, c->maplen);
	free(c);
}

/* A walk over r's data, block by block; a block may straddle segments
 * (the CRC is carried across them). */
struct walk {
	unsigned seg;
	size_t at;
};

static uint32_t next_sum(const struct crc *c, const struct ioreq *r, struct walk *w)
{
	uint32_t v = 0xFFFFFFFFu, left = c->bs;
	while (left) {
		size_t t = r->iov[w->seg].iov_len - w->at;
		if (t > left)
			t = left;
		v = crc32_iscsi((unsigned char *)r->iov[w->seg].iov_base + w->at, (int)t, v);
		left -= (uint32_t)t;
		w->at += t;
		if (w->at == r->iov[w->seg].iov_len) {
			w->seg++;
			w->at = 0;
		}
	}
	return ~v;
}

/* Make the side file's entries [b0, b0+n) durable (all of them: n 0);
 * false if the file system said no. */
static bool side_sync(struct crc *c, uint64_t b0, uint64_t n)
{
	if (!c->file)
		return true;
	char *from = c->map, *to = (char *)c->map + c->maplen;
	if (n) {
		from = (char *)c->map + ((CRC_HDR + b0 * 4) & ~(uint64_t)4095);
		to = (char *)c->map + CRC_HDR + (b0 + n) * 4;
	}
	__atomic_fetch_add(&c->syncs, 1, __ATOMIC_RELAXED);
	if (msync(from, (size_t)(to - from), MS_SYNC) == 0)
		return true;
	__atomic_fetch_add(&c->sync_errors, 1, __ATOMIC_RELAXED);
	return false;
}

static int32_t crc_submit(void *state, struct ioreq *r, void **priv)
{
	struct crc *c = state;
	if (r->op != ZL_BLK_OP_WRITE)
		return 0;
	uint32_t n = r->len / c->bs, *s = malloc(n * sizeof(uint32_t));
	if (!s)
		return ZL_BLK_S_ENOMEM;
	struct walk w = {0};
	for (uint32_t i = 0; i < n; i++)
		s[i] = next_sum(c, r, &w);
	*priv = s;
	return 0;
}

static void crc_complete(void *state, struct ioreq *r, void **priv)
{
	struct crc *c = state;
	uint64_t b0 = r->off / c->bs, n = r->len / c->bs;
	switch (r->op) {
	case ZL_BLK_OP_WRITE:
		if (r->status == 0) {
			const uint32_t *s = *priv;
			for (uint64_t i = 0; i < n; i++)
				sum_set(c, b0 + i, s[i]);
			/* durable means the checksums too */
			if ((r->flags & ZL_BLK_F_FUA) && !side_sync(c, b0, n))
				r->status = ZL_BLK_S_EIO;
		}
		free(*priv);
		*priv = NULL;
		break;
	case ZL_BLK_OP_DISCARD:
	case ZL_BLK_OP_WRITE_ZEROES:
		/* done or not, the range is zeroes or as it was: a failed
		 * request leaves it undefined, and zeroes are what the
		 * backends leave when they got that far */
		if (r->status == 0)
			for (uint64_t i = 0; i < n; i++)
				sum_set(c, b0 + i, c->zero);
		break;
	case ZL_BLK_OP_FLUSH:
		if (r->status == 0 && !side_sync(c, 0, 0))
			r->status = ZL_BLK_S_EIO;
		break;
	case ZL_BLK_OP_READ: {
		if (r->status)
			break;
		/* each block checked as it is summed: nothing to keep */
		uint64_t bad = UINT64_MAX;
		struct walk w = {0};
		for (uint64_t i = 0; i < n && bad == UINT64_MAX; i++)
			if (next_sum(c, r, &w) != sum_get(c, b0 + i))
				bad = b0 + i;
		__atomic_fetch_add(&c->verified, n, __ATOMIC_RELAXED);
		if (bad == UINT64_MAX)
			break;
		/* never hand out what fails its check */
		for (unsigned i = 0; i < r->niov; i++)
			memset(r->iov[i].iov_base, 0, r->iov[i].iov_len);
		r->status = ZL_BLK_S_EIO;
		__atomic_store_n(&c->last_bad, bad, __ATOMIC_RELAXED);
		if (__atomic_fetch_add(&c->mismatches, 1, __ATOMIC_RELAXED) < CRC_LOG_MAX)
			fprintf(stderr,
				"zerolink-iohost: device %s: block %llu (%u bytes at %llu) fails "
				"its CRC32C check: read refused\n",
				r->dev->conf.name, (unsigned long long)bad, c->bs,
				(unsigned long long)(bad * c->bs));
		break;
	}
	default:
		break;
	}
}

static void crc_report(void *state, const struct device *d, struct out *o, bool prom)
{
	struct crc *c = state;
	unsigned long long v = __atomic_load_n(&c->verified, __ATOMIC_RELAXED),
			   m = __atomic_load_n(&c->mismatches, __ATOMIC_RELAXED),
			   lb = __atomic_load_n(&c->last_bad, __ATOMIC_RELAXED),
			   se = __atomic_load_n(&c->sync_errors, __ATOMIC_RELAXED);
	if (prom) {
		outf(o, "zerolink_iohost_crc32c_blocks_verified_total{device=\"%s\"} %llu\n",
		     d->conf.name, v);
		outf(o, "zerolink_iohost_crc32c_mismatches_total{device=\"%s\"} %llu\n",
		     d->conf.name, m);
		outf(o, "zerolink_iohost_crc32c_sync_errors_total{device=\"%s\"} %llu\n",
		     d->conf.name, se);
		return;
	}
	outf(o, "    crc32c: %llu blocks of %u bytes, sums in %s; %llu verified, %llu mismatches",
	     (unsigned long long)c->blocks, c->bs, c->file ? c->path : "memory", v, m);
	if (m)
		outf(o, " (last: block %llu)", lb);
	if (se)
		outf(o, ", %llu failed syncs", se);
	outf(o, "\n");
}

const struct mod_ops mod_crc32c = {
	.name = "crc32c",
	.open = crc_open,
	.close = crc_close,
	.submit = crc_submit,
	.complete = crc_complete,
	.report = crc_report,
};
