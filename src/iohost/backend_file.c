/* SPDX-License-Identifier: MIT */
/*
 * Files and block devices through io_uring, on the ring of the sidecore
 * that serves the request. O_DIRECT when the file system takes it (direct
 * = auto), so that a write goes from the client's buffer to the device
 * without a copy in the I/O host; a segment that is not aligned as O_DIRECT
 * needs goes through an aligned bounce buffer instead.
 *
 * A file in memory (tmpfs, ramfs; inline = auto) is served inline instead:
 * the sidecore makes the copy itself with preadv2/pwritev2. io_uring hands
 * such requests to a kernel worker, which would share the sidecore's core
 * with the polling sidecore and add a wake-up to every request.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/uio.h>
#include <unistd.h>

#include "iohost.h"

static int file_rw(struct device *d, uint8_t op, uint64_t off, const struct iovec *iov, unsigned n,
		   uint32_t len, int flags);

/* The warmer: touches the pages of the file's data, chunk by chunk in
 * order, and marks each chunk that is data throughout as usable through
 * the mapping. Holes are left alone (touching them would allocate them).
 * At low priority, once, when the device is added. */
static int touch_chunk(void *arg)
{
	volatile const char *p = arg;
	for (uint64_t i = 0; i < (1ull << MEM_CHUNK_SHIFT); i += 4096)
		(void)p[i];
	return 0;
}

static void *warm_main(void *arg)
{
	struct device *d = arg;
	pthread_setname_np(pthread_self(), "zl-warm");
	setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10);
	const uint64_t chunk = 1ull << MEM_CHUNK_SHIFT;
	uint64_t off = 0;
	while (off < d->size && !__atomic_load_n(&d->warm_stop, __ATOMIC_RELAXED)) {
		off_t a = lseek(d->fd, (off_t)off, SEEK_DATA);
		if (a < 0)
			break; /* no data after off */
		off_t b = lseek(d->fd, a, SEEK_HOLE);
		if (b < 0 || (uint64_t)b > d->size)
			b = (off_t)d->size;
		/* the chunks wholly inside [a, b) */
		uint64_t c0 = ((uint64_t)a + chunk - 1) >> MEM_CHUNK_SHIFT;
		uint64_t c1 = (uint64_t)b >> MEM_CHUNK_SHIFT;
		for (uint64_t c = c0; c < c1 && !__atomic_load_n(&d->warm_stop, __ATOMIC_RELAXED);
		     c++) {
			uint64_t at = c << MEM_CHUNK_SHIFT;
			if (dev_mem_call(d, false, at, (uint32_t)chunk, touch_chunk, d->mem + at))
				goto done; /* the file shrank: the rest stays unmarked */
			__atomic_fetch_or(&d->mem_ok[c >> 3], (uint8_t)(1u << (c & 7)),
					  __ATOMIC_RELAXED);
			__atomic_fetch_add(&d->mem_warm_bytes, chunk, __ATOMIC_RELAXED);
		}
		off = (uint64_t)b;
	}
done:
	__atomic_store_n(&d->warm_done, true, __ATOMIC_RELAXED);
	return NULL;
}

/* Map a file in memory, and warm the mapping in the background. */
static void mem_start(struct device *d)
{
	void *m = mmap(NULL, d->size, PROT_READ | (d->conf.readonly ? 0 : PROT_WRITE), MAP_SHARED,
		       d->fd, 0);
	if (m == MAP_FAILED)
		return;
	d->mem_ok = calloc(((d->size >> MEM_CHUNK_SHIFT) + 8) / 8, 1);
	if (!d->mem_ok) {
		munmap(m, d->size);
		return;
	}
	d->mem = m;
	d->mem_file = true;
	d->warmer_on = pthread_create(&d->warmer, NULL, warm_main, d) == 0;
}

/* Chunks [off, off+len) touches are no longer all data: unmark them. */
static void mem_unmark(struct device *d, uint64_t off, uint64_t len)
{
	if (!d->mem_ok || !len)
		return;
	for (uint64_t c = off >> MEM_CHUNK_SHIFT; c <= (off + len - 1) >> MEM_CHUNK_SHIFT; c++)
		__atomic_fetch_and(&d->mem_ok[c >> 3], (uint8_t) ~(1u << (c & 7)),
				   __ATOMIC_RELAXED);
}

static int file_open(struct device *d, char *err, size_t errlen)
{
	const struct devconf *c = &d->conf;
	int flags = (c->readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC;
	if (c->size && !c->readonly)
		flags |= O_CREAT;
	int fd = -1;
	d->direct = false;
	if (c->direct != 0) {
		fd = open(c->path, flags | O_DIRECT, 0600);
		if (fd >= 0)
			d->direct = true;
		else if (errno != EINVAL || c->direct == 1)
			goto fail;
	}
	if (fd < 0 && (fd = open(c->path, flags, 0600)) < 0)
		goto fail;
	struct stat st;
	if (fstat(fd, &st) < 0)
		goto fail_fd;
	uint64_t have;
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, &have) < 0)
			goto fail_fd;
		d->flags = ZL_BLK_INFO_FLUSH;
	} else if (S_ISREG(st.st_mode)) {
		have = (uint64_t)st.st_size;
		if (c->size > have) {
			if (c->readonly) {
				snprintf(err, errlen, "device %s: %s is smaller than size", c->name,
					 c->path);
				close(fd);
				return -EINVAL;
			}
			if (ftruncate(fd, (off_t)c->size) < 0)
				goto fail_fd;
			have = c->size;
		}
		d->flags = ZL_BLK_INFO_FLUSH | ZL_BLK_INFO_DISCARD | ZL_BLK_INFO_WRITE_ZEROES;
	} else {
		snprintf(err, errlen, "device %s: %s is neither a file nor a block device", c->name,
			 c->path);
		close(fd);
		return -EINVAL;
	}
	d->size = c->size ? c->size : have - have % c->block_size;
	if (d->size == 0) {
		snprintf(err, errlen, "device %s: %s is empty (give a size)", c->name, c->path);
		close(fd);
		return -EINVAL;
	}
	d->dio_align = 512;
	struct statx sx;
	if (d->direct && statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 &&
	    (sx.stx_mask & STATX_DIOALIGN) && sx.stx_dio_mem_align) {
		d->dio_align = sx.stx_dio_mem_align;
		if (sx.stx_dio_offset_align > c->block_size) {
			/* offsets of one block would be refused: go buffered */
			close(fd);
			if (c->direct == 1) {
				snprintf(err, errlen,
					 "device %s: O_DIRECT needs %u-byte blocks, block_size is "
					 "%u",
					 c->name, sx.stx_dio_offset_align, c->block_size);
				return -EINVAL;
			}
			d->direct = false;
			if ((fd = open(c->path, flags & ~O_CREAT)) < 0)
				goto fail;
		}
	}
	/* A file in memory (tmpfs, ramfs) is served inline: its "I/O" is a
	 * copy, which the sidecore makes itself; through io_uring every
	 * request would go to a kernel worker on the sidecore's own core. */
	struct statfs sf;
	bool in_memory =
		fstatfs(fd, &sf) == 0 && (sf.f_type == TMPFS_MAGIC || sf.f_type == RAMFS_MAGIC);
	d->inline_io = c->inline_io == 1 || (c->inline_io == -1 && in_memory);
	if (d->inline_io && d->direct && c->direct != 1) {
		/* nothing to bypass in memory, and no alignment to keep */
		int fl = fcntl(fd, F_GETFL);
		if (fl >= 0 && fcntl(fd, F_SETFL, fl & ~O_DIRECT) == 0)
			d->direct = false;
	}
	d->rw = d->inline_io && !d->direct ? file_rw : NULL;
	d->fd = fd;
	/* mapped, for copies without system calls and modules that
	 * transform the data in one pass */
	if (d->rw && in_memory && S_ISREG(st.st_mode))
		mem_start(d);
	return 0;
fail_fd:
	close(fd);
fail : {
	int e = errno;
	snprintf(err, errlen, "device %s: %s: %s", c->name, c->path, strerror(e));
	return -e;
}
}

static void file_close(struct device *d)
{
	if (d->warmer_on) {
		__atomic_store_n(&d->warm_stop, true, __ATOMIC_RELAXED);
		pthread_join(d->warmer, NULL);
	}
	free(d->mem_ok);
	if (d->mem)
		munmap(d->mem, d->size);
	if (d->fd >= 0)
		close(d->fd);
}

static bool aligned(const struct device *d, const struct ioreq *r)
{
	if (!d->direct)
		return true;
	for (unsigned i = 0; i < r->niov; i++)
		if ((uintptr_t)r->iov[i].iov_base % d->dio_align ||
		    r->iov[i].iov_len % d->dio_align)
			return false;
	return true;
}

/* Queue the (rest of the) transfer of r on the sidecore's ring. */
static void rw_prep(struct sidecore *sc, struct ioreq *r)
{
	struct io_uring_sqe *sqe = sc_sqe(sc);
	uint64_t off = r->off + r->done_bytes;
	if (r->bounce) {
		char *p = (char *)r->bounce + r->done_bytes;
		if (r->op == ZL_BLK_OP_READ)
			io_uring_prep_read(sqe, r->dev->fd, p, r->len - r->done_bytes, off);
		else
			io_uring_prep_write(sqe, r->dev->fd, p, r->len - r->done_bytes, off);
	} else {
		/* what is left: whole segments skipped, then part of one */
		unsigned i = 0, n = 0;
		uint32_t skip = r->done_bytes;
		while (skip && skip >= r->iov[i].iov_len)
			skip -= (uint32_t)r->iov[i++].iov_len;
		for (; i < r->niov; i++, skip = 0) {
			r->riov[n].iov_base = (char *)r->iov[i].iov_base + skip;
			r->riov[n++].iov_len = r->iov[i].iov_len - skip;
		}
		if (r->op == ZL_BLK_OP_READ)
			io_uring_prep_readv(sqe, r->dev->fd, r->riov, n, off);
		else
			io_uring_prep_writev(sqe, r->dev->fd, r->riov, n, off);
	}
	sqe->rw_flags = dev_rw_flags(r);
	io_uring_sqe_set_data(sqe, r);
}

static int write_zeroes_slow(struct device *d, uint64_t off, uint64_t len);
static void bounce_done(struct ioreq *r);

/* A read or write through system calls. A read past the file's end
 * reads zeroes; a write that makes no progress is a full disk. */
static int file_sys_rw(struct device *d, uint8_t op, uint64_t off, const struct iovec *iov,
		       unsigned n, uint32_t len, int flags)
{
	struct iovec v[IOH_MAX_SEGS];
	memcpy(v, iov, n * sizeof(*v));
	uint32_t done = 0;
	unsigned i = 0;
	while (done < len) {
		ssize_t k =
			op == ZL_BLK_OP_READ
				? preadv2(d->fd, v + i, (int)(n - i), (off_t)(off + done), 0)
				: pwritev2(d->fd, v + i, (int)(n - i), (off_t)(off + done), flags);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		if (k == 0) {
			if (op == ZL_BLK_OP_WRITE)
				return -ENOSPC;
			/* the file ends before the device: zeroes */
			for (; i < n; i++)
				memset(v[i].iov_base, 0, v[i].iov_len);
			return 0;
		}
		done += (uint32_t)k;
		while (k && i < n) {
			size_t t = (size_t)k < v[i].iov_len ? (size_t)k : v[i].iov_len;
			v[i].iov_base = (char *)v[i].iov_base + t;
			v[i].iov_len -= t;
			k -= (ssize_t)t;
			if (!v[i].iov_len)
				i++;
		}
	}
	return 0;
}

struct mem_op {
	struct device *d;
	uint8_t op;
	uint64_t off;
	const struct iovec *iov;
	unsigned n;
};

static int mem_op_run(void *arg)
{
	struct mem_op *m = arg;
	mem_copy(m->d->mem + m->off, m->op, m->iov, m->n);
	return 0;
}

/* A read or write as a copy from or to the file's mapping (a file in
 * memory): no system call. */
static int mem_rw(struct device *d, uint8_t op, uint64_t off, const struct iovec *iov, unsigned n,
		  uint32_t len)
{
	struct mem_op m = {d, op, off, iov, n};
	return dev_mem_call(d, op == ZL_BLK_OP_WRITE, off, len, mem_op_run, &m);
}

/* Synchronous reads and writes of a file in memory (d->rw), on any
 * thread: what the sidecore does for inline devices, and what a module
 * that does the I/O itself calls. A copy to or from the mapping where it
 * is warm, system calls elsewhere. */
static int file_rw(struct device *d, uint8_t op, uint64_t off, const struct iovec *iov, unsigned n,
		   uint32_t len, int flags)
{
	if (dev_mem_ok(d, off, len))
		return mem_rw(d, op, off, iov, n, len);
	return file_sys_rw(d, op, off, iov, n, len, flags);
}

/* r, done by the sidecore itself (inline devices): file_rw, or the system
 * call the operation needs. */
static void inline_submit(struct sidecore *sc, struct ioreq *r)
{
	struct device *d = r->dev;
	int res = 0;
	switch (r->op) {
	case ZL_BLK_OP_READ:
	case ZL_BLK_OP_WRITE: {
		if (dev_rw_parts(sc, r))
			return; /* completed by sc_jobs() when its parts are done */
		struct iovec b = {r->bounce, r->len};
		int fl = dev_rw_flags(r);
		res = r->bounce ? file_rw(d, r->op, r->off, &b, 1, r->len, fl)
				: file_rw(d, r->op, r->off, r->iov, r->niov, r->len, fl);
		break;
	}
	case ZL_BLK_OP_FLUSH:
		res = fdatasync(d->fd) < 0 ? -errno : 0;
		break;
	case ZL_BLK_OP_DISCARD:
		mem_unmark(d, r->off, r->len);
		res = fallocate(d->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)r->off,
				(off_t)r->len) < 0
			      ? -errno
			      : 0;
		break;
	case ZL_BLK_OP_WRITE_ZEROES:
		mem_unmark(d, r->off, r->len);
		res = fallocate(d->fd,
				((r->flags & ZL_BLK_F_NOUNMAP) ? FALLOC_FL_ZERO_RANGE
							       : FALLOC_FL_PUNCH_HOLE) |
					FALLOC_FL_KEEP_SIZE,
				(off_t)r->off, (off_t)r->len) < 0
			      ? -errno
			      : 0;
		if (res == -EOPNOTSUPP)
			res = write_zeroes_slow(d, r->off, r->len);
		break;
	default:
		res = -EINVAL;
		break;
	}
	r->status = res == -EINVAL ? ZL_BLK_S_EINVAL : res < 0 ? dev_status(res) : 0;
	bounce_done(r);
	sc_complete(sc, r);
}

static void file_submit(struct sidecore *sc, struct ioreq *r)
{
	struct device *d = r->dev;
	struct io_uring_sqe *sqe;
	switch (r->op) {
	case ZL_BLK_OP_READ:
	case ZL_BLK_OP_WRITE:
		if (!aligned(d, r)) {
			if (posix_memalign(&r->bounce, d->dio_align < 4096 ? 4096 : d->dio_align,
					   r->len)) {
				r->status = ZL_BLK_S_ENOMEM;
				sc_complete(sc, r);
				return;
			}
			if (r->op == ZL_BLK_OP_WRITE) {
				char *p = r->bounce;
				for (unsigned i = 0; i < r->niov; i++) {
					memcpy(p, r->iov[i].iov_base, r->iov[i].iov_len);
					p += r->iov[i].iov_len;
				}
			}
		}
		if (d->inline_io)
			inline_submit(sc, r);
		else
			rw_prep(sc, r);
		return;
	default:
		if (d->inline_io) {
			inline_submit(sc, r);
			return;
		}
		break;
	}
	switch (r->op) {
	case ZL_BLK_OP_FLUSH:
		sqe = sc_sqe(sc);
		io_uring_prep_fsync(sqe, d->fd, IORING_FSYNC_DATASYNC);
		break;
	case ZL_BLK_OP_DISCARD:
		sqe = sc_sqe(sc);
		io_uring_prep_fallocate(sqe, d->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					r->off, r->len);
		break;
	case ZL_BLK_OP_WRITE_ZEROES:
		sqe = sc_sqe(sc);
		io_uring_prep_fallocate(sqe, d->fd,
					((r->flags & ZL_BLK_F_NOUNMAP) ? FALLOC_FL_ZERO_RANGE
								       : FALLOC_FL_PUNCH_HOLE) |
						FALLOC_FL_KEEP_SIZE,
					r->off, r->len);
		break;
	default:
		r->status = ZL_BLK_S_EINVAL;
		sc_complete(sc, r);
		return;
	}
	io_uring_sqe_set_data(sqe, r);
}

/* Zeroes written the slow way, when the file system cannot allocate them
 * zeroed: blocking writes from a zero page, on the sidecore. */
static int write_zeroes_slow(struct device *d, uint64_t off, uint64_t len)
{
	static const char zero[65536];
	while (len) {
		size_t k = len < sizeof(zero) ? (size_t)len : sizeof(zero);
		ssize_t w = pwrite(d->fd, zero, k, (off_t)off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return w < 0 ? -errno : -EIO;
		off += (uint64_t)w;
		len -= (uint64_t)w;
	}
	return 0;
}

/* A read's data from the bounce buffer to its place; the buffer freed. */
static void bounce_done(struct ioreq *r)
{
	if (!r->bounce)
		return;
	if (r->op == ZL_BLK_OP_READ && r->status == 0) {
		const char *p = r->bounce;
		for (unsigned i = 0; i < r->niov; i++) {
			memcpy(r->iov[i].iov_base, p, r->iov[i].iov_len);
			p += r->iov[i].iov_len;
		}
	}
	free(r->bounce);
	r->bounce = NULL;
}

static void file_cqe(struct sidecore *sc, struct ioreq *r, int res)
{
	if (r->op == ZL_BLK_OP_READ || r->op == ZL_BLK_OP_WRITE) {
		if (res < 0) {
			r->status = dev_status(res);
		} else if ((uint32_t)res < r->len - r->done_bytes) {
			if (res == 0 && r->op == ZL_BLK_OP_READ) {
				/* the file ends before the device: the rest reads
				 * as zeroes */
				uint32_t at = r->done_bytes;
				if (r->bounce) {
					memset((char *)r->bounce + at, 0, r->len - at);
				} else {
					for (unsigned i = 0; i < r->niov; i++) {
						if (at >= r->iov[i].iov_len) {
							at -= (uint32_t)r->iov[i].iov_len;
							continue;
						}
						memset((char *)r->iov[i].iov_base + at, 0,
						       r->iov[i].iov_len - at);
						at = 0;
					}
				}
				r->status = 0;
			} else if (res == 0) {
				r->status = ZL_BLK_S_ENOSPC;
			} else {
				r->done_bytes += (uint32_t)res;
				rw_prep(sc, r);
				return;
			}
		} else {
			r->status = 0;
		}
		bounce_done(r);
	} else if (res == -EOPNOTSUPP && r->op == ZL_BLK_OP_WRITE_ZEROES) {
		int e = write_zeroes_slow(r->dev, r->off, r->len);
		r->status = e ? dev_status(e) : 0;
	} else {
		r->status = res < 0 ? dev_status(res) : 0;
	}
	sc_complete(sc, r);
}

const struct backend_ops backend_file = {
	.name = "file",
	.open = file_open,
	.close = file_close,
	.submit = file_submit,
	.cqe = file_cqe,
};
