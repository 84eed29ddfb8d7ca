/* SPDX-License-Identifier: MIT */
/*
 * Block device client: queues of requests to an I/O host over zerolink
 * channels (protocol in <zerolink/abi/blk.h>).
 *
 * Each queue keeps a table of `depth` request slots. A request's id is its
 * slot index in the low 32 bits and the slot's generation in the high ones,
 * so a reply for a slot that is free, or was reused since, is recognised as
 * a lie. Everything the I/O host sends is copied out of the lane and checked
 * before use: an unknown id, a wrong op, or read data of the wrong length
 * break the queue with -EPROTO.
 */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/internal.h"
#include <zerolink/blk.h>

#define BLK_MAX_QUEUES 64u
#define BLK_MAX_DEPTH 1024u
#define BLK_DEFAULT_DEPTH 128u

struct blk_slot {
	uint64_t user_data;
	uint32_t gen;
	uint32_t len;
	uint8_t op;
	uint8_t busy; /* submitted, or a view held */
	uint8_t view; /* a view is held in msg */
	void *dst;
	struct zl_msg msg;
};

struct zl_blk_queue {
	struct zl_blk *dev;
	struct zl_chan *ch;
	struct zl_pool *pool;
	unsigned idx;
	uint32_t depth;
	uint32_t inflight; /* busy slots */
	struct blk_slot *slots;
	uint32_t *free_stack;
	uint32_t nfree;
	/* completions taken by a synchronous call for someone else */
	struct zl_blk_cpl *stash;
	uint32_t stash_head, stash_n;
	int err; /* sticky */
};

struct zl_blk {
	struct zl_ctx *ctx;
	struct zl_blk_info info;
	unsigned nq;
	struct zl_blk_queue q[];
};

static bool name_ok(const char *name)
{
	size_t n = name ? strlen(name) : 0;
	if (n == 0 || n + sizeof(ZL_BLK_SERVICE_PREFIX) > ZL_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-' || c == '.'))
			return false;
	}
	return true;
}

static void queue_fini(struct zl_blk_queue *q)
{
	if (q->slots) {
		for (uint32_t i = 0; i < q->depth; i++)
			if (q->slots[i].view)
				zl_msg_release(&q->slots[i].msg);
	}
	zl_chan_close(q->ch);
	zl_pool_destroy(q->pool);
	free(q->slots);
	free(q->free_stack);
	free(q->stash);
}

static int queue_hello(struct zl_blk_queue *q, uint32_t depth, int timeout_ms,
		       struct zl_blk_info_msg *info)
{
	struct zl_blk_hello h = {
		.magic = ZL_BLK_MAGIC,
		.op = ZL_BLK_OP_HELLO,
		.version = ZL_BLK_VERSION,
		.queue = (uint16_t)q->idx,
		.depth = depth,
		.cookie = (uint64_t)(uintptr_t)q,
	};
	int r = zl_chan_send(q->ch, &h, sizeof(h), 0);
	if (r < 0)
		return r;
	/* wait for the answer with a deadline: the channel's own wait has none */
	uint64_t end = zl__now_ns() + (uint64_t)timeout_ms * 1000000ull;
	for (;;) {
		r = zl_chan_recv(q->ch, info, sizeof(*info), ZL_DONTWAIT);
		if (r != -EAGAIN)
			break;
		if (zl__now_ns() > end)
			return -ETIMEDOUT;
		if (zl_chan_arm(q->ch) == 0) {
			struct pollfd pfd = {.fd = zl_chan_fd(q->ch), .events = POLLIN};
			poll(&pfd, 1, 10);
		}
	}
	if (r == -EMSGSIZE || (r >= 0 && r != (int)sizeof(*info)))
		return -EPROTO;
	if (r == 0)
		return -EPIPE;
	if (r < 0)
		return r;
	if (info->magic != ZL_BLK_MAGIC || info->op != ZL_BLK_OP_INFO ||
	    info->version != ZL_BLK_VERSION || info->cookie != h.cookie || info->queue != q->idx)
		return -EPROTO;
	if (info->status)
		return info->status < 0 && info->status > -4096 ? info->status : -EPROTO;
	if ((info->block_size != 512 && info->block_size != 4096) ||
	    info->size % info->block_size || info->max_io < info->block_size ||
	    info->max_io > ZL_BLK_MAX_IO || info->max_io % info->block_size || info->depth == 0 ||
	    info->depth > depth)
		return -EPROTO;
	return 0;
}

static int queue_init(struct zl_blk *dev, unsigned i, const struct zl_blk_opts *o,
		      const char *service, uint32_t depth, int timeout_ms)
{
	struct zl_blk_queue *q = &dev->q[i];
	q->dev = dev;
	q->idx = i;
	/* plain fences: a block client sleeps on most waits for I/O, and
	 * membarrier() before each sleep interrupts every core (20-80 us on a
	 * VM); a fence per submit costs the I/O host's sidecore nothing it
	 * would notice (bench qos: the reserved client, sharing its core with
	 * a flooding one, did 13.2 k IOPS instead of 10.9 k) */
	struct zl_chan_opts co = {.mode = ZL_MODE_SHARED,
				  .spin_ns = o->spin_ns,
				  .timeout_ms = (uint32_t)timeout_ms,
				  .flags = ZL__CHAN_PLAIN_FENCE};
	/* room for every request to hold a header and a buffer in the lane,
	 * and for every read's buffer on loan at once */
	uint32_t n = 64;
	while (n < 2 * depth + 16)
		n <<= 1;
	co.slots = n < 1024 ? 1024 : n;
	co.lend = n < 1024 ? 1024 : n;
	int err = zl_connect(dev->ctx, service, &co, &q->ch);
	if (err)
		return err == -ECONNREFUSED ? -ENOENT : err;
	struct zl_chan_info ci;
	zl_chan_info(q->ch, &ci);
	if (ci.mode != ZL_MODE_SHARED)
		return -EPROTO;
	struct zl_blk_info_msg info;
	if ((err = queue_hello(q, depth, timeout_ms, &info)))
		return err;
	if (i == 0) {
		dev->info.size = info.size;
		dev->info.block_size = info.block_size;
		dev->info.max_io = info.max_io;
		dev->info.depth = info.depth;
		dev->info.flags = info.flags;
	} else if (info.size != dev->info.size || info.block_size != dev->info.block_size ||
		   info.max_io != dev->info.max_io || info.flags != dev->info.flags) {
		return -EPROTO;
	}
	if (info.depth < dev->info.depth)
		dev->info.depth = info.depth;
	q->depth = info.depth;
	q->slots = calloc(q->depth, sizeof(*q->slots));
	q->free_stack = calloc(q->depth, sizeof(*q->free_stack));
	q->stash = calloc(q->depth, sizeof(*q->stash));
	if (!q->slots || !q->free_stack || !q->stash)
		return -ENOMEM;
	for (uint32_t k = 0; k < q->depth; k++)
		q->free_stack[k] = q->depth - 1 - k;
	q->nfree = q->depth;
	/* write buffers: a small one per request, and room for large ones */
	uint32_t d = q->depth;
	struct zl_pool_opts po = {
		.classes = {{4096, d}, {65536, d < 32 ? 32 : d}, {info.max_io, d < 32 ? d : 32}},
		.nclasses = info.max_io > 65536 ? 3 : 2,
	};
	return zl_pool_create(dev->ctx, &po, &q->pool);
}

ZL_EXPORT int zl_blk_open(struct zl_ctx *ctx, const char *name, const struct zl_blk_opts *opts,
			  struct zl_blk **out)
{
	struct zl_blk_opts o = {0};
	if (opts)
		o = *opts;
	if (!ctx || !out || !name_ok(name))
		return -EINVAL;
	if (o.queues == 0)
		o.queues = 1;
	if (o.depth == 0)
		o.depth = BLK_DEFAULT_DEPTH;
	if (o.queues > BLK_MAX_QUEUES || o.depth > BLK_MAX_DEPTH)
		return -EINVAL;
	int tmo = o.timeout_ms ? (int)o.timeout_ms : 5000;
	char service[ZL_NAME_MAX];
	snprintf(service, sizeof(service), "%s%s", ZL_BLK_SERVICE_PREFIX, name);
	struct zl_blk *dev = calloc(1, sizeof(*dev) + o.queues * sizeof(struct zl_blk_queue));
	if (!dev)
		return -ENOMEM;
	dev->ctx = ctx;
	dev->nq = o.queues;
	dev->info.queues = o.queues;
	for (unsigned i = 0; i < o.queues; i++) {
		int err = queue_init(dev, i, &o, service, o.depth, tmo);
		if (err) {
			dev->nq = i + 1;
			zl_blk_close(dev);
			return err;
		}
	}
	*out = dev;
	return 0;
}

ZL_EXPORT void zl_blk_close(struct zl_blk *dev)
{
	if (!dev)
		return;
	for (unsigned i = 0; i < dev->nq; i++)
		queue_fini(&dev->q[i]);
	free(dev);
}

ZL_EXPORT void zl_blk_info(const struct zl_blk *dev, struct zl_blk_info *info)
{
	*info = dev->info;
}

ZL_EXPORT struct zl_blk_queue *zl_blk_queue(struct zl_blk *dev, unsigned i)
{
	return dev && i < dev->nq ? &dev->q[i] : NULL;
}

ZL_EXPORT int zl_blk_queue_fd(const struct zl_blk_queue *q)
{
	return zl_chan_fd(q->ch);
}

ZL_EXPORT int zl_blk_queue_arm(struct zl_blk_queue *q)
{
	if (q->err)
		return q->err;
	if (q->stash_n)
		return 1;
	return zl_chan_arm(q->ch);
}

ZL_EXPORT unsigned zl_blk_inflight(const struct zl_blk_queue *q)
{
	return q->inflight;
}

ZL_EXPORT int zl_blk_buf_alloc(struct zl_blk_queue *q, size_t len, struct zl_buf *out)
{
	if (len == 0 || len > q->dev->info.max_io)
		return -EMSGSIZE;
	return zl_buf_alloc(q->pool, len, out);
}

/* Local checks, the same the I/O host makes: a request it would refuse is
 * refused here with the same status, without a round trip. */
static int req_check(const struct zl_blk_queue *q, const struct zl_blk_req *r)
{
	const struct zl_blk_info *in = &q->dev->info;
	uint64_t bs = in->block_size;
	switch (r->op) {
	case ZL_BLK_OP_READ:
	case ZL_BLK_OP_WRITE:
		if (r->len == 0 || r->len > in->max_io || r->len % bs || r->offset % bs)
			return -EINVAL;
		if ((r->flags & ~ZL_BLK_F_FUA) || (r->op == ZL_BLK_OP_READ && r->flags))
			return -EINVAL;
		if (r->op == ZL_BLK_OP_WRITE) {
			if (!r->buf.pool || r->buf.cap < r->len)
				return -EINVAL;
			if (in->flags & ZL_BLK_INFO_RO)
				return -EROFS;
		}
		break;
	case ZL_BLK_OP_FLUSH:
		if (r->len || r->offset || r->flags)
			return -EINVAL;
		return 0;
	case ZL_BLK_OP_DISCARD:
	case ZL_BLK_OP_WRITE_ZEROES:
		if (r->len == 0 || r->len % bs || r->offset % bs)
			return -EINVAL;
		if (r->flags & ~(r->op == ZL_BLK_OP_DISCARD ? 0u : (unsigned)ZL_BLK_F_ALL))
			return -EINVAL;
		if (in->flags & ZL_BLK_INFO_RO)
			return -EROFS;
		if (!(in->flags & (r->op == ZL_BLK_OP_DISCARD ? ZL_BLK_INFO_DISCARD
							      : ZL_BLK_INFO_WRITE_ZEROES)))
			return -EOPNOTSUPP;
		break;
	default:
		return -EINVAL;
	}
	if (r->offset > in->size || r->len > in->size - r->offset)
		return -ERANGE;
	return 0;
}

ZL_EXPORT int zl_blk_submit(struct zl_blk_queue *q, const struct zl_blk_req *reqs, unsigned n,
			    unsigned flags)
{
	if (q->err)
		return q->err;
	unsigned k = 0;
	for (; k < n; k++) {
		const struct zl_blk_req *r = &reqs[k];
		int err = req_check(q, r);
		if (!err && q->nfree == 0)
			err = -EAGAIN;
		if (err)
			return k ? (int)k : err;
		uint32_t s = q->free_stack[q->nfree - 1];
		struct blk_slot *sl = &q->slots[s];
		struct zl_blk_req_hdr h = {
			.op = r->op,
			.flags = r->flags,
			.len = r->len,
			.id = (uint64_t)sl->gen << 32 | s,
			.offset = r->offset,
		};
		int rc;
		if (r->op == ZL_BLK_OP_WRITE) {
			uint32_t l = r->len;
			rc = zl_chan_send_hdr_bufs(q->ch, &h, sizeof(h), &r->buf, &l, 1, flags);
		} else {
			rc = zl_chan_send(q->ch, &h, sizeof(h), flags);
		}
		if (rc < 0) {
			if (rc != -EAGAIN)
				q->err = rc;
			return k ? (int)k : rc;
		}
		q->nfree--;
		q->inflight++;
		sl->busy = 1;
		sl->view = 0;
		sl->op = r->op;
		sl->len = r->op == ZL_BLK_OP_READ ? r->len : 0;
		sl->dst = r->dst;
		sl->user_data = r->user_data;
	}
	return (int)k;
}

static void slot_free(struct zl_blk_queue *q, uint32_t s)
{
	struct blk_slot *sl = &q->slots[s];
	sl->busy = 0;
	sl->view = 0;
	sl->gen++;
	q->free_stack[q->nfree++] = s;
	q->inflight--;
}

/* Gather a read's data segments (after the header) into dst. */
static void msg_copy(const struct zl_msg *m, void *dst)
{
	char *d = dst;
	for (unsigned i = 1; i < m->nsegs; i++) {
		memcpy(d, m->seg[i].base, m->seg[i].len);
		d += m->seg[i].len;
	}
}

/* One reply: checked, turned into a completion. Returns 1, or -EPROTO. */
static int reply_take(struct zl_blk_queue *q, struct zl_msg *m, struct zl_blk_cpl *c)
{
	struct zl_blk_rep_hdr h;
	if (m->nsegs == 0 || m->seg[0].len != sizeof(h))
		goto bad;
	memcpy(&h, m->seg[0].base, sizeof(h));
	uint32_t s = (uint32_t)h.id;
	if (s >= q->depth)
		goto bad;
	struct blk_slot *sl = &q->slots[s];
	if (!sl->busy || sl->view || sl->gen != (uint32_t)(h.id >> 32) || sl->op != h.op)
		goto bad;
	if (h.status > 0 || h.status < -4095)
		goto bad;
	uint32_t data = m->len - (uint32_t)sizeof(h);
	if (h.status == 0 && sl->op == ZL_BLK_OP_READ) {
		if (h.len != sl->len || data != sl->len)
			goto bad;
	} else if (h.len != 0 || data != 0) {
		goto bad;
	}
	c->user_data = sl->user_data;
	c->status = h.status;
	c->len = h.status == 0 ? h.len : 0;
	c->data = NULL;
	c->slot = s;
	if (c->len && !sl->dst && m->nsegs == 2) {
		/* a view: the slot stays busy until zl_blk_cpl_release() */
		sl->msg = *m;
		sl->view = 1;
		c->data = m->seg[1].base;
		return 1;
	}
	if (c->len) {
		if (sl->dst) {
			msg_copy(m, sl->dst);
			c->data = sl->dst;
		} else {
			/* several segments cannot be one view: gather them into
			 * memory of our own, which the caller releases as a view */
			void *p = malloc(c->len);
			if (!p) {
				c->status = -ENOMEM;
				c->len = 0;
			} else {
				msg_copy(m, p);
				c->data = p;
				sl->view = 2;
				zl_msg_release(m);
				return 1;
			}
		}
	}
	zl_msg_release(m);
	slot_free(q, s);
	return 1;
bad:
	zl_msg_release(m);
	q->err = -EPROTO;
	return -EPROTO;
}

ZL_EXPORT void zl_blk_cpl_release(struct zl_blk_queue *q, struct zl_blk_cpl *cpl)
{
	if (cpl->slot >= q->depth)
		return;
	struct blk_slot *sl = &q->slots[cpl->slot];
	if (!sl->busy || !sl->view || cpl->data == NULL)
		return;
	if (sl->view == 1)
		zl_msg_release(&sl->msg);
	else
		free((void *)cpl->data);
	cpl->data = NULL;
	slot_free(q, cpl->slot);
}

#define REAP_BURST 32u

static int reap_chan(struct zl_blk_queue *q, struct zl_blk_cpl *cpl, unsigned n, unsigned flags)
{
	struct zl_msg m[REAP_BURST];
	if (n > REAP_BURST)
		n = REAP_BURST;
	int r = zl_chan_recv_burst(q->ch, m, n, flags);
	if (r == 0) {
		q->err = -EPIPE;
		return -EPIPE;
	}
	if (r < 0) {
		if (r != -EAGAIN)
			q->err = r == -EMSGSIZE ? -EPROTO : r;
		return r == -EMSGSIZE ? -EPROTO : r;
	}
	int k = 0;
	for (int i = 0; i < r; i++) {
		if (q->err) {
			zl_msg_release(&m[i]);
			continue;
		}
		if (reply_take(q, &m[i], &cpl[k]) == 1)
			k++;
	}
	if (q->err)
		return q->err;
	return k;
}

ZL_EXPORT int zl_blk_reap(struct zl_blk_queue *q, struct zl_blk_cpl *cpl, unsigned n,
			  unsigned flags)
{
	if (n == 0)
		return -EINVAL;
	unsigned k = 0;
	while (q->stash_n && k < n) {
		cpl[k++] = q->stash[q->stash_head];
		q->stash_head = (q->stash_head + 1) % q->depth;
		q->stash_n--;
	}
	if (k)
		return (int)k;
	if (q->err)
		return q->err;
	if (q->inflight == 0)
		return -EAGAIN;
	for (;;) {
		int r = reap_chan(q, cpl, n, flags);
		if (r != 0)
			return r;
	}
}

/* Wait for the completion of the request in slot s, keeping the others
 * for zl_blk_reap(). */
static int wait_one(struct zl_blk_queue *q, uint32_t s, struct zl_blk_cpl *out)
{
	for (;;) {
		struct zl_blk_cpl c[REAP_BURST];
		int r = reap_chan(q, c, REAP_BURST, 0);
		if (r < 0)
			return r;
		bool found = false;
		for (int i = 0; i < r; i++) {
			/* the slot is busy until this reply: it is the one */
			if (c[i].slot == s && !found) {
				*out = c[i];
				found = true;
				continue;
			}
			uint32_t t = (q->stash_head + q->stash_n) % q->depth;
			q->stash[t] = c[i];
			q->stash_n++;
		}
		if (found)
			return 0;
	}
}

/* Submit one request and wait for it. *submitted tells whether it went out
 * (a write's buffer is then the queue's, whatever happens next). */
static int sync_req(struct zl_blk_queue *q, const struct zl_blk_req *r, struct zl_blk_cpl *c,
		    bool *submitted)
{
	*submitted = false;
	if (q->nfree == 0)
		return -EAGAIN;
	uint32_t s = q->free_stack[q->nfree - 1];
	int rc = zl_blk_submit(q, r, 1, 0);
	if (rc < 0)
		return rc;
	*submitted = true;
	return wait_one(q, s, c);
}

ZL_EXPORT int zl_blk_read(struct zl_blk_queue *q, void *dst, size_t len, uint64_t offset)
{
	if (!dst || len > UINT32_MAX)
		return -EINVAL;
	struct zl_blk_req r = {
		.op = ZL_BLK_OP_READ, .len = (uint32_t)len, .offset = offset, .dst = dst};
	struct zl_blk_cpl c;
	bool sub;
	int rc = sync_req(q, &r, &c, &sub);
	if (rc < 0)
		return rc;
	return c.status ? c.status : (int)c.len;
}

ZL_EXPORT int zl_blk_write(struct zl_blk_queue *q, const void *src, size_t len, uint64_t offset,
			   unsigned flags)
{
	if (!src || len == 0 || len > q->dev->info.max_io)
		return -EINVAL;
	struct zl_blk_req r = {.op = ZL_BLK_OP_WRITE,
			       .flags = (uint16_t)flags,
			       .len = (uint32_t)len,
			       .offset = offset};
	int err = req_check(q, &(struct zl_blk_req){.op = ZL_BLK_OP_WRITE,
						    .flags = r.flags,
						    .len = r.len,
						    .offset = offset,
						    .buf = {.pool = q->pool, .cap = r.len}});
	if (err)
		return err;
	for (;;) {
		err = zl_buf_alloc(q->pool, len, &r.buf);
		if (err != -ENOBUFS)
			break;
		/* our buffers are on loan to the I/O host: wait for some */
		int w = zl_chan_wait_returns(q->ch);
		if (w < 0) {
			q->err = w;
			return w;
		}
		if (w == 0)
			return -ENOBUFS;
	}
	if (err)
		return err;
	memcpy(r.buf.data, src, len);
	struct zl_blk_cpl c;
	bool sub;
	int rc = sync_req(q, &r, &c, &sub);
	if (rc < 0) {
		if (!sub)
			zl_buf_free(&r.buf);
		return rc;
	}
	return c.status ? c.status : (int)len;
}

static int sync_simple(struct zl_blk_queue *q, uint8_t op, uint64_t off, uint32_t len,
		       unsigned flags)
{
	struct zl_blk_req r = {.op = op, .flags = (uint16_t)flags, .len = len, .offset = off};
	struct zl_blk_cpl c;
	bool sub;
	int rc = sync_req(q, &r, &c, &sub);
	return rc < 0 ? rc : c.status;
}

ZL_EXPORT int zl_blk_flush(struct zl_blk_queue *q)
{
	return sync_simple(q, ZL_BLK_OP_FLUSH, 0, 0, 0);
}

/* Discard and write-zeroes of any length, in pieces the header can say. */
static int sync_range(struct zl_blk_queue *q, uint8_t op, uint64_t off, uint64_t len,
		      unsigned flags)
{
	uint64_t chunk = (1ull << 31) - (1ull << 31) % q->dev->info.block_size;
	if (len == 0)
		return -EINVAL;
	while (len) {
		uint64_t k = len < chunk ? len : chunk;
		int rc = sync_simple(q, op, off, (uint32_t)k, flags);
		if (rc)
			return rc;
		off += k;
		len -= k;
	}
	return 0;
}

ZL_EXPORT int zl_blk_discard(struct zl_blk_queue *q, uint64_t offset, uint64_t len)
{
	return sync_range(q, ZL_BLK_OP_DISCARD, offset, len, 0);
}

ZL_EXPORT int zl_blk_write_zeroes(struct zl_blk_queue *q, uint64_t offset, uint64_t len,
				  unsigned flags)
{
	return sync_range(q, ZL_BLK_OP_WRITE_ZEROES, offset, len, flags);
}
