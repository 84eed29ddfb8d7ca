/* SPDX-License-Identifier: MIT */
/*
 * zerolink sockets: connected stream and seqpacket sockets over channels,
 * with the semantics of their POSIX namesakes (partial reads, MSG_PEEK,
 * MSG_WAITALL, shutdown of each direction, poll readiness, EOF after the
 * data, EPIPE and ECONNRESET).
 *
 * Two faces: zl_sock_*() return 0 or a count, or a negative errno, and never
 * touch errno; zl_posix_*() are the same calls in the POSIX style (-1 and
 * errno). Flags are the MSG_* and POLL* values of <sys/socket.h> and
 * <poll.h>.
 *
 * A stream socket carries bytes: each write becomes one or more messages on
 * the channel, and a read takes bytes across message boundaries. A seqpacket
 * socket keeps each write a record: a read returns one record and drops what
 * does not fit (MSG_TRUNC).
 *
 * zl_sock_connect() returns before the listener accepts, as connect(2) does:
 * what is written in the meantime waits in the socket's lane (up to its size)
 * and is read after the accept.
 *
 * Threads: one thread at a time per socket; different sockets are
 * independent.
 */
#ifndef ZEROLINK_SOCK_H
#define ZEROLINK_SOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <zerolink/ctx.h>

#ifdef __cplusplus
extern "C" {
#endif

struct zl_sock;

/** Options of the calls that create sockets. Zero-fill, then set. */
struct zl_sock_opts {
	/** Slots in this side's lane (power of two, 64..65536); 0: 4096,
	 *  that is 256 KiB, the socket's send buffer. */
	uint32_t slots;
	/** Nanoseconds a blocking call spins before it sleeps; 0: the
	 *  default ($ZEROLINK_SPIN_US, else 10 us); ZL_SOCK_NOSPIN in flags
	 *  sleeps at once. */
	int64_t spin_ns;
	/** ZL_SOCK_NONBLOCK, ZL_SOCK_NOSPIN. */
	unsigned flags;
	/** Who may connect to a listening socket (see zl_listen_opts):
	 *  ZL_LISTEN_ANY in listen_flags admits every user. */
	unsigned listen_flags;
};

#define ZL_SOCK_NONBLOCK 0x1u /* calls return -EAGAIN instead of waiting */
#define ZL_SOCK_NOSPIN 0x2u   /* blocking calls sleep at once */

/**
 * zl_sock_listen() - offer a socket service by name.
 * @type: SOCK_STREAM or SOCK_SEQPACKET; a client must ask for the same.
 * Return: 0; -EADDRINUSE the name is taken; -EINVAL bad name (empty, over
 * 50 bytes, containing '/') or type; -ENOTCONN no broker.
 */
int zl_sock_listen(struct zl_ctx *ctx, const char *name, int type, const struct zl_sock_opts *opts,
		   struct zl_sock **out);

/**
 * zl_sock_accept() - take the next connection of a listening socket.
 * @flags: ZL_SOCK_NONBLOCK for the new socket.
 * Return: 0; -EAGAIN nobody waits and the listener is non-blocking;
 * -EINVAL not a listening socket; others as zl_accept().
 */
int zl_sock_accept(struct zl_sock *ls, unsigned flags, struct zl_sock **out);

/**
 * zl_sock_connect() - connect to a socket service by name. Returns as soon
 * as the listener has the connection queued; the socket can be written at
 * once.
 * Return: 0; -ECONNREFUSED nobody listens on that name with that type;
 * -EACCES the service does not admit this user; -EINVAL bad arguments.
 */
int zl_sock_connect(struct zl_ctx *ctx, const char *name, int type, const struct zl_sock_opts *opts,
		    struct zl_sock **out);

/** zl_sock_pair() - two connected sockets in this process (socketpair(2)). */
int zl_sock_pair(struct zl_ctx *ctx, int type, const struct zl_sock_opts *opts,
		 struct zl_sock *out[2]);

/**
 * zl_sock_send() - write bytes (stream) or one record (seqpacket).
 * @flags: MSG_DONTWAIT; MSG_NOSIGNAL is accepted (this API raises no
 * signal); others give -EOPNOTSUPP.
 * Return: bytes written (a stream socket that would block returns what it
 * wrote so far); 0 when len is 0; -EAGAIN nothing fits and the call may not
 * wait; -EPIPE shut down for writing or the peer closed; -ECONNRESET the
 * peer died; -EMSGSIZE a record larger than zl_sock_max_record(); -EINTR a
 * signal came before anything was written; -ENOTCONN a listening socket.
 */
ssize_t zl_sock_send(struct zl_sock *s, const void *buf, size_t len, int flags);

/** zl_sock_sendv() - as zl_sock_send(), gathering from iov[0..n). */
ssize_t zl_sock_sendv(struct zl_sock *s, const struct iovec *iov, int n, int flags);

/**
 * zl_sock_recv() - read bytes (stream) or one record (seqpacket).
 * @flags: MSG_DONTWAIT, MSG_PEEK, MSG_WAITALL, MSG_TRUNC (seqpacket: return
 * the record's whole length).
 * Return: bytes read; 0 end of stream (the peer shut down or closed and
 * everything was read); -EAGAIN nothing to read and the call may not wait;
 * -ECONNRESET the peer died; -EINTR a signal came before any byte.
 */
ssize_t zl_sock_recv(struct zl_sock *s, void *buf, size_t len, int flags);

/**
 * zl_sock_recvv() - as zl_sock_recv(), scattering into iov[0..n).
 * @oflags: if not NULL, receives MSG_TRUNC when a record was cut short.
 */
ssize_t zl_sock_recvv(struct zl_sock *s, const struct iovec *iov, int n, int flags, int *oflags);

/**
 * zl_sock_shutdown() - SHUT_RD, SHUT_WR or SHUT_RDWR. After SHUT_WR the
 * peer reads end of stream once it has read everything sent before.
 * Return: 0; -EINVAL bad how; -ENOTCONN a listening socket.
 */
int zl_sock_shutdown(struct zl_sock *s, int how);

/**
 * zl_sock_close() - close the socket. Data already written is still
 * delivered, then the peer reads end of stream. With zl_sock_set_linger()
 * on, waits up to the linger time for the peer to read it all.
 * Return: 0; -EWOULDBLOCK the linger time passed with data unread (the
 * socket is closed all the same). NULL is accepted.
 */
int zl_sock_close(struct zl_sock *s);

/** zl_sock_nread() - bytes readable without waiting (FIONREAD), or -errno. */
int zl_sock_nread(struct zl_sock *s);

/**
 * zl_sock_poll() - readiness now: the POLLIN, POLLOUT, POLLRDHUP, POLLHUP
 * and POLLERR bits of @events (the last two always) that hold.
 */
int zl_sock_poll(struct zl_sock *s, int events);

/**
 * zl_sock_wait() - wait until zl_sock_poll(s, events) is not 0: spin for
 * the socket's budget, then sleep.
 * @timeout_ms: -1 forever.
 * Return: the ready bits; 0 timeout; -EINTR a signal came.
 */
int zl_sock_wait(struct zl_sock *s, int events, int timeout_ms);

/**
 * zl_sock_fd() - a descriptor for poll(2) and epoll that turns readable
 * when the socket may have become ready. Use it as zl_chan_fd(): call
 * zl_sock_arm() first, then zl_sock_poll() after waking.
 */
int zl_sock_fd(const struct zl_sock *s);

/**
 * zl_sock_arm() - get ready to sleep on zl_sock_fd() for @events.
 * Return: 1 already ready (do not sleep), 0 armed, or -errno.
 */
int zl_sock_arm(struct zl_sock *s, int events);

/** zl_sock_set_nonblock() - switch between blocking and non-blocking calls. */
void zl_sock_set_nonblock(struct zl_sock *s, bool on);

/** zl_sock_set_linger() - SO_LINGER: close waits up to secs for the peer to read. */
void zl_sock_set_linger(struct zl_sock *s, bool on, int secs);

/** zl_sock_max_record() - largest record a seqpacket socket sends, in bytes. */
size_t zl_sock_max_record(const struct zl_sock *s);

/* The same calls in the POSIX style: -1 and errno on failure. */
int zl_posix_listen(struct zl_ctx *ctx, const char *name, int type, const struct zl_sock_opts *opts,
		    struct zl_sock **out);
int zl_posix_accept(struct zl_sock *ls, unsigned flags, struct zl_sock **out);
int zl_posix_connect(struct zl_ctx *ctx, const char *name, int type,
		     const struct zl_sock_opts *opts, struct zl_sock **out);
int zl_posix_socketpair(struct zl_ctx *ctx, int type, const struct zl_sock_opts *opts,
			struct zl_sock *out[2]);
ssize_t zl_posix_send(struct zl_sock *s, const void *buf, size_t len, int flags);
ssize_t zl_posix_recv(struct zl_sock *s, void *buf, size_t len, int flags);
ssize_t zl_posix_sendmsg(struct zl_sock *s, const struct msghdr *msg, int flags);
ssize_t zl_posix_recvmsg(struct zl_sock *s, struct msghdr *msg, int flags);
int zl_posix_shutdown(struct zl_sock *s, int how);
int zl_posix_close(struct zl_sock *s);

#ifdef __cplusplus
}
#endif
#endif
