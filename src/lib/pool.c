/* SPDX-License-Identifier: MIT */
/*
 * Pools: fixed-size buffers in size classes, carved out of one region.
 *
 * All bookkeeping is in private memory: the region holds payload only, so a
 * peer that maps it learns nothing it could use against us. The owner thread
 * allocates from a private stack. Buffers come back from any thread onto a
 * lock-free list (push by CAS, the owner takes the whole list with one
 * exchange, so there is no ABA problem).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "barrier.h"
#include "internal.h"

static const struct zl_pool_class default_classes[] = {
	{2048, 1024},
	{65536, 256},
	{1u << 20, 32},
};

ZL_EXPORT int zl_pool_create(struct zl_ctx *ctx, const struct zl_pool_opts *opts,
			     struct zl_pool **out)
{
	const struct zl_pool_class *cls = default_classes;
	unsigned n = ZL_ARRAY_SIZE(default_classes);
	unsigned flags = opts ? opts->flags : 0;
	if (!ctx || !out)
		return -EINVAL;
	if (opts && opts->nclasses) {
		if (opts->nclasses > ZL_POOL_MAX_CLASSES)
			return -EINVAL;
		cls = opts->classes;
		n = opts->nclasses;
	}
	struct zl_pool *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	uint64_t off = 0;
	for (unsigned i = 0; i < n; i++) {
		uint32_t sz = (cls[i].size + 63u) & ~63u;
		if (cls[i].size == 0 || cls[i].count == 0 || cls[i].count > (1u << 24) ||
		    sz < cls[i].size) {
			free(p);
			return -EINVAL;
		}
		p->cls[i].size = sz;
		p->cls[i].count = cls[i].count;
		/* Buffers of 64 KiB and more that are whole pages apart would
		 * all start in the same set of the caches that are indexed by
		 * the low address bits (every start is what the receiver reads
		 * first, and the sender writes), so a few hundred of them in
		 * flight evict each other. One page more between them spreads
		 * the starts over the sets, and keeps them page-aligned. */
		uint32_t stride = sz;
		if (sz >= 65536 && sz % 4096 == 0 && sz <= UINT32_MAX - 4096)
			stride += 4096;
		p->cls[i].stride = stride;
		/* Classes of page size or more start on a page boundary. */
		if (sz >= 4096)
			off = (off + 4095) & ~(uint64_t)4095;
		p->cls[i].off = off;
		off += (uint64_t)p->cls[i].stride * cls[i].count;
		if (off > (64ull << 30)) {
			free(p);
			return -EINVAL;
		}
	}
	p->ncls = n;
	p->ctx = ctx;
	zl__ctx_get(ctx);
	uint32_t rflags = (flags & ZL_POOL_FORWARD) ? ZL_REGION_F_FORWARD : 0;
	int err = zl__region_create_global(ctx, off, rflags, flags & ZL_POOL_HUGETLB, "pool",
					   &p->reg);
	if (err) {
		zl__ctx_put(ctx);
		free(p);
		return err;
	}
	for (unsigned i = 0; i < n; i++) {
		struct zl_pool_cls *c = &p->cls[i];
		c->stack = malloc(sizeof(uint32_t) * c->count);
		c->next = calloc(c->count, sizeof(uint32_t));
		if (!c->stack || !c->next) {
			zl_pool_destroy(p);
			return -ENOMEM;
		}
		/* Lowest index on top: first allocations are adjacent in memory. */
		for (uint32_t k = 0; k < c->count; k++)
			c->stack[k] = c->count - 1 - k;
		c->nfree = c->count;
	}
	struct zl_proto_region rb = {
		.id = p->reg->id, .size = p->reg->size, .domain = ctx->domain, .flags = rflags};
	zl__broker_notify(ctx, ZL_MSG_REGION_UP, &rb, sizeof(rb), NULL, 0);
	*out = p;
	return 0;
}

ZL_EXPORT void zl_pool_destroy(struct zl_pool *p)
{
	if (!p)
		return;
	if (p->reg) {
		struct zl_proto_region rb = {
			.id = p->reg->id, .size = p->reg->size, .domain = p->ctx->domain};
		zl__broker_notify(p->ctx, ZL_MSG_REGION_DOWN, &rb, sizeof(rb), NULL, 0);
	}
	for (unsigned i = 0; i < p->ncls; i++) {
		free(p->cls[i].stack);
		free(p->cls[i].next);
	}
	zl__region_put(p->reg);
	zl__ctx_put(p->ctx);
	free(p);
}

/* Move everything returned from other threads onto the owner's stack. */
static void pool_collect(struct zl_pool_cls *c)
{
	/* A1: pairs with R1 in zl__pool_return: the links written before the
	 * pushing CAS are visible once we own the list. */
	uint32_t head = __atomic_exchange_n(&c->ret_head, 0, __ATOMIC_ACQUIRE);
	while (head) {
		uint32_t idx = head - 1;
		head = c->next[idx];
		c->stack[c->nfree++] = idx;
	}
}

ZL_EXPORT int zl_buf_alloc_burst(struct zl_pool *p, size_t size, struct zl_buf *out, unsigned n)
{
	if (n == 0)
		return -EINVAL;
	unsigned k = 0;
	for (unsigned i = 0; i < p->ncls && k < n; i++) {
		struct zl_pool_cls *c = &p->cls[i];
		if (size > c->size)
			continue;
		if (c->nfree < n - k)
			pool_collect(c);
		char *base = (char *)p->reg->base + c->off;
		while (k < n && c->nfree) {
			uint32_t idx = c->stack[--c->nfree];
			out[k].data = base + (uint64_t)idx * c->stride;
			out[k].cap = c->size;
			out[k].id = (i << 24) | idx;
			out[k].pool = p;
			k++;
		}
	}
	if (k)
		return (int)k;
	return size > p->cls[p->ncls - 1].size ? -EMSGSIZE : -ENOBUFS;
}

ZL_EXPORT int zl_buf_alloc(struct zl_pool *p, size_t size, struct zl_buf *out)
{
	int r = zl_buf_alloc_burst(p, size, out, 1);
	return r > 0 ? 0 : r;
}

void zl__pool_return(struct zl_pool *p, uint32_t id)
{
	unsigned ci = id >> 24;
	uint32_t idx = id & 0xffffff;
	struct zl_pool_cls *c = &p->cls[ci];
	uint32_t head = __atomic_load_n(&c->ret_head, __ATOMIC_RELAXED);
	do
		c->next[idx] = head;
	/* R1: publishes next[idx] to the owner's exchange (A1). */
	while (!zl_cas(&c->ret_head, &head, idx + 1));
}

void zl__pool_link(struct zl_pool *p, uint32_t cls, uint32_t idx, uint32_t next)
{
	p->cls[cls].next[idx] = next + 1;
}

void zl__pool_return_chain(struct zl_pool *p, uint32_t cls, uint32_t first, uint32_t last)
{
	struct zl_pool_cls *c = &p->cls[cls];
	uint32_t head = __atomic_load_n(&c->ret_head, __ATOMIC_RELAXED);
	do
		c->next[last] = head;
	/* R1: publishes the chain's links to the owner's exchange (A1). */
	while (!zl_cas(&c->ret_head, &head, first + 1));
}

ZL_EXPORT void zl_buf_free(const struct zl_buf *b)
{
	if (b && b->pool)
		zl__pool_return(b->pool, b->id);
}

ZL_EXPORT void zl_pool_stats(struct zl_pool *p, struct zl_pool_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->region = p->reg->id;
	st->size = p->reg->size;
	st->nclasses = p->ncls;
	for (unsigned i = 0; i < p->ncls; i++) {
		pool_collect(&p->cls[i]);
		st->cls[i].size = p->cls[i].size;
		st->cls[i].count = p->cls[i].count;
		st->cls[i].free = p->cls[i].nfree;
	}
}
