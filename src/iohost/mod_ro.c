/* SPDX-License-Identifier: MIT */
/*
 * ro: write protection. The device is announced read-only (clients see
 * ZL_BLK_INFO_RO, NBD clients NBD_FLAG_READ_ONLY) and every request that
 * would change it fails with ZL_BLK_S_EROFS, whatever the backend allows
 * (the device's checks refuse them first; the hook is the module's own
 * guarantee).
 */
#include "iohost.h"

static int ro_open(struct device *d, void **state, char *err, size_t errlen)
{
	(void)err;
	(void)errlen;
	d->flags |= ZL_BLK_INFO_RO;
	*state = NULL;
	return 0;
}

static void ro_close(void *state)
{
	(void)state;
}

static int32_t ro_submit(void *state, struct ioreq *r, void **priv)
{
	(void)priv;
	(void)state;
	switch (r->op) {
	case ZL_BLK_OP_WRITE:
	case ZL_BLK_OP_DISCARD:
	case ZL_BLK_OP_WRITE_ZEROES:
		return ZL_BLK_S_EROFS;
	default:
		return 0;
	}
}

static void ro_complete(void *state, struct ioreq *r, void **priv)
{
	(void)priv;
	(void)state;
	(void)r;
}

static void ro_report(void *state, const struct device *d, struct out *o, bool prom)
{
	(void)state;
	if (prom)
		outf(o, "zerolink_iohost_write_protected{device=\"%s\"} 1\n", d->conf.name);
	else
		outf(o, "    ro: write-protected\n");
}

const struct mod_ops mod_ro = {
	.name = "ro",
	.open = ro_open,
	.close = ro_close,
	.submit = ro_submit,
	.complete = ro_complete,
	.report = ro_report,
};
