/* SPDX-License-Identifier: MIT */
/*
 * Regions: sealed memfds. The owner maps read-write, then seals the memfd
 * against shrinking, growing and any further writable mapping, so that a
 * peer given the fd can only map it read-only and can never make our
 * mapping fault. A receiver checks the seals and the size before mapping.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/memfd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "barrier.h"
#include "internal.h"

#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif

#define ZL_SEALS_REQUIRED (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE | F_SEAL_SEAL)

int zl__region_create(struct zl_ctx *ctx, uint64_t size, uint32_t flags, bool hugetlb,
		      const char *name, struct zl_region **out)
{
	char nm[64];
	snprintf(nm, sizeof(nm), "zerolink:%s", name);
	int fd = -1;
	uint64_t sz = (size + 4095) & ~(uint64_t)4095;
	if (hugetlb) {
		uint64_t hsz = (size + (2u << 20) - 1) & ~(uint64_t)((2u << 20) - 1);
		fd = zl__fd_high(memfd_create(nm, MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_HUGETLB));
		if (fd >= 0 && ftruncate(fd, (off_t)hsz) == 0) {
			sz = hsz;
		} else if (fd >= 0) {
			close(fd);
			fd = -1;
		}
	}
	if (fd < 0) {
		fd = zl__fd_high(memfd_create(nm, MFD_CLOEXEC | MFD_ALLOW_SEALING));
		if (fd < 0)
			return -errno;
		if (ftruncate(fd, (off_t)sz) < 0) {
			int e = -errno;
			close(fd);
			return e;
		}
	}
	bool lazy = (flags & ZL__REGION_LAZY) != 0;
	flags &= ~ZL__REGION_LAZY;
	void *p = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_SHARED | (lazy ? 0 : MAP_POPULATE), fd,
		       0);
	if (p == MAP_FAILED) {
		int e = -errno;
		close(fd);
		return e == -ENOMEM && hugetlb
			       ? zl__region_create(ctx, size, flags | (lazy ? ZL__REGION_LAZY : 0),
						   false, name, out)
			       : e;
	}
	/* Our writable mapping exists; from now on nobody can create another. */
	if (fcntl(fd, F_ADD_SEALS, ZL_SEALS_REQUIRED) < 0) {
		int e = -errno;
		munmap(p, sz);
		close(fd);
		return e;
	}
	struct stat st;
	fstat(fd, &st);
	struct zl_region *r = calloc(1, sizeof(*r));
	if (!r) {
		munmap(p, sz);
		close(fd);
		return -ENOMEM;
	}
	r->fd = fd;
	r->base = p;
	r->size = sz;
	r->own = true;
	r->flags = flags;
	r->refs = 1;
	r->ctx = ctx;
	zl__ctx_get(ctx);
	r->dev = st.st_dev;
	r->ino = st.st_ino;
	r->owner = ctx ? ctx->domain : 0;
	uint32_t seq = ctx ? zl_fetch_add(&ctx->region_seq, 1) + 1 : 0;
	r->id = ((uint64_t)r->owner << 32) | seq;
	*out = r;
	return 0;
}

/* Give a pseudo-global range back to the reservation (nothing else may land
 * there while the context lives). */
static void pgas_unmap(void *p, uint64_t size)
{
	mmap(p, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
}

static bool pgas_in_range(uint64_t a, uint64_t size)
{
	return a >= ZL_PGAS_BASE && size <= ZL_PGAS_SIZE && a - ZL_PGAS_BASE <= ZL_PGAS_SIZE - size;
}

/* Where a peer's region may go in our reservation: its owner's window, not
 * ours, page aligned, and not over anything we already placed. Called with
 * the lock held. */
static bool pgas_slot_ok(struct zl_ctx *ctx, uint64_t gaddr, uint64_t size, uint32_t owner)
{
	if (!ctx->pgas || !gaddr || (gaddr & 4095) || !pgas_in_range(gaddr, size))
		return false;
	uint64_t win = (gaddr - ZL_PGAS_BASE) / ZL_PGAS_WINDOW;
	if (win != owner % 256 || win == ctx->domain % 256 ||
	    (gaddr + size - 1 - ZL_PGAS_BASE) / ZL_PGAS_WINDOW != win)
		return false;
	for (struct zl_region *r = ctx->imports; r; r = r->next)
		if (r->gaddr && (uintptr_t)r->base == r->gaddr && gaddr < r->gaddr + r->size &&
		    r->gaddr < gaddr + size)
			return false;
	return true;
}

int zl__region_import(struct zl_ctx *ctx, int fd, uint64_t id, uint64_t size, uint32_t owner,
		      uint32_t flags, uint64_t gaddr, struct zl_region **out)
{
	struct stat st;
	int seals = fcntl(fd, F_GET_SEALS);
	/* A region that can still shrink could make our mapping fault (SIGBUS);
	 * one that can still be mapped writable by others breaks single-writer. */
	if (seals < 0 || (seals & (F_SEAL_SHRINK | F_SEAL_GROW)) != (F_SEAL_SHRINK | F_SEAL_GROW) ||
	    !(seals & (F_SEAL_FUTURE_WRITE | F_SEAL_WRITE)) || fstat(fd, &st) < 0 ||
	    !S_ISREG(st.st_mode) || size == 0 || (uint64_t)st.st_size != size) {
		close(fd);
		return -EPROTO;
	}
	/* One mapping per region object (same inode), shared by every channel
	 * that presented it, whatever id it was presented under. */
	pthread_mutex_lock(&ctx->lock);
	for (struct zl_region *r = ctx->imports; r; r = r->next) {
		if (r->dev == st.st_dev && r->ino == st.st_ino && r->id == id) {
			zl__region_get(r);
			pthread_mutex_unlock(&ctx->lock);
			close(fd);
			*out = r;
			return 0;
		}
	}
	/* In a pseudo-global domain, the owner's address if it is free here. */
	void *p = MAP_FAILED;
	if (pgas_slot_ok(ctx, gaddr, size, owner))
		p = mmap((void *)(uintptr_t)gaddr, size, PROT_READ, MAP_SHARED | MAP_FIXED, fd, 0);
	pthread_mutex_unlock(&ctx->lock);
	if (p == MAP_FAILED)
		p = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		int e = -errno;
		close(fd);
		return e;
	}
	struct zl_region *r = calloc(1, sizeof(*r));
	if (!r) {
		munmap(p, size);
		close(fd);
		return -ENOMEM;
	}
	r->fd = fd;
	r->base = p;
	r->size = size;
	r->id = id;
	r->owner = owner;
	r->flags = flags;
	r->gaddr = pgas_in_range(gaddr, size) ? gaddr : 0;
	r->refs = 1;
	r->ctx = ctx;
	zl__ctx_get(ctx);
	r->dev = st.st_dev;
	r->ino = st.st_ino;
	pthread_mutex_lock(&ctx->lock);
	r->next = ctx->imports;
	ctx->imports = r;
	pthread_mutex_unlock(&ctx->lock);
	*out = r;
	return 0;
}

void zl__region_get(struct zl_region *r)
{
	__atomic_fetch_add(&r->refs, 1, __ATOMIC_RELAXED);
}

/* The region stays mapped; its memfd is not needed any more (nothing will
 * pass it on). */
void zl__region_drop_fd(struct zl_region *r)
{
	if (r->fd >= 0) {
		close(r->fd);
		r->fd = -1;
	}
}

void zl__region_put(struct zl_region *r)
{
	if (!r)
		return;
	if (!r->own && r->ctx) {
		/* Imported regions are found by zl__region_import() under the lock,
		 * so the last reference is dropped under it too. */
		pthread_mutex_lock(&r->ctx->lock);
		if (__atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) != 0) {
			pthread_mutex_unlock(&r->ctx->lock);
			return;
		}
		for (struct zl_region **pp = &r->ctx->imports; *pp; pp = &(*pp)->next) {
			if (*pp == r) {
				*pp = r->next;
				break;
			}
		}
		pthread_mutex_unlock(&r->ctx->lock);
	} else if (__atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) != 0) {
		return;
	}
	if (r->gaddr && (uintptr_t)r->base == r->gaddr)
		pgas_unmap(r->base, r->size);
	else
		munmap(r->base, r->size);
	if (r->fd >= 0)
		close(r->fd);
	zl__ctx_put(r->ctx);
	free(r);
}

int zl__region_create_global(struct zl_ctx *ctx, uint64_t size, uint32_t flags, bool hugetlb,
			     const char *name, struct zl_region **out)
{
	if (!ctx || !ctx->pgas)
		return zl__region_create(ctx, size, flags, hugetlb, name, out);
	struct zl_region *r;
	int err = zl__region_create(ctx, size, flags, hugetlb, name, &r);
	if (err)
		return err;
	pthread_mutex_lock(&ctx->lock);
	uint64_t span = (r->size + (2u << 20) - 1) & ~(uint64_t)((2u << 20) - 1);
	if (ctx->pgas_next + span > ZL_PGAS_WINDOW) {
		pthread_mutex_unlock(&ctx->lock);
		zl__region_put(r);
		return -ENOSPC; /* this domain's 4 GiB window is used up */
	}
	uint64_t at =
		ZL_PGAS_BASE + (uint64_t)(ctx->domain % 256) * ZL_PGAS_WINDOW + ctx->pgas_next;
	/* move our mapping over the reservation, at the address peers will use */
	void *p = mremap(r->base, r->size, r->size, MREMAP_MAYMOVE | MREMAP_FIXED,
			 (void *)(uintptr_t)at);
	if (p == MAP_FAILED) {
		err = -errno;
		pthread_mutex_unlock(&ctx->lock);
		zl__region_put(r);
		return err;
	}
	ctx->pgas_next += span;
	pthread_mutex_unlock(&ctx->lock);
	r->base = p;
	r->gaddr = at;
	*out = r;
	return 0;
}

int zl__pgas_reserve(struct zl_ctx *ctx)
{
	void *p = mmap((void *)(uintptr_t)ZL_PGAS_BASE, ZL_PGAS_SIZE, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
	if (p == MAP_FAILED)
		return errno == EEXIST ? -EADDRINUSE : -errno;
	if ((uintptr_t)p != ZL_PGAS_BASE) { /* a kernel without MAP_FIXED_NOREPLACE */
		munmap(p, ZL_PGAS_SIZE);
		return -EADDRINUSE;
	}
	ctx->pgas = true;
	return 0;
}

void zl__pgas_release(struct zl_ctx *ctx)
{
	if (ctx->pgas)
		munmap((void *)(uintptr_t)ZL_PGAS_BASE, ZL_PGAS_SIZE);
	ctx->pgas = false;
}
