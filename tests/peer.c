/* SPDX-License-Identifier: MIT */
/*
 * The peer program the multi-process tests exec. One role per invocation:
 *
 *   echo SVC [isolated]     connect to SVC, send every message back, until EOF
 *   listen-echo SVC         offer SVC, accept one channel, echo it, until EOF
 *   forward IN OUT          offer IN, connect to OUT, forward IN -> OUT (zero-copy)
 *   blast SVC               connect, send (inline and zero-copy) until an error
 *   drain SVC               connect, receive until an error or EOF
 *   hostile SVC KIND        connect, then break the protocol in its own half:
 *                           badkind jump badlen badregion badreturn badinline badpad
 */
#include <poll.h>

#include "../src/lib/barrier.h"
#include "../src/lib/internal.h"
#include "zltest.h"

static struct zl_ctx *ctx;

static struct zl_chan *dial(const char *svc, enum zl_mode mode)
{
	struct zl_chan_opts o = {.mode = mode};
	struct zl_chan *ch;
	int err;
	for (int i = 0; i < 500; i++) {
		err = zl_connect(ctx, svc, &o, &ch);
		if (err != -ECONNREFUSED)
			break;
		usleep(10000);
	}
	if (err) {
		fprintf(stderr, "peer: connect %s: %s\n", svc, zl_strerror(err));
		exit(3);
	}
	return ch;
}

static int echo(struct zl_chan *ch)
{
	static char buf[4 << 20];
	for (;;) {
		int n = zl_chan_recv(ch, buf, sizeof(buf), 0);
		if (n == 0)
			break;
		if (n < 0) {
			fprintf(stderr, "peer: recv: %s\n", zl_strerror(n));
			return 4;
		}
		int r = zl_chan_send(ch, buf, (size_t)n, 0);
		if (r != n) {
			fprintf(stderr, "peer: send: %s\n", zl_strerror(r));
			return 4;
		}
	}
	zl_chan_close(ch);
	return 0;
}

static int forward(const char *in_svc, const char *out_svc)
{
	struct zl_listener *lis;
	int err = zl_listen(ctx, in_svc, NULL, &lis);
	if (err) {
		fprintf(stderr, "peer: listen %s: %s\n", in_svc, zl_strerror(err));
		return 3;
	}
	struct zl_chan *out = dial(out_svc, ZL_MODE_SHARED), *in;
	err = zl_accept(lis, NULL, &in, 10000);
	if (err) {
		fprintf(stderr, "peer: accept: %s\n", zl_strerror(err));
		return 3;
	}
	bool eof = false;
	for (;;) {
		struct zl_msg m[16];
		int n = eof ? 0 : zl_chan_recv_burst(in, m, 16, ZL_DONTWAIT);
		if (n == 0 && !eof) {
			eof = true;
			zl_chan_shutdown(out);
		}
		if (n < 0 && n != -EAGAIN) {
			fprintf(stderr, "peer: forward recv: %s\n", zl_strerror(n));
			return 4;
		}
		for (int i = 0; i < n; i++) {
			int r = zl_chan_forward(out, &m[i], 0);
			if (r < 0) {
				fprintf(stderr, "peer: forward: %s\n", zl_strerror(r));
				return 4;
			}
		}
		/* move returns home: out's peer gives them back to us, we to in's */
		int r = zl_chan_poll(out);
		if (r < 0)
			return 4;
		struct zl_chan_info ci;
		zl_chan_info(out, &ci);
		if (eof && ci.lent == 0)
			break;
		if (n > 0 || r > 0)
			continue;
		if (zl_chan_arm(in) || zl_chan_arm(out))
			continue;
		struct pollfd p[2] = {{zl_chan_fd(in), POLLIN, 0}, {zl_chan_fd(out), POLLIN, 0}};
		poll(p, 2, 100);
	}
	zl_chan_close(out);
	zl_chan_close(in);
	zl_listener_close(lis);
	return 0;
}

static int blast(struct zl_chan *ch)
{
	struct zl_pool *pool;
	if (zl_pool_create(ctx, NULL, &pool))
		return 3;
	char buf[3000];
	for (uint64_t i = 0;; i++) {
		int r;
		if (i % 2) {
			struct zl_buf b;
			r = zl_buf_alloc(pool, 1000, &b);
			if (r == -ENOBUFS) {
				r = zl_chan_poll(ch);
				if (r < 0)
					return 0;
				continue;
			}
			fill(b.data, 1000, i);
			r = zl_chan_send_buf(ch, &b, 1000, 0);
		} else {
			size_t len = 1 + i % sizeof(buf);
			fill(buf, len, i);
			r = zl_chan_send(ch, buf, len, 0);
		}
		if (r < 0)
			return 0;
	}
}

static int drain(struct zl_chan *ch)
{
	for (;;) {
		struct zl_msg m[8];
		int n = zl_chan_recv_burst(ch, m, 8, 0);
		if (n <= 0)
			return 0;
		for (int i = 0; i < n; i++)
			zl_msg_release(&m[i]);
	}
}

/* Receive and keep every view: the sender's loans stay out until we die. */
static int hold(struct zl_chan *ch)
{
	static struct zl_msg m[4096];
	for (unsigned n = 0; n < sizeof(m) / sizeof(m[0]); n++)
		if (zl_chan_recv_msg(ch, &m[n], 0) <= 0)
			return 0;
	pause();
	return 0;
}

/* Write garbage in our own half, as a buggy or malicious peer would. */
static int hostile(struct zl_chan *ch, const char *kind)
{
	/* Wait for the buffer the test lends us (kept, never returned): the
	 * test's handshake is over by then, so the lie below is found by the
	 * channel in use, not by zl_accept()'s checks of a new peer. */
	struct zl_msg loan;
	if (zl_chan_recv_msg(ch, &loan, 0) != 1)
		return 3;
	struct zl_abi_half *h = ch->me;
	struct zl_abi_slot *s = &ch->tx_slots[ch->tx_prod & (ch->tx_size - 1)];
	memset(s, 0, sizeof(*s));
	s->nslots = 1;
	s->len = 8;
	s->kind = ZL_SLOT_INLINE;
	uint32_t adv = 1;
	if (!strcmp(kind, "badkind")) {
		s->kind = 9;
	} else if (!strcmp(kind, "jump")) {
		adv = 100000; /* producer index far past the ring */
	} else if (!strcmp(kind, "badlen") || !strcmp(kind, "badregion")) {
		/* a real region first, then a descriptor that lies about it */
		struct zl_pool *pool;
		struct zl_buf b;
		if (zl_pool_create(ctx, NULL, &pool) || zl_buf_alloc(pool, 100, &b) ||
		    zl_chan_send_buf(ch, &b, 100, 0) != 100)
			return 3;
		s = &ch->tx_slots[ch->tx_prod & (ch->tx_size - 1)];
		memset(s, 0, sizeof(*s));
		s->kind = ZL_SLOT_DESC;
		s->nslots = 1;
		s->len = 4096;
		s->u.desc.region = pool->reg->id;
		s->u.desc.offset = pool->reg->size - 100; /* runs past the end */
		if (!strcmp(kind, "badregion"))
			s->u.desc.region = 0xdeadbeefull; /* a region it never handed over */
	} else if (!strcmp(kind, "badreturn")) {
		/* give back a buffer we were never lent */
		ch->my_ret[ch->ret_prod & (ch->my_ret_size - 1)] = 12345;
		zl_store_release(&h->ret_prod, ch->ret_prod + 1);
		adv = 0;
	} else if (!strcmp(kind, "badinline")) {
		s->len = 500; /* would need 9 slots, claims 1 */
	} else if (!strcmp(kind, "partial")) {
		/* the first entry of a two-entry message, and never the second */
		s->flags = ZL_SLOT_F_MORE;
	} else if (!strcmp(kind, "badpad")) {
		s->kind = ZL_SLOT_PAD;
		s->nslots = 3; /* a pad must run to the end of the ring */
	} else {
		return 2;
	}
	if (adv)
		zl_store_release(&h->tx_prod, ch->tx_prod + adv);
	uint64_t one = 1;
	if (write(ch->peer_efd, &one, 8) != 8)
		return 3;
	pause(); /* until killed */
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: zl-test-peer ROLE SERVICE [ARGS]\n");
		return 2;
	}
	ctx = test_ctx("zl-test-peer");
	const char *role = argv[1], *svc = argv[2];
	if (!strcmp(role, "echo"))
		return echo(dial(svc, argc > 3 && !strcmp(argv[3], "isolated") ? ZL_MODE_ISOLATED
									       : ZL_MODE_SHARED));
	if (!strcmp(role, "listen-echo")) {
		struct zl_listener *lis;
		struct zl_chan *ch;
		if (zl_listen(ctx, svc, NULL, &lis) || zl_accept(lis, NULL, &ch, 10000))
			return 3;
		return echo(ch);
	}
	if (!strcmp(role, "forward") && argc > 3)
		return forward(svc, argv[3]);
	if (!strcmp(role, "blast"))
		return blast(dial(svc, ZL_MODE_SHARED));
	if (!strcmp(role, "drain"))
		return drain(dial(svc, ZL_MODE_SHARED));
	if (!strcmp(role, "hold"))
		return hold(dial(svc, ZL_MODE_SHARED));
	if (!strcmp(role, "pgas-walk")) {
		/* receive a linked list built with absolute pointers in the
		 * sender's buffer and walk it as it is; answer with the sum */
		zl_ctx_close(ctx);
		struct zl_ctx_opts o = {.name = "pgas-walk", .pseudo_global = 1};
		if (zl_ctx_open(&ctx, &o))
			return 3;
		struct zl_chan *ch = dial(svc, ZL_MODE_SHARED);
		struct zl_msg m;
		if (zl_chan_recv_msg(ch, &m, 0) != 1)
			return 4;
		struct node {
			const struct node *next;
			uint64_t value;
		};
		const struct node *n = *(const struct node *const *)m.seg[0].base;
		if ((const void *)n < m.seg[0].base ||
		    (const char *)n >= (const char *)m.seg[0].base + m.len)
			return 5; /* not at the sender's address */
		uint64_t sum = 0;
		for (; n; n = n->next)
			sum += n->value;
		zl_msg_release(&m);
		zl_chan_send(ch, &sum, sizeof(sum), 0);
		char c;
		zl_chan_recv(ch, &c, 1, 0); /* wait for the close */
		zl_chan_close(ch);
		return 0;
	}
	if (!strcmp(role, "hostile") && argc > 3)
		return hostile(dial(svc, ZL_MODE_SHARED), argv[3]);
	fprintf(stderr, "peer: unknown role %s\n", role);
	return 2;
}
