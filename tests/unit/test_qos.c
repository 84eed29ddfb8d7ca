/* SPDX-License-Identifier: MIT */
/*
 * The QoS controller (src/iohost/qos.c) on its own, on a clock of the
 * test's: tenant a has a reservation and the burst class 8@1us (every
 * classed request late), user 2 floods on spare capacity.
 *
 * - With nobody protected late, spare traffic goes as deep as it likes.
 * - A window in which a class ran late halves the depth allowed to spare
 *   traffic (from the deepest it went), and a spare request beyond it
 *   waits until one is done; each window it is reached it grows by one
 *   (AIMD), and it never falls below one (spare traffic is never shut out).
 * - Class requests late across a long round of their sidecore (a VM that
 *   stopped) are counted apart and cut nothing.
 * - Five windows with no protected tenant busy give the whole device away
 *   again at once: spare rate and depth unlimited.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/iohost/iohost.h"
#include "../zltest.h"

static uint64_t clock_ns = 1000000000ull;

uint64_t ioh_now_ns(void)
{
	return clock_ns;
}

void outf(struct out *o, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
	va_end(ap);
	if (n > 0)
		o->len += (size_t)n < o->cap - o->len ? (size_t)n : o->cap - o->len - 1;
}

static struct device dev;
static struct fe fe_a = {.uid = 1}, fe_b = {.uid = 2};

#define MAXB 64
static struct ioreq *bulk[MAXB]; /* user 2's admitted, not done */
static unsigned nbulk;

static struct ioreq *req(struct fe *fe)
{
	struct ioreq *r = calloc(1, sizeof(*r));
	CHECK(r);
	r->dev = &dev;
	r->fe = fe;
	r->op = ZL_BLK_OP_READ;
	r->len = 4096;
	r->t_start = clock_ns;
	return r;
}

/* user 2 asks for one more; true if admitted (else it is dropped: the
 * test only looks at whether it would have had to wait) */
static bool bulk_one(void)
{
	struct ioreq *r = req(&fe_b);
	if (!qos_admit(dev.qos, r, false, clock_ns)) {
		/* it would wait on its sidecore's list; this test drops it */
		r->qos_t->deferred--;
		free(r);
		return false;
	}
	CHECK(nbulk < MAXB);
	bulk[nbulk++] = r;
	return true;
}

static void bulk_done(unsigned n)
{
	for (unsigned i = 0; i < n && nbulk; i++) {
		struct ioreq *r = bulk[--nbulk];
		qos_done(r);
		free(r);
	}
}

/* tenant a: n classed reads, each done 2 ms after it came (late: the
 * bound is 1 us); with sc, a long round of their sidecore ended while they
 * were in flight */
static void classed_late(unsigned n, struct sidecore *sc)
{
	struct ioreq *r[8];
	CHECK(n <= 8);
	for (unsigned i = 0; i < n; i++) {
		r[i] = req(&fe_a);
		r[i]->sc = sc;
		CHECK(qos_admit(dev.qos, r[i], false, clock_ns));
		CHECK_EQ(r[i]->qos_class, 1);
	}
	clock_ns += 2000000;
	if (sc)
		sc->long_round_end = clock_ns - 1000000;
	for (unsigned i = 0; i < n; i++) {
		qos_done(r[i]);
		free(r[i]);
	}
}

static char report[4096];

static const char *ls(void)
{
	struct out o = {.buf = report, .cap = sizeof(report)};
	report[0] = 0;
	qos_report(&dev, &o, false);
	return report;
}

/* the depth allowed to spare traffic as ls shows it (-1 unlimited) */
static int depth(void)
{
	const char *at = strstr(ls(), "depth ");
	CHECK(at);
	if (!strncmp(at, "depth unlimited", 15))
		return -1;
	int d = -2;
	CHECK(sscanf(at, "depth %d ops", &d) == 1);
	return d;
}

/* the next window: 10 ms on, seen by user 2's next request */
static void next_window(void)
{
	clock_ns += 10000000;
}

int main(void)
{
	snprintf(dev.conf.name, sizeof(dev.conf.name), "q");
	struct tenantconf a = {.uids = {1}, .nuids = 1, .reserve = 1000, .weight = 1};
	snprintf(a.name, sizeof(a.name), "a");
	a.burst[0].size = 8;
	a.burst[0].bound_ns = 1000;
	a.nburst = 1;
	char err[256];
	CHECK_EQ(qos_set(&dev, &a, err, sizeof(err)), 0);
	CHECK(dev.qos);

	/* a first: it is t[0]; user 2 t[1] */
	classed_late(1, NULL);
	for (int i = 0; i < 40; i++)
		CHECK(bulk_one());
	printf("%s", ls());
	CHECK(strstr(report, "spare unlimited, depth unlimited (40 out)"));

	/* a window with a class late: rate and depth cut, from 40 deep */
	classed_late(4, NULL);
	next_window();
	CHECK(!bulk_one()); /* the window ends here: 40 out, 20 allowed */
	printf("%s", ls());
	CHECK_EQ(depth(), 20);
	CHECK(strstr(report, "(40 out)"));
	CHECK(strstr(report, "1 of the depth"));
	CHECK(!strstr(report, "spare unlimited"));
	bulk_done(21);
	clock_ns += 1000000; /* the cut rate's tokens */
	CHECK(bulk_one());   /* 19 out: one more */
	CHECK(!bulk_one());
	CHECK(strstr(ls(), "depth 20 ops (20 out)"));

	/* late across a long round of their sidecore: counted apart, no cut;
	 * the depth was reached, so it grows by one */
	struct sidecore sc = {0};
	classed_late(4, &sc);
	next_window();
	bulk_one();
	printf("%s", ls());
	CHECK_EQ(depth(), 21);
	CHECK(strstr(report, "1 of the depth"));
	CHECK(strstr(report, "burst class 1: 8 ops within 0.001 ms; 9 requests, 9 late (4 "
			     "across a long round)"));

	/* late window after late window: halved down to one, not to none */
	int want[] = {10, 5, 2, 1, 1};
	for (unsigned w = 0; w < sizeof(want) / sizeof(want[0]); w++) {
		/* user 2 used spare capacity in the window (else no cut);
		 * the class's bucket refills at the reservation: 4 ops in 4 ms */
		bulk_done(nbulk);
		clock_ns += 4000000;
		CHECK(bulk_one());
		classed_late(4, NULL);
		next_window();
		bulk_one();
		CHECK_EQ(depth(), want[w]);
	}
	bulk_done(nbulk);
	clock_ns += 1000000;
	CHECK(bulk_one()); /* alone in the device: always one */
	CHECK(!bulk_one());

	/* a stops: five windows later, everything is given away again */
	for (int w = 0; w < 6; w++) {
		next_window();
		bulk_done(1);
		bulk_one();
	}
	printf("%s", ls());
	CHECK(strstr(report, "spare unlimited, depth unlimited"));
	for (int i = 0; i < 30; i++)
		CHECK(bulk_one());

	bulk_done(nbulk);
	qos_free(dev.qos);
	printf("ok\n");
	return 0;
}
