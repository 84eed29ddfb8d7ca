/* SPDX-License-Identifier: MIT */
/*
 * The interposition chain: modules a device's requests pass through on the
 * way to the backend (submit hooks, nearest the client first) and back
 * (complete hooks, in reverse), configured by name per device
 * (modules = meter,crypt). They run on the sidecore that serves the
 * request, below every front-end.
 *
 *   crypt   encryption at rest, AES-XTS-256 (mod_crypt.c)
 *   crc32c  a checksum per block beside the data, checked on read (mod_crc32c.c)
 *   meter   per-tenant requests, bytes, errors, latency histogram (mod_meter.c)
 *   ro      write protection (mod_ro.c)
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "iohost.h"

static const struct mod_ops *const registry[] = {&mod_crypt, &mod_crc32c, &mod_meter, &mod_ro};

const struct mod_ops *mod_find(const char *name)
{
	for (size_t i = 0; i < sizeof(registry) / sizeof(registry[0]); i++)
		if (!strcmp(registry[i]->name, name))
			return registry[i];
	return NULL;
}

int mods_open(struct device *d, char *err, size_t errlen)
{
	for (unsigned i = 0; i < d->conf.nmods; i++) {
		const struct mod_ops *m = mod_find(d->conf.mods[i]);
		if (!m) {
			snprintf(err, errlen, "device %s: unknown module '%s'", d->conf.name,
				 d->conf.mods[i]);
			mods_close(d);
			return -EINVAL;
		}
		int r = m->open(d, &d->mod_state[i], err, errlen);
		if (r) {
			mods_close(d);
			return r;
		}
		d->mods[i] = m;
		d->nmods = i + 1;
	}
	return 0;
}

void mods_close(struct device *d)
{
	while (d->nmods) {
		d->nmods--;
		d->mods[d->nmods]->close(d->mod_state[d->nmods]);
		d->mods[d->nmods] = NULL;
	}
}
