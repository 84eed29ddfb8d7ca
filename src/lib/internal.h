/* SPDX-License-Identifier: MIT */
/* libzerolink internals shared between its files. Not installed. */
#ifndef ZL_INTERNAL_H
#define ZL_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <zerolink/abi/lane.h>
#include <zerolink/abi/proto.h>
#include <zerolink/zerolink.h>

#ifndef ZL_EXPORT
#define ZL_EXPORT __attribute__((visibility("default")))
#endif
#define ZL_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define ZL_LIKELY(x) __builtin_expect(!!(x), 1)
#define ZL_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* ---- regions (region.c) ---- */

struct zl_region {
	uint64_t id;
	int fd;
	void *base;
	uint64_t size;
	uint32_t owner; /* owner domain */
	uint32_t flags; /* ZL_REGION_F_* */
	bool own;       /* mapped read-write by us */
	dev_t dev;
	ino_t ino;
	uint64_t gaddr; /* pseudo-global address (mapped there), or 0 */
	int refs;       /* atomic */
	struct zl_ctx *ctx;
	struct zl_region *next; /* ctx->imports list (imported regions only) */
};

int zl__region_create(struct zl_ctx *ctx, uint64_t size, uint32_t flags, bool hugetlb,
		      const char *name, struct zl_region **out);
/* As zl__region_create, placed in the domain's pseudo-global window when the
 * context uses one. */
int zl__region_create_global(struct zl_ctx *ctx, uint64_t size, uint32_t flags, bool hugetlb,
			     const char *name, struct zl_region **out);
/* Takes ownership of fd in every case. */
int zl__region_import(struct zl_ctx *ctx, int fd, uint64_t id, uint64_t size, uint32_t owner,
		      uint32_t flags, uint64_t gaddr, struct zl_region **out);
void zl__region_get(struct zl_region *r);
void zl__region_put(struct zl_region *r);
void zl__region_drop_fd(struct zl_region *r);

/* ---- pools (pool.c) ---- */

struct zl_pool_cls {
	uint32_t size, count;
	uint32_t stride;   /* bytes from one buffer to the next (see pool.c) */
	uint64_t off;      /* offset of buffer 0 in the region */
	uint32_t *stack;   /* owner's free stack of indices */
	uint32_t nfree;    /* entries in stack */
	uint32_t *next;    /* links of the returned list, index + 1, 0 ends */
	uint32_t ret_head; /* atomic: returned list head, index + 1, 0 empty */
};

struct zl_pool {
	struct zl_ctx *ctx;
	struct zl_region *reg;
	unsigned ncls;
	struct zl_pool_cls cls[ZL_POOL_MAX_CLASSES];
};

void zl__pool_return(struct zl_pool *pool, uint32_t id);
/* Returns in bulk: link buffer idx before next (same class), then hand the
 * chain first..last back with one atomic operation. */
void zl__pool_link(struct zl_pool *pool, uint32_t cls, uint32_t idx, uint32_t next);
void zl__pool_return_chain(struct zl_pool *pool, uint32_t cls, uint32_t first, uint32_t last);

/* ---- channels (chan.c) ---- */

enum { ZL_LEND_FREE = 0, ZL_LEND_POOL = 1, ZL_LEND_FWD = 2 };

struct zl_lend {
	uint8_t kind;
	uint32_t next_free;
	uint32_t buf_id; /* ZL_LEND_POOL */
	struct zl_pool *pool;
	struct zl_chan *in; /* ZL_LEND_FWD: channel the buffer came in on */
	uint32_t in_ref;    /* its lend id on that channel */
};

struct zl_peer_region {
	uint64_t id;
	struct zl_region *r;
};

struct zl_held {
	uint32_t end; /* ring index after the message */
	uint8_t done;
};

/* What a doorbell socket carries besides kicks (see zl__chan_set_bell_sink). */
struct msghdr;
typedef void (*zl__bell_sink)(void *arg, const char *bytes, size_t n, struct msghdr *m);

/* Control data room for one read of a doorbell socket: the most descriptors
 * one message carries (SCM_MAX_FD) and credentials. */
union zl__bell_cmsg {
	struct cmsghdr align;
	char buf[CMSG_SPACE(253 * sizeof(int)) + CMSG_SPACE(sizeof(struct ucred))];
};

struct zl_chan {
	struct zl_ctx *ctx;
	uint64_t id;
	uint32_t peer_domain;
	uint32_t peer_pid, peer_uid, peer_gid; /* as the broker saw them (0 for pairs) */
	enum zl_mode mode;

	/* my half (read-write) and the peer's (read-only) */
	struct zl_region *mine, *theirs;
	struct zl_abi_half *me;
	const struct zl_abi_half *peer;
	struct zl_abi_slot *tx_slots;
	const struct zl_abi_slot *rx_slots;
	uint32_t *my_ret;
	const uint32_t *peer_ret;
	uint32_t tx_size, rx_size; /* slot counts */
	uint32_t my_ret_size;      /* = lend capacity of the peer */
	uint32_t peer_ret_size;    /* = my lend capacity */

	/* producer side (local copies of what we publish) */
	uint32_t tx_prod;
	uint32_t tx_cons_seen; /* last validated peer->rx_cons */
	uint32_t kicked_gen;   /* sleep generation of the peer we last kicked */

	/* consumer side */
	uint32_t rx_read;      /* next entry to parse */
	uint32_t rx_cons;      /* published consumer index */
	uint32_t rx_freed;     /* freed locally; published lazily (rx_flush) */
	uint32_t rx_prod_seen; /* last validated peer->tx_prod */
	uint32_t rx_wait;      /* where the last scan stopped (rx_wait_index) */
	/* rx_known[pos]: the slot held an entry header in the lap we read last,
	 * so its lap bit alone tells whether the next lap's entry is there */
	uint8_t *rx_known;
	struct zl_held *held; /* ring-backed views not yet released, FIFO */
	uint32_t held_head, held_tail;
	uint32_t big_left; /* bytes of a fragmented message still to copy */

	/* returns */
	uint32_t ret_prod;      /* my return ring producer */
	uint32_t peer_ret_cons; /* how far I have reaped the peer's returns */
	uint32_t ret_cons_seen; /* last peer->ret_cons read (cached space) */
	uint32_t reap_tick;

	/* lending */
	struct zl_lend *lend;
	uint32_t lend_free; /* head of the free list, lend index + 1, 0 = none */
	uint32_t lent;

	/* regions the peer handed us, and region ids we handed the peer */
	struct zl_peer_region *pregs;
	unsigned npregs, cappregs;
	uint64_t *sent;
	unsigned nsent, capsent;
	uint64_t sent_last; /* region id offered last: no search for it */
	unsigned preg_hint; /* pregs[] entry that resolved the last descriptor */

	/* Channels this one forwarded buffers to (down) and from (up). A
	 * receiver waiting here also collects the returns of its down channels,
	 * so that a forwarding stage blocked on its input still sends buffers
	 * home. */
	struct zl_chan *down[8], *up[8];
	unsigned ndown, nup;

	int efd, peer_efd, ctl, ep;
	int bell;        /* kicks travel as bytes on this socket (zl__chan_set_bell), or -1 */
	bool bell_eof;   /* the bell socket read end of file: the peer's end is gone */
	bool hello_sent; /* our half's memfd and eventfd went to the peer */
	zl__bell_sink bell_sink;
	void *bell_arg;
	uint64_t bell_seen; /* the peer's kick count when we last drained the bell */
	int64_t spin_ns;    /* configured budget */
	int64_t spin_cur;   /* adaptive budget */
	uint32_t sleep_gen;
	bool my_mb;       /* we call membarrier() before sleeping (ZL_HALF_F_MB) */
	bool peer_mb;     /* the peer does: as a registered waker we need no fence */
	uint64_t live_ns; /* last liveness check of a non-blocking caller */
	enum zl_chan_state state;
	int err; /* sticky negative errno once broken */
	bool shut_wr;
	bool app_closed;   /* zl_chan_close() was called */
	bool released_all; /* lent buffers were reclaimed */
	uint32_t views;    /* zl_msg views outstanding */
	bool registered;   /* told the broker (CHAN_UP) */
	uint32_t side;
};

/* Initial value of every ring index of new channels (tests start near 2^32
 * to cross the wrap); 0 in normal use. */
extern uint32_t zl__test_start_index;

struct zl_chan *zl__chan_new(struct zl_ctx *ctx, const struct zl_chan_opts *opts, enum zl_mode mode,
			     int ctl, uint64_t id, int *err);
int zl__chan_hello_send(struct zl_chan *ch);
int zl__chan_hello_recv(struct zl_chan *ch, int timeout_ms);
void zl__chan_free(struct zl_chan *ch);
/* Sockets over channels (src/sock): kicks as bytes on a connected socket
 * whose two ends the peers hold, so that the socket polls readable when the
 * channel has work; arming for one direction; sizes and space. */
int zl__chan_set_bell(struct zl_chan *ch, int fd);
void zl__chan_bell_drain(struct zl_chan *ch);
/* What the bell carries besides kicks (the preload shim's records of
 * ancillary data): with a sink, drains read with recvmsg and hand every
 * read, bytes and control data, to it. */
void zl__chan_set_bell_sink(struct zl_chan *ch, zl__bell_sink fn, void *arg);
/* Records sent on the bell: the peer's count (acquire), and ours (+1,
 * release: before the bytes the record goes with are published). */
uint32_t zl__chan_peer_anc(const struct zl_chan *ch);
void zl__chan_anc_sent(struct zl_chan *ch);
/* zl_chan_opts.flags, internal: plain fences on the wake-up path instead of
 * membarrier() (a channel that arms often, as the preload shim's do). */
#define ZL__CHAN_PLAIN_FENCE 0x80000000u
/* zl_chan_opts.flags, internal: the lane's pages are not touched at set-up
 * but at first use (a connection that carries little keeps little memory:
 * the preload shim's, thousands of them) */
#define ZL__CHAN_LAZY 0x40000000u
/* zl__region_create flags, internal: map without populating */
#define ZL__REGION_LAZY 0x80000000u
int zl__chan_arm(struct zl_chan *ch, unsigned what);
void zl__chan_disarm(struct zl_chan *ch);
uint32_t zl__chan_max_msg(const struct zl_chan *ch);
int zl__chan_writable(struct zl_chan *ch, uint32_t len);
/* Before the peer's half is known (zl__connect_begin): one message into our
 * lane, without waiting (-EAGAIN: no room until the listener accepts). */
int zl__chan_send_early(struct zl_chan *ch, const struct iovec *iov, int n, uint32_t total);
bool zl__chan_early_room(const struct zl_chan *ch, uint32_t len);
bool zl__chan_tx_idle(struct zl_chan *ch);
/* The largest message that fits in the lane now, without waiting. */
uint32_t zl__chan_tx_room(struct zl_chan *ch);
/* zl_connect() in two steps: the channel is usable for sending once begun
 * (its lane is ours); the peer's half arrives when the listener accepts. */
int zl__connect_begin(struct zl_ctx *ctx, const char *service, const struct zl_chan_opts *opts,
		      struct zl_chan **out);
int zl__connect_finish(struct zl_chan *ch, int timeout_ms);
/* Kernel TCP and Unix stream sockets carried over channels (see struct
 * zl_proto_sock):
 * -ENOENT from begin and accepted means "an ordinary connection". */
int zl__sock_listen(struct zl_ctx *ctx, int fd);
int zl__sock_unlisten(struct zl_ctx *ctx, int fd);
int zl__sock_cancel(struct zl_ctx *ctx, int fd);
int zl__sock_begin(struct zl_ctx *ctx, int fd, int family, const void *addr, uint16_t port,
		   const struct zl_chan_opts *opts, struct zl_chan **out);
/* The same for a Unix stream socket going to the socket file (dev, ino) or,
 * namelen > 0, to the abstract name (without its leading NUL). */
int zl__sock_begin_unix(struct zl_ctx *ctx, int fd, uint64_t dev, uint64_t ino, const void *name,
			size_t namelen, const struct zl_chan_opts *opts, struct zl_chan **out);
int zl__sock_accepted(struct zl_ctx *ctx, int fd, const struct zl_chan_opts *opts,
		      struct zl_chan **out);
/* Validation of a peer half header (also used by the fuzz harness). */
struct zl_half_geom {
	uint32_t slot_count, ret_count, slots_off, ret_off, flags;
	uint64_t total;
};
int zl__half_check(const struct zl_abi_half *h, uint64_t region_size, struct zl_half_geom *g);

/* ---- context and broker client (ctx.c) ---- */

struct zl_ctx {
	pthread_mutex_t lock;
	/* atomic: one for the application (dropped by zl_ctx_close()) and one
	 * per channel, pool, listener and region made from the context, so
	 * that it outlives the last of them */
	uint32_t refs;
	int bfd;
	char path[108];
	char name[ZL_NAME_MAX];
	uint32_t domain;
	uint32_t seq;
	uint32_t region_seq; /* atomic */
	unsigned flags;
	struct zl_region *imports; /* under lock */
	bool pgas;                 /* reserved the pseudo-global range */
	uint64_t pgas_next;        /* next free offset in our own window */
};

/* Context references (see struct zl_ctx); both accept NULL. */
void zl__ctx_get(struct zl_ctx *ctx);
void zl__ctx_put(struct zl_ctx *ctx);

/* Pseudo-global placement (region.c). */
int zl__pgas_reserve(struct zl_ctx *ctx);
void zl__pgas_release(struct zl_ctx *ctx);

struct zl_listener {
	struct zl_ctx *ctx;
	int fd;
	char service[ZL_NAME_MAX];
};

/* Send one request on the main broker connection and read one reply.
 * Reconnects once if the broker went away. */
int zl__broker_call(struct zl_ctx *ctx, uint8_t type, const void *body, size_t blen, const int *fds,
		    int nfds, void *reply, size_t rcap, int *rfds, int *nrfds);
/* Fire-and-forget notice to the broker (channel up/down, regions). */
void zl__broker_notify(struct zl_ctx *ctx, uint8_t type, const void *body, size_t blen,
		       const int *fds, int nfds);
int zl__broker_dial(const char *path, bool spawn, int *out);

/* ---- messages and descriptors (proto.c) ---- */

/* Send one datagram: header + body, with fds. Retries EINTR. */
int zl__msg_send(int fd, uint8_t type, uint32_t seq, const void *body, size_t blen, const int *fds,
		 int nfds);
/* Receive one datagram into buf (ZL_PROTO_MAX bytes); received fds go to
 * fds[0..*nfds) (capacity given in *nfds). Non-blocking when dontwait.
 * Returns the datagram length, 0 on EOF, or -errno. Closes surplus fds. */
ssize_t zl__msg_recv(int fd, void *buf, size_t cap, int *fds, int *nfds, bool dontwait);
/* Check a received datagram: header sane, length matching its type, strings
 * terminated, fd count as announced. Returns the type or -EPROTO. */
int zl__proto_check(const void *buf, size_t len, int nfds);
/* Expected body size of a message type, or -1 if unknown. */
int zl__proto_body_size(uint8_t type);
bool zl__name_ok(const char *s, size_t max);
void zl__close_fds(int *fds, int n);

/* ---- misc (util.c) ---- */
uint64_t zl__now_ns(void);
/* Descriptors the library makes for itself (eventfds, epoll sets, memfds,
 * control sockets, those received) go at or above zl__fd_floor when it is
 * set (the preload shim does), out of the way of a program that sizes its
 * tables by the numbers it expects (select(2), fd-indexed arrays). */
extern int zl__fd_floor;
int zl__fd_high(int fd);     /* moves fd up, closing the original */
int zl__fd_dup_high(int fd); /* a close-on-exec duplicate, high if it can be */
/* This process is registered for global expedited membarrier: a sleeper's
 * membarrier() reaches its threads. Set by zl__mb_init(), kept up to date
 * across fork. */
extern bool zl__mb_ready;
void zl__mb_init(void);
/* membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED); on failure a local fence and
 * the negative errno. */
int zl__mb_sleep_fence(void);
int zl__set_cloexec_nonblock(int fd, bool nonblock);

#endif
