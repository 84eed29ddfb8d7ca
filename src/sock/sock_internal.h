/* SPDX-License-Identifier: MIT */
/* Socket state shared by the socket API (sock.c, sock_posix.c) and the
 * preload shim. Internal. */
#ifndef ZEROLINK_SOCK_INTERNAL_H
#define ZEROLINK_SOCK_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include <zerolink/chan.h>
#include <zerolink/sock.h>

/* A received message held for reading: in place, or copied out (heap). */
struct zl__rxm {
	struct zl_msg m;
	char *heap;
	uint32_t len;
};

struct zl_sock {
	struct zl_chan *ch;        /* connected socket */
	struct zl_listener *lis;   /* listening socket */
	struct zl_sock_opts lopts; /* a listener's options for what it accepts */
	int type;                  /* SOCK_STREAM or SOCK_SEQPACKET */
	uint32_t chunk;            /* largest message written */
	bool nonblock;
	bool pending; /* connected, the listener has not accepted yet */
	bool shut_rd, shut_wr;
	bool eof; /* the peer sends no more and everything was read */
	bool linger_on;
	int linger_s;
	int err; /* sticky: the connection failed */
	/* received messages, oldest first; off: bytes of q[0] already read */
	struct zl__rxm *q;
	unsigned qn, qcap;
	uint32_t off;
};

/* A socket around a channel (the preload shim's upgraded connections). */
int zl__sock_wrap(struct zl_chan *ch, int type, unsigned flags, bool pending, struct zl_sock **out);

#endif
