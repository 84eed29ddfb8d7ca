/* SPDX-License-Identifier: MIT */
/*
 * Pseudo-global address space: a pool buffer holding a linked list built
 * with absolute pointers is readable as it is by another process, because
 * both map the pool at the same virtual address. Also: the reservation is
 * exclusive within a process, and a domain without it still reads the bytes.
 */
#include "../zltest.h"

struct node {
	const struct node *next;
	uint64_t value;
};

int main(void)
{
	struct zl_ctx *ctx;
	struct zl_ctx_opts o = {.name = "test_pgas", .pseudo_global = 1};
	CHECK_EQ(zl_ctx_open(&ctx, &o), 0);
	struct zl_ctx *second;
	CHECK_EQ(zl_ctx_open(&second, &o), -EADDRINUSE); /* one per process */

	struct zl_pool_opts po = {.nclasses = 1, .classes = {{65536, 8}}};
	struct zl_pool *pool;
	CHECK_EQ(zl_pool_create(ctx, &po, &pool), 0);
	struct zl_buf b;
	CHECK_EQ(zl_buf_alloc(pool, 65536, &b), 0);
	uintptr_t win = ZL_PGAS_BASE + (zl_ctx_domain(ctx).id % 256) * ZL_PGAS_WINDOW;
	CHECK((uintptr_t)b.data >= win && (uintptr_t)b.data < win + ZL_PGAS_WINDOW);

	/* a list of 1000 nodes in scrambled order, linked by raw pointers */
	struct node **head = b.data;
	struct node *nodes = (struct node *)((char *)b.data + 64);
	uint64_t expect = 0;
	struct node *prev = NULL;
	for (uint64_t i = 0; i < 1000; i++) {
		struct node *n = &nodes[(i * 617) % 1000];
		n->value = i * i + 1;
		n->next = prev;
		prev = n;
		expect += n->value;
	}
	*head = prev;

	const char *svc = test_service("pgas");
	struct zl_listener *lis;
	CHECK_EQ(zl_listen(ctx, svc, NULL, &lis), 0);
	pid_t pid = spawn_peer((char *[]){"peer", "pgas-walk", (char *)svc, NULL});
	struct zl_chan *ch;
	CHECK_EQ(zl_accept(lis, NULL, &ch, 10000), 0);
	CHECK_EQ(zl_chan_send_buf(ch, &b, 64 + 1000 * sizeof(struct node), 0),
		 64 + 1000 * sizeof(struct node));
	uint64_t sum = 0;
	CHECK_EQ(zl_chan_recv(ch, &sum, sizeof(sum), 0), sizeof(sum));
	CHECK_EQ(sum, expect);
	zl_chan_close(ch);
	CHECK_EQ(wait_status(pid), 0);
	zl_listener_close(lis);
	zl_pool_destroy(pool);
	zl_ctx_close(ctx);
	/* the range is free again */
	CHECK_EQ(zl_ctx_open(&ctx, &o), 0);
	zl_ctx_close(ctx);
	return 0;
}
