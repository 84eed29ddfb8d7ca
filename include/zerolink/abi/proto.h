/* SPDX-License-Identifier: MIT */
/*
 * zerolink control protocols: domain <-> broker, and peer <-> peer over a
 * channel's control socket. Layout only.
 *
 * Both run over SOCK_SEQPACKET Unix sockets, so one datagram is one message
 * and file descriptors travel with it (SCM_RIGHTS). Every message starts with
 * struct zl_proto_hdr; hdr.len is the exact datagram length, and the body
 * length must match what hdr.type says (fixed bodies) or fixed part plus a
 * whole number of items (variable bodies). Strings are fixed-size arrays that
 * must contain a NUL. Anything else is rejected by the parser (proto.c).
 */
#ifndef ZEROLINK_ABI_PROTO_H
#define ZEROLINK_ABI_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define ZL_PROTO_MAGIC 0x4c5au /* "ZL" */
#define ZL_PROTO_VERSION 2u
#define ZL_PROTO_MAX 4096u /* largest datagram either side accepts */
#define ZL_NAME_MAX 64u    /* service and domain names, including the NUL */
#define ZL_ACL_MAX 8u      /* uids and gids per service */

struct zl_proto_hdr {
	uint16_t magic;
	uint8_t version;
	uint8_t type;
	uint16_t len;  /* whole datagram, header included */
	uint16_t nfds; /* descriptors that travel with this message */
	uint32_t seq;  /* request number echoed by the reply */
	uint32_t rsvd;
};
_Static_assert(sizeof(struct zl_proto_hdr) == 16, "proto header");

enum zl_proto_type {
	/* domain -> broker */
	ZL_MSG_HELLO = 1,     /* body hello; reply HELLO_OK or ERR */
	ZL_MSG_LISTEN = 2,    /* body listen; reply OK or ERR; conn becomes listener */
	ZL_MSG_CONNECT = 3,   /* body connect; reply CONNECT_OK (+1 fd) or ERR */
	ZL_MSG_CHAN_UP = 4,   /* body chan; +1 fd (own half, for counters) */
	ZL_MSG_CHAN_DOWN = 5, /* body chan */
	ZL_MSG_REGION_UP = 6, /* body region */
	ZL_MSG_REGION_DOWN = 7,
	ZL_MSG_LS = 8,        /* no body; replies LS_* items then LS_END */
	ZL_MSG_WATCH = 9,     /* no body; conn receives EVENT messages from now on */
	ZL_MSG_SHUTDOWN = 10, /* no body; asks the broker to exit (owner or root) */
	/* kernel sockets carried over channels (the preload shim); each
	 * passes the socket itself, which the broker checks */
	ZL_MSG_SOCK_LISTEN = 11,   /* body sock, +1 fd listening; reply OK or ERR */
	ZL_MSG_SOCK_UNLISTEN = 12, /* body sock, +1 fd listening; reply OK */
	ZL_MSG_SOCK_CONNECT = 13,  /* body sock, +1 fd bound, not connected; reply SOCK_OK or ERR */
	ZL_MSG_SOCK_ACCEPT = 14,   /* body sock, +1 fd accepted; reply SOCK_OK or ERR */
	ZL_MSG_SOCK_CANCEL = 15,   /* body sock, +1 fd: the connect failed; reply OK */

	/* broker -> domain */
	ZL_MSG_OK = 32,
	ZL_MSG_ERR = 33,        /* body err */
	ZL_MSG_HELLO_OK = 34,   /* body hello_ok */
	ZL_MSG_CONNECT_OK = 35, /* body incoming, +1 fd (control socket) */
	ZL_MSG_INCOMING = 36,   /* to a listener: body incoming, +1 fd */
	ZL_MSG_LS_DOMAIN = 37,
	ZL_MSG_LS_SERVICE = 38,
	ZL_MSG_LS_CHAN = 39,
	ZL_MSG_LS_REGION = 40,
	ZL_MSG_LS_END = 41,
	ZL_MSG_EVENT = 42,
	ZL_MSG_SOCK_OK = 43, /* body incoming, +1 fd (control socket of the channel) */

	/* peer <-> peer on a channel's control socket */
	ZL_MSG_PEER_HELLO = 64,  /* body peer_hello, +2 fds: half region, eventfd */
	ZL_MSG_PEER_REGION = 65, /* body peer_region, +1 fd: a pool region */
	ZL_MSG_PEER_REFUSE = 66, /* body err: the listener refused the channel */
};

/* Channel modes. */
#define ZL_PROTO_MODE_SHARED 0u   /* zero-copy: peers map pool regions read-only */
#define ZL_PROTO_MODE_ISOLATED 1u /* copy-only: peers map nothing but the lanes */

struct zl_proto_hello {
	uint32_t resume_domain; /* 0, or the id this process held before a broker restart */
	uint32_t flags;
	char name[ZL_NAME_MAX];
};

struct zl_proto_hello_ok {
	uint32_t domain;
	uint32_t broker_version;
	uint32_t broker_pid;
	uint32_t rsvd;
};

#define ZL_LISTEN_F_ANY 0x1u /* anyone who reaches the broker may connect */

struct zl_proto_listen {
	uint32_t domain; /* the caller's domain id (checked against its pid) */
	uint32_t mode;
	uint32_t flags;
	uint32_t nuid, ngid;
	uint32_t uid[ZL_ACL_MAX];
	uint32_t gid[ZL_ACL_MAX];
	char service[ZL_NAME_MAX];
};

struct zl_proto_connect {
	uint32_t domain;
	uint32_t mode; /* mode the client asks for; the service's mode wins if stricter */
	char service[ZL_NAME_MAX];
};

struct zl_proto_incoming {
	uint64_t chan; /* broker-wide channel id */
	uint32_t peer_domain;
	uint32_t peer_pid, peer_uid, peer_gid;
	uint32_t mode; /* the mode in force */
	uint32_t rsvd;
	char service[ZL_NAME_MAX];
};

struct zl_proto_err {
	int32_t err; /* positive errno */
	uint32_t rsvd;
	char text[120];
};

struct zl_proto_chan {
	uint64_t chan;
	uint32_t domain;
	uint32_t side; /* 0 client, 1 server */
};

struct zl_proto_region {
	uint64_t id;
	uint64_t size;
	uint32_t domain;
	uint32_t flags;
};

struct zl_proto_ls_domain {
	uint32_t domain, pid, uid, gid;
	uint64_t since_ns; /* CLOCK_REALTIME when it said hello */
	char name[ZL_NAME_MAX];
};

struct zl_proto_ls_service {
	uint32_t domain, mode, flags, rsvd;
	char service[ZL_NAME_MAX];
};

struct zl_proto_ls_chan {
	uint64_t chan;
	uint32_t client, server, mode, state; /* state: bit0 client up, bit1 server up */
	uint32_t slots, rsvd;
	struct {
		uint64_t tx_msgs, tx_bytes, rx_msgs, rx_bytes, kicks, spins, sleeps, drops;
	} cnt[2]; /* [0] client side, [1] server side */
	char service[ZL_NAME_MAX];
};

/*
 * A kernel socket to be carried over a channel. The socket that travels with
 * the message is the proof: the broker reads its family, type, state,
 * addresses and network namespace from it, never from the body. The body
 * only says where a connecting socket is going (SOCK_CONNECT).
 *
 * Matching: SOCK_CONNECT comes before the client's connect(2), from a socket
 * not connected yet; the broker answers with a channel only if a socket
 * under zerolink (still) listens on the destination in the same network
 * namespace, and keeps the channel's other end under the client socket's
 * inode. SOCK_ACCEPT passes the accepted socket; the broker finds the
 * client socket of that connection through inet_diag (its 4-tuple
 * reversed) and so the waiting end: found, the server gets it; not found,
 * the connection is an ordinary one. In a network namespace other than the
 * broker's, inet_diag does not reach: SOCK_CONNECT then fails with EXDEV
 * unless the socket is bound, and the key is (namespace, client port,
 * server port). A registration is made before the kernel connection exists,
 * so an accept never races with it.
 *
 * Unix stream sockets (in the broker's network namespace): a listener is
 * known by its socket file (device, inode) or its abstract name, read from
 * the kernel (sock_diag); SOCK_CONNECT names the destination the same way
 * and the channel waits under the client socket's inode, which the accepted
 * socket names as its peer (sock_diag again).
 */
struct zl_proto_sock {
	uint32_t domain;
	uint32_t family;  /* SOCK_CONNECT: AF_INET, AF_INET6 or AF_UNIX */
	uint16_t port;    /* SOCK_CONNECT: destination port, host order */
	uint16_t namelen; /* SOCK_CONNECT, AF_UNIX: abstract name's length, 0 for a path */
	uint32_t flags;
	/* SOCK_CONNECT: destination address (IPv4: first 4 bytes); AF_UNIX
	 * bound to a path: the socket file's st_dev and st_ino (8 bytes each,
	 * host order), as stat(2) gives them to the client */
	uint8_t addr[16];
	uint8_t name[108]; /* SOCK_CONNECT, AF_UNIX: abstract name (no leading NUL) */
};

#define ZL_EVENT_DOMAIN_UP 1u
#define ZL_EVENT_DOMAIN_DOWN 2u
#define ZL_EVENT_SERVICE_UP 3u
#define ZL_EVENT_SERVICE_DOWN 4u
#define ZL_EVENT_CHAN_UP 5u
#define ZL_EVENT_CHAN_DOWN 6u

struct zl_proto_event {
	uint32_t kind;
	uint32_t domain;
	uint64_t chan;
	char name[ZL_NAME_MAX];
};

/* Peer handshake: each side sends one PEER_HELLO describing its half. */
struct zl_proto_peer_hello {
	uint64_t chan;
	uint64_t half_size; /* bytes of the half region that travels with it */
	uint32_t domain;
	uint32_t mode;
	uint32_t slot_count; /* of the sender's own lane */
	uint32_t ret_count;  /* lend capacity the sender accepts from its peer */
	uint32_t flags;
	uint32_t rsvd;
};

#define ZL_REGION_F_FORWARD 0x1u /* the owner lets receivers hand it on */

struct zl_proto_peer_region {
	uint64_t id;
	uint64_t size;
	uint32_t owner; /* owner domain */
	uint32_t flags;
	uint64_t gaddr; /* pseudo-global address, or 0 */
};

#endif
