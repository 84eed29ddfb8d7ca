/* SPDX-License-Identifier: MIT */
/*
 * Devices: what a request is checked against, and the path it takes from a
 * front-end to the backend and back.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/barrier.h"
#include "iohost.h"

int dev_create(const struct devconf *c, struct device **out, char *err, size_t errlen)
{
	int r = devconf_check(c, err, errlen);
	if (r)
		return r;
	struct device *d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->conf = *c;
	d->fd = -1;
	d->refs = 1;
	d->max_io = ZL_BLK_MAX_IO;
	d->be = c->backend == BK_NULL  ? &backend_null
		: c->backend == BK_RAM ? &backend_ram
				       : &backend_file;
	if ((r = d->be->open(d, err, errlen))) {
		free(d);
		return r;
	}
	if (c->readonly)
		d->flags |= ZL_BLK_INFO_RO;
	if ((r = mods_open(d, err, errlen))) {
		d->be->close(d);
		free(d);
		return r;
	}
	*out = d;
	return 0;
}

void dev_get(struct device *d)
{
	__atomic_fetch_add(&d->refs, 1, __ATOMIC_RELAXED);
}

void dev_put(struct device *d)
{
	if (!d)
		return;
	/* A_rel: everything a queue did with the device happens before the
	 * last reference frees it. */
	if (__atomic_sub_fetch(&d->refs, 1, __ATOMIC_ACQ_REL))
		return;
	mods_close(d);
	d->be->close(d);
	qos_free(d->qos);
	free(d);
}

int dev_check(const struct device *d, const struct ioreq *r)
{
	uint64_t bs = d->conf.block_size;
	switch (r->op) {
	case ZL_BLK_OP_READ:
	case ZL_BLK_OP_WRITE:
		if (r->len == 0 || r->len > d->max_io || r->len % bs || r->off % bs)
			return ZL_BLK_S_EINVAL;
		if (r->flags & ~(r->op == ZL_BLK_OP_WRITE ? ZL_BLK_F_FUA : 0u))
			return ZL_BLK_S_EINVAL;
		if (r->op == ZL_BLK_OP_WRITE && (d->flags & ZL_BLK_INFO_RO))
			return ZL_BLK_S_EROFS;
		break;
	case ZL_BLK_OP_FLUSH:
		if (r->len || r->off || r->flags)
			return ZL_BLK_S_EINVAL;
		return 0;
	case ZL_BLK_OP_DISCARD:
	case ZL_BLK_OP_WRITE_ZEROES:
		if (r->len == 0 || r->len % bs || r->off % bs)
			return ZL_BLK_S_EINVAL;
		if (r->flags & ~(r->op == ZL_BLK_OP_DISCARD ? 0u : (unsigned)ZL_BLK_F_ALL))
			return ZL_BLK_S_EINVAL;
		if (d->flags & ZL_BLK_INFO_RO)
			return ZL_BLK_S_EROFS;
		if (!(d->flags & (r->op == ZL_BLK_OP_DISCARD ? ZL_BLK_INFO_DISCARD
							     : ZL_BLK_INFO_WRITE_ZEROES)))
			return ZL_BLK_S_EOPNOTSUPP;
		break;
	default:
		return ZL_BLK_S_EINVAL;
	}
	if (r->off > d->size || r->len > d->size - r->off)
		return ZL_BLK_S_ERANGE;
	return 0;
}

void dev_submit(struct sidecore *sc, struct ioreq *r)
{
	struct device *d = r->dev;
	r->sc = sc;
	r->done_bytes = 0;
	r->bounce = NULL;
	r->qos_t = NULL;
	r->qos_spare = false;
	r->t_start = ioh_now_ns();
	struct qos *q = __atomic_load_n(&d->qos, __ATOMIC_ACQUIRE);
	if (q && zl_read_once(&q->configured) && !qos_admit(q, r, false, r->t_start)) {
		r->next = NULL;
		if (sc->wait_tail)
			sc->wait_tail->next = r;
		else
			sc->wait_head = r;
		sc->wait_tail = r;
		return;
	}
	dev_dispatch(sc, r);
}

void dev_dispatch(struct sidecore *sc, struct ioreq *r)
{
	struct device *d = r->dev;
	for (r->mods_run = 0; r->mods_run < d->nmods;) {
		unsigned i = r->mods_run;
		r->mod_priv[i] = NULL;
		int32_t st = d->mods[i]->submit(d->mod_state[i], r, &r->mod_priv[i]);
		if (st == MOD_ASYNC) {
			/* the module completes r when its job is done */
			r->mods_run = (uint8_t)(i + 1);
			return;
		}
		if (st == MOD_DONE) {
			/* the module did the I/O (r->status); it is the last */
			r->mods_run = (uint8_t)(i + 1);
			sc_complete(sc, r);
			return;
		}
		if (st) {
			r->status = st;
			sc_complete(sc, r);
			return;
		}
		r->mods_run = (uint8_t)(i + 1);
	}
	d->be->submit(sc, r);
}

int32_t dev_status(int err)
{
	switch (err) {
	case -ENOSPC:
	case -EDQUOT:
	case -EFBIG:
		return ZL_BLK_S_ENOSPC;
	case -EROFS:
	case -EPERM:
		return ZL_BLK_S_EROFS;
	case -EOPNOTSUPP:
		return ZL_BLK_S_EOPNOTSUPP;
	case -ENOMEM:
		return ZL_BLK_S_ENOMEM;
	default:
		return ZL_BLK_S_EIO;
	}
}

/* What a SIGBUS on d's mapping at [off, off+len) meant: the file no
 * longer reaches there (EIO), or, for a write, a full tmpfs (ENOSPC). */
static int bus_error(struct device *d, bool write, uint64_t off, uint32_t len)
{
	struct stat st;
	bool short_file = fstat(d->fd, &st) < 0 || (uint64_t)st.st_size < off + len;
	return write && !short_file ? -ENOSPC : -EIO;
}

int dev_mem_call(struct device *d, bool write, uint64_t off, uint32_t len, int (*fn)(void *),
		 void *arg)
{
	if (!d->mem_file) /* the RAM disk: nothing can pull it away */
		return fn(arg);
	sigjmp_buf env;
	if (sigsetjmp(env, 0))
		return bus_error(d, write, off, len);
	ioh_bus_env = &env;
	int r = fn(arg);
	ioh_bus_env = NULL;
	return r;
}

void mem_copy(char *mem, uint8_t op, const struct iovec *iov, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		if (op == ZL_BLK_OP_READ)
			memcpy(iov[i].iov_base, mem, iov[i].iov_len);
		else
			memcpy(mem, iov[i].iov_base, iov[i].iov_len);
		mem += iov[i].iov_len;
	}
}

/* dev_rw_parts: one part, through the device's rw (a copy to or from its
 * memory, or system calls where a file's mapping is cold). */
static void rw_part(void *arg, unsigned part)
{
	struct sc_job *j = arg;
	struct ioreq *r = j->r;
	size_t from = (size_t)part * DEV_PART;
	uint32_t len = r->len - from < DEV_PART ? (uint32_t)(r->len - from) : DEV_PART;
	struct iovec v[IOH_MAX_SEGS];
	unsigned n = iov_slice(r->iov, r->niov, from, len, v);
	int e = r->dev->rw(r->dev, r->op, r->off + from, v, n, len, dev_rw_flags(r));
	if (e)
		sc_job_fail(j, e);
}

static void rw_fin(struct sc_job *j)
{
	int e = __atomic_load_n(&j->err, __ATOMIC_RELAXED);
	j->r->status = e ? dev_status(e) : 0;
	free(j);
}

/* One core's copy is what a 1 MiB request would otherwise be held to. */
bool dev_rw_parts(struct sidecore *sc, struct ioreq *r)
{
	if (!r->dev->rw || r->bounce || r->len <= DEV_PART || !workers_count())
		return false;
	struct sc_job *j = malloc(sizeof(*j));
	if (!j)
		return false;
	*j = (struct sc_job){
		.w = {.fn = rw_part, .arg = j, .nparts = (r->len + DEV_PART - 1) / DEV_PART},
		.r = r,
		.fin = rw_fin};
	sc_job_start(sc, j);
	return true;
}

unsigned iov_slice(const struct iovec *iov, unsigned n, size_t from, size_t len, struct iovec *out)
{
	unsigned k = 0;
	for (unsigned i = 0; i < n && len && k < IOH_MAX_SEGS; i++) {
		if (from >= iov[i].iov_len) {
			from -= iov[i].iov_len;
			continue;
		}
		size_t t = iov[i].iov_len - from;
		if (t > len)
			t = len;
		out[k].iov_base = (char *)iov[i].iov_base + from;
		out[k++].iov_len = t;
		len -= t;
		from = 0;
	}
	return k;
}

void dev_finish(struct ioreq *r)
{
	struct device *d = r->dev;
	while (r->mods_run) {
		unsigned i = --r->mods_run;
		d->mods[i]->complete(d->mod_state[i], r, &r->mod_priv[i]);
	}
	if (r->qos_t)
		qos_done(r);
	dev_account(r);
}

/* Called by sc_complete() before the front-end sees the result. */
void dev_account(struct ioreq *r)
{
	struct dev_stats *st = &r->dev->st;
	if (r->op <= ZL_BLK_OP_WRITE_ZEROES)
		__atomic_fetch_add(&st->ops[r->op], 1, __ATOMIC_RELAXED);
	if (r->status) {
		__atomic_fetch_add(&st->errors, 1, __ATOMIC_RELAXED);
	} else if (r->op == ZL_BLK_OP_READ) {
		__atomic_fetch_add(&st->bytes_read, r->len, __ATOMIC_RELAXED);
	} else if (r->op == ZL_BLK_OP_WRITE) {
		__atomic_fetch_add(&st->bytes_written, r->len, __ATOMIC_RELAXED);
	}
}

void fe_count(struct fe *f, const struct ioreq *r)
{
	__atomic_fetch_add(&f->reqs_done, 1, __ATOMIC_RELAXED);
	if (r->status == 0 && (r->op == ZL_BLK_OP_READ || r->op == ZL_BLK_OP_WRITE))
		__atomic_fetch_add(&f->bytes, r->len, __ATOMIC_RELAXED);
}

bool dev_admits(const struct device *d, uint32_t uid, const uint32_t *gids, unsigned ngids)
{
	if (uid == 0 || uid == (uint32_t)geteuid() || d->conf.any_user)
		return true;
	for (unsigned i = 0; i < d->conf.nuids; i++)
		if (d->conf.uids[i] == uid)
			return true;
	for (unsigned i = 0; i < d->conf.ngids; i++)
		for (unsigned k = 0; k < ngids; k++)
			if (d->conf.gids[i] == gids[k])
				return true;
	return false;
}
