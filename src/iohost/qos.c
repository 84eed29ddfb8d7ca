/* SPDX-License-Identifier: MIT */
/*
 * Per-tenant QoS of a device, after Gatekeeper (WIOV'11): each tenant has a
 * reservation (operations per second it is guaranteed), a limit (at most
 * this many) and a weight (its share of what is left). A tenant is a named
 * set of users (`zerolink iohost tenant`, or [tenant NAME] in the config);
 * every other user is a tenant of its own with weight 1.
 *
 * Unit: an operation moves up to 4 KiB; a larger request counts one per
 * 4 KiB (a 1 MiB write is 256); flush, discard and write-zeroes count one.
 *
 * Enforcement, in dev_submit() on the sidecore, before the interposition
 * chain: token buckets. A request is admitted if its tenant is under its
 * limit and has reservation tokens, or, failing those, tokens of the spare
 * rate; otherwise it waits on its sidecore's list (in order, per tenant)
 * and is tried again on every turn of the sidecore's loop. Buckets may go
 * into debt by one request, so a request larger than a bucket passes.
 *
 * The spare rate S is shared by the active tenants in proportion to their
 * weights. It starts unlimited (work-conserving: with no contention any
 * tenant can use the whole device). A controller, run every 10 ms by
 * whichever sidecore first sees the window end, measures each tenant with
 * a reservation: the share of its reservation it got over the time it was
 * busy (had requests outstanding or waiting here, or paused less than
 * QOS_TURN_NS between its last one done and its next), smoothed over
 * windows. Below 97% while
 * others used spare capacity, the device is over-committed: S is cut by
 * 15%. Otherwise S grows by 5% a window while it holds someone back (20%
 * when it does not), and becomes unlimited again once above twice what the
 * device delivered: additive-increase/multiplicative-decrease on the
 * capacity given away, the reservations kept out of it.
 *
 * Burst classes promise a bound on latency, which a rate bounds only on
 * average: a flooding tenant's requests already in the device are ahead
 * of a burst. So a window in which more than 1% of a tenant's classed
 * requests were late also halves the depth allowed to spare traffic (ops
 * admitted on spare capacity and not done; from the deepest it went), and
 * each window the depth was reached without a class late it grows by one;
 * it is never below one. Late requests that were in flight across a long
 * round of their sidecore (the VM stopped it) are counted, but cut
 * nothing: no scheduling here would have kept them in time. Five windows
 * in a row with no tenant busy that has a reservation or classes give the
 * whole device away at once (rate and depth unlimited).
 *
 * A reservation is a promise the device must be able to keep: one larger
 * than what the tenant's own queue depth reaches alone keeps S cut to its
 * floor (1% of what the device delivers) while others are busy.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iohost.h"

#define QOS_WINDOW_NS 10000000ull
#define QOS_BURST_S 0.002 /* a bucket holds 2 ms of its rate */
/* a limit's bucket 5 ms: a tenant whose sidecore or client lost its core
 * for a scheduler slice (a few ms on a busy machine) may catch up */
#define QOS_LIMIT_BURST_S 0.005
#define QOS_CUT 0.85
#define QOS_GROW_HELD 1.05
#define QOS_GROW_FREE 1.2
/* A pause shorter than this between a tenant's last request done and its
 * next one is its client turning around (a wake-up, a reschedule behind
 * another process on its core), and counts as busy: a closed-loop client
 * whose requests take too long is short of its reservation even if it
 * never has all its requests out at once. */
#define QOS_TURN_NS 500000ull
/* Windows in a row with no tenant busy that has a reservation or burst
 * classes, after which the spare rate and depth are unlimited again. */
#define QOS_CALM_WINDOWS 5

uint32_t qos_cost(const struct ioreq *r)
{
	if (r->op != ZL_BLK_OP_READ && r->op != ZL_BLK_OP_WRITE)
		return 1;
	return r->len <= 4096 ? 1 : (r->len + 4095) / 4096;
}

static struct qos *qos_new(void)
{
	struct qos *q = calloc(1, sizeof(*q));
	if (!q)
		return NULL;
	pthread_mutex_init(&q->lock, NULL);
	q->spare = -1;
	q->spare_depth = -1;
	q->win_start = ioh_now_ns();
	return q;
}

void qos_free(struct qos *q)
{
	if (!q)
		return;
	pthread_mutex_destroy(&q->lock);
	free(q);
}

static bool conf_has(const struct tenantconf *c, uint32_t uid)
{
	if (uid == UINT32_MAX)
		return c->tcp;
	for (unsigned i = 0; i < c->nuids; i++)
		if (c->uids[i] == uid)
			return true;
	return false;
}

/* The tenant of a client's user (UINT32_MAX: NBD over TCP), under lock. */
static struct qos_tenant *tenant_of(struct qos *q, uint32_t uid)
{
	for (unsigned i = 0; i < q->n; i++)
		if (q->t[i].configured && conf_has(&q->t[i].c, uid))
			return &q->t[i];
	for (unsigned i = 0; i < q->n; i++)
		if (!q->t[i].configured && q->t[i].uid == uid)
			return &q->t[i];
	struct qos_tenant *t;
	if (q->n < QOS_TENANTS - 1) {
		t = &q->t[q->n++];
	} else {
		/* full: every further user shares the last entry */
		t = &q->t[QOS_TENANTS - 1];
		if (q->n == QOS_TENANTS)
			return t;
		q->n = QOS_TENANTS;
	}
	memset(&t->c, 0, sizeof(t->c));
	t->c.weight = 1;
	t->uid = uid;
	t->last_ns = ioh_now_ns();
	return t;
}

static double burst(double rate, double secs)
{
	double b = rate * secs;
	return b < 1 ? 1 : b;
}

static void refill(struct qos *q, struct qos_tenant *t, uint64_t now)
{
	if (now <= t->last_ns)
		return; /* another sidecore's later clock got here first */
	double dt = (double)(now - t->last_ns) / 1e9;
	t->last_ns = now;
	if (t->c.reserve) {
		t->tok_r += (double)t->c.reserve * dt;
		if (t->tok_r > burst((double)t->c.reserve, QOS_BURST_S))
			t->tok_r = burst((double)t->c.reserve, QOS_BURST_S);
	}
	if (t->c.limit) {
		t->tok_l += (double)t->c.limit * dt;
		if (t->tok_l > burst((double)t->c.limit, QOS_LIMIT_BURST_S))
			t->tok_l = burst((double)t->c.limit, QOS_LIMIT_BURST_S);
	}
	for (unsigned k = 0; k < t->c.nburst; k++) {
		t->tok_b[k] += (double)t->c.reserve * dt;
		if (t->tok_b[k] > (double)t->c.burst[k].size)
			t->tok_b[k] = (double)t->c.burst[k].size;
	}
	if (q->spare >= 0) {
		double w = (double)t->c.weight, sw = q->sumw > w ? q->sumw : w;
		double share = q->spare * w / sw;
		t->tok_s += share * dt;
		if (t->tok_s > burst(share, QOS_BURST_S))
			t->tok_s = burst(share, QOS_BURST_S);
	}
}

/* The burst class of a request arriving (Nested QoS): the innermost whose
 * bucket, and those of every class around it, hold its cost; the buckets
 * of that class and those around it pay. None: 0. Under lock. */
static uint8_t classify(struct qos_tenant *t, uint32_t cost)
{
	unsigned n = t->c.nburst, k = n;
	while (k > 0 && t->tok_b[k - 1] >= (double)cost)
		k--;
	if (k == n)
		return 0;
	for (unsigned j = k; j < n; j++)
		t->tok_b[j] -= (double)cost;
	return (uint8_t)(k + 1);
}

/* A tenant's requests out or waiting went from none to some (under lock). */
static void busy_start(struct qos *q, struct qos_tenant *t, uint64_t now)
{
	t->busy_since = now;
	if (t->idle_since && now - t->idle_since < QOS_TURN_NS)
		t->busy_since = t->idle_since > q->win_start ? t->idle_since : q->win_start;
}

/* ... and back to none. */
static void busy_end(struct qos_tenant *t, uint64_t now)
{
	if (now > t->busy_since)
		t->busy_ns += now - t->busy_since;
	t->idle_since = now;
}

/* The controller: the end of a window (under lock). */
static void window(struct qos *q, uint64_t now)
{
	double ws = (double)(now - q->win_start) / 1e9;
	double total = 0, spare_used = 0, sumw = 0;
	bool held = false;
	for (unsigned i = 0; i < q->n; i++) {
		struct qos_tenant *t = &q->t[i];
		total += (double)t->win_done;
		spare_used += (double)t->win_spare;
	}
	bool cut = false, late = false, guarded = false;
	for (unsigned i = 0; i < q->n; i++) {
		struct qos_tenant *t = &q->t[i];
		uint64_t busy = t->busy_ns;
		if ((t->outstanding || t->deferred) && now > t->busy_since) {
			busy += now - t->busy_since;
			t->busy_since = now;
		}
		double bs = (double)busy / 1e9;
		t->rate = (double)t->win_done / ws;
		/* how much of its reservation a busy reserved tenant got,
		 * smoothed over windows (one window is a few hundred
		 * requests: noisy) */
		if (t->c.reserve && bs >= 0.3 * ws) {
			double got = (double)t->win_done / ((double)t->c.reserve * bs);
			t->got = t->got > 0 ? 0.7 * t->got + 0.3 * got : got;
			if (t->got < 0.97 && spare_used - (double)t->win_spare > 0)
				cut = true;
		}
		/* requests inside a burst class late (more than 1%): the
		 * device's queue is too long for the bound */
		if (t->win_cls_late && t->win_cls_late * 100 > t->win_cls_done &&
		    spare_used - (double)t->win_spare > 0)
			cut = late = true;
		t->win_cls_done = t->win_cls_late = 0;
		if ((t->c.reserve || t->c.nburst) && (busy || t->deferred || t->outstanding))
			guarded = true;
		if (busy || t->deferred)
			sumw += (double)t->c.weight;
		held = held || t->win_held;
		t->busy_ns = 0;
		t->win_done = t->win_spare = 0;
		t->win_held = false;
	}
	q->dev_rate = total / ws;
	q->sumw = sumw;
	if (cut) {
		double base = q->spare >= 0 ? q->spare : spare_used / ws;
		double floor = q->dev_rate * 0.01 > 100 ? q->dev_rate * 0.01 : 100;
		q->spare = base * QOS_CUT > floor ? base * QOS_CUT : floor;
		q->cuts++;
	} else if (q->spare >= 0) {
		q->spare = q->spare * (held ? QOS_GROW_HELD : QOS_GROW_FREE) + 100;
		if (q->spare > 2 * q->dev_rate + 1000)
			q->spare = -1;
	}
	/* the spare traffic's depth in the device: halved in a window a
	 * class ran late, one more in a window it was reached (AIMD) */
	if (late) {
		uint32_t d = q->spare_depth < 0 ? q->win_spare_peak : (uint32_t)q->spare_depth;
		q->spare_depth = d / 2 > 1 ? (int32_t)(d / 2) : 1;
		q->depth_cuts++;
	} else if (q->spare_depth >= 0 && q->win_spare_peak >= (uint32_t)q->spare_depth) {
		q->spare_depth++;
	}
	/* nobody to protect for a while: give the device away at once
	 * (growing back 5% a window would take the next tenant alone half
	 * a second to reach the whole device) */
	q->calm = guarded ? 0 : q->calm + 1;
	if (q->spare < 0 || q->calm >= QOS_CALM_WINDOWS) {
		q->spare = -1;
		q->spare_depth = -1;
	}
	q->win_spare_peak = q->spare_out;
	q->win_start = now;
}

bool qos_admit(struct qos *q, struct ioreq *r, bool head, uint64_t now)
{
	if (!r->qos_t)
		r->qos_cost = qos_cost(r);
	uint32_t cost = r->qos_cost;
	pthread_mutex_lock(&q->lock);
	/* a sidecore's clock may be a little behind another's */
	if (now > q->win_start && now - q->win_start >= QOS_WINDOW_NS)
		window(q, now);
	struct qos_tenant *t = r->qos_t;
	if (!t)
		t = r->qos_t = tenant_of(q, r->fe ? r->fe->uid : UINT32_MAX);
	refill(q, t, now);
	if (!head)
		r->qos_class = t->c.nburst ? classify(t, cost) : 0;
	bool ok = false;
	if (t->deferred && !head && !r->qos_class) {
		ok = false; /* behind the tenant's waiting requests */
	} else if (t->c.limit && t->tok_l <= 0) {
		t->win_held = true;
	} else if (r->qos_class) {
		/* inside its envelope: now, on the reservation (which
		 * may go into debt by the classes' sizes) */
		t->tok_r -= cost;
		ok = true;
	} else if (t->c.reserve && t->tok_r > 0) {
		t->tok_r -= cost;
		ok = true;
	} else if ((q->spare < 0 || t->tok_s > 0) &&
		   (q->spare_depth < 0 || q->spare_out < (uint32_t)q->spare_depth)) {
		if (q->spare >= 0)
			t->tok_s -= cost;
		t->win_spare += cost;
		r->qos_spare = true;
		q->spare_out += cost;
		if (q->spare_out > q->win_spare_peak)
			q->win_spare_peak = q->spare_out;
		ok = true;
	} else {
		t->win_held = true;
	}
	if (!head && !t->outstanding && !t->deferred)
		busy_start(q, t, now);
	if (ok) {
		if (t->c.limit)
			t->tok_l -= cost;
		t->outstanding++;
		if (head)
			t->deferred--;
		t->reqs++;
		t->units += cost;
	} else if (!head) {
		t->deferred++;
		t->deferrals++;
	}
	pthread_mutex_unlock(&q->lock);
	return ok;
}

void qos_done(struct ioreq *r)
{
	struct qos *q = r->dev->qos;
	struct qos_tenant *t = r->qos_t;
	uint64_t now = ioh_now_ns();
	pthread_mutex_lock(&q->lock);
	t->win_done += r->qos_cost;
	unsigned k = r->qos_class - 1u; /* (the classes may have changed since) */
	if (r->qos_class && k < t->c.nburst) {
		t->cls_reqs[k]++;
		t->win_cls_done++;
		if (now - r->t_start > t->c.burst[k].bound_ns) {
			t->cls_late[k]++;
			/* a long round ended while it was in flight, or the
			 * one completing it has run long: no cut of the spare
			 * traffic would have helped, so the controller does
			 * not see it */
			const struct sidecore *sc = r->sc;
			uint64_t end =
				sc ? __atomic_load_n(&sc->long_round_end, __ATOMIC_RELAXED) : 0;
			uint64_t rs = sc ? __atomic_load_n(&sc->round_start, __ATOMIC_RELAXED) : 0;
			if (end > r->t_start || (rs && now - rs > SC_LONG_ROUND_NS))
				t->cls_late_long[k]++;
			else
				t->win_cls_late++;
		}
	}
	r->qos_class = 0;
	if (r->qos_spare) {
		q->spare_out -= r->qos_cost;
		r->qos_spare = false;
	}
	if (--t->outstanding == 0 && !t->deferred)
		busy_end(t, now);
	if (now > q->win_start && now - q->win_start >= QOS_WINDOW_NS)
		window(q, now);
	pthread_mutex_unlock(&q->lock);
	r->qos_t = NULL;
}

int qos_set(struct device *d, const struct tenantconf *c, char *err, size_t errlen)
{
	struct qos *q = __atomic_load_n(&d->qos, __ATOMIC_ACQUIRE);
	if (!q) {
		if (!(q = qos_new()))
			return -ENOMEM;
		__atomic_store_n(&d->qos, q, __ATOMIC_RELEASE);
	}
	pthread_mutex_lock(&q->lock);
	struct qos_tenant *t = NULL;
	for (unsigned i = 0; i < q->n; i++)
		if (q->t[i].configured && !strcmp(q->t[i].c.name, c->name))
			t = &q->t[i];
	/* a user belongs to one tenant of a device */
	for (unsigned i = 0; i < q->n; i++) {
		if (!q->t[i].configured || &q->t[i] == t)
			continue;
		for (unsigned k = 0; k < c->nuids; k++)
			if (conf_has(&q->t[i].c, c->uids[k])) {
				snprintf(err, errlen, "device %s: user %u is in tenant %s already",
					 d->conf.name, c->uids[k], q->t[i].c.name);
				pthread_mutex_unlock(&q->lock);
				return -EEXIST;
			}
		if (c->tcp && q->t[i].c.tcp) {
			snprintf(err, errlen, "device %s: tcp is in tenant %s already",
				 d->conf.name, q->t[i].c.name);
			pthread_mutex_unlock(&q->lock);
			return -EEXIST;
		}
	}
	if (!t) {
		/* a user's own entry becomes the tenant, or a free one */
		for (unsigned i = 0; i < q->n && !t; i++)
			if (!q->t[i].configured && conf_has(c, q->t[i].uid))
				t = &q->t[i];
		if (!t && q->n < QOS_TENANTS - 1)
			t = &q->t[q->n++];
		if (!t) {
			snprintf(err, errlen, "device %s: too many tenants (at most %d)",
				 d->conf.name, QOS_TENANTS - 1);
			pthread_mutex_unlock(&q->lock);
			return -ENOSPC;
		}
		t->last_ns = ioh_now_ns();
		t->uid = UINT32_MAX - 1; /* nobody's own */
	}
	t->c = *c;
	t->configured = true;
	t->tok_r = t->tok_l = t->tok_s = 0;
	for (unsigned k = 0; k < QOS_CLASSES; k++) {
		t->tok_b[k] = k < c->nburst ? (double)c->burst[k].size : 0;
		t->cls_reqs[k] = t->cls_late[k] = t->cls_late_long[k] = 0;
	}
	/* the users' own entries give way to it */
	for (unsigned i = 0; i < q->n; i++)
		if (!q->t[i].configured && conf_has(c, q->t[i].uid))
			q->t[i].uid = UINT32_MAX - 1;
	q->configured = 0;
	for (unsigned i = 0; i < q->n; i++)
		q->configured += q->t[i].configured;
	pthread_mutex_unlock(&q->lock);
	return 0;
}

int qos_unset(struct device *d, const char *name, char *err, size_t errlen)
{
	struct qos *q = __atomic_load_n(&d->qos, __ATOMIC_ACQUIRE);
	int r = -ENOENT;
	if (q) {
		pthread_mutex_lock(&q->lock);
		for (unsigned i = 0; i < q->n; i++)
			if (q->t[i].configured && !strcmp(q->t[i].c.name, name)) {
				/* requests in flight keep the entry; it serves nobody */
				q->t[i].configured = false;
				q->t[i].uid = UINT32_MAX - 1;
				q->t[i].c.reserve = q->t[i].c.limit = 0;
				q->t[i].c.nburst = 0;
				q->configured--;
				r = 0;
			}
		pthread_mutex_unlock(&q->lock);
	}
	if (r)
		snprintf(err, errlen, "device %s has no tenant %s", d->conf.name, name);
	return r;
}

static void who(const struct qos_tenant *t, char *b, size_t n)
{
	if (!t->configured) {
		/* UINT32_MAX - 1: a tenant removed, or a user's own entry that
		 * gave way to a tenant (its requests in flight keep it) */
		if (t->uid == UINT32_MAX - 1 && t->c.name[0])
			snprintf(b, n, "%s (removed)", t->c.name);
		else if (t->uid == UINT32_MAX - 1)
			snprintf(b, n, "a user's own (now in a tenant)");
		else if (t->uid == UINT32_MAX)
			snprintf(b, n, "tcp");
		else
			snprintf(b, n, "uid %u", t->uid);
		return;
	}
	size_t k = (size_t)snprintf(b, n, "%s", t->c.name);
	for (unsigned i = 0; i < t->c.nuids && k < n; i++)
		k += (size_t)snprintf(b + k, n - k, "%s%u", i ? "," : " (uid ", t->c.uids[i]);
	if (k < n && t->c.tcp)
		k += (size_t)snprintf(b + k, n - k, "%s", t->c.nuids ? ",tcp" : " (tcp");
	if (k < n && (t->c.nuids || t->c.tcp))
		snprintf(b + k, n - k, ")");
}

void qos_report(struct device *d, struct out *o, bool prom)
{
	struct qos *q = __atomic_load_n(&d->qos, __ATOMIC_ACQUIRE);
	if (!q)
		return;
	pthread_mutex_lock(&q->lock);
	if (!prom) {
		char rate[32], depth[32];
		if (q->spare < 0)
			snprintf(rate, sizeof(rate), "unlimited");
		else
			snprintf(rate, sizeof(rate), "%.0f ops/s", q->spare);
		if (q->spare_depth < 0)
			snprintf(depth, sizeof(depth), "unlimited");
		else
			snprintf(depth, sizeof(depth), "%d ops", (int)q->spare_depth);
		outf(o,
		     "    qos: spare %s, depth %s (%u out); %.0f ops/s delivered; %llu cuts, "
		     "%llu of the depth\n",
		     rate, depth, q->spare_out, q->dev_rate, (unsigned long long)q->cuts,
		     (unsigned long long)q->depth_cuts);
	} else {
		outf(o,
		     "zerolink_iohost_qos_cuts_total{device=\"%s\",of=\"rate\"} %llu\n"
		     "zerolink_iohost_qos_cuts_total{device=\"%s\",of=\"depth\"} %llu\n"
		     "zerolink_iohost_qos_spare_depth{device=\"%s\"} %d\n",
		     d->conf.name, (unsigned long long)q->cuts, d->conf.name,
		     (unsigned long long)q->depth_cuts, d->conf.name, (int)q->spare_depth);
	}
	for (unsigned i = 0; i < q->n; i++) {
		const struct qos_tenant *t = &q->t[i];
		if (!t->configured && !t->reqs)
			continue;
		char w[96];
		who(t, w, sizeof(w));
		if (prom) {
			outf(o, "zerolink_iohost_qos_ops_total{device=\"%s\",tenant=\"%s\"} %llu\n",
			     d->conf.name, w, (unsigned long long)t->units);
			outf(o,
			     "zerolink_iohost_qos_deferred_total{device=\"%s\",tenant=\"%s\"} "
			     "%llu\n",
			     d->conf.name, w, (unsigned long long)t->deferrals);
			for (unsigned k = 0; k < t->c.nburst; k++) {
				outf(o,
				     "zerolink_iohost_qos_burst_requests_total{device=\"%s\","
				     "tenant=\"%s\",class=\"%u\"} %llu\n",
				     d->conf.name, w, k + 1, (unsigned long long)t->cls_reqs[k]);
				outf(o,
				     "zerolink_iohost_qos_burst_late_total{device=\"%s\","
				     "tenant=\"%s\",class=\"%u\"} %llu\n",
				     d->conf.name, w, k + 1, (unsigned long long)t->cls_late[k]);
				outf(o,
				     "zerolink_iohost_qos_burst_late_long_round_total{"
				     "device=\"%s\",tenant=\"%s\",class=\"%u\"} %llu\n",
				     d->conf.name, w, k + 1,
				     (unsigned long long)t->cls_late_long[k]);
			}
			continue;
		}
		outf(o,
		     "      tenant %s: reserve %llu limit %llu weight %u; %.0f ops/s; %llu ops, "
		     "%llu requests waited",
		     w, (unsigned long long)t->c.reserve, (unsigned long long)t->c.limit,
		     t->c.weight, t->rate, (unsigned long long)t->units,
		     (unsigned long long)t->deferrals);
		if (t->c.reserve) /* smoothed, while busy */
			outf(o, "; got %.2f of its reservation", t->got);
		outf(o, "\n");
		for (unsigned k = 0; k < t->c.nburst; k++)
			outf(o,
			     "        burst class %u: %u ops within %.3f ms; %llu requests, %llu "
			     "late (%llu across a long round)\n",
			     k + 1, t->c.burst[k].size, (double)t->c.burst[k].bound_ns / 1e6,
			     (unsigned long long)t->cls_reqs[k], (unsigned long long)t->cls_late[k],
			     (unsigned long long)t->cls_late_long[k]);
	}
	pthread_mutex_unlock(&q->lock);
}
