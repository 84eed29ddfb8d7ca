/* SPDX-License-Identifier: MIT */
/*
 * zerolink pools: buffers carved out of one sealed shared-memory region
 * owned by this domain. Only the owner allocates; buffers sent on a channel
 * come back to the pool when every receiver has released them.
 */
#ifndef ZEROLINK_POOL_H
#define ZEROLINK_POOL_H

#include <stddef.h>
#include <stdint.h>

#include <zerolink/ctx.h>

#ifdef __cplusplus
extern "C" {
#endif

struct zl_pool;

/** Largest number of size classes in a pool. */
#define ZL_POOL_MAX_CLASSES 8

/** One size class: count buffers of size bytes each. */
struct zl_pool_class {
	uint32_t size;  /* bytes, rounded up to 64 */
	uint32_t count; /* buffers */
};

/** Options of zl_pool_create(). Zero-fill, then set what you need. */
struct zl_pool_opts {
	/** Size classes, smallest first; nclasses == 0 gives the default set
	 *  (2 KiB x 1024, 64 KiB x 256, 1 MiB x 32). */
	struct zl_pool_class classes[ZL_POOL_MAX_CLASSES];
	unsigned nclasses;
	/** ZL_POOL_HUGETLB: back with huge pages (falls back to normal pages
	 *  when none are reserved); ZL_POOL_FORWARD: receivers may forward this
	 *  pool's buffers to third domains (transitive zero-copy). */
	unsigned flags;
};

#define ZL_POOL_HUGETLB 0x1u
#define ZL_POOL_FORWARD 0x2u

/**
 * A buffer of a pool, held by its owner between zl_buf_alloc() and
 * zl_chan_send_buf() or zl_buf_free(). Plain data: copy it freely, but send
 * or free it once.
 */
struct zl_buf {
	void *data;           /* writable bytes */
	uint32_t cap;         /* bytes available at data */
	uint32_t id;          /* class << 24 | index, internal */
	struct zl_pool *pool; /* owning pool */
};

/**
 * zl_pool_create() - create a pool in a new sealed region.
 * Return: 0; -EINVAL bad classes (zero size or count, more than
 * ZL_POOL_MAX_CLASSES, region over 64 GiB); -ENOMEM; errors of memfd_create(2).
 * Thread safety: any thread.
 */
int zl_pool_create(struct zl_ctx *ctx, const struct zl_pool_opts *opts, struct zl_pool **out);

/**
 * zl_pool_destroy() - drop the owner's reference. The memory stays alive
 * while peers still map it and is freed by the kernel after the last unmap.
 * Buffers still lent out are abandoned. NULL is accepted.
 */
void zl_pool_destroy(struct zl_pool *pool);

/**
 * zl_buf_alloc() - take a buffer of at least size bytes from the smallest
 * class that fits.
 * Return: 0; -EMSGSIZE size exceeds the largest class; -ENOBUFS every
 * fitting class is exhausted (buffers are lent out: release or wait).
 * Never blocks. Thread safety: the pool's owner thread only.
 */
int zl_buf_alloc(struct zl_pool *pool, size_t size, struct zl_buf *out);

/**
 * zl_buf_alloc_burst() - take up to n buffers of at least size bytes each,
 * as zl_buf_alloc() would one by one, at a fraction of the cost.
 * Return: buffers taken into out[0..r-1] (> 0, fewer than n when the
 * fitting classes run dry); -EINVAL n == 0; -EMSGSIZE, -ENOBUFS as
 * zl_buf_alloc(). Never blocks. Thread safety: the pool's owner thread only.
 */
int zl_buf_alloc_burst(struct zl_pool *pool, size_t size, struct zl_buf *out, unsigned n);

/**
 * zl_buf_free() - give an unsent buffer back. Thread safety: any thread
 * (lock-free).
 */
void zl_buf_free(const struct zl_buf *buf);

/** Pool statistics. */
struct zl_pool_stats {
	uint64_t region; /* global region id */
	uint64_t size;   /* bytes of the region */
	uint32_t nclasses;
	struct {
		uint32_t size, count, free;
	} cls[ZL_POOL_MAX_CLASSES];
};

/** zl_pool_stats() - fill st. Thread safety: the owner thread. */
void zl_pool_stats(struct zl_pool *pool, struct zl_pool_stats *st);

#ifdef __cplusplus
}
#endif
#endif
