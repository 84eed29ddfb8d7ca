/* SPDX-License-Identifier: MIT */
/*
 * zerolink channels: two one-way lanes between two domains, set up through
 * the broker by service name.
 *
 * A channel carries messages (boundaries preserved, in order, no loss).
 * Small messages travel inline in the lane; zero-copy messages carry pool
 * buffers by reference. Every call returns 0 or a count on success and a
 * negative errno on failure, and never touches errno.
 *
 * Threads: a channel endpoint is used by one thread at a time. Different
 * channels may be used from different threads. Forwarding between channels
 * (zl_chan_forward) requires both to be driven by the same thread.
 */
#ifndef ZEROLINK_CHAN_H
#define ZEROLINK_CHAN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <zerolink/ctx.h>
#include <zerolink/pool.h>

#ifdef __cplusplus
extern "C" {
#endif

struct zl_chan;
struct zl_listener;

/** Channel modes: who maps what. */
enum zl_mode {
	ZL_MODE_SHARED = 0,   /* peers map our pools read-only: zero-copy */
	ZL_MODE_ISOLATED = 1, /* peers map nothing but the lanes: data is copied */
};

/** Spin budget value that never sleeps (pure polling, no eventfd). */
#define ZL_SPIN_FOREVER INT64_MAX
/** Spin budget value that uses the default ($ZEROLINK_SPIN_US, else 10 us). */
#define ZL_SPIN_DEFAULT (-1)

/** Options of zl_connect() and zl_accept(). Zero-fill, then set. */
struct zl_chan_opts {
	/** Slots in this side's outgoing lane (power of two, 64..65536);
	 *  0: 1024. */
	uint32_t slots;
	/** Buffers this side accepts on loan from its peer at once
	 *  (power of two, 16..65536); 0: 1024. */
	uint32_t lend;
	/** Mode asked for; a service that demands isolation wins. */
	enum zl_mode mode;
	/** Nanoseconds to spin before blocking; ZL_SPIN_DEFAULT (-1) or 0
	 *  both mean the default unless ZL_CHAN_NOSPIN is set. */
	int64_t spin_ns;
	/** Handshake timeout in ms; 0: 5000. */
	uint32_t timeout_ms;
	/** ZL_CHAN_NOSPIN: block at once (no spinning). */
	unsigned flags;
};

#define ZL_CHAN_NOSPIN 0x1u

/** Options of zl_listen(). Zero-fill, then set. */
struct zl_listen_opts {
	/** Mode the service demands: ZL_MODE_ISOLATED forces copy-only
	 *  channels whatever the client asks. */
	enum zl_mode mode;
	/** Who may connect, besides root and the listener's own user: up to
	 *  8 uids and 8 gids (primary or supplementary). ZL_LISTEN_ANY lets
	 *  everyone in. */
	uint32_t uids[8], gids[8];
	unsigned nuids, ngids;
	unsigned flags;
};

#define ZL_LISTEN_ANY 0x1u

/* Flags of the send and receive calls. */
#define ZL_DONTWAIT 0x1u /* do not wait: -EAGAIN instead */

/**
 * zl_listen() - offer a service by name.
 * Return: 0; -EADDRINUSE the name is taken; -EINVAL bad name (empty, over
 * 63 bytes, or containing '/'); -ENOTCONN the broker is gone and could not
 * be restarted. Thread safety: any thread.
 */
int zl_listen(struct zl_ctx *ctx, const char *service, const struct zl_listen_opts *opts,
	      struct zl_listener **out);

/** zl_listener_fd() - a descriptor that polls readable when a peer waits. */
int zl_listener_fd(const struct zl_listener *lis);

/**
 * zl_accept() - take the next peer that connected.
 * @timeout_ms: -1 waits forever, 0 does not wait.
 * Return: 0; -EAGAIN nobody waits (timeout); -ETIMEDOUT the peer did not
 * complete the handshake; -EPROTO the peer sent a malformed handshake (it is
 * dropped, the listener stays usable); -ENOTCONN the broker went away.
 */
int zl_accept(struct zl_listener *lis, const struct zl_chan_opts *opts, struct zl_chan **out,
	      int timeout_ms);

/** zl_listener_close() - withdraw the service. NULL is accepted. */
void zl_listener_close(struct zl_listener *lis);

/**
 * zl_connect() - open a channel to a service.
 * Return: 0; -ECONNREFUSED no such service; -EACCES the service does not
 * admit this user; -ETIMEDOUT the listener did not accept in time;
 * -EPROTO malformed handshake from the listener; -EINVAL bad options.
 */
int zl_connect(struct zl_ctx *ctx, const char *service, const struct zl_chan_opts *opts,
	       struct zl_chan **out);

/**
 * zl_chan_pair() - two connected endpoints inside this process (no broker
 * involved), for tests and for threads of one program.
 */
int zl_chan_pair(struct zl_ctx *ctx, const struct zl_chan_opts *opts, struct zl_chan *out[2]);

/**
 * zl_chan_close() - close the endpoint. The peer sees EOF after the data
 * already sent, then -EPIPE on send. Views (struct zl_msg) still held stay
 * readable until released. NULL is accepted.
 */
void zl_chan_close(struct zl_chan *ch);

/** zl_chan_shutdown() - send no more: the peer reads EOF after the data. */
int zl_chan_shutdown(struct zl_chan *ch);

/**
 * zl_chan_fd() - a descriptor that polls readable when the endpoint has
 * work (data, space after waiting, returned buffers, peer closed or dead).
 * Call zl_chan_recv*() or zl_chan_poll() afterwards: readiness is a hint.
 */
int zl_chan_fd(const struct zl_chan *ch);

/**
 * zl_chan_arm() - get ready to sleep in poll(2)/epoll on zl_chan_fd().
 *
 * A peer kicks the descriptor only when this endpoint has announced that it
 * sleeps. Call zl_chan_arm() right before poll/epoll_wait; if it returns 1,
 * something is already pending (data, space, returned buffers, peer state):
 * do not sleep, process the channel instead.
 * Return: 1 pending, 0 armed, or the channel's sticky error.
 */
int zl_chan_arm(struct zl_chan *ch);

/**
 * zl_chan_send() - copy len bytes into the lane as one message.
 * Return: len; -EINVAL len == 0; -EAGAIN full and ZL_DONTWAIT; -EPIPE the
 * write side is shut or the peer closed; -ECONNRESET the peer died;
 * -EPROTO the channel was closed for a protocol violation by the peer.
 */
int zl_chan_send(struct zl_chan *ch, const void *buf, size_t len, unsigned flags);

/** zl_chan_sendv() - as zl_chan_send(), gathering from iov[0..n). */
int zl_chan_sendv(struct zl_chan *ch, const struct iovec *iov, int n, unsigned flags);

/**
 * zl_chan_recv() - copy the next message into buf.
 * Return: the message length; 0 end of stream (peer shut down or closed and
 * everything was read); -EMSGSIZE cap is smaller than the message (it stays
 * queued; zl_chan_peek_len() tells its size); -EAGAIN nothing and
 * ZL_DONTWAIT; -ECONNRESET the peer died; -EPROTO peer violation.
 */
int zl_chan_recv(struct zl_chan *ch, void *buf, size_t cap, unsigned flags);

/** zl_chan_peek_len() - length of the next message: >0, 0 EOF, or as zl_chan_recv(). */
int zl_chan_peek_len(struct zl_chan *ch, unsigned flags);

/** Segments in a zero-copy message at most. */
#define ZL_MSG_MAX_SEGS 16

/**
 * A received message seen in place (read-only). Its memory stays valid until
 * zl_msg_release() or zl_chan_forward(); peers may only lie about contents,
 * never about where they are: every segment lies inside memory the receiver
 * mapped and checked.
 */
struct zl_msg {
	uint32_t len; /* total bytes */
	uint16_t nsegs;
	uint16_t rsvd;
	struct {
		const void *base;
		uint32_t len;
		uint32_t ref; /* internal */
	} seg[ZL_MSG_MAX_SEGS];
	struct zl_chan *chan; /* internal */
	uint32_t ring_end;    /* internal */
	uint32_t rsvd2;
};

/**
 * zl_chan_send_buf() - send len bytes of a pool buffer without copying.
 * Ownership moves to the channel: do not touch or free buf afterwards. On an
 * isolated channel the bytes are copied into the lane and the buffer is
 * freed at once.
 * Return: len; -EINVAL len > buf->cap or len == 0; others as zl_chan_send().
 * On error the caller still owns the buffer.
 */
int zl_chan_send_buf(struct zl_chan *ch, const struct zl_buf *buf, size_t len, unsigned flags);

/**
 * zl_chan_send_bufs() - one message of n pool buffers (scatter-gather),
 * n <= ZL_MSG_MAX_SEGS. Return: total bytes, or as zl_chan_send_buf().
 */
int zl_chan_send_bufs(struct zl_chan *ch, const struct zl_buf *bufs, const uint32_t *lens,
		      unsigned n, unsigned flags);

/**
 * zl_chan_send_buf_burst() - n messages of one pool buffer each, published
 * to the peer at once (one index store, at most one wake-up).
 * Return: messages sent (> 0; fewer than n when one fails: the caller still
 * owns the buffers from that one on), or the first message's error.
 */
int zl_chan_send_buf_burst(struct zl_chan *ch, const struct zl_buf *bufs, const uint32_t *lens,
			   unsigned n, unsigned flags);

/**
 * zl_chan_send_hdr_bufs() - one message made of hlen bytes copied into the
 * lane (a header, 1..56 bytes) followed by n pool buffers sent without
 * copying (n < ZL_MSG_MAX_SEGS): the receiver sees seg[0] inline, then one
 * segment per buffer. Ownership of the buffers moves as with
 * zl_chan_send_bufs(); n == 0 sends the header alone.
 * Return: total bytes; -EINVAL bad hlen, n or lengths; others as
 * zl_chan_send_buf(). On error the caller still owns the buffers.
 */
int zl_chan_send_hdr_bufs(struct zl_chan *ch, const void *hdr, size_t hlen,
			  const struct zl_buf *bufs, const uint32_t *lens, unsigned n,
			  unsigned flags);

/**
 * zl_chan_recv_msg() - the next message, in place.
 * Return: 1 a message is in *m; 0 end of stream; -EMSGSIZE the message has
 * more than ZL_MSG_MAX_SEGS segments or does not fit the lane (use
 * zl_chan_recv()); others as zl_chan_recv().
 */
int zl_chan_recv_msg(struct zl_chan *ch, struct zl_msg *m, unsigned flags);

/**
 * zl_chan_recv_burst() - up to n messages in place; waits (unless
 * ZL_DONTWAIT) only for the first. Return: count (> 0), or as
 * zl_chan_recv_msg() when none.
 */
int zl_chan_recv_burst(struct zl_chan *ch, struct zl_msg *m, unsigned n, unsigned flags);

/**
 * zl_msg_release() - hand a received message back: ring space is freed and
 * pool buffers travel back to their owner.
 */
void zl_msg_release(struct zl_msg *m);

/** zl_msg_release_burst() - release m[0..n), publishing returns once per channel. */
void zl_msg_release_burst(struct zl_msg *m, unsigned n);

/**
 * zl_chan_forward() - send a received message on to another channel without
 * copying its pool buffers (transitive zero-copy). The third domain maps the
 * owner's region read-only; the buffers return to their owner hop by hop.
 * Inline parts are copied. On success m is consumed (do not release it).
 * Return: bytes; -EPERM the owner did not allow forwarding (ZL_POOL_FORWARD)
 * or @out is isolated; others as zl_chan_send_buf().
 */
int zl_chan_forward(struct zl_chan *out, struct zl_msg *m, unsigned flags);

/**
 * zl_chan_forward_burst() - forward m[0..n) in order, published at once.
 * Return: messages forwarded (> 0; the rest are still the caller's), or the
 * first one's error.
 */
int zl_chan_forward_burst(struct zl_chan *out, struct zl_msg *m, unsigned n, unsigned flags);

/**
 * zl_chan_poll() - collect buffers the peer returned (and control messages)
 * without receiving. Buffers lent out travel home only when their channel is
 * polled, sent on or received from.
 * Return: buffers collected (>= 0); -ECONNRESET the peer died (everything lent
 * to it is reclaimed); -EPROTO the channel was broken by a peer violation.
 */
int zl_chan_poll(struct zl_chan *ch);

/**
 * zl_chan_wait_returns() - wait until the peer gives back buffers lent on
 * this channel, and collect them, so that their pools can hand them out
 * again. What a zero-copy sender calls when zl_buf_alloc() says -ENOBUFS.
 * Waits with the channel's policy: spin, yield the core, then sleep.
 * Return: buffers collected (> 0); 0 nothing is lent out on this channel
 * (waiting would be forever); -ECONNRESET the peer died (everything lent to
 * it is reclaimed); -EPROTO the channel was broken by a peer violation;
 * -EPIPE the peer closed the channel.
 */
int zl_chan_wait_returns(struct zl_chan *ch);

/** zl_chan_set_spin() - spin budget in ns (ZL_SPIN_FOREVER: never sleep). */
void zl_chan_set_spin(struct zl_chan *ch, int64_t spin_ns);

/** Channel state seen by this endpoint. */
enum zl_chan_state {
	ZL_CHAN_OPEN = 0,
	ZL_CHAN_PEER_SHUT = 1, /* peer sends no more */
	ZL_CHAN_PEER_CLOSED = 2,
	ZL_CHAN_PEER_DEAD = 3,
	ZL_CHAN_BROKEN = 4, /* closed by this side for a peer violation */
};

struct zl_chan_info {
	uint64_t chan;         /* broker-wide id (0 for zl_chan_pair) */
	struct zl_domain peer; /* peer domain */
	/* the peer's process and credentials as the broker saw them when the
	 * channel was set up (SO_PEERCRED); 0 for zl_chan_pair() */
	uint32_t peer_pid, peer_uid, peer_gid;
	enum zl_mode mode;
	enum zl_chan_state state;
	int error; /* negative errno that broke the channel, or 0 */
	uint32_t slots, peer_slots, lend, peer_lend;
	uint32_t lent; /* our buffers currently held by the peer */
	uint64_t tx_msgs, tx_bytes, rx_msgs, rx_bytes, kicks, spins, sleeps, drops;
};

/** zl_chan_info() - state, sizes and counters of the endpoint. */
void zl_chan_info(const struct zl_chan *ch, struct zl_chan_info *info);

#ifdef __cplusplus
}
#endif
#endif
