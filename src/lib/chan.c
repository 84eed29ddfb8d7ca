/* SPDX-License-Identifier: MIT */
/*
 * Channels: two lanes of 64-byte slots between two domains, with inline
 * payloads, pool-buffer descriptors, returned-buffer rings, notification and
 * peer-death detection.
 *
 * Memory ordering (labels are referred to in comments below):
 *   R_prod / A_prod: producer writes slots, then store-release tx_prod;
 *                    consumer load-acquires tx_prod, then reads slots.
 *   R_slot / A_slot: producer writes an entry's body, then store-release
 *                    its header word; a consumer watching the slot
 *                    load-acquires the header word, then reads the body.
 *   R_cons / A_cons: consumer finishes reading slots, then store-release
 *                    rx_cons; producer load-acquires it before reusing slots.
 *   R_ret  / A_ret:  releaser writes return entries, then store-release
 *                    ret_prod; owner load-acquires it, then reads entries.
 *   R_state/A_state: an endpoint publishes its last tx_prod, then
 *                    store-release its state; the peer load-acquires the
 *                    state and re-reads tx_prod after it.
 *   F_sleep:         Dekker pair. The sleeper stores its sleep flag, full
 *                    fence, re-checks the ring; the waker stores its index,
 *                    full fence, reads the sleep flag. One of the two always
 *                    sees the other's store, so no wake-up is lost. When the
 *                    sleeper announces ZL_HALF_F_MB and the waker's process
 *                    is registered for global expedited membarrier, the pair
 *                    is asymmetric: the sleeper's fence is
 *                    membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED), which runs
 *                    a full barrier on every running thread of the waker, and
 *                    the waker needs only a compiler barrier. The fence the
 *                    waker saves, per message, would wait for its store
 *                    buffer to drain (a cache miss on the buffer it just
 *                    filled, in zero-copy use); the sleeper pays a system call
 *                    on its way to block, which it was going to do anyway.
 *
 * Everything read from the peer's half (indices, slots, return entries) is
 * copied to a local variable and checked before use; a bad value breaks the
 * channel with -EPROTO and nothing else.
 */
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "barrier.h"
#include "internal.h"

#define DEF_SLOTS 1024u
#define DEF_LEND 1024u
#define DEF_SPIN_NS 10000
#define LIVENESS_NS 5000000ull /* how often a spinning waiter checks the peer is alive */
#define REF_INLINE UINT32_MAX
#define ZL_SLOT_BIG 3u /* header of a message fragmented over several entries */

uint32_t zl__test_start_index;

static bool is_pow2(uint32_t v)
{
	return v && !(v & (v - 1));
}

static uint32_t entry_slots(uint32_t len)
{
	return len <= ZL_SLOT_INLINE_HEAD ? 1u : 1u + (len - ZL_SLOT_INLINE_HEAD + 63u) / 64u;
}

/* Largest payload of one INLINE entry: a quarter of the lane, so that the
 * padding wasted at the ring's end stays small. */
static uint32_t max_entry(uint32_t slots)
{
	return (slots / 4u) * 64u - 8u;
}

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the lane ABI is little-endian; this code composes header words for a little-endian host"
#endif

/* The header word of a slot (struct zl_abi_slot), composed in a register:
 * building it field by field in memory and loading it whole would stall
 * store forwarding. */
static inline uint64_t hdr_word(uint8_t kind, uint8_t flags, uint32_t nslots, uint32_t len)
{
	return (uint64_t)kind | (uint64_t)flags << 8 | (uint64_t)(uint16_t)nslots << 16 |
	       (uint64_t)len << 32;
}

/* The lap bit an entry at free-running index idx carries in a ring of
 * `size` slots (see struct zl_abi_slot). */
static inline uint8_t lap_bit(uint32_t idx, uint32_t size)
{
	return (idx & size) ? ZL_SLOT_F_LAP : 0;
}

/* Messages up to this size take the fast paths of zl_chan_send() and
 * zl_chan_recv(): one or two slots, copied without a library call. */
#define FAST_MAX (ZL_SLOT_INLINE_HEAD + 64u)
/* Looks at the slot before a receiver enters the general wait, back to
 * back (about a microsecond): a pause instruction between them would
 * delay noticing the message by half its length on average. */
#define FAST_SPINS 128u

/* memcpy for 1..FAST_MAX bytes, in overlapping words. */
static inline void copy_small(void *dst, const void *src, size_t n)
{
	char *d = dst;
	const char *s = src;
	if (n >= 16) {
		for (size_t i = 0; i + 16 < n; i += 16)
			memcpy(d + i, s + i, 16);
		memcpy(d + n - 16, s + n - 16, 16);
	} else if (n >= 8) {
		memcpy(d, s, 8);
		memcpy(d + n - 8, s + n - 8, 8);
	} else if (n >= 4) {
		memcpy(d, s, 4);
		memcpy(d + n - 4, s + n - 4, 4);
	} else {
		for (size_t i = 0; i < n; i++)
			d[i] = s[i];
	}
}

static int64_t default_spin(void)
{
	const char *e = getenv("ZEROLINK_SPIN_US");
	if (e && *e) {
		char *end;
		long long v = strtoll(e, &end, 10);
		if (*end == '\0' && v >= 0)
			return v >= INT64_MAX / 1000 ? ZL_SPIN_FOREVER : v * 1000;
	}
	return DEF_SPIN_NS;
}

/* ------------------------------------------------------------------ */
/* breaking and state                                                  */

static void chan_reclaim(struct zl_chan *ch);

static int chan_break(struct zl_chan *ch, int err)
{
	if (!ch->err) {
		ch->err = err;
		if (err == -EPROTO)
			ch->state = ZL_CHAN_BROKEN;
		/* Tell the peer we are gone for good; our state line is ours. */
		zl_store_release(&ch->me->state, ZL_HALF_CLOSED);
		if (ch->ctl >= 0)
			shutdown(ch->ctl, SHUT_RDWR);
		chan_reclaim(ch);
	}
	return ch->err;
}

static void chan_peer_gone(struct zl_chan *ch)
{
	if (ch->state == ZL_CHAN_PEER_DEAD || ch->state == ZL_CHAN_PEER_CLOSED ||
	    ch->state == ZL_CHAN_BROKEN)
		return;
	/* A_state: an orderly close stored CLOSED before closing the socket. */
	uint32_t st = zl_load_acquire(&ch->peer->state);
	ch->state = st == ZL_HALF_CLOSED ? ZL_CHAN_PEER_CLOSED : ZL_CHAN_PEER_DEAD;
	if (ch->ep >= 0 && ch->ctl >= 0)
		epoll_ctl(ch->ep, EPOLL_CTL_DEL, ch->ctl, NULL);
}

/* ------------------------------------------------------------------ */
/* control socket: regions from the peer, hang-up                       */

static struct zl_region *preg_find_slow(struct zl_chan *ch, uint64_t id)
{
	for (unsigned i = 0; i < ch->npregs; i++) {
		if (ch->pregs[i].id == id) {
			ch->preg_hint = i;
			return ch->pregs[i].r;
		}
	}
	return NULL;
}

static inline struct zl_region *preg_find(struct zl_chan *ch, uint64_t id)
{
	unsigned h = ch->preg_hint;
	if (ZL_LIKELY(h < ch->npregs && ch->pregs[h].id == id))
		return ch->pregs[h].r;
	return preg_find_slow(ch, id);
}

static int ctl_handle(struct zl_chan *ch, const char *buf, ssize_t n, int *fds, int nfds)
{
	int type = zl__proto_check(buf, (size_t)n, nfds);
	if (type != ZL_MSG_PEER_REGION || ch->mode != ZL_MODE_SHARED) {
		zl__close_fds(fds, nfds);
		return -EPROTO;
	}
	struct zl_proto_peer_region pr;
	memcpy(&pr, buf + sizeof(struct zl_proto_hdr), sizeof(pr));
	if (preg_find(ch, pr.id)) {
		zl__close_fds(fds, nfds);
		return -EPROTO;
	}
	struct zl_region *r;
	int err = zl__region_import(ch->ctx, fds[0], pr.id, pr.size, pr.owner, pr.flags, pr.gaddr,
				    &r);
	if (err)
		return err;
	if (ch->npregs == ch->cappregs) {
		unsigned cap = ch->cappregs ? ch->cappregs * 2 : 4;
		void *p = realloc(ch->pregs, cap * sizeof(*ch->pregs));
		if (!p) {
			zl__region_put(r);
			return -ENOMEM;
		}
		ch->pregs = p;
		ch->cappregs = cap;
	}
	ch->pregs[ch->npregs].id = pr.id;
	ch->pregs[ch->npregs].r = r;
	ch->npregs++;
	return 0;
}

/* Process every control message waiting. Returns 0 or a breaking error. */
static int ctl_drain(struct zl_chan *ch)
{
	if (ch->ctl < 0 || ch->state == ZL_CHAN_PEER_DEAD || ch->state == ZL_CHAN_PEER_CLOSED)
		return 0;
	for (;;) {
		char buf[ZL_PROTO_MAX];
		int fds[4];
		int nfds = 4;
		ssize_t n = zl__msg_recv(ch->ctl, buf, sizeof(buf), fds, &nfds, true);
		if (n == -EAGAIN)
			return 0;
		if (n == 0 || n == -ECONNRESET || n == -EPIPE) {
			chan_peer_gone(ch);
			return 0;
		}
		if (n < 0) {
			zl__close_fds(fds, nfds);
			return chan_break(ch, -EPROTO);
		}
		int err = ctl_handle(ch, buf, n, fds, nfds);
		if (err)
			return chan_break(ch, err == -ENOMEM ? err : -EPROTO);
	}
}

/* Has the entry at ring index idx arrived, judging by its slot alone? Only
 * when the slot held a header in the previous lap (see struct zl_abi_slot). */
static bool rx_lap_ready(const struct zl_chan *ch, uint32_t idx)
{
	uint32_t pos = idx & (ch->rx_size - 1);
	if (!ch->rx_known[pos])
		return false;
	struct zl_abi_slot h;
	/* A_slot: the body is read after the header word. */
	h.hdr = zl_load_acquire(&ch->rx_slots[pos].hdr);
	return (h.flags & ZL_SLOT_F_LAP) == lap_bit(idx, ch->rx_size);
}

/* The first entry a waiting receiver lacks: rx_read, or further on when
 * the start of a message has arrived and its rest has not (the producer
 * publishes a message's entries one by one to a consumer that watches
 * slots). */
static uint32_t rx_wait_index(const struct zl_chan *ch)
{
	uint32_t d = ch->rx_wait - ch->rx_read;
	return d > 0 && d < ch->rx_size ? ch->rx_wait : ch->rx_read;
}

/* ------------------------------------------------------------------ */
/* notification                                                        */

static inline void kick_peer(struct zl_chan *ch, uint32_t want)
{
	/* F_sleep: our index store is ordered before this load by the fence,
	 * or, when the peer calls membarrier() before sleeping and that
	 * reaches us, by the barrier it forces on us. */
	if (ch->peer_mb && zl_read_once(&zl__mb_ready))
		zl_compiler_barrier();
	else
		zl_fence();
	uint32_t s = zl_read_once(&ch->peer->sleep);
	if ((s & want) && (s >> 2) != ch->kicked_gen) {
		ch->kicked_gen = s >> 2;
		if (ch->bell >= 0) {
			/* one byte on the connection both ends share: the peer's
			 * end of it turns readable (see zl__chan_set_bell) */
			ssize_t r = send(ch->bell, "", 1, MSG_DONTWAIT | MSG_NOSIGNAL);
			(void)r; /* EAGAIN: earlier bytes wait unread, the peer will look */
		} else {
			uint64_t one = 1;
			ssize_t r = write(ch->peer_efd, &one, sizeof(one));
			(void)r; /* EAGAIN: counter saturated, the peer is awake anyway */
		}
		ch->me->cnt.kicks++;
	}
}

/* Forget kicks already received, before announcing sleep again. */
static void kicks_clear(struct zl_chan *ch)
{
	if (ch->bell >= 0) {
		/* The peer counts its kicks in its half, after sending each:
		 * when we have drained as many, nothing waits on the socket
		 * (a byte whose count we do not see yet is drained next time,
		 * a spurious wake-up at worst) and the system call is saved. */
		uint64_t k = ch->peer ? zl_read_once(&ch->peer->cnt.kicks) : ~0ull;
		if (k == ch->bell_seen)
			return;
		zl__chan_bell_drain(ch);
		ch->bell_seen = k;
		return;
	}
	uint64_t v;
	ssize_t r = read(ch->efd, &v, sizeof(v));
	(void)r;
}

void zl__chan_bell_drain(struct zl_chan *ch)
{
	if (ch->bell >= 0) {
		char b[64];
		ssize_t r;
		do {
			if (ch->bell_sink) {
				union zl__bell_cmsg cb;
				struct iovec v = {b, sizeof(b)};
				struct msghdr m = {.msg_iov = &v,
						   .msg_iovlen = 1,
						   .msg_control = cb.buf,
						   .msg_controllen = sizeof(cb.buf)};
				r = recvmsg(ch->bell, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
				if (r > 0)
					ch->bell_sink(ch->bell_arg, b, (size_t)r, &m);
				/* a read stops after a message with descriptors:
				 * look again; a short read without any means the
				 * socket is empty (no system call to learn it) */
				if (r > 0 && (m.msg_controllen || r == (ssize_t)sizeof(b)))
					continue;
				if (r < 0 && errno == EINTR)
					continue;
				break;
			}
			r = recv(ch->bell, b, sizeof(b), MSG_DONTWAIT);
		} while (r == (ssize_t)sizeof(b) || (r < 0 && errno == EINTR));
		if (r == 0 && !ch->bell_eof) {
			/* it stays readable from now on: poll it no more */
			ch->bell_eof = true;
			if (ch->ep >= 0)
				epoll_ctl(ch->ep, EPOLL_CTL_DEL, ch->bell, NULL);
		}
	}
}

static bool peer_alive_check(struct zl_chan *ch)
{
	/* A doorbell channel learns of a dead peer from the bell's end of
	 * file, which every wait and the program's own poll and epoll see:
	 * no system call per channel here (thousands of quiet connections
	 * in one epoll set would each cost one every few milliseconds). */
	if (ch->bell >= 0 && !ch->bell_eof)
		return true;
	struct pollfd p = {.fd = ch->ctl, .events = POLLIN | POLLRDHUP};
	if (ch->ctl >= 0 && poll(&p, 1, 0) > 0) {
		ctl_drain(ch);
		return false;
	}
	return true;
}

/* Anything the waiter of kind `what` could care about has changed? */
static bool wait_ready(struct zl_chan *ch, unsigned what, uint32_t cons0, uint32_t ret0)
{
	if (ch->err || ch->state != ZL_CHAN_OPEN)
		return true;
	if (zl_read_once(&ch->peer->state) != ZL_HALF_OPEN)
		return true;
	if (what & ZL_SLEEP_RX) {
		for (unsigned i = 0; i < ch->ndown; i++)
			if (zl_read_once(&ch->down[i]->peer->ret_prod) !=
			    ch->down[i]->peer_ret_cons)
				return true;
		/* The entry we lack (see rx_wait_index): its slot when it can
		 * be watched, so that the producer index stays in the
		 * producer's cache. */
		uint32_t idx = rx_wait_index(ch), pos = idx & (ch->rx_size - 1);
		if (ch->rx_known[pos]) {
			/* Touch the next slot as well: when the message takes
			 * two slots, the producer writes that one first, and its
			 * line is then on its way here while we watch the first. */
			(void)zl_read_once(&ch->rx_slots[(pos + 1) & (ch->rx_size - 1)].hdr);
			return rx_lap_ready(ch, idx);
		}
		return (int32_t)(zl_read_once(&ch->peer->tx_prod) - idx) > 0;
	}
	return zl_read_once(&ch->peer->rx_cons) != cons0 ||
	       zl_read_once(&ch->peer->ret_prod) != ret0;
}

/*
 * Wait until the peer may have done something relevant to `what`: spin for
 * the adaptive budget, then announce sleep and block on the eventfd. The
 * caller re-checks its own condition afterwards.
 */
static int chan_reap(struct zl_chan *ch);

static int chan_wait(struct zl_chan *ch, unsigned what)
{
	/* However the caller loops, a dead peer is noticed. */
	uint64_t now0 = zl__now_ns();
	if (now0 - ch->live_ns >= LIVENESS_NS) {
		ch->live_ns = now0;
		if (!peer_alive_check(ch))
			return 0;
	}
	/* Returns already published count as seen: the baseline below is
	 * how far we reaped. Returns collected here are progress the caller
	 * has not seen (they may be the last to come: waiting for more would
	 * never end), so it looks again first. */
	if ((what & ZL_SLEEP_TX) && chan_reap(ch) > 0)
		return 0;
	/* Compare with what the caller decided on, not with a fresh reading:
	 * a consumer index published between the caller's look and ours would
	 * otherwise go unnoticed (and its kick, sent before our flag was up,
	 * would never come). */
	uint32_t cons0 = ch->tx_cons_seen;
	uint32_t ret0 = ch->peer_ret_cons;
	int64_t budget = ch->spin_cur;
	if (budget > 0) {
		uint64_t start = now0;
		for (uint32_t i = 1;; i++) {
			if (wait_ready(ch, what, cons0, ret0)) {
				ch->me->cnt.spins++;
				ch->spin_cur = ch->spin_ns;
				return 0;
			}
			/* Past the first microseconds, let another thread of this
			 * core run (a pipeline stage sharing it, say) instead of
			 * burning the rest of the budget: yielding returns at once
			 * when nothing else is runnable. */
			if (i > 64)
				sched_yield();
			else
				zl_cpu_relax();
			if ((i & 255) == 0 || i > 64) {
				uint64_t now = zl__now_ns();
				if (budget != ZL_SPIN_FOREVER && (int64_t)(now - start) >= budget)
					break;
				if (now - ch->live_ns >= LIVENESS_NS) {
					ch->live_ns = now;
					if (!peer_alive_check(ch))
						return 0;
				}
			}
		}
		/* The budget was spent for nothing: spin less next time. */
		int64_t floor = ch->spin_ns / 8;
		ch->spin_cur = ch->spin_cur / 2 > floor ? ch->spin_cur / 2 : floor;
	}
	/* Clear old kicks now rather than after waking: the read is then off
	 * the path from the peer's kick to our answer. */
	kicks_clear(ch);
	uint32_t gen = ++ch->sleep_gen & 0x3fffffffu;
	zl_write_once(&ch->me->sleep, (gen << 2) | what);
	if (what & ZL_SLEEP_RX) {
		/* returns on the channels we forwarded to wake us too: their
		 * eventfds are in our epoll set */
		for (unsigned i = 0; i < ch->ndown; i++) {
			struct zl_chan *d = ch->down[i];
			uint32_t g = ++d->sleep_gen & 0x3fffffffu;
			zl_write_once(&d->me->sleep, (g << 2) | ZL_SLEEP_TX);
		}
	}
	/* F_sleep: the flag is visible before we look at the peer's indices. */
	bool mb = ch->my_mb;
	if (what & ZL_SLEEP_RX)
		for (unsigned i = 0; i < ch->ndown; i++)
			mb |= ch->down[i]->my_mb;
	/* If membarrier() fails after all (it worked at registration), our
	 * wakers may have skipped their fence: sleep in short steps then, so
	 * that a publish they made unseen is found by the next look. */
	int tmo = -1;
	if (!mb)
		zl_fence();
	else if (zl__mb_sleep_fence() < 0)
		tmo = 1;
	if (!wait_ready(ch, what, cons0, ret0)) {
		ch->me->cnt.sleeps++;
		if (ch->ep >= 0) {
			struct epoll_event ev[2];
			int n;
			do
				n = epoll_wait(ch->ep, ev, 2, tmo);
			while (n < 0 && errno == EINTR);
			for (int i = 0; i < n; i++)
				if (ev[i].data.fd == ch->ctl)
					ctl_drain(ch);
		} else {
			/* a doorbell channel without descriptors of its own (see
			 * zl__chan_set_bell): the control socket and the bell */
			struct pollfd p[2] = {
				{.fd = ch->ctl, .events = POLLIN},
				{.fd = ch->bell_eof ? -1 : ch->bell, .events = POLLIN | POLLRDHUP}};
			int n;
			do
				n = poll(p, 2, tmo);
			while (n < 0 && errno == EINTR);
			if (n > 0 && p[0].revents)
				ctl_drain(ch);
		}
	}
	zl_write_once(&ch->me->sleep, 0);
	if (what & ZL_SLEEP_RX) {
		for (unsigned i = 0; i < ch->ndown; i++) {
			uint64_t v;
			ssize_t r = read(ch->down[i]->efd, &v, sizeof(v));
			(void)r;
			zl_write_once(&ch->down[i]->me->sleep, 0);
		}
	}
	return 0;
}

/* Remember that `in` forwarded buffers to `out` (see struct zl_chan). */
static void chan_link(struct zl_chan *in, struct zl_chan *out)
{
	for (unsigned i = 0; i < in->ndown; i++)
		if (in->down[i] == out)
			return;
	if (in->ndown == ZL_ARRAY_SIZE(in->down) || out->nup == ZL_ARRAY_SIZE(out->up) ||
	    in->ep < 0 || out->efd < 0)
		return; /* the application must poll `out` itself (zl_chan_poll) */
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = out->efd};
	if (epoll_ctl(in->ep, EPOLL_CTL_ADD, out->efd, &ev) < 0)
		return;
	in->down[in->ndown++] = out;
	out->up[out->nup++] = in;
}

static void chan_unlink_all(struct zl_chan *ch)
{
	for (unsigned i = 0; i < ch->nup; i++) {
		struct zl_chan *u = ch->up[i];
		for (unsigned k = 0; k < u->ndown; k++) {
			if (u->down[k] == ch) {
				u->down[k] = u->down[--u->ndown];
				epoll_ctl(u->ep, EPOLL_CTL_DEL, ch->efd, NULL);
				break;
			}
		}
	}
	for (unsigned i = 0; i < ch->ndown; i++) {
		struct zl_chan *d = ch->down[i];
		for (unsigned k = 0; k < d->nup; k++) {
			if (d->up[k] == ch) {
				d->up[k] = d->up[--d->nup];
				break;
			}
		}
		epoll_ctl(ch->ep, EPOLL_CTL_DEL, d->efd, NULL);
	}
	ch->nup = ch->ndown = 0;
}

/* ------------------------------------------------------------------ */
/* returns                                                             */

static void ret_publish(struct zl_chan *ch)
{
	/* R_ret: the entries precede the index. */
	zl_store_release(&ch->me->ret_prod, ch->ret_prod);
	kick_peer(ch, ZL_SLEEP_TX);
}

static void chan_maybe_free(struct zl_chan *ch);

/* Give a lend id of the peer back to it. Returns false if the peer overran
 * its lend capacity (our return ring is full). */
static inline __attribute__((always_inline)) bool ret_push(struct zl_chan *ch, uint32_t ref)
{
	if (ch->err || ch->state != ZL_CHAN_OPEN || ch->app_closed)
		return true; /* nobody will reap the ring any more */
	if (ch->ret_prod - ch->ret_cons_seen >= ch->my_ret_size) {
		/* read the peer's progress only when the cached value says full */
		ch->ret_cons_seen = zl_load_acquire(&ch->peer->ret_cons);
		if (ch->ret_prod - ch->ret_cons_seen >= ch->my_ret_size) {
			chan_break(ch, -EPROTO);
			return false;
		}
	}
	zl_write_once(&ch->my_ret[ch->ret_prod & (ch->my_ret_size - 1)], ref);
	ch->ret_prod++;
	return true;
}

/* Returns collected by one reap, handed on in batches: buffers of one pool
 * class go back in one chain (one atomic operation), and each channel that
 * forwarded buffers to us gets its returns published once. */
struct reap_batch {
	struct zl_pool *pool;
	uint32_t cls, first, last; /* chain of buffer indices, first == UINT32_MAX: none */
	struct zl_chan *in[8];
	unsigned nin;
};

static void batch_flush_pool(struct reap_batch *b)
{
	if (b->first != UINT32_MAX)
		zl__pool_return_chain(b->pool, b->cls, b->first, b->last);
	b->first = UINT32_MAX;
}

static void batch_flush(struct reap_batch *b)
{
	batch_flush_pool(b);
	for (unsigned i = 0; i < b->nin; i++) {
		struct zl_chan *in = b->in[i];
		ret_publish(in);
		in->views--; /* the batch's own hold, see lend_put */
		chan_maybe_free(in);
	}
	b->nin = 0;
}

static inline __attribute__((always_inline)) void lend_put(struct zl_chan *ch, uint32_t id,
							   struct reap_batch *b)
{
	struct zl_lend *l = &ch->lend[id];
	if (l->kind == ZL_LEND_POOL) {
		uint32_t cls = l->buf_id >> 24, idx = l->buf_id & 0xffffff;
		if (b->first != UINT32_MAX && (b->pool != l->pool || b->cls != cls))
			batch_flush_pool(b);
		if (b->first == UINT32_MAX) {
			b->pool = l->pool;
			b->cls = cls;
			b->last = idx;
		} else {
			zl__pool_link(l->pool, cls, idx, b->first);
		}
		b->first = idx;
	} else if (l->kind == ZL_LEND_FWD) {
		struct zl_chan *in = l->in;
		ret_push(in, l->in_ref);
		unsigned k = b->nin ? b->nin - 1 : 0; /* most often the last one */
		if (k < b->nin && b->in[k] != in)
			for (k = 0; k < b->nin && b->in[k] != in; k++)
				;
		if (k == b->nin) {
			if (k == ZL_ARRAY_SIZE(b->in)) {
				batch_flush(b);
				k = 0;
			}
			b->in[k] = in;
			b->nin = k + 1;
			in->views++; /* keep `in` until the batch is published */
		}
		in->views--;
	}
	l->kind = ZL_LEND_FREE;
	l->next_free = ch->lend_free;
	ch->lend_free = id + 1;
	ch->lent--;
}

/* Collect the buffers the peer has handed back. */
static int chan_reap(struct zl_chan *ch)
{
	if (ch->released_all || !ch->peer)
		return 0;
	/* A_ret: entries are read after the index. */
	uint32_t prod = zl_load_acquire(&ch->peer->ret_prod);
	uint32_t n = prod - ch->peer_ret_cons;
	if (n == 0)
		return 0;
	if (n > ch->peer_ret_size)
		return chan_break(ch, -EPROTO);
	struct reap_batch b = {.first = UINT32_MAX};
	for (uint32_t i = 0; i < n; i++) {
		uint32_t id = zl_read_once(
			&ch->peer_ret[(ch->peer_ret_cons + i) & (ch->peer_ret_size - 1)]);
		if (id >= ch->peer_ret_size || ch->lend[id].kind == ZL_LEND_FREE) {
			ch->peer_ret_cons += i;
			batch_flush(&b);
			return chan_break(ch, -EPROTO);
		}
		lend_put(ch, id, &b);
	}
	batch_flush(&b);
	ch->peer_ret_cons = prod;
	zl_store_release(&ch->me->ret_cons, prod);
	return (int)n;
}

/* Take back everything lent to the peer (peer gone, or we close). */
static void chan_reclaim(struct zl_chan *ch)
{
	if (ch->released_all || !ch->lend)
		return;
	if (ch->state == ZL_CHAN_PEER_CLOSED || ch->state == ZL_CHAN_PEER_DEAD)
		chan_reap(ch);
	ch->released_all = true;
	struct reap_batch b = {.first = UINT32_MAX};
	for (uint32_t i = 0; i < ch->peer_ret_size; i++)
		if (ch->lend[i].kind != ZL_LEND_FREE)
			lend_put(ch, i, &b);
	batch_flush(&b);
}

/* Once the peer is gone (closed or dead), collect its last returns and take
 * back whatever it still held. Called where no send is half done. */
static void chan_settle(struct zl_chan *ch)
{
	if (ch->state == ZL_CHAN_OPEN && zl_load_acquire(&ch->peer->state) == ZL_HALF_CLOSED)
		chan_peer_gone(ch);
	if (ch->state == ZL_CHAN_PEER_CLOSED || ch->state == ZL_CHAN_PEER_DEAD)
		chan_reclaim(ch);
}

/* ------------------------------------------------------------------ */
/* producer                                                            */

static int send_status(struct zl_chan *ch)
{
	if (ZL_UNLIKELY(ch->err))
		return ch->err;
	if (ZL_UNLIKELY(ch->shut_wr))
		return -EPIPE;
	if (ZL_UNLIKELY(ch->state != ZL_CHAN_OPEN ||
			zl_read_once(&ch->peer->state) == ZL_HALF_CLOSED)) {
		chan_settle(ch);
		if (ch->state == ZL_CHAN_PEER_DEAD)
			return -ECONNRESET;
		if (ch->state == ZL_CHAN_BROKEN)
			return -EPROTO;
		return -EPIPE;
	}
	return 0;
}

/* Free slots in our lane, or -EPROTO if the peer's consumer index lies.
 * The peer's index is read again only when the last value seen does not
 * leave `need` slots: its cache line then stays put while we stream. */
static int64_t tx_free(struct zl_chan *ch, uint32_t need)
{
	uint32_t cached = ch->tx_size - (ch->tx_prod - ch->tx_cons_seen);
	if (cached >= need)
		return cached;
	/* A_cons: the peer is done with slots below cons before we reuse them. */
	uint32_t cons = zl_load_acquire(&ch->peer->rx_cons);
	uint32_t used = ch->tx_prod - cons;
	if (used > ch->tx_size || (cons - ch->tx_cons_seen) > (ch->tx_prod - ch->tx_cons_seen))
		return chan_break(ch, -EPROTO);
	ch->tx_cons_seen = cons;
	return ch->tx_size - used;
}

static void tx_publish(struct zl_chan *ch)
{
	/* R_prod: slots written above are visible before the index. */
	zl_store_release(&ch->me->tx_prod, ch->tx_prod);
	kick_peer(ch, ZL_SLEEP_RX);
}

/* Publish entries written since the last tx_publish(), if any. */
static void tx_flush(struct zl_chan *ch)
{
	if (zl_read_once(&ch->me->tx_prod) != ch->tx_prod)
		tx_publish(ch);
}

/* Wait until `need` slots are free (entries that need no contiguity, or a
 * worst case computed by the caller). */
static int tx_wait_free(struct zl_chan *ch, uint32_t need, unsigned flags)
{
	for (;;) {
		int err = send_status(ch);
		if (err)
			return err;
		int64_t fr = tx_free(ch, need);
		if (fr < 0)
			return (int)fr;
		if ((uint64_t)fr >= need)
			return 0;
		if (flags & ZL_DONTWAIT) {
			ch->me->cnt.drops++;
			return -EAGAIN;
		}
		tx_flush(ch);
		chan_wait(ch, ZL_SLEEP_TX);
	}
}

/* Write the header word of the entry at tx_prod, after its body (see
 * struct zl_abi_slot), and move past it. The entry is published to a
 * consumer watching the slot at once, to others with tx_publish(). */
static inline void slot_publish(struct zl_chan *ch, uint8_t kind, uint8_t flags, uint32_t nslots,
				uint32_t len)
{
	struct zl_abi_slot *s = &ch->tx_slots[ch->tx_prod & (ch->tx_size - 1)];
	flags |= lap_bit(ch->tx_prod, ch->tx_size);
	/* R_slot: the body is visible before the header word. */
	zl_store_release(&s->hdr, hdr_word(kind, flags, nslots, len));
	ch->tx_prod += nslots;
}

/* Pad to the start of the ring if an entry of `need` slots would straddle
 * its end; the caller made sure the space exists. */
static void tx_place(struct zl_chan *ch, uint32_t need)
{
	uint32_t pos = ch->tx_prod & (ch->tx_size - 1);
	if (pos + need > ch->tx_size) {
		slot_publish(ch, ZL_SLOT_PAD, 0, ch->tx_size - pos, 0);
	}
}

/* Room for an entry of `need` contiguous slots: a PAD is written when the
 * entry would straddle the end of the ring. Our position does not move while
 * we wait (only we advance tx_prod), so the pad is known in advance. */
static int tx_reserve(struct zl_chan *ch, uint32_t need, unsigned flags)
{
	uint32_t pos = ch->tx_prod & (ch->tx_size - 1);
	uint32_t pad = pos + need > ch->tx_size ? ch->tx_size - pos : 0;
	int err = tx_wait_free(ch, pad + need, flags);
	if (err)
		return err;
	tx_place(ch, need);
	return 0;
}

struct iov_cursor {
	const struct iovec *iov;
	int n, i;
	size_t off;
};

static void iov_copy(struct iov_cursor *c, char *dst, size_t len)
{
	while (len) {
		const struct iovec *v = &c->iov[c->i];
		size_t k = v->iov_len - c->off;
		if (k > len)
			k = len;
		memcpy(dst, (const char *)v->iov_base + c->off, k);
		dst += k;
		len -= k;
		c->off += k;
		if (c->off == v->iov_len) {
			c->i++;
			c->off = 0;
		}
	}
}

static void put_inline(struct zl_chan *ch, uint32_t len, uint8_t sflags, struct iov_cursor *c)
{
	struct zl_abi_slot *s = &ch->tx_slots[ch->tx_prod & (ch->tx_size - 1)];
	uint32_t ns = entry_slots(len);
	iov_copy(c, (char *)s + 8, len);
	slot_publish(ch, ZL_SLOT_INLINE, sflags, ns, len);
}

ZL_EXPORT int zl_chan_sendv(struct zl_chan *ch, const struct iovec *iov, int n, unsigned flags)
{
	size_t total = 0;
	if (n < 0)
		return -EINVAL;
	for (int i = 0; i < n; i++)
		total += iov[i].iov_len;
	if (total == 0 || total > INT32_MAX)
		return -EINVAL;
	int err = send_status(ch);
	if (err)
		return err;
	struct iov_cursor c = {.iov = iov, .n = n};
	uint32_t me = max_entry(ch->tx_size);
	if (total <= me) {
		uint32_t ns = entry_slots((uint32_t)total);
		err = tx_reserve(ch, ns, flags);
		if (err)
			return err;
		put_inline(ch, (uint32_t)total, 0, &c);
	} else {
		/* A fragmented message: a BIG header with the total, then entries
		 * of at most max_entry bytes, each published as soon as written so
		 * a message larger than the lane still flows. */
		if (flags & ZL_DONTWAIT) {
			/* the header, and each fragment with at most its own size of pad */
			uint64_t need = 1 + 2ull * entry_slots(me) * (total / me + 1);
			int64_t fr = tx_free(ch, need > ch->tx_size ? ch->tx_size : (uint32_t)need);
			if (fr < 0)
				return (int)fr;
			if ((uint64_t)fr < need) {
				ch->me->cnt.drops++;
				return need > ch->tx_size ? -EMSGSIZE : -EAGAIN;
			}
		}
		err = tx_reserve(ch, 1, flags);
		if (err)
			return err;
		slot_publish(ch, ZL_SLOT_BIG, ZL_SLOT_F_MORE, 1, (uint32_t)total);
		size_t left = total;
		while (left) {
			uint32_t k = left > me ? me : (uint32_t)left;
			err = tx_reserve(ch, entry_slots(k), 0);
			if (err)
				return err;
			left -= k;
			put_inline(ch, k, left ? ZL_SLOT_F_MORE : 0, &c);
			if (left)
				tx_publish(ch);
		}
	}
	tx_publish(ch);
	ch->me->cnt.tx_msgs++;
	ch->me->cnt.tx_bytes += total;
	if (ch->lent) /* no load of the peer's return index when nothing is lent */
		chan_reap(ch);
	return (int)total;
}

ZL_EXPORT int zl_chan_send(struct zl_chan *ch, const void *buf, size_t len, unsigned flags)
{
	/* Fast path: a small message on a healthy channel, room known or
	 * found with one look at the peer's index, no pad needed. Anything
	 * else (and every error) goes the general way. */
	if (ZL_LIKELY(len - 1u < FAST_MAX && !ch->err && !ch->shut_wr &&
		      ch->state == ZL_CHAN_OPEN &&
		      zl_read_once(&ch->peer->state) != ZL_HALF_CLOSED)) {
		uint32_t ns = entry_slots((uint32_t)len);
		uint32_t pos = ch->tx_prod & (ch->tx_size - 1);
		if (pos + ns <= ch->tx_size && tx_free(ch, ns) >= ns) {
			/* The slots after the first one first: the first slot
			 * (the one the consumer watches) is then written in one
			 * go, body and header, and its line is taken from the
			 * consumer once rather than twice. */
			if (len > ZL_SLOT_INLINE_HEAD)
				copy_small(&ch->tx_slots[pos + 1],
					   (const char *)buf + ZL_SLOT_INLINE_HEAD,
					   len - ZL_SLOT_INLINE_HEAD);
			copy_small(&ch->tx_slots[pos].u, buf,
				   len > ZL_SLOT_INLINE_HEAD ? ZL_SLOT_INLINE_HEAD : len);
			slot_publish(ch, ZL_SLOT_INLINE, 0, ns, (uint32_t)len);
			tx_publish(ch);
			ch->me->cnt.tx_msgs++;
			ch->me->cnt.tx_bytes += len;
			if (ch->lent)
				chan_reap(ch);
			return (int)len;
		}
	}
	struct iovec v = {.iov_base = (void *)buf, .iov_len = len};
	return zl_chan_sendv(ch, &v, 1, flags);
}

/* Make sure the peer maps region r: hand it over the control socket the
 * first time a buffer of r goes out on this channel. */
static int region_offer_slow(struct zl_chan *ch, struct zl_region *r)
{
	for (unsigned i = 0; i < ch->nsent; i++) {
		if (ch->sent[i] == r->id) {
			ch->sent_last = r->id;
			return 0;
		}
	}
	if (ch->nsent == ch->capsent) {
		unsigned cap = ch->capsent ? ch->capsent * 2 : 4;
		void *p = realloc(ch->sent, cap * sizeof(*ch->sent));
		if (!p)
			return -ENOMEM;
		ch->sent = p;
		ch->capsent = cap;
	}
	struct zl_proto_peer_region pr = {.id = r->id,
					  .size = r->size,
					  .owner = r->owner,
					  .flags = r->flags,
					  .gaddr = r->gaddr};
	int err = zl__msg_send(ch->ctl, ZL_MSG_PEER_REGION, 0, &pr, sizeof(pr), &r->fd, 1);
	if (err)
		return err == -EPIPE || err == -ECONNRESET ? -ECONNRESET : err;
	ch->sent[ch->nsent++] = r->id;
	ch->sent_last = r->id;
	return 0;
}

static inline int region_offer(struct zl_chan *ch, struct zl_region *r)
{
	if (ZL_LIKELY(r->id == ch->sent_last && ch->nsent))
		return 0;
	return region_offer_slow(ch, r);
}

/* Wait for n free lend entries. */
static int lend_reserve(struct zl_chan *ch, unsigned n, unsigned flags)
{
	for (;;) {
		/* Collect returns when the loan table fills, and every 16 sends so
		 * that pools refill; not on every send, which would pull the
		 * peer's return index across cores each time. */
		if (ch->lent + n > ch->peer_ret_size / 2 || (++ch->reap_tick & 15) == 0)
			chan_reap(ch);
		int err = send_status(ch);
		if (err)
			return err;
		if (ch->lent + n <= ch->peer_ret_size)
			return 0;
		chan_reap(ch);
		if (ch->lent + n <= ch->peer_ret_size)
			return 0;
		if (flags & ZL_DONTWAIT)
			return -EAGAIN;
		/* chan_wait compares with the last consumer index we read: read it
		 * now, so that only a change from here on counts */
		if (tx_free(ch, ch->tx_size) < 0)
			return ch->err;
		chan_wait(ch, ZL_SLEEP_TX);
	}
}

static uint32_t lend_take(struct zl_chan *ch)
{
	uint32_t id = ch->lend_free - 1;
	ch->lend_free = ch->lend[id].next_free;
	ch->lent++;
	return id;
}

static void put_desc(struct zl_chan *ch, uint32_t lend, uint64_t region, uint64_t off, uint32_t len,
		     uint8_t sflags)
{
	struct zl_abi_slot *s = &ch->tx_slots[ch->tx_prod & (ch->tx_size - 1)];
	s->u.desc.lend = lend;
	s->u.desc.rsvd = 0;
	s->u.desc.region = region;
	s->u.desc.offset = off;
	slot_publish(ch, ZL_SLOT_DESC, sflags, 1, len);
}

/* A message of pool buffers, lent, after an optional inline header (one
 * slot, hlen <= ZL_SLOT_INLINE_HEAD). */
static int send_bufs_impl(struct zl_chan *ch, const void *hdr, size_t hlen,
			  const struct zl_buf *bufs, const uint32_t *lens, unsigned n,
			  unsigned flags, bool publish)
{
	unsigned nseg = n + (hlen ? 1u : 0u);
	if (n == 0 || nseg > ZL_MSG_MAX_SEGS)
		return -EINVAL;
	uint64_t total = hlen;
	for (unsigned i = 0; i < n; i++) {
		if (lens[i] == 0 || lens[i] > bufs[i].cap || !bufs[i].pool)
			return -EINVAL;
		total += lens[i];
	}
	if (total > INT32_MAX)
		return -EINVAL;
	if (ch->mode == ZL_MODE_ISOLATED) {
		struct iovec v[ZL_MSG_MAX_SEGS] = {{0}};
		unsigned k = 0;
		if (hlen)
			v[k++] = (struct iovec){.iov_base = (void *)hdr, .iov_len = hlen};
		for (unsigned i = 0; i < n; i++)
			v[k++] = (struct iovec){.iov_base = bufs[i].data, .iov_len = lens[i]};
		int r = zl_chan_sendv(ch, v, (int)k, flags);
		if (r >= 0)
			for (unsigned i = 0; i < n; i++)
				zl_buf_free(&bufs[i]);
		return r;
	}
	int err = lend_reserve(ch, n, flags);
	if (err)
		return err;
	/* All the waiting happens before anything is taken: once the first
	 * entry is written, the message is written whole. A one-slot inline
	 * entry never straddles the ring's end, so nseg free slots are all
	 * the message needs. */
	err = tx_wait_free(ch, nseg, flags);
	if (err)
		return err;
	for (unsigned i = 0; i < n; i++) {
		err = region_offer(ch, bufs[i].pool->reg);
		if (err)
			return err;
	}
	if (hlen) {
		struct iovec hv = {.iov_base = (void *)hdr, .iov_len = hlen};
		struct iov_cursor c = {.iov = &hv, .n = 1};
		put_inline(ch, (uint32_t)hlen, ZL_SLOT_F_MORE, &c);
	}
	for (unsigned i = 0; i < n; i++) {
		uint32_t id = lend_take(ch);
		struct zl_lend *l = &ch->lend[id];
		l->kind = ZL_LEND_POOL;
		l->pool = bufs[i].pool;
		l->buf_id = bufs[i].id;
		uint64_t off = (uint64_t)((char *)bufs[i].data - (char *)bufs[i].pool->reg->base);
		put_desc(ch, id, bufs[i].pool->reg->id, off, lens[i],
			 i + 1 < n ? ZL_SLOT_F_MORE : 0);
	}
	if (publish)
		tx_publish(ch);
	ch->me->cnt.tx_msgs++;
	ch->me->cnt.tx_bytes += total;
	return (int)total;
}

ZL_EXPORT int zl_chan_send_bufs(struct zl_chan *ch, const struct zl_buf *bufs, const uint32_t *lens,
				unsigned n, unsigned flags)
{
	return send_bufs_impl(ch, NULL, 0, bufs, lens, n, flags, true);
}

ZL_EXPORT int zl_chan_send_hdr_bufs(struct zl_chan *ch, const void *hdr, size_t hlen,
				    const struct zl_buf *bufs, const uint32_t *lens, unsigned n,
				    unsigned flags)
{
	if (!hdr || hlen == 0 || hlen > ZL_SLOT_INLINE_HEAD || n >= ZL_MSG_MAX_SEGS)
		return -EINVAL;
	if (n == 0)
		return zl_chan_send(ch, hdr, hlen, flags);
	return send_bufs_impl(ch, hdr, hlen, bufs, lens, n, flags, true);
}

/* Room for a run of single-slot descriptor entries, waiting for one:
 * returns how many (at most n) may be written now, or a negative error. */
static int desc_room(struct zl_chan *ch, unsigned n, unsigned flags)
{
	int err = lend_reserve(ch, 1, flags);
	if (err)
		return err;
	err = tx_wait_free(ch, 1, flags);
	if (err)
		return err;
	uint32_t room = ch->tx_size - (ch->tx_prod - ch->tx_cons_seen);
	if (room > ch->peer_ret_size - ch->lent)
		room = ch->peer_ret_size - ch->lent;
	return (int)(room < n ? room : n);
}

ZL_EXPORT int zl_chan_send_buf_burst(struct zl_chan *ch, const struct zl_buf *bufs,
				     const uint32_t *lens, unsigned n, unsigned flags)
{
	unsigned k = 0;
	int err = 0;
	if (ch->mode == ZL_MODE_ISOLATED) {
		for (; k < n; k++) {
			err = send_bufs_impl(ch, NULL, 0, &bufs[k], &lens[k], 1, flags, false);
			if (err < 0)
				break;
		}
		tx_flush(ch);
		return k ? (int)k : err;
	}
	/* Each buffer is a message of one descriptor entry: the checks and
	 * waits are made once for as many as there is room for. */
	while (k < n) {
		if (k)
			tx_flush(ch); /* what is written is published before any wait */
		int room = desc_room(ch, n - k, flags);
		if (room < 0) {
			err = room;
			break;
		}
		uint64_t bytes = 0;
		unsigned first = k, end = k + (unsigned)room;
		for (; k < end; k++) {
			const struct zl_buf *b = &bufs[k];
			if (lens[k] == 0 || lens[k] > b->cap || lens[k] > INT32_MAX || !b->pool) {
				err = -EINVAL;
				break;
			}
			struct zl_region *r = b->pool->reg;
			err = region_offer(ch, r);
			if (err)
				break;
			uint32_t id = lend_take(ch);
			struct zl_lend *l = &ch->lend[id];
			l->kind = ZL_LEND_POOL;
			l->pool = b->pool;
			l->buf_id = b->id;
			put_desc(ch, id, r->id, (uint64_t)((char *)b->data - (char *)r->base),
				 lens[k], 0);
			bytes += lens[k];
		}
		ch->me->cnt.tx_msgs += k - first;
		ch->me->cnt.tx_bytes += bytes;
		if (err)
			break;
	}
	tx_flush(ch);
	return k ? (int)k : err;
}

ZL_EXPORT int zl_chan_send_buf(struct zl_chan *ch, const struct zl_buf *buf, size_t len,
			       unsigned flags)
{
	if (len > UINT32_MAX)
		return -EINVAL;
	uint32_t l = (uint32_t)len;
	return zl_chan_send_bufs(ch, buf, &l, 1, flags);
}

/* ------------------------------------------------------------------ */
/* consumer                                                            */

/* Entries the peer has published beyond rx_read according to its producer
 * index, or -EPROTO. The index may trail rx_read a little: entries found by
 * their lap bit (rx_lap_ready) are read before the producer stores it. */
static int64_t rx_avail(struct zl_chan *ch, bool reload)
{
	/* Entries up to rx_prod_seen were published when we last looked: use
	 * them before reading the producer's index again, so that its cache
	 * line is not pulled across for every message. */
	int32_t known = (int32_t)(ch->rx_prod_seen - ch->rx_read);
	if (!reload && known > 0)
		return known;
	/* A_prod: slots are read after the index. */
	uint32_t prod = zl_load_acquire(&ch->peer->tx_prod);
	/* Never more than a ring ahead of what we freed, nor more than a ring
	 * behind it (what it may trail by while it catches up). */
	if (prod - ch->rx_cons > ch->rx_size && ch->rx_cons - prod > ch->rx_size)
		return chan_break(ch, -EPROTO);
	ch->rx_prod_seen = prod;
	known = (int32_t)(prod - ch->rx_read);
	return known > 0 ? known : 0;
}

static void rx_flush(struct zl_chan *ch);

struct entry {
	uint8_t kind, flags;
	uint16_t nslots;
	uint32_t len;
	uint32_t lend;
	uint64_t region, offset;
};

/* Copy and check the entry at ring index idx; avail = entries published
 * from idx on. Returns 0 or -EPROTO. */
static int entry_read(struct zl_chan *ch, uint32_t idx, uint32_t avail, struct entry *e)
{
	const struct zl_abi_slot *s = &ch->rx_slots[idx & (ch->rx_size - 1)];
	uint8_t hdr[8];
	memcpy(hdr, s, sizeof(hdr));
	e->kind = hdr[0];
	e->flags = hdr[1];
	memcpy(&e->nslots, hdr + 2, 2);
	memcpy(&e->len, hdr + 4, 4);
	uint32_t pos = idx & (ch->rx_size - 1);
	/* The producer publishes whole entries, so an entry longer than what is
	 * published is a lie; so is a lap bit that does not match the index. */
	if (e->nslots == 0 || e->nslots > avail || (e->flags & ~(ZL_SLOT_F_MORE | ZL_SLOT_F_LAP)) ||
	    (e->flags & ZL_SLOT_F_LAP) != lap_bit(idx, ch->rx_size))
		return -EPROTO;
	e->flags &= ZL_SLOT_F_MORE;
	switch (e->kind) {
	case ZL_SLOT_PAD:
		if (e->nslots != ch->rx_size - pos)
			return -EPROTO;
		break;
	case ZL_SLOT_INLINE:
		if (e->len == 0 || e->nslots != entry_slots(e->len) ||
		    pos + e->nslots > ch->rx_size)
			return -EPROTO;
		break;
	case ZL_SLOT_BIG:
		if (e->nslots != 1 || !(e->flags & ZL_SLOT_F_MORE) || e->len == 0 ||
		    e->len > INT32_MAX)
			return -EPROTO;
		break;
	case ZL_SLOT_DESC:
		if (ch->mode != ZL_MODE_SHARED || e->nslots != 1 || e->len == 0)
			return -EPROTO;
		memcpy(&e->lend, &s->u.desc.lend, 4);
		memcpy(&e->region, &s->u.desc.region, 8);
		memcpy(&e->offset, &s->u.desc.offset, 8);
		break;
	default:
		return -EPROTO;
	}
	/* Remember this lap's layout: next lap, a header slot can be watched,
	 * a slot inside an entry cannot (it holds payload). */
	ch->rx_known[pos] = 1;
	if (e->nslots > 1)
		memset(ch->rx_known + pos + 1, 0, e->nslots - 1u);
	return 0;
}

/* Map a descriptor to bytes, or NULL if it points outside what the peer
 * handed us. */
static const void *desc_resolve(struct zl_chan *ch, const struct entry *e)
{
	struct zl_region *r = preg_find(ch, e->region);
	if (!r) {
		/* The region travels on the control socket before the first
		 * descriptor that uses it. */
		if (ctl_drain(ch))
			return NULL;
		r = preg_find(ch, e->region);
		if (!r)
			return NULL;
	}
	if (e->offset > r->size || e->len > r->size - e->offset)
		return NULL;
	return (const char *)r->base + e->offset;
}

/*
 * Look at the next whole message without consuming it.
 * Returns 1 (m filled, *endp = ring index after it, *bigp = total if it is
 * a fragmented message, whose header alone is described), 0 nothing yet,
 * or a negative error.
 */
static int rx_scan(struct zl_chan *ch, struct zl_msg *m, uint32_t *endp, uint32_t *bigp)
{
	uint32_t idx = ch->rx_read, end = ch->rx_prod_seen;
	bool reloaded = false;
	uint32_t total = 0;
	unsigned nseg = 0;
	*bigp = 0;
	for (;;) {
		uint32_t avail;
		if ((int32_t)(end - idx) > 0) {
			avail = end - idx; /* published by the index */
		} else if (rx_lap_ready(ch, idx)) {
			/* published by its lap bit: the producer may have
			 * written up to a ring past what we freed */
			avail = ch->rx_cons + ch->rx_size - idx;
		} else if (!reloaded) {
			/* the rest may have been published since we last looked */
			reloaded = true;
			int64_t av = rx_avail(ch, true);
			if (av < 0)
				return (int)av;
			end = ch->rx_prod_seen;
			continue;
		} else if (idx == ch->rx_read) {
			ch->rx_wait = idx;
			return 0; /* nothing yet */
		} else {
			/* incomplete message: only a message larger than the lane
			 * (or views held too long) can leave the ring full */
			if (idx - ch->rx_freed >= ch->rx_size)
				return -EMSGSIZE;
			rx_flush(ch);
			/* a waiter watches where the message goes on, not its
			 * start, which has arrived already */
			ch->rx_wait = idx;
			return 0;
		}
		struct entry e;
		int err = entry_read(ch, idx, avail, &e);
		if (err)
			return chan_break(ch, err);
		if (e.kind == ZL_SLOT_PAD) {
			idx += e.nslots;
			continue;
		}
		if (e.kind == ZL_SLOT_BIG) {
			if (nseg)
				return chan_break(ch, -EPROTO);
			*bigp = e.len;
			*endp = idx + 1;
			m->len = e.len;
			m->nsegs = 0;
			return 1;
		}
		if (nseg == ZL_MSG_MAX_SEGS)
			return -EMSGSIZE;
		const void *base;
		if (e.kind == ZL_SLOT_INLINE) {
			base = (const char *)&ch->rx_slots[idx & (ch->rx_size - 1)] + 8;
			m->seg[nseg].ref = REF_INLINE;
		} else {
			base = desc_resolve(ch, &e);
			if (!base)
				return chan_break(ch, ch->err ? ch->err : -EPROTO);
			m->seg[nseg].ref = e.lend;
		}
		m->seg[nseg].base = base;
		m->seg[nseg].len = e.len;
		nseg++;
		if ((uint64_t)total + e.len > INT32_MAX)
			return chan_break(ch, -EPROTO);
		total += e.len;
		idx += e.nslots;
		if (!(e.flags & ZL_SLOT_F_MORE))
			break;
	}
	m->len = total;
	m->nsegs = (uint16_t)nseg;
	*endp = idx;
	return 1;
}

/* Publish how far we have freed the peer's lane. */
static void rx_flush(struct zl_chan *ch)
{
	if (ch->rx_freed == ch->rx_cons)
		return;
	ch->rx_cons = ch->rx_freed;
	/* R_cons: we are done reading the slots below rx_cons. */
	zl_store_release(&ch->me->rx_cons, ch->rx_cons);
	kick_peer(ch, ZL_SLEEP_TX);
}

/* The consumer index is published lazily: every quarter of the lane, and
 * whenever we find the lane empty (rx_next) or wait. A producer that waits
 * for space therefore sees progress in quarter-lane steps, and a streaming
 * pair does not bounce the index's cache line for every message. */
static void rx_freed_to(struct zl_chan *ch, uint32_t cons)
{
	ch->rx_freed = cons;
	if (cons - ch->rx_cons >= ch->rx_size / 4)
		rx_flush(ch);
}

/* Free the ring up to the first view still held. */
static void rx_advance(struct zl_chan *ch)
{
	uint32_t cons = ch->rx_freed;
	while (ch->held_head != ch->held_tail) {
		struct zl_held *h = &ch->held[ch->held_head & (ch->rx_size - 1)];
		if (!h->done)
			break;
		cons = h->end;
		ch->held_head++;
	}
	if (ch->held_head == ch->held_tail && ch->rx_read != cons)
		cons = ch->rx_read;
	if (cons != ch->rx_freed)
		rx_freed_to(ch, cons);
}

static void rx_commit(struct zl_chan *ch, struct zl_msg *m, uint32_t end)
{
	bool ring_backed = false;
	for (unsigned i = 0; i < m->nsegs; i++)
		if (m->seg[i].ref == REF_INLINE)
			ring_backed = true;
	ch->rx_read = end;
	m->chan = ch;
	m->ring_end = ch->held_tail;
	if (ring_backed) {
		/* its bytes are in the ring: the slots stay until it is released
		 * (views of pool buffers do not hold the ring) */
		struct zl_held *h = &ch->held[ch->held_tail & (ch->rx_size - 1)];
		h->end = end;
		h->done = 0;
		ch->held_tail++;
	}
	ch->views++;
	if (!ring_backed)
		rx_advance(ch);
	ch->me->cnt.rx_msgs++;
	ch->me->cnt.rx_bytes += m->len;
}

/* Nothing to read: end of stream, an error, or 0 (keep waiting). */
static int rx_idle_status(struct zl_chan *ch)
{
	if (ch->err)
		return ch->err;
	chan_settle(ch);
	if (ch->state == ZL_CHAN_PEER_DEAD)
		return -ECONNRESET;
	if (ch->state == ZL_CHAN_PEER_CLOSED)
		return 1;
	/* A_state, then look at the index once more (the peer published its
	 * last entries before its state). */
	uint32_t st = zl_load_acquire(&ch->peer->state);
	if (st != ZL_HALF_OPEN && (int32_t)(zl_load_acquire(&ch->peer->tx_prod) - ch->rx_read) <= 0)
		return 1;
	return 0;
}

/* Internal flag of rx_next(): return RX_AGAIN after a wait instead of
 * looking again itself. */
#define RX_WAKE 0x80000000u
#define RX_AGAIN 2

/* Wait for the next message (or its header); returns as rx_scan, with 0
 * meaning end of stream. */
static int rx_next(struct zl_chan *ch, struct zl_msg *m, uint32_t *endp, uint32_t *bigp,
		   unsigned flags)
{
	for (;;) {
		int r = rx_scan(ch, m, endp, bigp);
		if (r)
			return r;
		rx_flush(ch);
		chan_reap(ch);
		for (unsigned i = 0; i < ch->ndown; i++)
			chan_reap(ch->down[i]);
		int st = rx_idle_status(ch);
		if (st < 0)
			return st;
		if (st == 1) {
			/* Nothing more can come: check once more for data that
			 * arrived with the state change. */
			r = rx_scan(ch, m, endp, bigp);
			return r ? r : 0;
		}
		if (flags & ZL_DONTWAIT) {
			/* a caller that never blocks still learns of a dead peer */
			uint64_t now = zl__now_ns();
			if (now - ch->live_ns >= LIVENESS_NS) {
				ch->live_ns = now;
				if (!peer_alive_check(ch))
					continue;
			}
			return -EAGAIN;
		}
		chan_wait(ch, ZL_SLEEP_RX);
		if (flags & RX_WAKE)
			return RX_AGAIN;
	}
}

ZL_EXPORT int zl_chan_recv_msg(struct zl_chan *ch, struct zl_msg *m, unsigned flags)
{
	uint32_t end, big;
	int r = rx_next(ch, m, &end, &big, flags);
	if (r <= 0)
		return r;
	if (big)
		return -EMSGSIZE;
	rx_commit(ch, m, end);
	return 1;
}

/*
 * Burst fast path: a run of single-slot descriptor entries, each a whole
 * message of one pool buffer (the shape of a zero-copy stream). Fills up to
 * n messages and returns how many; stops at anything else, and at anything
 * wrong, for rx_scan() to deal with (it checks again and reports errors).
 */
static unsigned rx_desc_run(struct zl_chan *ch, struct zl_msg *m, unsigned n)
{
	if (ch->mode != ZL_MODE_SHARED || ch->err)
		return 0;
	uint32_t idx = ch->rx_read, mask = ch->rx_size - 1;
	uint64_t bytes = 0;
	unsigned k = 0;
	while (k < n) {
		uint32_t pos = idx & mask;
		bool published = (int32_t)(ch->rx_prod_seen - idx) > 0;
		if (!published && (!ch->rx_known[pos] || idx - ch->rx_cons >= ch->rx_size))
			break;
		const struct zl_abi_slot *s = &ch->rx_slots[pos];
		/* A_slot (or A_prod, done when rx_prod_seen was read) */
		uint64_t w = zl_load_acquire(&s->hdr);
		uint32_t len = (uint32_t)(w >> 32);
		/* kind, flags (lap bit of this lap, no MORE) and nslots at once */
		if ((uint32_t)w !=
			    (uint32_t)hdr_word(ZL_SLOT_DESC, lap_bit(idx, ch->rx_size), 1, 0) ||
		    len == 0)
			break;
		uint32_t lend;
		uint64_t region, off;
		memcpy(&lend, &s->u.desc.lend, 4);
		memcpy(&region, &s->u.desc.region, 8);
		memcpy(&off, &s->u.desc.offset, 8);
		struct zl_region *r = preg_find(ch, region);
		if (!r || off > r->size || len > r->size - off)
			break;
		ch->rx_known[pos] = 1;
		struct zl_msg *x = &m[k++];
		x->len = len;
		x->nsegs = 1;
		x->seg[0].base = (const char *)r->base + off;
		x->seg[0].len = len;
		x->seg[0].ref = lend;
		x->chan = ch;
		bytes += len;
		idx++;
	}
	if (k) {
		ch->rx_read = idx;
		ch->views += k;
		ch->me->cnt.rx_msgs += k;
		ch->me->cnt.rx_bytes += bytes;
		rx_advance(ch); /* the buffers are described, the slots are free */
	}
	return k;
}

ZL_EXPORT int zl_chan_recv_burst(struct zl_chan *ch, struct zl_msg *m, unsigned n, unsigned flags)
{
	if (n == 0)
		return -EINVAL;
	unsigned k = rx_desc_run(ch, m, n);
	if (k == 0) {
		int r = zl_chan_recv_msg(ch, &m[0], flags);
		if (r <= 0)
			return r;
		k = 1;
	}
	while (k < n) {
		unsigned f = rx_desc_run(ch, m + k, n - k);
		k += f;
		if (k == n)
			break;
		uint32_t end, big;
		int r = rx_scan(ch, &m[k], &end, &big);
		if (r <= 0 || big)
			break;
		rx_commit(ch, &m[k], end);
		k++;
	}
	return (int)k;
}

static void chan_maybe_free(struct zl_chan *ch)
{
	if (ch->app_closed && ch->views == 0)
		zl__chan_free(ch);
}

/* End a view; returns the channel whose return ring needs publishing. */
static inline __attribute__((always_inline)) struct zl_chan *release_impl(struct zl_msg *m)
{
	struct zl_chan *ch = m->chan;
	if (!ch)
		return NULL;
	m->chan = NULL;
	ch->views--;
	if (ZL_UNLIKELY(ch->app_closed)) {
		/* nothing to return or publish: the ring is not read any more */
		chan_maybe_free(ch);
		return NULL;
	}
	/* the common case: one pool buffer, whose slots rx_commit freed */
	if (ZL_LIKELY(m->nsegs == 1 && m->seg[0].ref != REF_INLINE)) {
		ret_push(ch, m->seg[0].ref);
		return ch;
	}
	bool ring_backed = false, rets = false;
	for (unsigned i = 0; i < m->nsegs; i++) {
		if (m->seg[i].ref == REF_INLINE) {
			ring_backed = true;
		} else {
			ret_push(ch, m->seg[i].ref);
			rets = true;
		}
	}
	/* ring-backed views hold their slots until released */
	if (ring_backed) {
		ch->held[m->ring_end & (ch->rx_size - 1)].done = 1;
		rx_advance(ch);
	}
	return rets ? ch : NULL;
}

ZL_EXPORT void zl_msg_release(struct zl_msg *m)
{
	struct zl_chan *ch = release_impl(m);
	if (ch)
		ret_publish(ch);
}

ZL_EXPORT void zl_msg_release_burst(struct zl_msg *m, unsigned n)
{
	struct zl_chan *pend = NULL;
	for (unsigned i = 0; i < n; i++) {
		struct zl_chan *ch = release_impl(&m[i]);
		if (ch && ch != pend) {
			if (pend)
				ret_publish(pend);
			pend = ch;
		}
	}
	if (pend)
		ret_publish(pend);
}

/* Copy a fragmented message whose BIG header is at rx_read. */
static int recv_big(struct zl_chan *ch, char *dst, uint32_t total)
{
	uint32_t got = 0;
	ch->rx_read++; /* the header */
	while (got < total) {
		int64_t av = rx_avail(ch, false);
		if (av < 0)
			return (int)av;
		if (av == 0) {
			int st = rx_idle_status(ch);
			if (st < 0)
				return st;
			if (st == 1)
				return chan_break(ch, -EPROTO); /* truncated message */
			rx_advance(ch);
			rx_flush(ch);
			ch->rx_wait = ch->rx_read;
			chan_wait(ch, ZL_SLEEP_RX);
			continue;
		}
		struct entry e;
		int err = entry_read(ch, ch->rx_read, (uint32_t)av, &e);
		if (err)
			return chan_break(ch, err);
		if (e.kind == ZL_SLOT_PAD) {
			ch->rx_read += e.nslots;
			continue;
		}
		if (e.kind != ZL_SLOT_INLINE || e.len > total - got ||
		    (!(e.flags & ZL_SLOT_F_MORE)) != (got + e.len == total))
			return chan_break(ch, -EPROTO);
		memcpy(dst + got, (const char *)&ch->rx_slots[ch->rx_read & (ch->rx_size - 1)] + 8,
		       e.len);
		got += e.len;
		ch->rx_read += e.nslots;
	}
	rx_advance(ch);
	ch->me->cnt.rx_msgs++;
	ch->me->cnt.rx_bytes += total;
	return (int)total;
}

/* Fast path of zl_chan_recv(): the next entry is a whole small inline
 * message that fits the caller's buffer and no view is held. Returns its
 * length; 0 when the slot we watch shows nothing yet; -1 to take the
 * general path (anything unusual, and every error). */
static inline __attribute__((always_inline)) int recv_fast(struct zl_chan *ch, void *buf,
							   size_t cap)
{
	uint32_t idx = ch->rx_read, pos = idx & (ch->rx_size - 1), room;
	if (ZL_UNLIKELY(ch->err || ch->held_head != ch->held_tail))
		return -1;
	bool published = (int32_t)(ch->rx_prod_seen - idx) > 0;
	if (published)
		room = ch->rx_prod_seen - idx; /* published by the index */
	else if (ch->rx_known[pos])
		room = ch->rx_cons + ch->rx_size - idx; /* by the lap bit, if set */
	else
		return -1;
	/* A_slot (or A_prod, done when rx_prod_seen was read). */
	uint64_t w = zl_load_acquire(&ch->rx_slots[pos].hdr);
	uint32_t len = (uint32_t)(w >> 32), ns = entry_slots(len);
	uint8_t lap = lap_bit(idx, ch->rx_size);
	/* kind, flags and nslots at once: an inline entry of this lap, whole */
	if ((uint32_t)w != (uint32_t)hdr_word(ZL_SLOT_INLINE, lap, ns, 0) || len - 1u >= FAST_MAX ||
	    len > cap || ns > room || pos + ns > ch->rx_size) {
		if (!published && !(((uint8_t)(w >> 8) ^ lap) & ZL_SLOT_F_LAP))
			return -1; /* this lap's entry, but not one for us */
		return published ? -1 : 0;
	}
	ch->rx_known[pos] = 1;
	if (ns > 1)
		ch->rx_known[pos + 1] = 0;
	copy_small(buf, &ch->rx_slots[pos].u, len);
	ch->rx_read = idx + ns;
	rx_freed_to(ch, ch->rx_read);
	ch->me->cnt.rx_msgs++;
	ch->me->cnt.rx_bytes += len;
	return (int)len;
}

ZL_EXPORT int zl_chan_recv(struct zl_chan *ch, void *buf, size_t cap, unsigned flags)
{
	struct zl_msg m;
	uint32_t end, big;
	int r = recv_fast(ch, buf, cap);
	if (r > 0)
		return r;
	if (r == 0 && !(flags & ZL_DONTWAIT) && ch->spin_cur > 0) {
		/* A short spin on the slot alone, before the general wait
		 * (which reads the clock and checks the peer): a reply that
		 * is under way arrives within it. */
		for (unsigned i = 0; i < FAST_SPINS && r == 0; i++) {
			r = recv_fast(ch, buf, cap);
		}
		if (r > 0) {
			ch->me->cnt.spins++;
			return r;
		}
	}
	for (;;) {
		r = recv_fast(ch, buf, cap);
		if (r > 0)
			return r;
		/* RX_WAKE: come back here when the wait ends, so that the
		 * message that ended it takes the fast path too */
		r = rx_next(ch, &m, &end, &big, flags | RX_WAKE);
		if (r != RX_AGAIN)
			break;
	}
	if (r <= 0)
		return r;
	if (m.len > cap)
		return -EMSGSIZE;
	if (big) {
		if (ch->held_head != ch->held_tail)
			return -EBUSY; /* views still held block in-order streaming */
		return recv_big(ch, buf, big);
	}
	if (m.nsegs == 1 && m.seg[0].ref == REF_INLINE && ch->held_head == ch->held_tail) {
		/* common case: one inline entry and no views held, so the slots
		 * can be freed as soon as they are copied */
		memcpy(buf, m.seg[0].base, m.len);
		ch->rx_read = end;
		rx_freed_to(ch, end);
		ch->me->cnt.rx_msgs++;
		ch->me->cnt.rx_bytes += m.len;
		return (int)m.len;
	}
	rx_commit(ch, &m, end);
	char *d = buf;
	for (unsigned i = 0; i < m.nsegs; i++) {
		memcpy(d, m.seg[i].base, m.seg[i].len);
		d += m.seg[i].len;
	}
	int len = (int)m.len;
	zl_msg_release(&m);
	return len;
}

ZL_EXPORT int zl_chan_peek_len(struct zl_chan *ch, unsigned flags)
{
	struct zl_msg m;
	uint32_t end, big;
	int r = rx_next(ch, &m, &end, &big, flags);
	if (r <= 0)
		return r;
	return (int)m.len;
}

/* The region of in's peer that p lies in, or NULL. */
static struct zl_region *preg_of(struct zl_chan *in, const void *p)
{
	const char *c = p;
	unsigned h = in->preg_hint;
	if (h < in->npregs) {
		struct zl_region *r = in->pregs[h].r;
		if (c >= (const char *)r->base && c < (const char *)r->base + r->size)
			return r;
	}
	for (unsigned i = 0; i < in->npregs; i++) {
		struct zl_region *r = in->pregs[i].r;
		if (c >= (const char *)r->base && c < (const char *)r->base + r->size) {
			in->preg_hint = i;
			return r;
		}
	}
	return NULL;
}

static int forward_impl(struct zl_chan *out, struct zl_msg *m, unsigned flags, bool publish)
{
	struct zl_chan *in = m->chan;
	if (!in || m->nsegs == 0)
		return -EINVAL;
	if (out == in)
		return -EINVAL;
	if (out->mode == ZL_MODE_ISOLATED) {
		struct iovec v[ZL_MSG_MAX_SEGS];
		for (unsigned i = 0; i < m->nsegs; i++) {
			v[i].iov_base = (void *)m->seg[i].base;
			v[i].iov_len = m->seg[i].len;
		}
		int r = zl_chan_sendv(out, v, m->nsegs, flags);
		if (r >= 0)
			zl_msg_release(m);
		return r;
	}
	unsigned ndesc = 0;
	uint32_t slots = 0;
	struct zl_region *regs[ZL_MSG_MAX_SEGS];
	for (unsigned i = 0; i < m->nsegs; i++) {
		if (m->seg[i].ref == REF_INLINE) {
			if (m->seg[i].len > max_entry(out->tx_size))
				return -EMSGSIZE;
			slots += 2 * entry_slots(m->seg[i].len);
			continue;
		}
		slots++;
		struct zl_region *r = preg_of(in, m->seg[i].base);
		if (!r)
			return -EINVAL;
		if (!(r->flags & ZL_REGION_F_FORWARD))
			return -EPERM;
		regs[ndesc++] = r;
	}
	if (slots > out->tx_size)
		return -EMSGSIZE;
	int err = lend_reserve(out, ndesc, flags);
	if (err)
		return err;
	err = tx_wait_free(out, slots, flags);
	if (err)
		return err;
	for (unsigned i = 0; i < ndesc; i++) {
		err = region_offer(out, regs[i]);
		if (err)
			return err;
	}
	unsigned d = 0;
	bool ring_backed = false;
	for (unsigned i = 0; i < m->nsegs; i++) {
		uint8_t sf = i + 1 < m->nsegs ? ZL_SLOT_F_MORE : 0;
		if (m->seg[i].ref == REF_INLINE) {
			tx_place(out, entry_slots(m->seg[i].len));
			struct iovec v = {(void *)m->seg[i].base, m->seg[i].len};
			struct iov_cursor c = {.iov = &v, .n = 1};
			put_inline(out, m->seg[i].len, sf, &c);
			ring_backed = true;
			continue;
		}
		struct zl_region *r = regs[d++];
		uint32_t id = lend_take(out);
		struct zl_lend *l = &out->lend[id];
		l->kind = ZL_LEND_FWD;
		l->in = in;
		l->in_ref = m->seg[i].ref;
		in->views++; /* each forwarded buffer keeps `in` alive until it returns */
		put_desc(out, id, r->id,
			 (uint64_t)((const char *)m->seg[i].base - (const char *)r->base),
			 m->seg[i].len, sf);
	}
	if (publish)
		tx_publish(out);
	if (d)
		chan_link(in, out);
	out->me->cnt.tx_msgs++;
	out->me->cnt.tx_bytes += m->len;
	/* The message itself is done with: its ring slots are freed now; its
	 * buffers go back to `in` when `out`'s peer returns them. */
	if (ring_backed)
		in->held[m->ring_end & (in->rx_size - 1)].done = 1;
	rx_advance(in);
	m->chan = NULL;
	in->views--;
	int len = (int)m->len;
	chan_maybe_free(in);
	return len;
}

ZL_EXPORT int zl_chan_forward(struct zl_chan *out, struct zl_msg *m, unsigned flags)
{
	return forward_impl(out, m, flags, true);
}

/* A message of one pool buffer, received on another channel than out: it
 * goes on as one descriptor entry (the burst fast path). */
static bool fwd_plain(const struct zl_chan *out, const struct zl_msg *m)
{
	return m->chan && m->chan != out && m->nsegs == 1 && m->seg[0].ref != REF_INLINE;
}

ZL_EXPORT int zl_chan_forward_burst(struct zl_chan *out, struct zl_msg *m, unsigned n,
				    unsigned flags)
{
	unsigned k = 0;
	int err = 0;
	while (k < n) {
		struct zl_chan *in = m[k].chan;
		if (out->mode == ZL_MODE_ISOLATED || !fwd_plain(out, &m[k])) {
			err = forward_impl(out, &m[k], flags, false);
			if (err < 0)
				break;
			k++;
			continue;
		}
		/* a run of one-buffer messages from `in`: checks and waits once */
		if (k)
			tx_flush(out);
		int room = desc_room(out, n - k, flags);
		if (room < 0) {
			err = room;
			break;
		}
		unsigned first = k, end = k + (unsigned)room;
		uint64_t bytes = 0;
		for (; k < end; k++) {
			struct zl_msg *x = &m[k];
			if (x->chan != in || !fwd_plain(out, x))
				break;
			struct zl_region *r = preg_of(in, x->seg[0].base);
			if (!r || !(r->flags & ZL_REGION_F_FORWARD))
				break; /* forward_impl() says what is wrong */
			err = region_offer(out, r);
			if (err)
				break;
			uint32_t id = lend_take(out);
			struct zl_lend *l = &out->lend[id];
			l->kind = ZL_LEND_FWD;
			l->in = in;
			l->in_ref = x->seg[0].ref;
			put_desc(out, id, r->id,
				 (uint64_t)((const char *)x->seg[0].base - (const char *)r->base),
				 x->seg[0].len, 0);
			bytes += x->len;
			/* the message's view of `in` now stands for the loan: it
			 * ends when out's peer returns the buffer (lend_put) */
			x->chan = NULL;
		}
		if (k > first) {
			chan_link(in, out);
			out->me->cnt.tx_msgs += k - first;
			out->me->cnt.tx_bytes += bytes;
		}
		if (err)
			break;
		if (k == first) {
			err = forward_impl(out, &m[k], flags, false);
			if (err < 0)
				break;
			k++;
		}
	}
	tx_flush(out);
	return k ? (int)k : err;
}

int zl__chan_arm(struct zl_chan *ch, unsigned what)
{
	if (ch->err)
		return ch->err;
	if (!ch->peer) {
		/* Not accepted yet: the peer reads our flag once it has mapped
		 * our half, before it sends or frees anything. */
		kicks_clear(ch);
		uint32_t gen = ++ch->sleep_gen & 0x3fffffffu;
		zl_write_once(&ch->me->sleep, (gen << 2) | what);
		return 0;
	}
	/* A channel rung through a socket learns of a hang-up from that
	 * socket's end of file and from the liveness checks of its reads;
	 * others look at the control socket now. */
	if (ch->bell < 0 && ctl_drain(ch))
		return ch->err;
	kicks_clear(ch);
	rx_flush(ch);
	if (tx_free(ch, ch->tx_size) < 0) /* refresh what we know of the peer's progress */
		return ch->err;
	uint32_t gen = ++ch->sleep_gen & 0x3fffffffu;
	zl_write_once(&ch->me->sleep, (gen << 2) | what);
	/* F_sleep: the flag is visible before we look at the peer's indices. */
	if (ch->my_mb)
		zl__mb_sleep_fence();
	else
		zl_fence();
	uint32_t lack = rx_wait_index(ch);
	if (ch->state != ZL_CHAN_OPEN || zl_read_once(&ch->peer->state) != ZL_HALF_OPEN ||
	    ((what & ZL_SLEEP_RX) &&
	     ((int32_t)(zl_read_once(&ch->peer->tx_prod) - lack) > 0 || rx_lap_ready(ch, lack))) ||
	    ((what & ZL_SLEEP_TX) && (zl_read_once(&ch->peer->ret_prod) != ch->peer_ret_cons ||
				      zl_read_once(&ch->peer->rx_cons) != ch->tx_cons_seen))) {
		zl_write_once(&ch->me->sleep, 0);
		return 1;
	}
	return 0;
}

void zl__chan_disarm(struct zl_chan *ch)
{
	zl_write_once(&ch->me->sleep, 0);
}

ZL_EXPORT int zl_chan_arm(struct zl_chan *ch)
{
	return zl__chan_arm(ch, ZL_SLEEP_RX | ZL_SLEEP_TX);
}

int zl__chan_set_bell(struct zl_chan *ch, int fd)
{
	if (ch->bell >= 0 && ch->ep >= 0)
		epoll_ctl(ch->ep, EPOLL_CTL_DEL, ch->bell, NULL);
	ch->bell = -1;
	if (fd < 0)
		return ch->ep >= 0 ? 0 : -EINVAL;
	ch->bell = fd;
	if (!ch->hello_sent || ch->ndown || ch->nup) {
		struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.fd = fd};
		if (ch->ep >= 0 && epoll_ctl(ch->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
			ch->bell = -1;
			return -errno;
		}
		return 0;
	}
	/* Kicks now travel on the bell both ways, and waits poll the control
	 * socket and the bell: the eventfds and the epoll set are not needed,
	 * nor the memfds, which are mapped (ours went to the peer with the
	 * hello; the peer's, if it came already, is mapped). A connection then
	 * holds two descriptors, the bell and the control socket, which lets
	 * a process hold many thousands under its descriptor limit. */
	close(ch->ep);
	ch->ep = -1;
	close(ch->efd);
	ch->efd = -1;
	if (ch->peer_efd >= 0) {
		close(ch->peer_efd);
		ch->peer_efd = -1;
	}
	zl__region_drop_fd(ch->mine);
	if (ch->theirs)
		zl__region_drop_fd(ch->theirs);
	return 0;
}

void zl__chan_set_bell_sink(struct zl_chan *ch, zl__bell_sink fn, void *arg)
{
	ch->bell_sink = fn;
	ch->bell_arg = arg;
}

uint32_t zl__chan_peer_anc(const struct zl_chan *ch)
{
	return ch->peer ? zl_load_acquire(&ch->peer->anc) : 0;
}

void zl__chan_anc_sent(struct zl_chan *ch)
{
	zl_store_release(&ch->me->anc, ch->me->anc + 1);
}

int zl__chan_send_early(struct zl_chan *ch, const struct iovec *iov, int n, uint32_t total)
{
	if (ch->peer)
		return zl_chan_sendv(ch, iov, n, ZL_DONTWAIT);
	if (total == 0 || total > max_entry(ch->tx_size))
		return -EINVAL;
	/* The listener has not accepted: it has consumed nothing, so the lane
	 * is free up to a ring past where we started, and nobody watches. */
	uint32_t ns = entry_slots(total);
	uint32_t pos = ch->tx_prod & (ch->tx_size - 1);
	uint32_t pad = pos + ns > ch->tx_size ? ch->tx_size - pos : 0;
	if (ch->tx_size - (ch->tx_prod - ch->tx_cons_seen) < pad + ns)
		return -EAGAIN;
	tx_place(ch, ns);
	struct iov_cursor c = {.iov = iov, .n = n};
	put_inline(ch, total, 0, &c);
	/* R_prod: the peer reads the index after mapping our half. */
	zl_store_release(&ch->me->tx_prod, ch->tx_prod);
	ch->me->cnt.tx_msgs++;
	ch->me->cnt.tx_bytes += total;
	return (int)total;
}

bool zl__chan_early_room(const struct zl_chan *ch, uint32_t len)
{
	return ch->tx_size - (ch->tx_prod - ch->tx_cons_seen) >= 2 * entry_slots(len);
}

uint32_t zl__chan_max_msg(const struct zl_chan *ch)
{
	return max_entry(ch->tx_size);
}

int zl__chan_writable(struct zl_chan *ch, uint32_t len)
{
	int err = send_status(ch);
	if (err)
		return err;
	/* an entry of len bytes, and the padding to the ring's end at worst */
	uint32_t need = 2 * entry_slots(len);
	int64_t fr = tx_free(ch, need);
	if (fr < 0)
		return (int)fr;
	return fr >= need;
}

uint32_t zl__chan_tx_room(struct zl_chan *ch)
{
	uint32_t f;
	if (!ch->peer) {
		/* not accepted yet: the peer has consumed nothing */
		f = ch->tx_size - (ch->tx_prod - ch->tx_cons_seen);
	} else {
		if (send_status(ch))
			return 0;
		int64_t fr = tx_free(ch, ch->tx_size);
		if (fr <= 0)
			return 0;
		f = (uint32_t)fr;
	}
	/* what fits before the ring's end, or after padding to it */
	uint32_t pos = ch->tx_prod & (ch->tx_size - 1);
	uint32_t contig = ch->tx_size - pos < f ? ch->tx_size - pos : f;
	uint32_t best = contig > f - contig ? contig : f - contig;
	uint32_t len = best ? (best - 1) * 64u + ZL_SLOT_INLINE_HEAD : 0;
	uint32_t me = max_entry(ch->tx_size);
	return len < me ? len : me;
}

bool zl__chan_tx_idle(struct zl_chan *ch)
{
	if (!ch->peer || ch->err || ch->state != ZL_CHAN_OPEN)
		return true;
	return tx_free(ch, ch->tx_size) == (int64_t)ch->tx_size;
}

ZL_EXPORT int zl_chan_wait_returns(struct zl_chan *ch)
{
	for (;;) {
		int n = zl_chan_poll(ch);
		if (n != 0)
			return n;
		if (ch->lent == 0)
			return 0;
		if (ch->err)
			return ch->err;
		if (ch->state == ZL_CHAN_PEER_CLOSED)
			return -EPIPE;
		/* chan_wait compares with the last consumer index we read: read
		 * it now, so that only a change from here on counts */
		if (tx_free(ch, ch->tx_size) < 0)
			return ch->err;
		chan_wait(ch, ZL_SLEEP_TX);
	}
}

ZL_EXPORT int zl_chan_poll(struct zl_chan *ch)
{
	if (ch->err)
		return ch->err;
	ctl_drain(ch);
	int n = chan_reap(ch);
	if (n < 0)
		return n;
	chan_settle(ch);
	return ch->state == ZL_CHAN_PEER_DEAD ? -ECONNRESET : n;
}

/* ------------------------------------------------------------------ */
/* set-up and tear-down                                                */

int zl__half_check(const struct zl_abi_half *h, uint64_t region_size, struct zl_half_geom *g)
{
	if (h->magic != ZL_ABI_HALF_MAGIC || h->version != ZL_ABI_VERSION ||
	    h->hdr_size != sizeof(struct zl_abi_half))
		return -EPROTO;
	if (!is_pow2(h->slot_count) || h->slot_count < 64 || h->slot_count > 65536 ||
	    !is_pow2(h->ret_count) || h->ret_count < 16 || h->ret_count > 65536)
		return -EPROTO;
	uint64_t slots_end = (uint64_t)h->slots_off + (uint64_t)h->slot_count * 64u;
	uint64_t ret_end = (uint64_t)h->ret_off + (uint64_t)h->ret_count * 4u;
	if (h->flags & ~ZL_HALF_F_MB)
		return -EPROTO;
	if (h->slots_off < sizeof(struct zl_abi_half) || (h->slots_off & 63u) ||
	    (h->ret_off & 3u) || h->total_size != region_size || slots_end > region_size ||
	    ret_end > region_size || (h->ret_off < slots_end && ret_end > h->slots_off))
		return -EPROTO;
	g->slot_count = h->slot_count;
	g->ret_count = h->ret_count;
	g->slots_off = h->slots_off;
	g->ret_off = h->ret_off;
	g->total = region_size;
	g->flags = h->flags;
	return 0;
}

struct zl_chan *zl__chan_new(struct zl_ctx *ctx, const struct zl_chan_opts *opts, enum zl_mode mode,
			     int ctl, uint64_t id, int *errp)
{
	uint32_t slots = opts && opts->slots ? opts->slots : DEF_SLOTS;
	uint32_t lend = opts && opts->lend ? opts->lend : DEF_LEND;
	int err = -EINVAL;
	if (!is_pow2(slots) || slots < 64 || slots > 65536 || !is_pow2(lend) || lend < 16 ||
	    lend > 65536) {
		*errp = -EINVAL;
		return NULL;
	}
	struct zl_chan *ch = calloc(1, sizeof(*ch));
	if (!ch) {
		*errp = -ENOMEM;
		return NULL;
	}
	ch->ctx = ctx;
	zl__ctx_get(ctx);
	ch->id = id;
	ch->mode = mode;
	ch->ctl = ctl;
	ch->efd = ch->peer_efd = ch->ep = ch->bell = -1;
	uint64_t size = sizeof(struct zl_abi_half) + (uint64_t)slots * 64u + (uint64_t)lend * 4u;
	err = zl__region_create(ctx, size,
				opts && (opts->flags & ZL__CHAN_LAZY) ? ZL__REGION_LAZY : 0, false,
				"lane", &ch->mine);
	if (err)
		goto fail;
	struct zl_abi_half *h = ch->mine->base;
	h->magic = ZL_ABI_HALF_MAGIC;
	h->version = ZL_ABI_VERSION;
	h->hdr_size = sizeof(*h);
	h->slot_count = slots;
	h->ret_count = lend;
	h->slots_off = sizeof(*h);
	h->ret_off = (uint32_t)(sizeof(*h) + (uint64_t)slots * 64u);
	h->total_size = ch->mine->size;
	h->domain = ctx ? ctx->domain : 0;
	uint32_t start = zl__test_start_index;
	h->tx_prod = h->rx_cons = h->ret_prod = h->ret_cons = start;
	ch->tx_prod = ch->tx_cons_seen = ch->ret_prod = ch->peer_ret_cons = ch->ret_cons_seen =
		start;
	ch->rx_read = ch->rx_cons = ch->rx_freed = ch->rx_prod_seen = start;
	ch->me = h;
	ch->tx_slots = (struct zl_abi_slot *)((char *)h + h->slots_off);
	ch->my_ret = (uint32_t *)((char *)h + h->ret_off);
	ch->tx_size = slots;
	ch->my_ret_size = lend;
	ch->efd = zl__fd_high(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
	ch->ep = zl__fd_high(epoll_create1(EPOLL_CLOEXEC));
	if (ch->efd < 0 || ch->ep < 0) {
		err = -errno;
		goto fail;
	}
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = ch->efd};
	if (epoll_ctl(ch->ep, EPOLL_CTL_ADD, ch->efd, &ev) < 0) {
		err = -errno;
		goto fail;
	}
	ev.events = EPOLLIN | EPOLLRDHUP;
	ev.data.fd = ctl;
	if (epoll_ctl(ch->ep, EPOLL_CTL_ADD, ctl, &ev) < 0) {
		err = -errno;
		goto fail;
	}
	if (opts && (opts->flags & ZL_CHAN_NOSPIN))
		ch->spin_ns = 0;
	else if (opts && opts->spin_ns > 0)
		ch->spin_ns = opts->spin_ns;
	else
		ch->spin_ns = default_spin();
	ch->spin_cur = ch->spin_ns;
	/* Asymmetric wake-up fences when this process can call membarrier()
	 * and the channel spins first (so that sleeping, and its system call,
	 * comes only after a wait of its own); a channel that blocks at once
	 * keeps plain fences, which add nothing to its wake-up path. */
	ch->my_mb =
		zl__mb_ready && ch->spin_ns > 0 && !(opts && (opts->flags & ZL__CHAN_PLAIN_FENCE));
	if (ch->my_mb)
		h->flags |= ZL_HALF_F_MB;
	ch->state = ZL_CHAN_OPEN;
	return ch;
fail:
	ch->ctl = -1; /* the caller still owns ctl */
	zl__chan_free(ch);
	*errp = err;
	return NULL;
}

int zl__chan_hello_send(struct zl_chan *ch)
{
	struct zl_proto_peer_hello ph = {
		.chan = ch->id,
		.half_size = ch->mine->size,
		.domain = ch->ctx ? ch->ctx->domain : 0,
		.mode = (uint32_t)ch->mode,
		.slot_count = ch->tx_size,
		.ret_count = ch->my_ret_size,
	};
	if (ch->mine->fd < 0 || ch->efd < 0)
		return -EINVAL; /* already sent, and let go (zl__chan_set_bell) */
	int fds[2] = {ch->mine->fd, ch->efd};
	int err = zl__msg_send(ch->ctl, ZL_MSG_PEER_HELLO, 0, &ph, sizeof(ph), fds, 2);
	if (!err)
		ch->hello_sent = true;
	return err;
}

static bool is_eventfd(int fd)
{
	char path[64], target[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(path, target, sizeof(target) - 1);
	if (n < 0)
		return false;
	target[n] = '\0';
	return strcmp(target, "anon_inode:[eventfd]") == 0;
}

int zl__chan_hello_recv(struct zl_chan *ch, int timeout_ms)
{
	struct pollfd p = {.fd = ch->ctl, .events = POLLIN};
	int n;
	do
		n = poll(&p, 1, timeout_ms);
	while (n < 0 && errno == EINTR);
	if (n == 0)
		return -ETIMEDOUT;
	char buf[ZL_PROTO_MAX];
	int fds[4];
	int nfds = 4;
	ssize_t len = zl__msg_recv(ch->ctl, buf, sizeof(buf), fds, &nfds, true);
	if (len == 0)
		return -ECONNRESET;
	if (len < 0)
		return len == -EAGAIN ? -ETIMEDOUT : (int)len;
	int type = zl__proto_check(buf, (size_t)len, nfds);
	if (type == ZL_MSG_PEER_REFUSE) {
		struct zl_proto_err e;
		memcpy(&e, buf + sizeof(struct zl_proto_hdr), sizeof(e));
		return -e.err;
	}
	if (type != ZL_MSG_PEER_HELLO) {
		zl__close_fds(fds, nfds);
		return -EPROTO;
	}
	struct zl_proto_peer_hello ph;
	memcpy(&ph, buf + sizeof(struct zl_proto_hdr), sizeof(ph));
	if (ph.mode != (uint32_t)ch->mode || !is_eventfd(fds[1]) || ph.half_size > (1ull << 32)) {
		zl__close_fds(fds, nfds);
		return -EPROTO;
	}
	ch->peer_efd = fds[1];
	int err = zl__region_import(ch->ctx, fds[0], 0, ph.half_size, ph.domain, 0, 0, &ch->theirs);
	if (err)
		return err;
	if (ch->ep < 0) {
		/* a doorbell channel (zl__chan_set_bell): kicks go on the bell */
		close(ch->peer_efd);
		ch->peer_efd = -1;
		zl__region_drop_fd(ch->theirs);
	}
	/* Copy the header, then check the copy: the peer can change its page. */
	struct zl_abi_half hc;
	memcpy(&hc, ch->theirs->base, sizeof(hc));
	struct zl_half_geom g;
	if (zl__half_check(&hc, ch->theirs->size, &g) || g.slot_count != ph.slot_count ||
	    g.ret_count != ph.ret_count)
		return -EPROTO;
	ch->peer = ch->theirs->base;
	ch->rx_slots = (const struct zl_abi_slot *)((const char *)ch->peer + g.slots_off);
	ch->peer_ret = (const uint32_t *)((const char *)ch->peer + g.ret_off);
	ch->rx_size = g.slot_count;
	ch->peer_ret_size = g.ret_count;
	ch->peer_domain = ph.domain;
	ch->peer_mb = (g.flags & ZL_HALF_F_MB) != 0;
	/* Both sides start every index at the same value (0 outside tests); the
	 * peer may already have sent messages, and read some of ours (those
	 * written before the accept, zl__chan_send_early), nothing else. */
	if (zl_read_once(&ch->peer->tx_prod) - ch->rx_read > ch->rx_size ||
	    zl_read_once(&ch->peer->ret_prod) != ch->peer_ret_cons ||
	    zl_read_once(&ch->peer->rx_cons) - ch->tx_cons_seen > ch->tx_prod - ch->tx_cons_seen ||
	    zl_read_once(&ch->peer->ret_cons) != ch->ret_prod)
		return -EPROTO;
	ch->held = calloc(ch->rx_size, sizeof(*ch->held));
	ch->rx_known = calloc(ch->rx_size, 1);
	ch->lend = calloc(ch->peer_ret_size, sizeof(*ch->lend));
	if (!ch->held || !ch->lend || !ch->rx_known)
		return -ENOMEM;
	for (uint32_t i = 0; i < ch->peer_ret_size; i++)
		ch->lend[i].next_free = i + 1 < ch->peer_ret_size ? i + 2 : 0;
	ch->lend_free = 1;
	return 0;
}

void zl__chan_free(struct zl_chan *ch)
{
	if (!ch)
		return;
	chan_unlink_all(ch);
	if (ch->ctx && ch->registered) {
		struct zl_proto_chan pc = {
			.chan = ch->id, .domain = ch->ctx->domain, .side = ch->side};
		zl__broker_notify(ch->ctx, ZL_MSG_CHAN_DOWN, &pc, sizeof(pc), NULL, 0);
	}
	for (unsigned i = 0; i < ch->npregs; i++)
		zl__region_put(ch->pregs[i].r);
	free(ch->pregs);
	free(ch->sent);
	free(ch->held);
	free(ch->rx_known);
	free(ch->lend);
	zl__region_put(ch->theirs);
	zl__region_put(ch->mine);
	if (ch->efd >= 0)
		close(ch->efd);
	if (ch->peer_efd >= 0)
		close(ch->peer_efd);
	if (ch->ep >= 0)
		close(ch->ep);
	if (ch->ctl >= 0)
		close(ch->ctl);
	zl__ctx_put(ch->ctx);
	free(ch);
}

ZL_EXPORT void zl_chan_close(struct zl_chan *ch)
{
	if (!ch || ch->app_closed)
		return;
	ch->app_closed = true;
	/* R_state: everything published comes before the state. A channel
	 * whose listener has not accepted yet (zl__connect_begin) has no peer
	 * to kick, but the peer reads the state when it maps our half. */
	zl_store_release(&ch->me->state, ZL_HALF_CLOSED);
	if (ch->peer)
		kick_peer(ch, ZL_SLEEP_RX | ZL_SLEEP_TX);
	/* The peer sees the hang-up now, and reads our state as CLOSED. */
	if (ch->ctl >= 0) {
		if (ch->ep >= 0)
			epoll_ctl(ch->ep, EPOLL_CTL_DEL, ch->ctl, NULL);
		close(ch->ctl);
		ch->ctl = -1;
	}
	chan_reclaim(ch);
	chan_maybe_free(ch);
}

ZL_EXPORT int zl_chan_shutdown(struct zl_chan *ch)
{
	if (ch->err)
		return ch->err;
	if (!ch->shut_wr) {
		ch->shut_wr = true;
		/* R_state: every send published its entries before this. */
		zl_store_release(&ch->me->state, ZL_HALF_SHUT_WR);
		if (ch->peer) /* else not accepted yet: the peer reads the state first */
			kick_peer(ch, ZL_SLEEP_RX);
	}
	return 0;
}

ZL_EXPORT int zl_chan_fd(const struct zl_chan *ch)
{
	return ch->ep;
}

ZL_EXPORT void zl_chan_set_spin(struct zl_chan *ch, int64_t spin_ns)
{
	ch->spin_ns = spin_ns < 0 ? default_spin() : spin_ns;
	ch->spin_cur = ch->spin_ns;
}

ZL_EXPORT void zl_chan_info(const struct zl_chan *ch, struct zl_chan_info *in)
{
	memset(in, 0, sizeof(*in));
	in->chan = ch->id;
	in->peer.id = ch->peer_domain;
	in->peer_pid = ch->peer_pid;
	in->peer_uid = ch->peer_uid;
	in->peer_gid = ch->peer_gid;
	in->mode = ch->mode;
	in->state = ch->state;
	in->error = ch->err;
	in->slots = ch->tx_size;
	in->peer_slots = ch->rx_size;
	in->lend = ch->my_ret_size;
	in->peer_lend = ch->peer_ret_size;
	in->lent = ch->lent;
	const struct zl_abi_counters *c = &ch->me->cnt;
	in->tx_msgs = c->tx_msgs;
	in->tx_bytes = c->tx_bytes;
	in->rx_msgs = c->rx_msgs;
	in->rx_bytes = c->rx_bytes;
	in->kicks = c->kicks;
	in->spins = c->spins;
	in->sleeps = c->sleeps;
	in->drops = c->drops;
}

ZL_EXPORT int zl_chan_pair(struct zl_ctx *ctx, const struct zl_chan_opts *opts,
			   struct zl_chan *out[2])
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	sv[0] = zl__fd_high(sv[0]);
	sv[1] = zl__fd_high(sv[1]);
	enum zl_mode mode = opts ? opts->mode : ZL_MODE_SHARED;
	int err = 0;
	struct zl_chan *a = zl__chan_new(ctx, opts, mode, sv[0], 0, &err);
	if (!a) {
		close(sv[0]);
		close(sv[1]);
		return err;
	}
	struct zl_chan *b = zl__chan_new(ctx, opts, mode, sv[1], 0, &err);
	if (!b) {
		close(sv[1]);
		zl__chan_free(a);
		return err;
	}
	if ((err = zl__chan_hello_send(a)) || (err = zl__chan_hello_send(b)) ||
	    (err = zl__chan_hello_recv(a, 1000)) || (err = zl__chan_hello_recv(b, 1000))) {
		zl__chan_free(a);
		zl__chan_free(b);
		return err;
	}
	b->side = 1;
	out[0] = a;
	out[1] = b;
	return 0;
}
