/* SPDX-License-Identifier: MIT */
/*
 * The null device: every request succeeds at once and no data moves. A
 * read's buffer is left as it is (it holds what this queue's earlier
 * requests left there, never another queue's data). For measuring the
 * request path alone.
 */
#include "iohost.h"

static int null_open(struct device *d, char *err, size_t errlen)
{
	(void)err;
	(void)errlen;
	d->size = d->conf.size;
	d->flags = ZL_BLK_INFO_FLUSH | ZL_BLK_INFO_DISCARD | ZL_BLK_INFO_WRITE_ZEROES;
	return 0;
}

static void null_close(struct device *d)
{
	(void)d;
}

static void null_submit(struct sidecore *sc, struct ioreq *r)
{
	r->status = 0;
	sc_complete(sc, r);
}

const struct backend_ops backend_null = {
	.name = "null",
	.open = null_open,
	.close = null_close,
	.submit = null_submit,
};
