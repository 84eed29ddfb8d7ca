/* SPDX-License-Identifier: MIT */
/*
 * The block-queue front-end: requests arriving on a zerolink channel
 * (protocol in <zerolink/abi/blk.h>), turned into struct ioreq, and their
 * replies.
 *
 * Everything a client sends is copied out of its pages before it is
 * checked; a request that fails the checks gets an error status and the
 * queue goes on. A write's data stays in the client's buffers, mapped
 * read-only here, until the write completes (zero copy); a read goes into a
 * buffer of this queue's own pool, which is lent to the client with the
 * reply. A queue takes requests only while it has a free ioreq, a read
 * buffer for each read, and room in the lane for the replies: a client that
 * does not read its replies, or holds its read buffers, stalls only itself.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/barrier.h"
#include "iohost.h"

#define BQ_BURST 32u
/* ioreq.fe_flags */
#define FE_MSG 0x1u  /* q->msgs[slot] holds the request message (a write) */
#define FE_RBUF 0x2u /* q->rbuf[slot] holds a read buffer */
/* Read buffers of the largest size at most, per queue. */
#define BQ_MAX_BIG 32u

struct bq {
	struct fe fe;
	struct zl_chan *ch;
	uint32_t inflight; /* ioreqs taken */
	struct ioreq *reqs;
	struct zl_msg *msgs; /* request messages held while their I/O runs */
	uint32_t *free_stack;
	uint32_t nfree;
	struct ioreq *backlog, *backlog_tail; /* replies waiting for lane space */
	struct ioreq *stalled, *stalled_tail; /* reads waiting for a buffer */
	struct zl_pool *pool;                 /* read buffers lent to the client */
	struct zl_buf *rbuf;                  /* per ioreq: its read buffer */
	bool hello_done;
	int err;
};

static const struct fe_ops bq_ops;

struct fe *bq_new(struct zl_chan *ch, struct device *d)
{
	struct bq *q = calloc(1, sizeof(*q));
	if (!q)
		return NULL;
	struct zl_chan_info ci;
	zl_chan_info(ch, &ci);
	q->fe.ops = &bq_ops;
	q->ch = ch;
	q->fe.dev = d;
	q->fe.pid = ci.peer_pid;
	q->fe.uid = ci.peer_uid;
	q->fe.gid = ci.peer_gid;
	snprintf(q->fe.peer, sizeof(q->fe.peer), "pid %u", ci.peer_pid);
	dev_get(d);
	return &q->fe;
}

static void bq_free(struct fe *f)
{
	struct bq *q = (struct bq *)f;
	for (uint32_t i = 0; q->reqs && i < q->fe.depth; i++) {
		if (q->reqs[i].fe_flags & FE_MSG)
			zl_msg_release(&q->msgs[i]);
		if (q->reqs[i].fe_flags & FE_RBUF)
			zl_buf_free(&q->rbuf[i]);
	}
	zl_chan_close(q->ch);
	zl_pool_destroy(q->pool);
	dev_put(q->fe.dev);
	free(q->reqs);
	free(q->msgs);
	free(q->free_stack);
	free(q->rbuf);
	free(q);
}

static int bq_fd(const struct fe *f)
{
	return zl_chan_fd(((const struct bq *)f)->ch);
}

static bool bq_idle(const struct fe *f)
{
	const struct bq *q = (const struct bq *)f;
	return q->inflight == 0 && !q->backlog && !q->stalled && q->hello_done;
}

static int bq_arm(struct fe *f)
{
	struct bq *q = (struct bq *)f;
	if (q->fe.dead || zl_read_once(&q->fe.dev->removing))
		return 1;
	/* a stalled queue waits for buffers to come back, a backlog for room
	 * in the lane: the client kicks for both once armed */
	return zl_chan_arm(q->ch) != 0;
}

static void q_fail(struct bq *q, int err)
{
	if (!q->fe.dead) {
		q->fe.dead = true;
		q->err = err;
	}
}

static void rbuf_drop(struct bq *q, struct ioreq *r)
{
	if (r->fe_flags & FE_RBUF) {
		zl_buf_free(&q->rbuf[r - q->reqs]);
		r->fe_flags &= ~FE_RBUF;
	}
}

static void slot_put(struct bq *q, struct ioreq *r)
{
	rbuf_drop(q, r);
	q->free_stack[q->nfree++] = (uint32_t)(r - q->reqs);
	q->inflight--;
}

static void list_add(struct ioreq **head, struct ioreq **tail, struct ioreq *r)
{
	r->next = NULL;
	if (*tail)
		(*tail)->next = r;
	else
		*head = r;
	*tail = r;
}

/* Send r's reply. Returns 0 sent (or dropped: the queue is dead), -EAGAIN
 * no room now. */
static int reply_send(struct bq *q, struct ioreq *r)
{
	uint32_t s = (uint32_t)(r - q->reqs);
	bool data = r->op == ZL_BLK_OP_READ && r->status == 0;
	if (q->fe.dead)
		return 0;
	struct zl_blk_rep_hdr h = {
		.op = r->op,
		.status = r->status,
		.id = r->tag,
		.len = data ? r->len : 0,
	};
	int rc;
	if (data) {
		uint32_t len = r->len;
		rc = zl_chan_send_hdr_bufs(q->ch, &h, sizeof(h), &q->rbuf[s], &len, 1, ZL_DONTWAIT);
	} else {
		rc = zl_chan_send(q->ch, &h, sizeof(h), ZL_DONTWAIT);
	}
	if (rc == -EAGAIN)
		return -EAGAIN;
	if (rc < 0) {
		q_fail(q, rc);
		return 0;
	}
	if (data)
		r->fe_flags &= ~FE_RBUF; /* lent to the client now */
	fe_count(&q->fe, r);
	return 0;
}

/* The completion of a request of this queue (sidecore thread). */
static void bq_done(struct ioreq *r)
{
	struct bq *q = r->owner;
	uint32_t s = (uint32_t)(r - q->reqs);
	if (r->fe_flags & FE_MSG) { /* a write's data goes home */
		zl_msg_release(&q->msgs[s]);
		r->fe_flags &= ~FE_MSG;
	}
	if (q->backlog || reply_send(q, r) == -EAGAIN) {
		list_add(&q->backlog, &q->backlog_tail, r);
		return;
	}
	slot_put(q, r);
}

static unsigned backlog_flush(struct bq *q)
{
	unsigned n = 0;
	while (q->backlog) {
		struct ioreq *r = q->backlog;
		if (reply_send(q, r) == -EAGAIN)
			break;
		q->backlog = r->next;
		if (!q->backlog)
			q->backlog_tail = NULL;
		slot_put(q, r);
		n++;
	}
	return n;
}

/* A read buffer for r; false when the pool is dry (the client holds them). */
static bool read_buf(struct bq *q, struct ioreq *r)
{
	uint32_t s = (uint32_t)(r - q->reqs);
	if (zl_buf_alloc(q->pool, r->len, &q->rbuf[s]))
		return false;
	r->fe_flags |= FE_RBUF;
	r->iov[0].iov_base = q->rbuf[s].data;
	r->iov[0].iov_len = r->len;
	r->niov = 1;
	return true;
}

static unsigned stalled_retry(struct bq *q)
{
	unsigned n = 0;
	if (!q->stalled)
		return 0;
	zl_chan_poll(q->ch); /* buffers the client gave back */
	while (q->stalled && read_buf(q, q->stalled)) {
		struct ioreq *r = q->stalled;
		q->stalled = r->next;
		if (!q->stalled)
			q->stalled_tail = NULL;
		dev_submit(q->fe.sc, r);
		n++;
	}
	return n;
}

static void req_take(struct bq *q, struct zl_msg *m)
{
	uint32_t s = q->free_stack[--q->nfree];
	q->inflight++;
	struct ioreq *r = &q->reqs[s];
	struct zl_blk_req_hdr h;
	memset(r, 0, sizeof(*r));
	r->dev = q->fe.dev;
	r->owner = q;
	r->fe = &q->fe;
	r->done = bq_done;
	r->sc = q->fe.sc;
	if (m->nsegs == 0 || m->seg[0].len != sizeof(h)) {
		/* not even a header: nothing to answer to */
		zl_msg_release(m);
		q_fail(q, -EPROTO);
		slot_put(q, r);
		return;
	}
	memcpy(&h, m->seg[0].base, sizeof(h));
	r->op = h.op;
	r->flags = h.flags;
	r->off = h.offset;
	r->len = h.len;
	r->tag = h.id;
	int32_t st = h.rsvd0 ? ZL_BLK_S_EINVAL : dev_check(q->fe.dev, r);
	uint32_t data = m->len - (uint32_t)sizeof(h);
	if (st) {
		/* refused as it stands, whatever data came with it */
	} else if (r->op == ZL_BLK_OP_WRITE) {
		if (data != r->len || m->nsegs - 1u > IOH_MAX_SEGS) {
			st = ZL_BLK_S_EINVAL;
		} else {
			for (unsigned i = 1; i < m->nsegs; i++) {
				r->iov[i - 1].iov_base = (void *)m->seg[i].base;
				r->iov[i - 1].iov_len = m->seg[i].len;
			}
			r->niov = m->nsegs - 1u;
			q->msgs[s] = *m; /* held until the write is done */
			r->fe_flags |= FE_MSG;
		}
	} else if (data) {
		st = ZL_BLK_S_EINVAL; /* data with a request that takes none */
	}
	if (st || r->op != ZL_BLK_OP_WRITE)
		zl_msg_release(m);
	if (st) {
		r->status = st;
		sc_complete(q->fe.sc, r);
		return;
	}
	if (r->op == ZL_BLK_OP_READ && (q->stalled || !read_buf(q, r))) {
		list_add(&q->stalled, &q->stalled_tail, r);
		return;
	}
	dev_submit(q->fe.sc, r);
}

static void info_send(struct bq *q, const struct zl_blk_hello *h, int32_t st)
{
	struct device *d = q->fe.dev;
	struct zl_blk_info_msg in = {
		.magic = ZL_BLK_MAGIC,
		.op = ZL_BLK_OP_INFO,
		.version = ZL_BLK_VERSION,
		.queue = h->queue,
		.status = st,
		.flags = d->flags,
		.size = d->size,
		.block_size = d->conf.block_size,
		.max_io = d->max_io,
		.depth = q->fe.depth,
		.cookie = h->cookie,
	};
	int rc = zl_chan_send(q->ch, &in, sizeof(in), ZL_DONTWAIT);
	if (rc < 0)
		q_fail(q, rc);
	if (st)
		q_fail(q, st);
}

/* The first message: HELLO. Returns 1 handled, 0 not there yet. */
static int hello_take(struct bq *q)
{
	struct zl_blk_hello h;
	int rc = zl_chan_recv(q->ch, &h, sizeof(h), ZL_DONTWAIT);
	if (rc == -EAGAIN)
		return 0;
	if (rc <= 0) {
		q_fail(q, rc ? rc : -EPIPE);
		return 1;
	}
	if (rc != (int)sizeof(h) || h.magic != ZL_BLK_MAGIC || h.op != ZL_BLK_OP_HELLO || h.flags ||
	    h.depth == 0) {
		struct zl_blk_hello z = {0};
		if (rc == (int)sizeof(h))
			z = h;
		info_send(q, &z, ZL_BLK_S_EINVAL);
		return 1;
	}
	if (h.version != ZL_BLK_VERSION) {
		info_send(q, &h, ZL_BLK_S_EOPNOTSUPP);
		return 1;
	}
	if (zl_read_once(&q->fe.dev->removing)) {
		info_send(q, &h, ZL_BLK_S_ESHUTDOWN);
		return 1;
	}
	uint32_t d = h.depth < q->fe.dev->conf.max_depth ? h.depth : q->fe.dev->conf.max_depth;
	q->fe.depth = d;
	q->reqs = calloc(d, sizeof(*q->reqs));
	q->msgs = calloc(d, sizeof(*q->msgs));
	q->free_stack = calloc(d, sizeof(*q->free_stack));
	q->rbuf = calloc(d, sizeof(*q->rbuf));
	uint32_t big = d < BQ_MAX_BIG ? d : BQ_MAX_BIG;
	struct zl_pool_opts po = {
		.classes = {{4096, d}, {65536, d}, {q->fe.dev->max_io, big}},
		.nclasses = 3,
	};
	if (!q->reqs || !q->msgs || !q->free_stack || !q->rbuf ||
	    zl_pool_create(ioh->ctx, &po, &q->pool)) {
		q->fe.depth = 0;
		info_send(q, &h, ZL_BLK_S_ENOMEM);
		return 1;
	}
	for (uint32_t i = 0; i < d; i++)
		q->free_stack[i] = d - 1 - i;
	q->nfree = d;
	q->hello_done = true;
	info_send(q, &h, 0);
	return 1;
}

static int bq_poll(struct fe *f)
{
	struct bq *q = (struct bq *)f;
	if (!q->hello_done && !q->fe.dead)
		return hello_take(q);
	int work = (int)backlog_flush(q);
	work += (int)stalled_retry(q);
	if (!q->fe.dead && zl_read_once(&q->fe.dev->removing) && q->inflight == 0)
		q_fail(q, -ESHUTDOWN);
	if (q->fe.dead) {
		/* drop what waits, finish what is in flight, then go */
		while (q->stalled) {
			struct ioreq *r = q->stalled;
			q->stalled = r->next;
			slot_put(q, r);
		}
		q->stalled_tail = NULL;
		work += (int)backlog_flush(q);
		if (q->inflight == 0)
			return -1;
		return work;
	}
	if (q->backlog || q->stalled)
		return work;
	while (q->nfree) {
		struct zl_msg m[BQ_BURST];
		unsigned want = q->nfree < BQ_BURST ? q->nfree : BQ_BURST;
		int n = zl_chan_recv_burst(q->ch, m, want, ZL_DONTWAIT);
		if (n == -EAGAIN)
			break;
		if (n <= 0) {
			q_fail(q, n ? n : -EPIPE);
			break;
		}
		for (int i = 0; i < n; i++) {
			if (q->fe.dead) {
				zl_msg_release(&m[i]);
				continue;
			}
			req_take(q, &m[i]);
		}
		work += n;
		if ((unsigned)n < want)
			break;
	}
	return work;
}

static const struct fe_ops bq_ops = {
	.kind = "zerolink",
	.poll = bq_poll,
	.arm = bq_arm,
	.fd = bq_fd,
	.idle = bq_idle,
	.free = bq_free,
};
