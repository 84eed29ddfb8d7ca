/* SPDX-License-Identifier: MIT */
/*
 * The RAM disk: private memory of the I/O host, copied by the sidecore.
 * Pages are given to the device only when first written (MAP_NORESERVE);
 * discarding whole pages gives them back.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "iohost.h"

static int ram_rw(struct device *d, uint8_t op, uint64_t off, const struct iovec *iov, unsigned n,
		  uint32_t len, int flags);

static int ram_open(struct device *d, char *err, size_t errlen)
{
	d->size = d->conf.size;
	void *p = mmap(NULL, d->size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED) {
		int e = errno;
		snprintf(err, errlen, "device %s: cannot map %llu bytes: %s", d->conf.name,
			 (unsigned long long)d->size, strerror(e));
		return -e;
	}
	d->ram = p;
	d->mem = p;
	d->rw = ram_rw;
	d->flags = ZL_BLK_INFO_DISCARD | ZL_BLK_INFO_WRITE_ZEROES;
	return 0;
}

static void ram_close(struct device *d)
{
	if (d->ram)
		munmap(d->ram, d->size);
}

/* Zero [off, off+len): whole pages are handed back (they read as zeroes
 * afterwards), the edges are cleared. */
static void ram_zero(struct device *d, uint64_t off, uint64_t len, bool keep)
{
	uint64_t a = (off + 4095) & ~4095ull, b = (off + len) & ~4095ull;
	if (keep || b <= a) {
		memset(d->ram + off, 0, len);
		return;
	}
	memset(d->ram + off, 0, a - off);
	madvise(d->ram + a, b - a, MADV_DONTNEED);
	memset(d->ram + b, 0, off + len - b);
}

/* d->rw: a copy, on any thread. */
static int ram_rw(struct device *d, uint8_t op, uint64_t off, const struct iovec *iov, unsigned n,
		  uint32_t len, int flags)
{
	(void)len;
	(void)flags;
	mem_copy(d->ram + off, op, iov, n);
	return 0;
}

static void ram_submit(struct sidecore *sc, struct ioreq *r)
{
	struct device *d = r->dev;
	switch (r->op) {
	case ZL_BLK_OP_READ:
	case ZL_BLK_OP_WRITE:
		if (dev_rw_parts(sc, r))
			return; /* completed by sc_jobs() when its parts are done */
		ram_rw(d, r->op, r->off, r->iov, r->niov, r->len, 0);
		break;
	case ZL_BLK_OP_DISCARD:
		ram_zero(d, r->off, r->len, false);
		break;
	case ZL_BLK_OP_WRITE_ZEROES:
		ram_zero(d, r->off, r->len, r->flags & ZL_BLK_F_NOUNMAP);
		break;
	default:
		break;
	}
	r->status = 0;
	sc_complete(sc, r);
}

const struct backend_ops backend_ram = {
	.name = "ram",
	.open = ram_open,
	.close = ram_close,
	.submit = ram_submit,
};
