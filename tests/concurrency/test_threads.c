/* SPDX-License-Identifier: MIT */
/*
 * Two threads stream over an in-process channel pair in both directions,
 * with inline, fragmented and zero-copy messages, blocking and spinning.
 * Built for ThreadSanitizer: every shared access must be ordered.
 */
#include <pthread.h>

#include "../zltest.h"

#define N 20000

struct side {
	struct zl_chan *ch;
	struct zl_pool *pool;
	int id;
	int fail;
};

static void *run(void *p)
{
	struct side *s = p;
	static char big[3][70000];
	char *buf = big[s->id];
	for (uint64_t i = 0; i < N; i++) {
		size_t len = 1 + (i * 37) % (i % 100 == 0 ? 69999 : 500);
		if (s->id == 0) {
			if (i % 3 == 0) {
				struct zl_buf b;
				int r;
				while ((r = zl_buf_alloc(s->pool, len, &b)) == -ENOBUFS)
					zl_chan_poll(s->ch);
				if (r) {
					s->fail = 1;
					return NULL;
				}
				fill(b.data, len, i);
				if (zl_chan_send_buf(s->ch, &b, len, 0) != (int)len)
					s->fail = 1;
			} else {
				fill(buf, len, i);
				if (zl_chan_send(s->ch, buf, len, 0) != (int)len)
					s->fail = 1;
			}
		} else {
			if (i % 2) {
				struct zl_msg m;
				int r = zl_chan_recv_msg(s->ch, &m, 0);
				if (r == -EMSGSIZE) {
					/* fragmented message: take the copying path */
					r = zl_chan_recv(s->ch, buf, 70000, 0);
					if (r != (int)len || verify(buf, len, i))
						s->fail = 1;
					continue;
				}
				if (r != 1 || m.len != len) {
					s->fail = 1;
					return NULL;
				}
				char tmp[70000];
				size_t off = 0;
				for (unsigned k = 0; k < m.nsegs; k++) {
					memcpy(tmp + off, m.seg[k].base, m.seg[k].len);
					off += m.seg[k].len;
				}
				if (verify(tmp, len, i))
					s->fail = 1;
				zl_msg_release(&m);
			} else {
				int r = zl_chan_recv(s->ch, buf, 70000, 0);
				if (r != (int)len || verify(buf, len, i))
					s->fail = 1;
			}
		}
		if (s->fail)
			return NULL;
	}
	return NULL;
}

struct big {
	struct zl_chan *ch;
	int fail;
};

/* Fragmented 64 KiB messages through a 256 KiB lane, both sides sleeping
 * at once whenever they wait: every wait crosses the sleep/kick protocol. */
static void *big_send(void *p)
{
	struct big *b = p;
	static char buf[65536];
	for (uint64_t i = 0; i < 3000 && !b->fail; i++) {
		fill(buf, sizeof(buf), i);
		if (zl_chan_send(b->ch, buf, sizeof(buf), 0) != (int)sizeof(buf))
			b->fail = 1;
	}
	return NULL;
}

static void *big_recv(void *p)
{
	struct big *b = p;
	static char buf[65536];
	for (uint64_t i = 0; i < 3000 && !b->fail; i++) {
		if (zl_chan_recv(b->ch, buf, sizeof(buf), 0) != (int)sizeof(buf) ||
		    verify(buf, sizeof(buf), i))
			b->fail = 1;
	}
	return NULL;
}

int main(void)
{
	struct zl_ctx *ctx = test_ctx("test_threads");
	{
		struct zl_chan_opts o = {.slots = 4096, .flags = ZL_CHAN_NOSPIN};
		struct zl_chan *p[2];
		CHECK_EQ(zl_chan_pair(ctx, &o, p), 0);
		struct big a = {p[0], 0}, b = {p[1], 0};
		pthread_t t[2];
		pthread_create(&t[0], NULL, big_send, &a);
		pthread_create(&t[1], NULL, big_recv, &b);
		pthread_join(t[0], NULL);
		pthread_join(t[1], NULL);
		CHECK(!a.fail && !b.fail);
		zl_chan_close(p[0]);
		zl_chan_close(p[1]);
	}
	for (int mode = 0; mode < 2; mode++) {
		struct zl_chan_opts o = {.slots = 256};
		if (mode)
			o.flags = ZL_CHAN_NOSPIN;
		struct zl_chan *p[2];
		CHECK_EQ(zl_chan_pair(ctx, &o, p), 0);
		struct zl_pool *pool;
		CHECK_EQ(zl_pool_create(ctx, NULL, &pool), 0);
		struct side a = {p[0], pool, 0, 0}, b = {p[1], NULL, 1, 0};
		pthread_t t[2];
		pthread_create(&t[0], NULL, run, &a);
		pthread_create(&t[1], NULL, run, &b);
		pthread_join(t[0], NULL);
		pthread_join(t[1], NULL);
		CHECK(!a.fail && !b.fail);
		zl_chan_close(p[0]);
		zl_chan_close(p[1]);
		struct zl_pool_stats st;
		zl_pool_stats(pool, &st);
		for (unsigned c = 0; c < st.nclasses; c++)
			CHECK_EQ(st.cls[c].free, st.cls[c].count);
		zl_pool_destroy(pool);
	}
	zl_ctx_close(ctx);
	return 0;
}
