/* SPDX-License-Identifier: MIT */
/*
 * zerolink block devices: the client side of the devices an I/O host
 * (zerolink-iohost) serves.
 *
 * A device is opened by name with one or more queues; each queue is a
 * zerolink channel to the I/O host and is used by one thread at a time.
 * Writes are zero-copy when their data is in a pool buffer (the I/O host
 * reads it in place); reads cost one copy into the caller's memory, or none
 * when the caller takes a read-only view of the I/O host's buffer.
 *
 * Every call returns 0 or a count on success and a negative errno on
 * failure, and never touches errno. Request statuses are 0 or negative
 * errnos too (ZL_BLK_S_* in <zerolink/abi/blk.h>).
 */
#ifndef ZEROLINK_BLK_H
#define ZEROLINK_BLK_H

#include <stddef.h>
#include <stdint.h>

#include <zerolink/abi/blk.h>
#include <zerolink/chan.h>
#include <zerolink/ctx.h>
#include <zerolink/pool.h>

#ifdef __cplusplus
extern "C" {
#endif

struct zl_blk;
struct zl_blk_queue;

/** Options of zl_blk_open(). Zero-fill, then set. */
struct zl_blk_opts {
	/** Queues to open (1..64); 0: 1. */
	unsigned queues;
	/** Requests in flight per queue at most (1..1024); 0: 128. The I/O
	 *  host may grant fewer. */
	uint32_t depth;
	/** Spin budget of the queues' waits, as zl_chan_opts.spin_ns. */
	int64_t spin_ns;
	/** Handshake timeout in ms; 0: 5000. */
	uint32_t timeout_ms;
	unsigned flags;
};

/** What the I/O host tells about a device. */
struct zl_blk_info {
	uint64_t size;       /* bytes */
	uint32_t block_size; /* 512 or 4096: offsets and lengths are multiples */
	uint32_t max_io;     /* bytes per request at most */
	uint32_t depth;      /* requests in flight per queue at most */
	uint32_t queues;     /* queues opened */
	uint32_t flags;      /* ZL_BLK_INFO_* */
};

/**
 * zl_blk_open() - open the device @name served by an I/O host.
 * Return: 0; -ENOENT no such device (no I/O host serves it); -EACCES the
 * device does not admit this user; -EINVAL bad name or options; -ETIMEDOUT
 * the I/O host did not answer; -EPROTO it answered something malformed;
 * a negative status the I/O host refused the queue with; errors of
 * zl_connect() and zl_pool_create(). Thread safety: any thread.
 */
int zl_blk_open(struct zl_ctx *ctx, const char *name, const struct zl_blk_opts *opts,
		struct zl_blk **out);

/** zl_blk_close() - close every queue; views still held are dropped. NULL is accepted. */
void zl_blk_close(struct zl_blk *dev);

/** zl_blk_info() - the device's size, block size, limits and flags. */
void zl_blk_info(const struct zl_blk *dev, struct zl_blk_info *info);

/** zl_blk_queue() - queue @i (0..queues-1), or NULL. */
struct zl_blk_queue *zl_blk_queue(struct zl_blk *dev, unsigned i);

/** zl_blk_queue_fd() - a descriptor that polls readable when the queue may
 *  have completions (see zl_chan_fd(); call zl_blk_queue_arm() first). */
int zl_blk_queue_fd(const struct zl_blk_queue *q);

/** zl_blk_queue_arm() - as zl_chan_arm() for the queue's channel: 1 when
 *  completions are already there (do not sleep), 0 armed, or an error. */
int zl_blk_queue_arm(struct zl_blk_queue *q);

/**
 * zl_blk_buf_alloc() - a buffer of at least @len bytes from the queue's
 * pool, for zero-copy writes (any pool of the same context will do).
 * Return: 0; -EMSGSIZE larger than the device's max_io; -ENOBUFS all lent
 * out (reap completions). Thread safety: the queue's thread.
 */
int zl_blk_buf_alloc(struct zl_blk_queue *q, size_t len, struct zl_buf *out);

/** One request of zl_blk_submit(). Zero-fill, then set. */
struct zl_blk_req {
	uint8_t op;         /* ZL_BLK_OP_READ, WRITE, FLUSH, DISCARD, WRITE_ZEROES */
	uint16_t flags;     /* ZL_BLK_F_FUA (write), ZL_BLK_F_NOUNMAP (write-zeroes) */
	uint32_t len;       /* bytes (0 for flush) */
	uint64_t offset;    /* bytes */
	uint64_t user_data; /* returned in the completion */
	/** write: the data, a pool buffer holding len bytes; ownership moves
	 *  to the queue when the request is submitted */
	struct zl_buf buf;
	/** read: where to copy the data (len bytes); NULL: the completion
	 *  gives a read-only view instead, held until zl_blk_cpl_release() */
	void *dst;
};

/** A completed request. */
struct zl_blk_cpl {
	uint64_t user_data;
	int32_t status;   /* 0 or a negative errno (ZL_BLK_S_*) */
	uint32_t len;     /* bytes read (reads that succeeded), else 0 */
	const void *data; /* read with dst == NULL: the data, read-only */
	uint32_t slot;    /* internal */
};

/**
 * zl_blk_submit() - queue up to @n requests.
 * Return: requests submitted (> 0; fewer than n when the queue is full or
 * one is refused: the rest are still the caller's, including their
 * buffers); -EINVAL the first request is malformed (op, flags, alignment,
 * length, a write without a buffer); -EROFS a write to a read-only device;
 * -EAGAIN the queue is full (depth requests in flight: reap) or, with
 * ZL_DONTWAIT, the lane is; -ECONNRESET the I/O host died; -EPIPE it closed
 * the queue; -EPROTO it broke the protocol. Thread safety: the queue's thread.
 */
int zl_blk_submit(struct zl_blk_queue *q, const struct zl_blk_req *reqs, unsigned n,
		  unsigned flags);

/**
 * zl_blk_reap() - up to @n completions; waits for the first unless
 * ZL_DONTWAIT.
 * Return: completions (> 0); -EAGAIN none and ZL_DONTWAIT, or nothing in
 * flight; -ECONNRESET, -EPIPE, -EPROTO as zl_blk_submit() (requests in
 * flight are then lost: their buffers come back to their pools).
 */
int zl_blk_reap(struct zl_blk_queue *q, struct zl_blk_cpl *cpl, unsigned n, unsigned flags);

/** zl_blk_cpl_release() - give back the view of a read completed with dst
 *  == NULL (no-op for other completions). */
void zl_blk_cpl_release(struct zl_blk_queue *q, struct zl_blk_cpl *cpl);

/** zl_blk_inflight() - requests submitted and not yet reaped, plus views held. */
unsigned zl_blk_inflight(const struct zl_blk_queue *q);

/*
 * Synchronous calls: one request, waited for. They may be mixed with the
 * asynchronous ones on a queue; completions of other requests that arrive
 * meanwhile are kept for zl_blk_reap(). Return: bytes (read, write), 0
 * (flush, discard, write-zeroes), or the request's status or an error of
 * zl_blk_submit()/zl_blk_reap().
 */
int zl_blk_read(struct zl_blk_queue *q, void *dst, size_t len, uint64_t offset);
/* zl_blk_write() copies src into a pool buffer (one copy); flags: ZL_BLK_F_FUA. */
int zl_blk_write(struct zl_blk_queue *q, const void *src, size_t len, uint64_t offset,
		 unsigned flags);
int zl_blk_flush(struct zl_blk_queue *q);
int zl_blk_discard(struct zl_blk_queue *q, uint64_t offset, uint64_t len);
int zl_blk_write_zeroes(struct zl_blk_queue *q, uint64_t offset, uint64_t len, unsigned flags);

#ifdef __cplusplus
}
#endif
#endif
