/* SPDX-License-Identifier: MIT */
/*
 * The I/O host's configuration: an INI-style file (zerolink-iohost.conf(5)).
 *
 *   [iohost]              sidecores, workers, pin, idle_us, balance_ms, control, nbd
 *   [tenant NAME]         device, users, reserve, limit, weight (QoS)
 *   [device NAME]         backend, path, size, block_size, direct, inline, readonly,
 *                         users, groups, queue_depth, nbd, modules, crypt_key,
 *                         crypt_engine, crc_file
 *
 * The same "key = value" pairs describe a device added at run time
 * (`zerolink iohost add NAME key=value ...`).
 */
#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "iohost.h"

static char *trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	char *e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = 0;
	return s;
}

int parse_size(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (end == s || errno || *s == '-')
		return -EINVAL;
	unsigned shift = 0;
	switch (tolower((unsigned char)*end)) {
	case 0:
		break;
	case 'k':
		shift = 10;
		break;
	case 'm':
		shift = 20;
		break;
	case 'g':
		shift = 30;
		break;
	case 't':
		shift = 40;
		break;
	default:
		return -EINVAL;
	}
	if (*end && end[1] &&
	    !(tolower((unsigned char)end[1]) == 'i' && end[2] == 'b' && !end[3]) &&
	    !(tolower((unsigned char)end[1]) == 'b' && !end[2]))
		return -EINVAL;
	if (shift && v > (~0ull >> shift))
		return -ERANGE;
	*out = v << shift;
	return 0;
}

static int parse_bool(const char *s, bool *out)
{
	if (!strcmp(s, "yes") || !strcmp(s, "true") || !strcmp(s, "on") || !strcmp(s, "1"))
		*out = true;
	else if (!strcmp(s, "no") || !strcmp(s, "false") || !strcmp(s, "off") || !strcmp(s, "0"))
		*out = false;
	else
		return -EINVAL;
	return 0;
}

static int parse_u32(const char *s, uint32_t lo, uint32_t hi, uint32_t *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (end == s || *end || errno || *s == '-' || v < lo || v > hi)
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

void devconf_init(struct devconf *d, const char *name)
{
	memset(d, 0, sizeof(*d));
	snprintf(d->name, sizeof(d->name), "%s", name);
	d->backend = BK_FILE;
	d->block_size = 512;
	d->direct = -1;
	d->inline_io = -1;
	d->max_depth = 256;
	d->nbd = true;
}

/* A comma-separated list of users or groups, by name or number. */
static int parse_ids(const char *val, bool group, uint32_t *ids, unsigned *n, bool *any, char *err,
		     size_t errlen)
{
	char buf[512];
	snprintf(buf, sizeof(buf), "%s", val);
	for (char *save = NULL, *t = strtok_r(buf, ", ", &save); t;
	     t = strtok_r(NULL, ", ", &save)) {
		if (!strcmp(t, "*")) {
			*any = true;
			continue;
		}
		uint32_t id;
		if (parse_u32(t, 0, UINT32_MAX - 1, &id)) {
			if (group) {
				struct group *g = getgrnam(t);
				if (!g) {
					snprintf(err, errlen, "no such group: %s", t);
					return -EINVAL;
				}
				id = (uint32_t)g->gr_gid;
			} else {
				struct passwd *p = getpwnam(t);
				if (!p) {
					snprintf(err, errlen, "no such user: %s", t);
					return -EINVAL;
				}
				id = (uint32_t)p->pw_uid;
			}
		}
		if (*n == 8) {
			snprintf(err, errlen, "at most 8 %s", group ? "groups" : "users");
			return -EINVAL;
		}
		ids[(*n)++] = id;
	}
	return 0;
}

int devconf_set(struct devconf *d, const char *key, const char *val, char *err, size_t errlen)
{
	int r = 0;
	if (!strcmp(key, "backend")) {
		if (!strcmp(val, "null"))
			d->backend = BK_NULL;
		else if (!strcmp(val, "ram"))
			d->backend = BK_RAM;
		else if (!strcmp(val, "file"))
			d->backend = BK_FILE;
		else
			r = -EINVAL;
	} else if (!strcmp(key, "path")) {
		if (strlen(val) >= sizeof(d->path))
			r = -ENAMETOOLONG;
		else
			snprintf(d->path, sizeof(d->path), "%s", val);
	} else if (!strcmp(key, "size")) {
		r = parse_size(val, &d->size);
	} else if (!strcmp(key, "block_size")) {
		r = parse_u32(val, 512, 4096, &d->block_size);
		if (!r && d->block_size != 512 && d->block_size != 4096)
			r = -EINVAL;
	} else if (!strcmp(key, "direct")) {
		bool b;
		if (!strcmp(val, "auto"))
			d->direct = -1;
		else if (!(r = parse_bool(val, &b)))
			d->direct = b;
	} else if (!strcmp(key, "inline")) {
		bool b;
		if (!strcmp(val, "auto"))
			d->inline_io = -1;
		else if (!(r = parse_bool(val, &b)))
			d->inline_io = b;
	} else if (!strcmp(key, "readonly")) {
		r = parse_bool(val, &d->readonly);
	} else if (!strcmp(key, "users")) {
		return parse_ids(val, false, d->uids, &d->nuids, &d->any_user, err, errlen);
	} else if (!strcmp(key, "groups")) {
		return parse_ids(val, true, d->gids, &d->ngids, &d->any_user, err, errlen);
	} else if (!strcmp(key, "queue_depth")) {
		r = parse_u32(val, 1, 1024, &d->max_depth);
	} else if (!strcmp(key, "nbd")) {
		r = parse_bool(val, &d->nbd);
	} else if (!strcmp(key, "modules")) {
		char buf[128];
		snprintf(buf, sizeof(buf), "%s", val);
		d->nmods = 0;
		/* "meter,crypt", or "meter+crypt" where commas separate keys */
		for (char *save = NULL, *t = strtok_r(buf, ", +", &save); t;
		     t = strtok_r(NULL, ", +", &save)) {
			if (!mod_find(t)) {
				snprintf(err, errlen,
					 "unknown module '%s' (crypt, crc32c, meter, ro)", t);
				return -EINVAL;
			}
			for (unsigned i = 0; i < d->nmods; i++)
				if (!strcmp(d->mods[i], t)) {
					snprintf(err, errlen, "module '%s' given twice", t);
					return -EINVAL;
				}
			if (d->nmods == IOH_MAX_MODS) {
				snprintf(err, errlen, "at most %d modules", IOH_MAX_MODS);
				return -EINVAL;
			}
			snprintf(d->mods[d->nmods++], sizeof(d->mods[0]), "%s", t);
		}
	} else if (!strcmp(key, "crypt_key")) {
		if (strlen(val) >= sizeof(d->crypt_key))
			r = -ENAMETOOLONG;
		else
			snprintf(d->crypt_key, sizeof(d->crypt_key), "%s", val);
	} else if (!strcmp(key, "crypt_engine")) {
		if (!strcmp(val, "auto"))
			d->crypt_engine = CRYPT_AUTO;
		else if (!strcmp(val, "vaes"))
			d->crypt_engine = CRYPT_VAES;
		else if (!strcmp(val, "openssl"))
			d->crypt_engine = CRYPT_OPENSSL;
		else {
			snprintf(err, errlen,
				 "bad value for crypt_engine: '%s' (auto, vaes, openssl)", val);
			return -EINVAL;
		}
	} else if (!strcmp(key, "crc_file")) {
		if (strlen(val) >= sizeof(d->crc_file))
			r = -ENAMETOOLONG;
		else
			snprintf(d->crc_file, sizeof(d->crc_file), "%s", val);
	} else {
		snprintf(err, errlen, "unknown device key '%s'", key);
		return -EINVAL;
	}
	if (r)
		snprintf(err, errlen, "bad value for %s: '%s'", key, val);
	return r;
}

int devconf_check(const struct devconf *d, char *err, size_t errlen)
{
	if (!d->name[0]) {
		snprintf(err, errlen, "device without a name");
		return -EINVAL;
	}
	for (const char *p = d->name; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-' && *p != '.') {
			snprintf(err, errlen,
				 "device name '%s': use letters, digits, '_', '-', '.'", d->name);
			return -EINVAL;
		}
	if (strlen(d->name) + sizeof(ZL_BLK_SERVICE_PREFIX) > 64) {
		snprintf(err, errlen, "device name '%s' is too long", d->name);
		return -EINVAL;
	}
	if (d->backend == BK_FILE && !d->path[0]) {
		snprintf(err, errlen, "device %s: backend file needs a path", d->name);
		return -EINVAL;
	}
	if (d->backend != BK_FILE && d->size == 0) {
		snprintf(err, errlen, "device %s: backend %s needs a size", d->name,
			 d->backend == BK_RAM ? "ram" : "null");
		return -EINVAL;
	}
	if (d->size % d->block_size) {
		snprintf(err, errlen, "device %s: size is not a multiple of block_size %u", d->name,
			 d->block_size);
		return -EINVAL;
	}
	return 0;
}

/* A list of cores, one thread on each: "1", "0,1", "2-3". */
static int parse_cpu_list(const char *val, int *cpus, unsigned *n, unsigned max)
{
	*n = 0;
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", val);
	for (char *save = NULL, *t = strtok_r(buf, ", ", &save); t;
	     t = strtok_r(NULL, ", ", &save)) {
		uint32_t a, b;
		char *dash = strchr(t, '-');
		if (dash) {
			*dash = 0;
			if (parse_u32(t, 0, 4095, &a) || parse_u32(dash + 1, 0, 4095, &b) || b < a)
				return -EINVAL;
		} else if (parse_u32(t, 0, 4095, &a)) {
			return -EINVAL;
		} else {
			b = a;
		}
		for (uint32_t k = a; k <= b; k++) {
			if (*n == max)
				return -EINVAL;
			cpus[(*n)++] = (int)k;
		}
	}
	return *n ? 0 : -EINVAL;
}

/* Sidecores: a list, or "auto": one on the last core. */
static int parse_cpus(const char *val, struct hostconf *c)
{
	if (!strcmp(val, "auto")) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		c->nsidecores = 1;
		c->cpus[0] = n > 1 ? (int)n - 1 : 0;
		return 0;
	}
	return parse_cpu_list(val, c->cpus, &c->nsidecores, IOH_MAX_SIDECORES);
}

int conf_set_sidecores(struct hostconf *c, const char *val)
{
	return parse_cpus(val, c);
}

int conf_set_workers(struct hostconf *c, const char *val)
{
	if (!strcmp(val, "none")) {
		c->nworkers = 0;
		return 0;
	}
	return parse_cpu_list(val, c->worker_cpus, &c->nworkers, IOH_MAX_WORKERS);
}

int conf_add_nbd(struct hostconf *c, const char *val)
{
	if (c->nnbd == sizeof(c->nbd) / sizeof(c->nbd[0]))
		return -E2BIG;
	if (!*val || strlen(val) >= sizeof(c->nbd[0]))
		return -EINVAL;
	snprintf(c->nbd[c->nnbd++], sizeof(c->nbd[0]), "%s", val);
	return 0;
}

void conf_free(struct hostconf *c)
{
	free(c->devs);
	c->devs = NULL;
	c->ndevs = 0;
	free(c->tenants);
	c->tenants = NULL;
	c->ntenants = 0;
}

void tenantconf_init(struct tenantconf *t, const char *name)
{
	memset(t, 0, sizeof(*t));
	snprintf(t->name, sizeof(t->name), "%s", name);
	t->weight = 1;
}

/* "50000", "50k", "2M" operations per second; "0" none */
static int parse_rate(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (end == s || errno || *s == '-')
		return -EINVAL;
	if (*end == 'k' || *end == 'K')
		v *= 1000, end++;
	else if (*end == 'M')
		v *= 1000000, end++;
	if (*end || v > 1000000000000ull)
		return -EINVAL;
	*out = v;
	return 0;
}

/* "2ms", "500us", "1s", "250000ns" (a unit is needed) */
static int parse_duration(const char *s, uint64_t *ns)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (end == s || errno || *s == '-')
		return -EINVAL;
	uint64_t mul;
	if (!strcmp(end, "ns"))
		mul = 1;
	else if (!strcmp(end, "us"))
		mul = 1000;
	else if (!strcmp(end, "ms"))
		mul = 1000000;
	else if (!strcmp(end, "s"))
		mul = 1000000000;
	else
		return -EINVAL;
	if (v > 3600000000000ull / mul)
		return -ERANGE;
	*ns = v * mul;
	return 0;
}

/* "SIZE@BOUND,...": burst classes, innermost (smallest) first */
static int parse_burst(struct tenantconf *t, const char *val, char *err, size_t errlen)
{
	char buf[256];
	if (strlen(val) >= sizeof(buf))
		goto bad;
	snprintf(buf, sizeof(buf), "%s", val);
	t->nburst = 0;
	for (char *save = NULL, *tok = strtok_r(buf, ", ", &save); tok;
	     tok = strtok_r(NULL, ", ", &save)) {
		char *at = strchr(tok, '@');
		if (!at)
			goto bad;
		*at = 0;
		uint32_t size;
		uint64_t bound;
		if (parse_u32(tok, 1, 1000000, &size) || parse_duration(at + 1, &bound) ||
		    bound < 1000)
			goto bad;
		if (t->nburst == QOS_CLASSES) {
			snprintf(err, errlen, "burst: at most %d classes", QOS_CLASSES);
			return -EINVAL;
		}
		if (t->nburst && (size <= t->burst[t->nburst - 1].size ||
				  bound <= t->burst[t->nburst - 1].bound_ns)) {
			snprintf(err, errlen,
				 "burst: each class is larger than the one before it and has a "
				 "longer bound ('%s')",
				 val);
			return -EINVAL;
		}
		t->burst[t->nburst].size = size;
		t->burst[t->nburst].bound_ns = bound;
		t->nburst++;
	}
	if (t->nburst)
		return 0;
bad:
	snprintf(err, errlen,
		 "bad value for burst: '%s' (OPS@TIME,...: 32@2ms is up to 32 operations at "
		 "once, each done within 2 ms; TIME at least 1us)",
		 val);
	return -EINVAL;
}

int tenantconf_set(struct tenantconf *t, const char *key, const char *val, char *err, size_t errlen)
{
	int r = 0;
	if (!strcmp(key, "device")) {
		if (!*val || strlen(val) >= sizeof(t->device))
			r = -EINVAL;
		else
			snprintf(t->device, sizeof(t->device), "%s", val);
	} else if (!strcmp(key, "users")) {
		char buf[512];
		snprintf(buf, sizeof(buf), "%s", val);
		t->nuids = 0;
		t->tcp = false;
		for (char *save = NULL, *tok = strtok_r(buf, ", +", &save); tok;
		     tok = strtok_r(NULL, ", +", &save)) {
			if (!strcmp(tok, "tcp")) {
				t->tcp = true;
				continue;
			}
			bool any = false;
			int e = parse_ids(tok, false, t->uids, &t->nuids, &any, err, errlen);
			if (e)
				return e;
			if (any) {
				snprintf(err, errlen,
					 "a tenant names its users ('*' is everyone's)");
				return -EINVAL;
			}
		}
		return 0;
	} else if (!strcmp(key, "reserve")) {
		r = parse_rate(val, &t->reserve);
	} else if (!strcmp(key, "limit")) {
		r = parse_rate(val, &t->limit);
	} else if (!strcmp(key, "weight")) {
		r = parse_u32(val, 1, 10000, &t->weight);
	} else if (!strcmp(key, "burst")) {
		return parse_burst(t, val, err, errlen);
	} else {
		snprintf(err, errlen,
			 "unknown tenant key '%s' (device, users, reserve, limit, weight, burst)",
			 key);
		return -EINVAL;
	}
	if (r)
		snprintf(err, errlen, "bad value for %s: '%s'", key, val);
	return r;
}

int tenantconf_check(const struct tenantconf *t, char *err, size_t errlen)
{
	if (!t->device[0]) {
		snprintf(err, errlen, "tenant %s: which device? (device = NAME)", t->name);
		return -EINVAL;
	}
	if (!t->nuids && !t->tcp) {
		snprintf(err, errlen, "tenant %s: who? (users = uid or name, ..., or tcp)",
			 t->name);
		return -EINVAL;
	}
	if (t->limit && t->reserve > t->limit) {
		snprintf(err, errlen, "tenant %s: reserve %llu is above its limit %llu", t->name,
			 (unsigned long long)t->reserve, (unsigned long long)t->limit);
		return -EINVAL;
	}
	if (t->nburst && !t->reserve) {
		snprintf(err, errlen,
			 "tenant %s: burst classes refill at the reservation: give it one "
			 "(reserve = N)",
			 t->name);
		return -EINVAL;
	}
	return 0;
}

int conf_load(const char *path, struct hostconf *c, char *err, size_t errlen)
{
	memset(c, 0, sizeof(*c));
	parse_cpus("auto", c);
	c->idle_us = 200;
	c->balance_ms = 100;
	FILE *f = fopen(path, "re");
	if (!f) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -errno;
	}
	char line[1024], e2[200];
	unsigned ln = 0;
	enum { S_NONE, S_HOST, S_DEV, S_TENANT } sec = S_NONE;
	int r = 0;
	while (fgets(line, sizeof(line), f)) {
		ln++;
		char *hash = strchr(line, '#');
		if (hash)
			*hash = 0;
		char *s = trim(line);
		if (!*s)
			continue;
		if (*s == '[') {
			char *e = strchr(s, ']');
			if (!e || e[1]) {
				snprintf(err, errlen, "%s:%u: bad section header", path, ln);
				r = -EINVAL;
				break;
			}
			*e = 0;
			char *name = trim(s + 1);
			if (!strcmp(name, "iohost")) {
				sec = S_HOST;
			} else if (!strncmp(name, "device", 6) && isspace((unsigned char)name[6])) {
				char *dn = trim(name + 6);
				for (unsigned i = 0; i < c->ndevs; i++)
					if (!strcmp(c->devs[i].name, dn)) {
						snprintf(err, errlen,
							 "%s:%u: device %s defined twice", path, ln,
							 dn);
						r = -EINVAL;
						goto out;
					}
				struct devconf *nd = realloc(c->devs, (c->ndevs + 1) * sizeof(*nd));
				if (!nd) {
					r = -ENOMEM;
					break;
				}
				c->devs = nd;
				devconf_init(&c->devs[c->ndevs++], dn);
				if (strlen(dn) >= IOH_NAME_MAX) {
					snprintf(err, errlen, "%s:%u: device name too long", path,
						 ln);
					r = -EINVAL;
					break;
				}
				sec = S_DEV;
			} else if (!strncmp(name, "tenant", 6) && isspace((unsigned char)name[6])) {
				char *tn = trim(name + 6);
				if (strlen(tn) >= IOH_NAME_MAX || !*tn) {
					snprintf(err, errlen, "%s:%u: bad tenant name", path, ln);
					r = -EINVAL;
					break;
				}
				struct tenantconf *nt =
					realloc(c->tenants, (c->ntenants + 1) * sizeof(*nt));
				if (!nt) {
					r = -ENOMEM;
					break;
				}
				c->tenants = nt;
				tenantconf_init(&c->tenants[c->ntenants++], tn);
				sec = S_TENANT;
			} else {
				snprintf(err, errlen, "%s:%u: unknown section [%s]", path, ln,
					 name);
				r = -EINVAL;
				break;
			}
			continue;
		}
		char *eq = strchr(s, '=');
		if (!eq) {
			snprintf(err, errlen, "%s:%u: expected key = value", path, ln);
			r = -EINVAL;
			break;
		}
		*eq = 0;
		char *key = trim(s), *val = trim(eq + 1);
		if (sec == S_HOST) {
			bool b;
			if (!strcmp(key, "sidecores"))
				r = parse_cpus(val, c);
			else if (!strcmp(key, "workers"))
				r = conf_set_workers(c, val);
			else if (!strcmp(key, "pin")) {
				if (!(r = parse_bool(val, &b)))
					c->nopin = !b;
			} else if (!strcmp(key, "idle_us"))
				r = parse_u32(val, 0, 10000000, &c->idle_us);
			else if (!strcmp(key, "balance_ms"))
				r = parse_u32(val, 0, 600000, &c->balance_ms);
			else if (!strcmp(key, "control")) {
				if (strlen(val) >= sizeof(c->control))
					r = -ENAMETOOLONG;
				else
					snprintf(c->control, sizeof(c->control), "%s", val);
			} else if (!strcmp(key, "nbd")) {
				r = conf_add_nbd(c, val);
			} else {
				snprintf(err, errlen, "%s:%u: unknown key '%s' in [iohost]", path,
					 ln, key);
				r = -EINVAL;
				break;
			}
			if (r) {
				snprintf(err, errlen, "%s:%u: bad value for %s: '%s'", path, ln,
					 key, val);
				break;
			}
		} else if (sec == S_TENANT) {
			if ((r = tenantconf_set(&c->tenants[c->ntenants - 1], key, val, e2,
						sizeof(e2)))) {
				snprintf(err, errlen, "%s:%u: %s", path, ln, e2);
				break;
			}
		} else if (sec == S_DEV) {
			if ((r = devconf_set(&c->devs[c->ndevs - 1], key, val, e2, sizeof(e2)))) {
				snprintf(err, errlen, "%s:%u: %s", path, ln, e2);
				break;
			}
		} else {
			snprintf(err, errlen, "%s:%u: key outside a section", path, ln);
			r = -EINVAL;
			break;
		}
	}
	if (!r)
		for (unsigned i = 0; i < c->ndevs; i++)
			if ((r = devconf_check(&c->devs[i], e2, sizeof(e2)))) {
				snprintf(err, errlen, "%s: %s", path, e2);
				break;
			}
	if (!r)
		for (unsigned i = 0; i < c->ntenants; i++)
			if ((r = tenantconf_check(&c->tenants[i], e2, sizeof(e2)))) {
				snprintf(err, errlen, "%s: %s", path, e2);
				break;
			}
out:
	fclose(f);
	if (r)
		conf_free(c);
	return r;
}
