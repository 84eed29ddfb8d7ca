/* SPDX-License-Identifier: MIT */
/* Pools: size classes, exhaustion (-ENOBUFS, never a hang), -EMSGSIZE,
 * seals of the region, lock-free returns from other threads, large buffers
 * page-aligned with their starts spread over cache sets. */
#include <fcntl.h>
#include <pthread.h>

#include "../zltest.h"

struct ret_arg {
	struct zl_buf *bufs;
	int from, to;
};

static void *returner(void *p)
{
	struct ret_arg *a = p;
	for (int i = a->from; i < a->to; i++)
		zl_buf_free(&a->bufs[i]);
	return NULL;
}

int main(void)
{
	struct zl_ctx *ctx = test_ctx("test_pool");
	struct zl_pool_opts po = {.nclasses = 2, .classes = {{100, 8}, {5000, 4}}};
	struct zl_pool *pool;
	CHECK_EQ(zl_pool_create(ctx, &po, &pool), 0);
	struct zl_pool_stats st;
	zl_pool_stats(pool, &st);
	CHECK_EQ(st.nclasses, 2);
	CHECK_EQ(st.cls[0].size, 128); /* rounded to 64 */
	CHECK_EQ(st.cls[1].size, 5056);

	struct zl_buf b[16];
	int n = 0;
	/* small requests fill the small class, then spill into the larger one */
	for (; n < 12; n++)
		CHECK_EQ(zl_buf_alloc(pool, 50, &b[n]), 0);
	CHECK_EQ(zl_buf_alloc(pool, 50, &b[n]), -ENOBUFS);
	CHECK_EQ(zl_buf_alloc(pool, 6000, &b[n]), -EMSGSIZE);
	for (int i = 0; i < n; i++) {
		CHECK(b[i].cap >= 50);
		memset(b[i].data, i, b[i].cap); /* writable, no overlap checked below */
	}
	for (int i = 0; i < n; i++)
		for (uint32_t k = 0; k < b[i].cap; k++)
			CHECK_EQ(((uint8_t *)b[i].data)[k], i);
	zl_pool_stats(pool, &st);
	CHECK_EQ(st.cls[0].free, 0);
	CHECK_EQ(st.cls[1].free, 0);

	/* return from four threads at once, then all of it is allocatable */
	pthread_t t[4];
	struct ret_arg ra[4];
	for (int i = 0; i < 4; i++) {
		ra[i] = (struct ret_arg){b, i * 3, i * 3 + 3};
		pthread_create(&t[i], NULL, returner, &ra[i]);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	zl_pool_stats(pool, &st);
	CHECK_EQ(st.cls[0].free, 8);
	CHECK_EQ(st.cls[1].free, 4);
	for (int i = 0; i < 12; i++)
		CHECK_EQ(zl_buf_alloc(pool, 50, &b[i]), 0);
	for (int i = 0; i < 12; i++)
		zl_buf_free(&b[i]);

	/* bad classes */
	struct zl_pool *bad;
	struct zl_pool_opts z = {.nclasses = 1, .classes = {{0, 4}}};
	CHECK_EQ(zl_pool_create(ctx, &z, &bad), -EINVAL);
	z.classes[0] = (struct zl_pool_class){64, 0};
	CHECK_EQ(zl_pool_create(ctx, &z, &bad), -EINVAL);
	z.nclasses = 9;
	CHECK_EQ(zl_pool_create(ctx, &z, &bad), -EINVAL);

	/* the default pool and a huge-page pool (falls back when none reserved) */
	struct zl_pool *def, *huge;
	CHECK_EQ(zl_pool_create(ctx, NULL, &def), 0);
	CHECK_EQ(zl_buf_alloc(def, 1 << 20, &b[0]), 0);
	CHECK_EQ(b[0].cap, 1 << 20);
	zl_buf_free(&b[0]);
	struct zl_pool_opts ho = {.flags = ZL_POOL_HUGETLB, .nclasses = 1, .classes = {{4096, 16}}};
	CHECK_EQ(zl_pool_create(ctx, &ho, &huge), 0);
	CHECK_EQ(zl_buf_alloc(huge, 4096, &b[0]), 0);
	zl_buf_free(&b[0]);
	zl_pool_destroy(huge);

	/* 1 MiB buffers: page-aligned, apart by more than their size, and
	 * their starts fall in 16 different 4 KiB colours of a 64 KiB span
	 * (the sets of a cache indexed by address bits 6 to 15) */
	struct zl_buf big[16];
	CHECK_EQ(zl_buf_alloc_burst(def, 1 << 20, big, 16), 16);
	unsigned colours = 0;
	for (int i = 0; i < 16; i++) {
		uintptr_t a = (uintptr_t)big[i].data;
		CHECK_EQ(a % 4096, 0);
		for (int j = 0; j < i; j++) {
			uintptr_t o = (uintptr_t)big[j].data;
			CHECK(a >= o + (1u << 20) || o >= a + (1u << 20));
		}
		colours |= 1u << ((a >> 12) & 15);
	}
	CHECK_EQ(colours, 0xffff);
	for (int i = 0; i < 16; i++)
		zl_buf_free(&big[i]);
	zl_pool_destroy(def);
	zl_pool_destroy(pool);
	CHECK_EQ(count_maps(0, "zerolink:pool"), 0);
	zl_ctx_close(ctx);
	return 0;
}
