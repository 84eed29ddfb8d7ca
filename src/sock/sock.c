/* SPDX-License-Identifier: MIT */
/*
 * Sockets over channels: a byte stream (or a sequence of records) on the
 * messages of a channel, with POSIX socket semantics.
 *
 * Writes: a stream write becomes messages of at most the lane's largest
 * inline entry (a quarter of the lane), copied into the lane; a record is
 * one message. Reads: received messages are held in place (zl_msg views) in
 * a small queue, with a cursor into the first; a read copies across them and
 * releases each message as soon as it is consumed. MSG_PEEK and FIONREAD look
 * further into the queue without consuming. A message too large to be held
 * in place (a peer may send one larger than the lane) is copied out whole.
 *
 * Waiting is done here, not inside the channel: spin for the budget, arm,
 * then poll(2) the channel's descriptor, so that a signal interrupts a
 * blocked call (EINTR) as it would a kernel socket.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zerolink/chan.h>
#include <zerolink/sock.h>

#include "../lib/barrier.h"
#include "../lib/internal.h"
#include "sock_internal.h"

#define DEF_SLOTS 4096u
#define LEND 16u /* sockets copy: nothing is lent but the minimum */
#define QMAX 256u
#define IOV_SLICE 64

static const char *type_prefix(int type)
{
	return type == SOCK_STREAM ? "stream:" : type == SOCK_SEQPACKET ? "seqpacket:" : NULL;
}

/* The channel service behind a socket name: the type is part of it, so
 * that a client of the wrong type finds nobody (ECONNREFUSED). */
static int service_name(char svc[ZL_NAME_MAX], const char *name, int type)
{
	const char *pre = type_prefix(type);
	if (!name || !pre || !*name)
		return -EINVAL;
	size_t lp = strlen(pre), ln = strlen(name);
	if (lp + ln >= ZL_NAME_MAX)
		return -EINVAL;
	memcpy(svc, pre, lp);
	memcpy(svc + lp, name, ln + 1);
	return 0;
}

static void chan_opts(const struct zl_sock_opts *o, struct zl_chan_opts *c)
{
	memset(c, 0, sizeof(*c));
	c->slots = o && o->slots ? o->slots : DEF_SLOTS;
	c->lend = LEND;
	c->mode = ZL_MODE_ISOLATED;
	if (o && (o->flags & ZL_SOCK_NOSPIN))
		c->flags |= ZL_CHAN_NOSPIN;
	else if (o && o->spin_ns > 0)
		c->spin_ns = o->spin_ns;
}

static struct zl_sock *sock_alloc(int type, unsigned flags)
{
	struct zl_sock *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->type = type;
	s->nonblock = (flags & ZL_SOCK_NONBLOCK) != 0;
	return s;
}

int zl__sock_wrap(struct zl_chan *ch, int type, unsigned flags, bool pending, struct zl_sock **out)
{
	struct zl_sock *s = sock_alloc(type, flags);
	if (!s)
		return -ENOMEM;
	s->ch = ch;
	s->pending = pending;
	s->chunk = zl__chan_max_msg(ch);
	*out = s;
	return 0;
}

/* A connection begun by zl__connect_begin(): has the listener accepted? */
static void sock_settle(struct zl_sock *s)
{
	if (!s->pending || s->err)
		return;
	int err = zl__connect_finish(s->ch, 0);
	if (err == -ETIMEDOUT)
		return;
	s->pending = false;
	if (err)
		s->err = err;
}

/* ------------------------------------------------------------------ */
/* receive queue                                                       */

static int q_grow(struct zl_sock *s)
{
	if (s->qcap >= QMAX)
		return -ENOBUFS;
	unsigned cap = s->qcap ? s->qcap * 2 : 2;
	struct zl__rxm *q = realloc(s->q, cap * sizeof(*q));
	if (!q)
		return -ENOMEM;
	s->q = q;
	s->qcap = cap;
	return 0;
}

/* Take one more message into the queue, without waiting.
 * Return: 1 taken; 0 end of stream; -EAGAIN nothing (or the queue is full);
 * another negative errno from the channel. */
static int q_pull(struct zl_sock *s)
{
	if (s->err)
		return s->err;
	sock_settle(s);
	if (s->err)
		return s->err;
	if (s->pending)
		return -EAGAIN;
	if (s->qn == s->qcap && q_grow(s) < 0)
		return -EAGAIN;
	struct zl__rxm *e = &s->q[s->qn];
	int r = zl_chan_recv_msg(s->ch, &e->m, ZL_DONTWAIT);
	if (r == 1) {
		e->heap = NULL;
		e->len = e->m.len;
		s->qn++;
		return 1;
	}
	if (r == -EMSGSIZE) {
		/* larger than the lane or than ZL_MSG_MAX_SEGS pieces: copy it
		 * out, once what is held in place is consumed */
		if (s->qn)
			return -EAGAIN;
		int len = zl_chan_peek_len(s->ch, ZL_DONTWAIT);
		if (len <= 0)
			return len;
		char *b = malloc((size_t)len);
		if (!b)
			return -ENOMEM;
		r = zl_chan_recv(s->ch, b, (size_t)len, ZL_DONTWAIT);
		if (r < 0) {
			free(b);
			return r;
		}
		e->heap = b;
		e->len = (uint32_t)r;
		e->m.chan = NULL;
		s->qn++;
		return 1;
	}
	if (r == -EAGAIN && s->ch->bell_eof) {
		/* Every holder of the other end closed the connection that
		 * rings us (a forked peer forgets the channel without closing
		 * it): what it sent before is here already. */
		r = zl_chan_recv_msg(s->ch, &e->m, ZL_DONTWAIT);
		if (r == 1) {
			e->heap = NULL;
			e->len = e->m.len;
			s->qn++;
			return 1;
		}
		if (r == -EAGAIN)
			r = 0;
	}
	if (r == 0)
		s->eof = true;
	return r;
}

static void q_pop(struct zl_sock *s)
{
	struct zl__rxm *e = &s->q[0];
	if (e->heap)
		free(e->heap);
	else
		zl_msg_release(&e->m);
	s->qn--;
	if (s->qn)
		memmove(&s->q[0], &s->q[1], s->qn * sizeof(*s->q));
	s->off = 0;
}

/* Copy n bytes of message e from offset off into the output cursor. */
struct ocur {
	const struct iovec *iov;
	int n, i;
	size_t off;
};

static void out_put(struct ocur *c, const char *src, size_t n)
{
	while (n && c->i < c->n) {
		const struct iovec *v = &c->iov[c->i];
		size_t k = v->iov_len - c->off;
		if (k > n)
			k = n;
		memcpy((char *)v->iov_base + c->off, src, k);
		src += k;
		n -= k;
		c->off += k;
		if (c->off == v->iov_len) {
			c->i++;
			c->off = 0;
		}
	}
}

static void msg_copy(const struct zl__rxm *e, uint32_t off, struct ocur *c, size_t n)
{
	if (e->heap) {
		out_put(c, e->heap + off, n);
		return;
	}
	for (unsigned i = 0; i < e->m.nsegs && n; i++) {
		uint32_t sl = e->m.seg[i].len;
		if (off >= sl) {
			off -= sl;
			continue;
		}
		size_t k = sl - off < n ? sl - off : n;
		out_put(c, (const char *)e->m.seg[i].base + off, k);
		n -= k;
		off = 0;
	}
}

static size_t iov_total(const struct iovec *iov, int n)
{
	size_t t = 0;
	for (int i = 0; i < n; i++) {
		if (iov[i].iov_len > SSIZE_MAX - t)
			return SSIZE_MAX;
		t += iov[i].iov_len;
	}
	return t;
}

/* ------------------------------------------------------------------ */
/* readiness and waiting                                               */

ZL_EXPORT int zl_sock_poll(struct zl_sock *s, int events)
{
	int rev = 0;
	if (s->lis) {
		struct pollfd p = {.fd = zl_listener_fd(s->lis), .events = POLLIN};
		if (poll(&p, 1, 0) > 0)
			rev |= POLLIN;
		return rev & events;
	}
	sock_settle(s);
	if (s->err)
		return (POLLIN | POLLOUT | POLLERR | POLLHUP) & (events | POLLERR | POLLHUP);
	bool rd_end = s->eof || s->shut_rd;
	if (s->qn) {
		rev |= POLLIN;
	} else if (!s->pending && !s->eof) {
		int r = zl_chan_peek_len(s->ch, ZL_DONTWAIT);
		if (r > 0 || r == -EMSGSIZE) {
			rev |= POLLIN;
		} else if (r == 0) {
			s->eof = rd_end = true;
		} else if (r != -EAGAIN) {
			s->err = r;
			return (POLLIN | POLLOUT | POLLERR | POLLHUP) &
			       (events | POLLERR | POLLHUP);
		}
	}
	if (rd_end)
		rev |= POLLIN | POLLRDHUP;
	if (s->shut_wr) {
		rev |= POLLOUT; /* a write fails at once: not blocked */
	} else if (s->pending) {
		if (zl__chan_early_room(s->ch, 1))
			rev |= POLLOUT;
	} else {
		/* room for a full-size message: what a writer woken by
		 * POLLOUT can expect to write without blocking at once */
		int w = zl__chan_writable(s->ch, s->chunk);
		if (w != 0)
			rev |= POLLOUT; /* w < 0: the write returns the error */
		if (w == -ECONNRESET)
			rev |= POLLERR | POLLHUP;
	}
	if (s->eof && s->shut_wr)
		rev |= POLLHUP;
	return rev & (events | POLLERR | POLLHUP);
}

ZL_EXPORT int zl_sock_fd(const struct zl_sock *s)
{
	return s->lis ? zl_listener_fd(s->lis) : zl_chan_fd(s->ch);
}

ZL_EXPORT int zl_sock_arm(struct zl_sock *s, int events)
{
	if (s->lis)
		return zl_sock_poll(s, events) ? 1 : 0;
	if (zl_sock_poll(s, events))
		return 1;
	unsigned what =
		((events & POLLIN) ? ZL_SLEEP_RX : 0) | ((events & POLLOUT) ? ZL_SLEEP_TX : 0);
	int r = zl__chan_arm(s->ch, what ? what : ZL_SLEEP_RX);
	if (r != 0)
		return 1; /* ready, or an error the next call reports */
	/* The channel compares with what it knew when arming: progress seen
	 * while arming (space freed, say) counts only if we look again, now
	 * that the flag is up. */
	if (zl_sock_poll(s, events)) {
		zl__chan_disarm(s->ch);
		return 1;
	}
	return 0;
}

ZL_EXPORT int zl_sock_wait(struct zl_sock *s, int events, int timeout_ms)
{
	int rev = zl_sock_poll(s, events);
	if (rev || timeout_ms == 0)
		return rev;
	uint64_t t0 = zl__now_ns();
	int64_t budget = s->ch ? s->ch->spin_ns : 0;
	if (budget > 0) {
		for (uint32_t i = 1;; i++) {
			if ((rev = zl_sock_poll(s, events)))
				return rev;
			zl_cpu_relax();
			if ((i & 63) == 0 && (int64_t)(zl__now_ns() - t0) >= budget)
				break;
		}
	}
	for (;;) {
		int tmo = -1;
		if (timeout_ms >= 0) {
			int64_t left =
				(int64_t)timeout_ms - (int64_t)((zl__now_ns() - t0) / 1000000u);
			if (left <= 0)
				return zl_sock_poll(s, events);
			tmo = (int)left;
		}
		if (zl_sock_arm(s, events))
			return zl_sock_poll(s, events);
		struct pollfd p = {.fd = zl_sock_fd(s), .events = POLLIN};
		int n = poll(&p, 1, tmo);
		int e = errno;
		if (s->ch)
			zl__chan_disarm(s->ch);
		if (n < 0 && e == EINTR)
			return -EINTR;
		if ((rev = zl_sock_poll(s, events)))
			return rev;
	}
}

/* May this call wait? */
static bool may_wait(const struct zl_sock *s, int flags)
{
	return !s->nonblock && !(flags & MSG_DONTWAIT);
}

/* ------------------------------------------------------------------ */
/* receive                                                             */

static ssize_t recv_stream(struct zl_sock *s, const struct iovec *iov, int niov, int flags)
{
	size_t want = iov_total(iov, niov);
	if (want == 0)
		return 0;
	struct ocur oc = {.iov = iov, .n = niov};
	bool peek = (flags & MSG_PEEK) != 0;
	size_t got = 0;
	unsigned k = 0;        /* peek: the message being looked at */
	uint32_t off = s->off; /* offset in it */
	for (;;) {
		if (peek ? k == s->qn : s->qn == 0) {
			int r = q_pull(s);
			if (r == 1)
				continue;
			if (r == 0 || s->shut_rd)
				break; /* end of stream: what we have, or 0 */
			if (r != -EAGAIN)
				return got ? (ssize_t)got : r;
			if (got && !(flags & MSG_WAITALL))
				break;
			if (!may_wait(s, flags))
				return got ? (ssize_t)got : -EAGAIN;
			r = zl_sock_wait(s, POLLIN, -1);
			if (r < 0)
				return got ? (ssize_t)got : r;
			continue;
		}
		const struct zl__rxm *e = &s->q[peek ? k : 0];
		size_t n = e->len - off;
		if (n > want - got)
			n = want - got;
		msg_copy(e, off, &oc, n);
		got += n;
		off += (uint32_t)n;
		if (off == e->len) {
			off = 0;
			if (peek)
				k++;
			else
				q_pop(s);
		}
		if (got == want)
			break;
	}
	if (!peek)
		s->off = off;
	return (ssize_t)got;
}

static ssize_t recv_record(struct zl_sock *s, const struct iovec *iov, int niov, int flags,
			   int *oflags)
{
	size_t want = iov_total(iov, niov);
	for (;;) {
		if (s->qn)
			break;
		int r = q_pull(s);
		if (r == 1)
			break;
		if (r == 0 || s->shut_rd)
			return 0;
		if (r != -EAGAIN)
			return r;
		if (!may_wait(s, flags))
			return -EAGAIN;
		r = zl_sock_wait(s, POLLIN, -1);
		if (r < 0)
			return r;
	}
	const struct zl__rxm *e = &s->q[0];
	struct ocur oc = {.iov = iov, .n = niov};
	size_t n = e->len < want ? e->len : want;
	msg_copy(e, 0, &oc, n);
	size_t len = e->len;
	if (len > want && oflags)
		*oflags |= MSG_TRUNC;
	if (!(flags & MSG_PEEK))
		q_pop(s);
	return (flags & MSG_TRUNC) ? (ssize_t)len : (ssize_t)n;
}

ZL_EXPORT ssize_t zl_sock_recvv(struct zl_sock *s, const struct iovec *iov, int n, int flags,
				int *oflags)
{
	if (oflags)
		*oflags = 0;
	if (s->lis)
		return -ENOTCONN;
	if (n < 0 || (n > 0 && !iov))
		return -EINVAL;
	if (flags &
	    ~(MSG_DONTWAIT | MSG_PEEK | MSG_WAITALL | MSG_TRUNC | MSG_NOSIGNAL | MSG_CMSG_CLOEXEC))
		return -EOPNOTSUPP;
	if (s->err && !s->qn)
		return s->err;
	if (s->type == SOCK_SEQPACKET)
		return recv_record(s, iov, n, flags, oflags);
	return recv_stream(s, iov, n, flags);
}

ZL_EXPORT ssize_t zl_sock_recv(struct zl_sock *s, void *buf, size_t len, int flags)
{
	struct iovec v = {.iov_base = buf, .iov_len = len};
	return zl_sock_recvv(s, &v, 1, flags, NULL);
}

ZL_EXPORT int zl_sock_nread(struct zl_sock *s)
{
	if (s->lis)
		return -EINVAL;
	while (q_pull(s) == 1)
		;
	uint64_t t = 0;
	if (s->type == SOCK_SEQPACKET)
		return s->qn ? (int)s->q[0].len : 0;
	for (unsigned i = 0; i < s->qn; i++)
		t += s->q[i].len;
	t -= s->off;
	return t > INT_MAX ? INT_MAX : (int)t;
}

/* ------------------------------------------------------------------ */
/* send                                                                */

/* The part [*pi, *poff) + len of iov as at most IOV_SLICE vectors; returns
 * how many bytes the slice holds (less than len when it would need more
 * vectors) and advances the position. */
static size_t iov_slice(const struct iovec *iov, int n, int *pi, size_t *poff, size_t len,
			struct iovec *out, int *nout)
{
	size_t got = 0;
	int k = 0;
	int i = *pi;
	size_t off = *poff;
	while (got < len && i < n && k < IOV_SLICE) {
		size_t avail = iov[i].iov_len - off;
		if (avail == 0) {
			i++;
			off = 0;
			continue;
		}
		size_t take = avail < len - got ? avail : len - got;
		out[k].iov_base = (char *)iov[i].iov_base + off;
		out[k].iov_len = take;
		k++;
		got += take;
		off += take;
		if (off == iov[i].iov_len) {
			i++;
			off = 0;
		}
	}
	*pi = i;
	*poff = off;
	*nout = k;
	return got;
}

static int send_one(struct zl_sock *s, const struct iovec *v, int nv, size_t len)
{
	sock_settle(s);
	if (s->err)
		return s->err;
	if (s->pending)
		return zl__chan_send_early(s->ch, v, nv, (uint32_t)len);
	return zl_chan_sendv(s->ch, v, nv, ZL_DONTWAIT);
}

ZL_EXPORT ssize_t zl_sock_sendv(struct zl_sock *s, const struct iovec *iov, int n, int flags)
{
	if (s->lis)
		return -ENOTCONN;
	if (n < 0 || (n > 0 && !iov))
		return -EINVAL;
	if (flags & ~(MSG_DONTWAIT | MSG_NOSIGNAL | MSG_MORE | MSG_EOR))
		return -EOPNOTSUPP;
	if (s->shut_wr)
		return -EPIPE;
	sock_settle(s);
	if (s->err)
		return s->err == -ECONNREFUSED ? -ECONNREFUSED : s->err;
	size_t total = iov_total(iov, n);
	if (s->type == SOCK_SEQPACKET && total > s->chunk)
		return -EMSGSIZE;
	if (total == 0)
		return 0;
	if (total > INT32_MAX)
		total = INT32_MAX;
	size_t sent = 0;
	int vi = 0;
	size_t voff = 0;
	while (sent < total) {
		size_t want = total - sent < s->chunk ? total - sent : s->chunk;
		struct iovec v[IOV_SLICE];
		int nv;
		int si = vi;
		size_t soff = voff;
		size_t len = iov_slice(iov, n, &si, &soff, want, v, &nv);
		int r = send_one(s, v, nv, len);
		if (r > 0) {
			sent += (size_t)r;
			vi = si;
			voff = soff;
			continue;
		}
		if (r == -EAGAIN && s->type == SOCK_STREAM) {
			/* a stream takes what fits: the whole lane is the
			 * socket's buffer, as the kernel's is */
			uint32_t room = zl__chan_tx_room(s->ch);
			if (room >= 64 && room < len) {
				si = vi;
				soff = voff;
				len = iov_slice(iov, n, &si, &soff, room, v, &nv);
				r = send_one(s, v, nv, len);
				if (r > 0) {
					sent += (size_t)r;
					vi = si;
					voff = soff;
					continue;
				}
			}
		}
		if (r == -EAGAIN) {
			if (sent && !may_wait(s, flags))
				break;
			if (!may_wait(s, flags))
				return -EAGAIN;
			r = zl_sock_wait(s, POLLOUT, -1);
			if (r < 0)
				return sent ? (ssize_t)sent : r;
			continue;
		}
		return sent ? (ssize_t)sent : r;
	}
	return (ssize_t)sent;
}

ZL_EXPORT ssize_t zl_sock_send(struct zl_sock *s, const void *buf, size_t len, int flags)
{
	struct iovec v = {.iov_base = (void *)buf, .iov_len = len};
	return zl_sock_sendv(s, &v, 1, flags);
}

ZL_EXPORT size_t zl_sock_max_record(const struct zl_sock *s)
{
	return s->ch ? s->chunk : 0;
}

/* ------------------------------------------------------------------ */
/* set-up and tear-down                                                */

ZL_EXPORT int zl_sock_listen(struct zl_ctx *ctx, const char *name, int type,
			     const struct zl_sock_opts *opts, struct zl_sock **out)
{
	char svc[ZL_NAME_MAX];
	if (!ctx || !out || service_name(svc, name, type) < 0)
		return -EINVAL;
	struct zl_listen_opts lo = {.mode = ZL_MODE_ISOLATED};
	if (opts && (opts->listen_flags & ZL_LISTEN_ANY))
		lo.flags |= ZL_LISTEN_ANY;
	struct zl_sock *s = sock_alloc(type, opts ? opts->flags : 0);
	if (!s)
		return -ENOMEM;
	if (opts)
		s->lopts = *opts;
	int err = zl_listen(ctx, svc, &lo, &s->lis);
	if (err) {
		free(s);
		return err;
	}
	*out = s;
	return 0;
}

ZL_EXPORT int zl_sock_accept(struct zl_sock *ls, unsigned flags, struct zl_sock **out)
{
	if (!ls || !ls->lis || !out)
		return -EINVAL;
	struct zl_chan_opts co;
	chan_opts(&ls->lopts, &co);
	struct zl_chan *ch;
	int err = zl_accept(ls->lis, &co, &ch, ls->nonblock ? 0 : -1);
	if (err)
		return err;
	err = zl__sock_wrap(ch, ls->type, flags, false, out);
	if (err)
		zl_chan_close(ch);
	return err;
}

ZL_EXPORT int zl_sock_connect(struct zl_ctx *ctx, const char *name, int type,
			      const struct zl_sock_opts *opts, struct zl_sock **out)
{
	char svc[ZL_NAME_MAX];
	if (!ctx || !out || service_name(svc, name, type) < 0)
		return -EINVAL;
	struct zl_chan_opts co;
	chan_opts(opts, &co);
	struct zl_chan *ch;
	int err = zl__connect_begin(ctx, svc, &co, &ch);
	if (err)
		return err;
	err = zl__sock_wrap(ch, type, opts ? opts->flags : 0, true, out);
	if (err) {
		zl_chan_close(ch);
		return err;
	}
	sock_settle(*out);
	return 0;
}

ZL_EXPORT int zl_sock_pair(struct zl_ctx *ctx, int type, const struct zl_sock_opts *opts,
			   struct zl_sock *out[2])
{
	if (!type_prefix(type) || !out)
		return -EINVAL;
	struct zl_chan_opts co;
	chan_opts(opts, &co);
	struct zl_chan *ch[2];
	int err = zl_chan_pair(ctx, &co, ch);
	if (err)
		return err;
	unsigned fl = opts ? opts->flags : 0;
	if ((err = zl__sock_wrap(ch[0], type, fl, false, &out[0]))) {
		zl_chan_close(ch[0]);
		zl_chan_close(ch[1]);
		return err;
	}
	if ((err = zl__sock_wrap(ch[1], type, fl, false, &out[1]))) {
		zl_sock_close(out[0]);
		zl_chan_close(ch[1]);
		return err;
	}
	return 0;
}

ZL_EXPORT int zl_sock_shutdown(struct zl_sock *s, int how)
{
	if (s->lis)
		return -ENOTCONN;
	if (how != SHUT_RD && how != SHUT_WR && how != SHUT_RDWR)
		return -EINVAL;
	if (how != SHUT_WR)
		s->shut_rd = true;
	if (how != SHUT_RD && !s->shut_wr) {
		s->shut_wr = true;
		int err = zl_chan_shutdown(s->ch);
		if (err && err != -EPIPE && err != -ECONNRESET)
			return err;
	}
	return 0;
}

ZL_EXPORT void zl_sock_set_nonblock(struct zl_sock *s, bool on)
{
	s->nonblock = on;
}

ZL_EXPORT void zl_sock_set_linger(struct zl_sock *s, bool on, int secs)
{
	s->linger_on = on;
	s->linger_s = secs < 0 ? 0 : secs;
}

/* SO_LINGER: wait until the peer has read everything, or the time is up. */
static int linger_wait(struct zl_sock *s)
{
	uint64_t end = zl__now_ns() + (uint64_t)s->linger_s * 1000000000u;
	for (;;) {
		sock_settle(s);
		if (s->err)
			return 0;
		if (!s->pending && zl__chan_tx_idle(s->ch))
			return 0;
		uint64_t now = zl__now_ns();
		if (now >= end)
			return -EWOULDBLOCK;
		if (zl__chan_arm(s->ch, ZL_SLEEP_TX) == 0) {
			struct pollfd p = {.fd = zl_chan_fd(s->ch), .events = POLLIN};
			uint64_t left = (end - now) / 1000000u + 1;
			poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
			zl__chan_disarm(s->ch);
		}
	}
}

ZL_EXPORT int zl_sock_close(struct zl_sock *s)
{
	if (!s)
		return 0;
	int ret = 0;
	if (s->lis) {
		zl_listener_close(s->lis);
	} else {
		if (s->linger_on && s->linger_s > 0 && !s->shut_wr)
			ret = linger_wait(s);
		while (s->qn)
			q_pop(s);
		zl_chan_close(s->ch);
	}
	free(s->q);
	free(s);
	return ret;
}
