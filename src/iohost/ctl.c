/* SPDX-License-Identifier: MIT */
/*
 * The control socket: one command line per connection, the answer, then the
 * connection closes. The first line of an answer is "ok" or "error: ...".
 *
 *   ping                         ok
 *   ls                           sidecores, devices and queues
 *   prom                         the same counters as Prometheus text
 *   add NAME key=value ...       a device, as a [device NAME] section
 *   rm NAME                      remove a device (its queues close)
 *   move QUEUE SIDECORE          move a queue (when it is idle)
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "../lib/barrier.h"
#include "iohost.h"

void outf(struct out *o, const char *fmt, ...)
{
	va_list ap;
	for (;;) {
		va_start(ap, fmt);
		int n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
		va_end(ap);
		if (n < 0)
			return;
		if ((size_t)n < o->cap - o->len) {
			o->len += (size_t)n;
			return;
		}
		size_t cap = o->cap ? o->cap * 2 : 4096;
		while (cap - o->len <= (size_t)n)
			cap *= 2;
		char *b = realloc(o->buf, cap);
		if (!b)
			return;
		o->buf = b;
		o->cap = cap;
	}
}

static const char *backend_name(const struct device *d)
{
	return d->be->name;
}

static const char *op_names[] = {"", "read", "write", "flush", "discard", "write_zeroes"};

static void cmd_ls(struct out *o)
{
	outf(o, "ok\n");
	outf(o, "sidecores\n  %-4s %-4s %-7s %-9s %6s %12s %8s %18s\n", "id", "cpu", "queues",
	     "state", "busy%", "requests", "sleeps", "long rounds (ms)");
	for (unsigned i = 0; i < ioh->nsc; i++) {
		struct sidecore *s = &ioh->sc[i];
		uint64_t b = zl_read_once(&s->busy_ns), t = zl_read_once(&s->total_ns);
		char lr[32];
		snprintf(lr, sizeof(lr), "%llu (%.1f)",
			 (unsigned long long)zl_read_once(&s->long_rounds),
			 (double)zl_read_once(&s->long_round_ns) / 1e6);
		outf(o, "  %-4u %-4d %-7u %-9s %6.1f %12llu %8llu %18s\n", i, s->cpu,
		     zl_read_once(&s->nqueues), zl_read_once(&s->sleeping) ? "sleeping" : "polling",
		     t ? 100.0 * (double)b / (double)t : 0.0,
		     (unsigned long long)zl_read_once(&s->reqs),
		     (unsigned long long)zl_read_once(&s->sleeps), lr);
	}
	if (workers_count()) {
		uint64_t jobs, parts;
		workers_stats(&jobs, &parts);
		outf(o, "workers\n  %u (cpus", workers_count());
		for (unsigned i = 0; i < ioh->conf.nworkers; i++)
			outf(o, "%s%d", i ? "," : " ", ioh->conf.worker_cpus[i]);
		outf(o, "); %llu requests shared, %llu parts done by workers\n",
		     (unsigned long long)jobs, (unsigned long long)parts);
	}
	pthread_mutex_lock(&ioh->lock);
	outf(o, "devices\n  %-16s %-7s %14s %5s %-10s %10s %10s %14s %14s %8s\n", "name", "backend",
	     "bytes", "bsize", "flags", "reads", "writes", "read_bytes", "written_bytes", "errors");
	for (struct device *d = ioh->devs; d; d = d->next) {
		char fl[16] = "";
		if (d->flags & ZL_BLK_INFO_RO)
			strcat(fl, "ro,");
		if (d->direct)
			strcat(fl, "direct,");
		if (d->inline_io)
			strcat(fl, "inline,");
		if (!fl[0])
			strcat(fl, "-,");
		fl[strlen(fl) - 1] = 0;
		outf(o, "  %-16s %-7s %14llu %5u %-10s %10llu %10llu %14llu %14llu %8llu\n",
		     d->conf.name, backend_name(d), (unsigned long long)d->size, d->conf.block_size,
		     fl, (unsigned long long)zl_read_once(&d->st.ops[ZL_BLK_OP_READ]),
		     (unsigned long long)zl_read_once(&d->st.ops[ZL_BLK_OP_WRITE]),
		     (unsigned long long)zl_read_once(&d->st.bytes_read),
		     (unsigned long long)zl_read_once(&d->st.bytes_written),
		     (unsigned long long)zl_read_once(&d->st.errors));
		if (d->mem_file)
			outf(o, "    mapped: %llu bytes warm (%s)\n",
			     (unsigned long long)zl_read_once(&d->mem_warm_bytes),
			     zl_read_once(&d->warm_done) ? "done" : "warming");
		for (unsigned i = 0; i < d->nmods; i++)
			d->mods[i]->report(d->mod_state[i], d, o, false);
		qos_report(d, o, false);
	}
	outf(o, "queues\n  %-8s %-16s %-8s %-22s %6s %-8s %6s %12s %14s\n", "id", "device", "kind",
	     "peer", "uid", "sidecore", "depth", "requests", "bytes");
	for (struct fe *q = ioh->fes; q; q = q->next_all) {
		struct sidecore *s = zl_read_once(&q->sc);
		outf(o, "  %-8llu %-16s %-8s %-22s %6u %-8u %6u %12llu %14llu\n",
		     (unsigned long long)q->id, q->dev->conf.name, q->ops->kind, q->peer, q->uid,
		     s ? s->idx : 0, zl_read_once(&q->depth),
		     (unsigned long long)zl_read_once(&q->reqs_done),
		     (unsigned long long)zl_read_once(&q->bytes));
	}
	pthread_mutex_unlock(&ioh->lock);
}

/* The family a sample line belongs to: its metric name, less a
 * histogram's _bucket/_sum/_count when the family was declared. */
static size_t family_len(const char *l, size_t n, char *const *fam, const size_t *flen,
			 unsigned nfam, unsigned *which)
{
	size_t k = 0;
	while (k < n && l[k] != '{' && l[k] != ' ')
		k++;
	static const char *const suf[] = {"", "_bucket", "_sum", "_count"};
	for (unsigned s = 0; s < 4; s++) {
		size_t sl = strlen(suf[s]);
		if (k < sl || memcmp(l + k - sl, suf[s], sl))
			continue;
		for (unsigned f = 0; f < nfam; f++)
			if (flen[f] == k - sl && !memcmp(fam[f], l, k - sl)) {
				*which = f;
				return k - sl;
			}
	}
	*which = nfam;
	return k;
}

/* Prometheus wants every line of a metric family together, after its
 * HELP and TYPE; devices, tenants and modules each print theirs as they
 * go. Regroup o's text from `from` on, families in the order they first
 * appear, samples in the order printed. Out of memory: left as it is. */
static void prom_group(struct out *o, size_t from)
{
	size_t n = o->len - from, nl = 0;
	for (size_t i = from; i < o->len; i++)
		nl += o->buf[i] == '\n';
	char *text = malloc(n + 1), **fam = calloc(nl + 1, sizeof(*fam));
	char **line = calloc(nl + 1, sizeof(*line));
	size_t *flen = calloc(nl + 1, sizeof(*flen)), *llen = calloc(nl + 1, sizeof(*llen));
	unsigned *lfam = calloc(nl + 1, sizeof(*lfam));
	if (!text || !fam || !line || !flen || !llen || !lfam)
		goto out;
	memcpy(text, o->buf + from, n);
	unsigned nfam = 0, nline = 0;
	for (size_t i = 0; i < n;) {
		char *l = text + i, *e = memchr(l, '\n', n - i);
		size_t len = e ? (size_t)(e - l) + 1 : n - i;
		i += len;
		unsigned f;
		if (len > 7 && (!memcmp(l, "# HELP ", 7) || !memcmp(l, "# TYPE ", 7))) {
			char *nm = l + 7;
			size_t k = 0;
			while (k < len - 7 && nm[k] != ' ' && nm[k] != '\n')
				k++;
			for (f = 0; f < nfam && !(flen[f] == k && !memcmp(fam[f], nm, k)); f++)
				;
			if (f == nfam) {
				fam[nfam] = nm;
				flen[nfam++] = k;
			}
		} else {
			size_t k = family_len(l, len, fam, flen, nfam, &f);
			if (f == nfam) { /* no HELP: a family of its own */
				fam[nfam] = l;
				flen[nfam++] = k;
			}
		}
		line[nline] = l;
		llen[nline] = len;
		lfam[nline++] = f;
	}
	o->len = from;
	for (unsigned f = 0; f < nfam; f++)
		for (unsigned i = 0; i < nline; i++)
			if (lfam[i] == f)
				outf(o, "%.*s", (int)llen[i], line[i]);
out:
	free(text);
	free(fam);
	free(line);
	free(flen);
	free(llen);
	free(lfam);
}

static void cmd_prom(struct out *o)
{
	outf(o, "ok\n");
	size_t from = o->len;
	outf(o,
	     "# HELP zerolink_iohost_requests_total Requests completed by a device, by operation.\n"
	     "# TYPE zerolink_iohost_requests_total counter\n");
	pthread_mutex_lock(&ioh->lock);
	for (struct device *d = ioh->devs; d; d = d->next)
		for (unsigned op = 1; op <= ZL_BLK_OP_WRITE_ZEROES; op++)
			outf(o, "zerolink_iohost_requests_total{device=\"%s\",op=\"%s\"} %llu\n",
			     d->conf.name, op_names[op],
			     (unsigned long long)zl_read_once(&d->st.ops[op]));
	outf(o, "# HELP zerolink_iohost_bytes_total Bytes moved by a device.\n"
		"# TYPE zerolink_iohost_bytes_total counter\n");
	for (struct device *d = ioh->devs; d; d = d->next) {
		outf(o, "zerolink_iohost_bytes_total{device=\"%s\",dir=\"read\"} %llu\n",
		     d->conf.name, (unsigned long long)zl_read_once(&d->st.bytes_read));
		outf(o, "zerolink_iohost_bytes_total{device=\"%s\",dir=\"write\"} %llu\n",
		     d->conf.name, (unsigned long long)zl_read_once(&d->st.bytes_written));
	}
	outf(o, "# HELP zerolink_iohost_errors_total Requests that completed with an error.\n"
		"# TYPE zerolink_iohost_errors_total counter\n");
	for (struct device *d = ioh->devs; d; d = d->next)
		outf(o, "zerolink_iohost_errors_total{device=\"%s\"} %llu\n", d->conf.name,
		     (unsigned long long)zl_read_once(&d->st.errors));
	outf(o, "# HELP zerolink_iohost_queues Queues open on a device.\n"
		"# TYPE zerolink_iohost_queues gauge\n");
	for (struct device *d = ioh->devs; d; d = d->next) {
		unsigned n = 0;
		for (struct fe *q = ioh->fes; q; q = q->next_all)
			n += q->dev == d;
		outf(o, "zerolink_iohost_queues{device=\"%s\"} %u\n", d->conf.name, n);
	}
	outf(o,
	     "# HELP zerolink_iohost_tenant_requests_total Requests of a tenant (module meter).\n"
	     "# TYPE zerolink_iohost_tenant_requests_total counter\n"
	     "# HELP zerolink_iohost_tenant_bytes_total Bytes of a tenant (module meter).\n"
	     "# TYPE zerolink_iohost_tenant_bytes_total counter\n"
	     "# HELP zerolink_iohost_tenant_errors_total Failed requests of a tenant.\n"
	     "# TYPE zerolink_iohost_tenant_errors_total counter\n"
	     "# HELP zerolink_iohost_tenant_latency_seconds Device latency of a tenant's "
	     "requests.\n"
	     "# TYPE zerolink_iohost_tenant_latency_seconds histogram\n"
	     "# HELP zerolink_iohost_crypt_bytes_total Bytes encrypted and decrypted (module "
	     "crypt).\n"
	     "# TYPE zerolink_iohost_crypt_bytes_total counter\n"
	     "# HELP zerolink_iohost_crypt_failures_total Units that failed to encrypt or "
	     "decrypt.\n"
	     "# TYPE zerolink_iohost_crypt_failures_total counter\n"
	     "# HELP zerolink_iohost_crypt_engine_info The AES-XTS engine serving the device "
	     "(module crypt): vaes-avx512 or openssl.\n"
	     "# TYPE zerolink_iohost_crypt_engine_info gauge\n"
	     "# HELP zerolink_iohost_write_protected A device behind module ro.\n"
	     "# TYPE zerolink_iohost_write_protected gauge\n");
	for (struct device *d = ioh->devs; d; d = d->next)
		for (unsigned i = 0; i < d->nmods; i++)
			d->mods[i]->report(d->mod_state[i], d, o, true);
	outf(o, "# HELP zerolink_iohost_qos_ops_total Operations (4 KiB each at most) a tenant "
		"was admitted for.\n# TYPE zerolink_iohost_qos_ops_total counter\n"
		"# HELP zerolink_iohost_qos_deferred_total Requests of a tenant that waited for "
		"QoS.\n# TYPE zerolink_iohost_qos_deferred_total counter\n"
		"# HELP zerolink_iohost_qos_burst_requests_total Requests of a tenant inside "
		"a burst class, done.\n"
		"# TYPE zerolink_iohost_qos_burst_requests_total counter\n"
		"# HELP zerolink_iohost_qos_burst_late_total Requests of a tenant inside a "
		"burst class done later than its bound.\n"
		"# TYPE zerolink_iohost_qos_burst_late_total counter\n"
		"# HELP zerolink_iohost_qos_burst_late_long_round_total Late requests of a "
		"burst class that were in flight across a long round of their sidecore.\n"
		"# TYPE zerolink_iohost_qos_burst_late_long_round_total counter\n"
		"# HELP zerolink_iohost_qos_cuts_total Times the QoS controller cut the "
		"spare traffic's rate, or its depth in the device.\n"
		"# TYPE zerolink_iohost_qos_cuts_total counter\n"
		"# HELP zerolink_iohost_qos_spare_depth Operations admitted on spare capacity "
		"allowed in the device at once (-1: unlimited).\n"
		"# TYPE zerolink_iohost_qos_spare_depth gauge\n");
	for (struct device *d = ioh->devs; d; d = d->next)
		qos_report(d, o, true);
	pthread_mutex_unlock(&ioh->lock);
	outf(o, "# HELP zerolink_iohost_sidecore_busy_seconds_total Time a sidecore spent on "
		"rounds that found work.\n"
		"# TYPE zerolink_iohost_sidecore_busy_seconds_total counter\n");
	for (unsigned i = 0; i < ioh->nsc; i++)
		outf(o, "zerolink_iohost_sidecore_busy_seconds_total{sidecore=\"%u\"} %.6f\n", i,
		     (double)zl_read_once(&ioh->sc[i].busy_ns) / 1e9);
	outf(o, "# HELP zerolink_iohost_sidecore_long_rounds_total Rounds of a polling "
		"sidecore over 1 ms, start to next start.\n"
		"# TYPE zerolink_iohost_sidecore_long_rounds_total counter\n");
	for (unsigned i = 0; i < ioh->nsc; i++)
		outf(o, "zerolink_iohost_sidecore_long_rounds_total{sidecore=\"%u\"} %llu\n", i,
		     (unsigned long long)zl_read_once(&ioh->sc[i].long_rounds));
	outf(o, "# HELP zerolink_iohost_sidecore_long_round_seconds_total Time in those "
		"rounds.\n"
		"# TYPE zerolink_iohost_sidecore_long_round_seconds_total counter\n");
	for (unsigned i = 0; i < ioh->nsc; i++)
		outf(o, "zerolink_iohost_sidecore_long_round_seconds_total{sidecore=\"%u\"} %.6f\n",
		     i, (double)zl_read_once(&ioh->sc[i].long_round_ns) / 1e9);
	outf(o, "# HELP zerolink_iohost_sidecore_sleeps_total Times a sidecore went to sleep.\n"
		"# TYPE zerolink_iohost_sidecore_sleeps_total counter\n");
	for (unsigned i = 0; i < ioh->nsc; i++)
		outf(o, "zerolink_iohost_sidecore_sleeps_total{sidecore=\"%u\"} %llu\n", i,
		     (unsigned long long)zl_read_once(&ioh->sc[i].sleeps));
	uint64_t jobs, parts;
	workers_stats(&jobs, &parts);
	outf(o,
	     "# HELP zerolink_iohost_worker_jobs_total Requests whose work was shared with "
	     "the workers.\n"
	     "# TYPE zerolink_iohost_worker_jobs_total counter\n"
	     "zerolink_iohost_worker_jobs_total %llu\n"
	     "# HELP zerolink_iohost_worker_parts_total Parts of such requests the workers "
	     "did.\n"
	     "# TYPE zerolink_iohost_worker_parts_total counter\n"
	     "zerolink_iohost_worker_parts_total %llu\n",
	     (unsigned long long)jobs, (unsigned long long)parts);
	prom_group(o, from);
}

static void cmd_add(struct out *o, char *args)
{
	char *save = NULL, *name = strtok_r(args, " \t", &save);
	char err[256];
	if (!name) {
		outf(o, "error: usage: add NAME key=value ...\n");
		return;
	}
	if (strlen(name) >= IOH_NAME_MAX) {
		outf(o, "error: device name too long\n");
		return;
	}
	struct devconf d;
	devconf_init(&d, name);
	for (char *t = strtok_r(NULL, " \t", &save); t; t = strtok_r(NULL, " \t", &save)) {
		char *eq = strchr(t, '=');
		if (!eq) {
			outf(o, "error: expected key=value, got '%s'\n", t);
			return;
		}
		*eq = 0;
		if (devconf_set(&d, t, eq + 1, err, sizeof(err))) {
			outf(o, "error: %s\n", err);
			return;
		}
	}
	if (ioh_add_device(&d, err, sizeof(err)))
		outf(o, "error: %s\n", err);
	else
		outf(o, "ok\n");
}

/* tenant NAME device=DEV users=... reserve=N limit=N weight=N */
static void cmd_tenant(struct out *o, char *args)
{
	char *save = NULL, err[256];
	char *name = strtok_r(args, " \t", &save);
	if (!name || strchr(name, '=')) {
		outf(o, "error: usage: tenant NAME device=DEV users=U,... [reserve=N] [limit=N] "
			"[weight=N] [burst=OPS@TIME,...]\n");
		return;
	}
	if (strlen(name) >= IOH_NAME_MAX) {
		outf(o, "error: tenant name too long\n");
		return;
	}
	struct tenantconf t;
	tenantconf_init(&t, name);
	for (char *k = strtok_r(NULL, " \t", &save); k; k = strtok_r(NULL, " \t", &save)) {
		char *eq = strchr(k, '=');
		if (!eq) {
			outf(o, "error: expected key=value, got '%s'\n", k);
			return;
		}
		*eq = 0;
		if (tenantconf_set(&t, k, eq + 1, err, sizeof(err))) {
			outf(o, "error: %s\n", err);
			return;
		}
	}
	if (ioh_tenant_set(&t, err, sizeof(err)))
		outf(o, "error: %s\n", err);
	else
		outf(o, "ok\n");
}

/* untenant DEVICE NAME */
static void cmd_untenant(struct out *o, char *args)
{
	char dev[IOH_NAME_MAX], name[IOH_NAME_MAX], err[256];
	if (sscanf(args, "%47s %47s", dev, name) != 2) {
		outf(o, "error: usage: untenant DEVICE NAME\n");
		return;
	}
	struct device *d = ioh_dev_get(dev);
	if (!d) {
		outf(o, "error: no device %s\n", dev);
		return;
	}
	if (qos_unset(d, name, err, sizeof(err)))
		outf(o, "error: %s\n", err);
	else
		outf(o, "ok\n");
	dev_put(d);
}

static void cmd_move(struct out *o, char *args)
{
	unsigned long long qid;
	unsigned sc;
	if (sscanf(args, "%llu %u", &qid, &sc) != 2 || sc >= ioh->nsc) {
		outf(o, "error: usage: move QUEUE SIDECORE (0..%u)\n", ioh->nsc - 1);
		return;
	}
	pthread_mutex_lock(&ioh->lock);
	struct fe *q = ioh->fes;
	while (q && q->id != qid)
		q = q->next_all;
	if (q)
		zl_write_once(&q->move_to, &ioh->sc[sc]);
	pthread_mutex_unlock(&ioh->lock);
	if (!q) {
		outf(o, "error: no queue %llu\n", qid);
		return;
	}
	/* a sleeping sidecore must wake up to move it */
	for (unsigned i = 0; i < ioh->nsc; i++)
		sc_post(&ioh->sc[i], SC_WAKE, NULL);
	outf(o, "ok\n");
}

void ctl_serve(int fd)
{
	/* a client that does not say anything does not hold the host up */
	struct timeval tv = {.tv_sec = 2};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	char line[2048];
	size_t n = 0;
	while (n < sizeof(line) - 1) {
		ssize_t r = read(fd, line + n, sizeof(line) - 1 - n);
		if (r <= 0)
			break;
		n += (size_t)r;
		if (memchr(line, '\n', n))
			break;
	}
	line[n] = 0;
	char *nl = strchr(line, '\n');
	if (nl)
		*nl = 0;
	struct out o = {0};
	char *sp = strchr(line, ' ');
	char *args = sp ? sp + 1 : line + strlen(line);
	if (sp)
		*sp = 0;
	char err[256];
	if (!strcmp(line, "ping"))
		outf(&o, "ok\n");
	else if (!strcmp(line, "ls"))
		cmd_ls(&o);
	else if (!strcmp(line, "prom"))
		cmd_prom(&o);
	else if (!strcmp(line, "add"))
		cmd_add(&o, args);
	else if (!strcmp(line, "rm")) {
		if (ioh_remove_device(args, err, sizeof(err)))
			outf(&o, "error: %s\n", err);
		else
			outf(&o, "ok\n");
	} else if (!strcmp(line, "move"))
		cmd_move(&o, args);
	else if (!strcmp(line, "tenant"))
		cmd_tenant(&o, args);
	else if (!strcmp(line, "untenant"))
		cmd_untenant(&o, args);
	else
		outf(&o,
		     "error: unknown command '%s' (ping, ls, prom, add, rm, move, tenant, "
		     "untenant)\n",
		     line);
	for (size_t off = 0; off < o.len;) {
		ssize_t w = write(fd, o.buf + off, o.len - off);
		if (w <= 0)
			break;
		off += (size_t)w;
	}
	free(o.buf);
}
