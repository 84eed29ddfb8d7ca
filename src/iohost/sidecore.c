/* SPDX-License-Identifier: MIT */
/*
 * Sidecores: threads pinned to cores that poll the front-end endpoints
 * they own (zerolink block queues, NBD connections), run the requests, and
 * send the replies, without a system call while there is
 * work (but io_uring's submission, once per round when a file backend has
 * something to start).
 *
 * A round: take the commands of the inbox (endpoints to adopt); serve
 * every endpoint (its poll: requests in, started); submit the ring; reap its
 * completions; hand finished requests to their front-ends (replies out).
 * After idle_us without work the sidecore arms every queue's channel (the
 * clients then kick its descriptor), and sleeps in epoll on those, on the
 * inbox's eventfd and on the ring's eventfd (asynchronous completions
 * only); the first event brings it back to polling.
 */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "../lib/barrier.h"
#include "iohost.h"

#define SC_RING_ENTRIES 512u
#define SC_CQE_BURST 64u

uint64_t ioh_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void sc_complete(struct sidecore *sc, struct ioreq *r)
{
	r->next = NULL;
	if (sc->done_tail)
		sc->done_tail->next = r;
	else
		sc->done_head = r;
	sc->done_tail = r;
}

void sc_job_fail(struct sc_job *j, int e)
{
	int none = 0;
	__atomic_compare_exchange_n(&j->err, &none, e, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
}

void sc_job_start(struct sidecore *sc, struct sc_job *j)
{
	j->next = NULL;
	if (sc->jobs_tail)
		sc->jobs_tail->next = j;
	else
		sc->jobs_head = j;
	sc->jobs_tail = j;
	workers_post(&j->w);
}

/* Help with the workers' parts, then complete the jobs that are done. */
static unsigned sc_jobs(struct sidecore *sc)
{
	workers_help();
	unsigned n = 0;
	struct sc_job **pp = &sc->jobs_head, *prev = NULL;
	while (*pp) {
		struct sc_job *j = *pp;
		if (!workers_done(&j->w)) {
			prev = j;
			pp = &j->next;
			continue;
		}
		*pp = j->next;
		if (sc->jobs_tail == j)
			sc->jobs_tail = prev;
		struct ioreq *r = j->r;
		j->fin(j);
		sc_complete(sc, r);
		n++;
	}
	return n;
}

struct io_uring_sqe *sc_sqe(struct sidecore *sc)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&sc->ring);
	while (!sqe) {
		/* the submission ring is full: hand it to the kernel */
		io_uring_submit(&sc->ring);
		sc->sq_pending = 0;
		sqe = io_uring_get_sqe(&sc->ring);
	}
	sc->sq_pending++;
	sc->uring_inflight++;
	return sqe;
}

void sc_post(struct sidecore *sc, enum sc_cmd_kind kind, struct fe *f)
{
	struct sc_cmd *c = calloc(1, sizeof(*c));
	if (!c)
		abort(); /* a few bytes; nothing sensible to do without them */
	c->kind = kind;
	c->f = f;
	pthread_mutex_lock(&sc->inbox_lock);
	struct sc_cmd **pp = &sc->inbox;
	while (*pp)
		pp = &(*pp)->next;
	/* the sidecore peeks at the inbox head without the lock */
	__atomic_store_n(pp, c, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&sc->inbox_lock);
	uint64_t one = 1;
	ssize_t w = write(sc->inbox_efd, &one, sizeof(one));
	(void)w; /* EAGAIN: the counter is full, the sidecore wakes anyway */
}

static void sc_add(struct sidecore *sc, struct fe *f)
{
	if (sc->nq == sc->capq) {
		unsigned cap = sc->capq ? sc->capq * 2 : 16;
		struct fe **n = realloc(sc->fes, cap * sizeof(*n));
		if (!n)
			abort();
		sc->fes = n;
		sc->capq = cap;
	}
	sc->fes[sc->nq++] = f;
	zl_write_once(&f->sc, sc);
	f->move_to = NULL;
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = f};
	epoll_ctl(sc->ep, EPOLL_CTL_ADD, f->ops->fd(f), &ev);
	zl_write_once(&sc->nqueues, sc->nq);
}

static void sc_del(struct sidecore *sc, unsigned i)
{
	struct fe *f = sc->fes[i];
	epoll_ctl(sc->ep, EPOLL_CTL_DEL, f->ops->fd(f), NULL);
	sc->fes[i] = sc->fes[--sc->nq];
	zl_write_once(&sc->nqueues, sc->nq);
}

/* Returns false when told to stop. */
static bool sc_inbox(struct sidecore *sc)
{
	pthread_mutex_lock(&sc->inbox_lock);
	struct sc_cmd *c = sc->inbox;
	__atomic_store_n(&sc->inbox, NULL, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&sc->inbox_lock);
	bool run = true;
	while (c) {
		struct sc_cmd *n = c->next;
		if (c->kind == SC_ADOPT)
			sc_add(sc, c->f);
		else if (c->kind == SC_STOP)
			run = false;
		free(c);
		c = n;
	}
	return run;
}

/* Completions wait in the kernel for this thread to post them (the ring
 * is COOP_TASKRUN: no interrupt to a polling sidecore for each one). */
static bool sc_taskrun(struct sidecore *sc)
{
	return IO_URING_READ_ONCE(*sc->ring.sq.kflags) & IORING_SQ_TASKRUN;
}

static unsigned sc_reap(struct sidecore *sc)
{
	struct io_uring_cqe *cqes[SC_CQE_BURST];
	if (sc_taskrun(sc))
		io_uring_get_events(&sc->ring);
	unsigned n = io_uring_peek_batch_cqe(&sc->ring, cqes, SC_CQE_BURST);
	for (unsigned i = 0; i < n; i++) {
		struct ioreq *r = io_uring_cqe_get_data(cqes[i]);
		int res = cqes[i]->res;
		sc->uring_inflight--;
		r->dev->be->cqe(sc, r, res);
	}
	if (n)
		io_uring_cq_advance(&sc->ring, n);
	return n;
}

static unsigned sc_finish(struct sidecore *sc)
{
	unsigned n = 0;
	while (sc->done_head) {
		struct ioreq *r = sc->done_head;
		sc->done_head = r->next;
		if (!sc->done_head)
			sc->done_tail = NULL;
		dev_finish(r);
		r->done(r);
		n++;
	}
	return n;
}

static void drain_efd(int fd)
{
	uint64_t v;
	ssize_t r = read(fd, &v, sizeof(v));
	(void)r;
}

/* Requests QoS held back: try them again, in order; a tenant whose first
 * one must still wait keeps the rest waiting too. */
static unsigned sc_retry(struct sidecore *sc)
{
	struct qos_tenant *held[16];
	unsigned nheld = 0, n = 0;
	uint64_t now = ioh_now_ns(); /* one clock reading for the pass */
	struct ioreq **pp = &sc->wait_head, *prev = NULL;
	while (*pp) {
		struct ioreq *r = *pp;
		bool skip = false;
		for (unsigned i = 0; i < nheld && !skip; i++)
			skip = held[i] == r->qos_t;
		if (!skip && nheld < 16 && !qos_admit(r->dev->qos, r, true, now)) {
			held[nheld++] = r->qos_t;
			skip = true;
		}
		if (skip || nheld == 16) {
			prev = r;
			pp = &r->next;
			continue;
		}
		*pp = r->next;
		if (sc->wait_tail == r)
			sc->wait_tail = prev;
		dev_dispatch(sc, r);
		n++;
	}
	return n;
}

/* How long a sleeper with I/O in the kernel waits before it looks at the
 * ring anyway (ms): a bound on the cost of a lost wake-up, not a poll. */
#define SC_INFLIGHT_SLEEP_MS 10

/* Arm everything and sleep until an event. */
static void sc_sleep(struct sidecore *sc)
{
	zl_write_once(&sc->sleeping, 1);
	/* completions signal the ring's eventfd only while we sleep: the
	 * flag is stored before the ring's tail is read below, and the kernel
	 * reads it after posting a completion; should the two still cross,
	 * the bounded sleep finds the completion */
	io_uring_cq_eventfd_toggle(&sc->ring, true);
	zl_fence();
	bool work = false;
	for (unsigned i = 0; i < sc->nq && !work; i++)
		if (sc->fes[i]->ops->arm(sc->fes[i]))
			work = true;
	/* completions the kernel holds for us are posted now, and seen below
	 * (this clears the flag: a sidecore never stays up for it) */
	if (sc_taskrun(sc))
		io_uring_get_events(&sc->ring);
	if (!work && !zl_read_once(&sc->inbox) && !io_uring_cq_ready(&sc->ring) && !sc->done_head &&
	    !sc->wait_head && !sc->jobs_head) {
		struct epoll_event ev[16];
		__atomic_fetch_add(&sc->sleeps, 1, __ATOMIC_RELAXED);
		int n = epoll_wait(sc->ep, ev, 16, sc->uring_inflight ? SC_INFLIGHT_SLEEP_MS : -1);
		(void)n;
		drain_efd(sc->inbox_efd);
		drain_efd(sc->ring_efd);
	}
	io_uring_cq_eventfd_toggle(&sc->ring, false);
	zl_write_once(&sc->sleeping, 0);
}

static void *sc_main(void *arg)
{
	struct sidecore *sc = arg;
	ioh_slot = sc->idx;
	char name[16];
	snprintf(name, sizeof(name), "zl-sidecore%u", sc->idx);
	pthread_setname_np(pthread_self(), name);
	if (sc->cpu >= 0 && !ioh->conf.nopin) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(sc->cpu, &set);
		pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	}
	uint64_t idle_since = ioh_now_ns();
	bool run = true;
	while (run || sc->nq) {
		uint64_t t0 = ioh_now_ns();
		uint64_t prev = zl_read_once(&sc->round_start); /* 0 after a sleep */
		if (prev && t0 - prev > SC_LONG_ROUND_NS) {
			/* nothing in flight was looked at for that long */
			__atomic_fetch_add(&sc->long_rounds, 1, __ATOMIC_RELAXED);
			__atomic_fetch_add(&sc->long_round_ns, t0 - prev, __ATOMIC_RELAXED);
			__atomic_store_n(&sc->long_round_end, t0, __ATOMIC_RELAXED);
		}
		__atomic_store_n(&sc->round_start, t0, __ATOMIC_RELAXED);
		unsigned work = 0;
		if (zl_read_once(&sc->inbox))
			run = sc_inbox(sc) && run;
		if (sc->wait_head)
			work += sc_retry(sc);
		for (unsigned i = 0; i < sc->nq;) {
			struct fe *f = sc->fes[i];
			if (!run)
				f->dead = true; /* stopping: finish what is in flight */
			int n = f->ops->poll(f);
			if (n < 0) {
				sc_del(sc, i);
				ioh_fe_gone(f);
				continue;
			}
			work += (unsigned)n;
			struct sidecore *to = zl_read_once(&f->move_to);
			if (to && to != sc && f->ops->idle(f)) {
				sc_del(sc, i);
				sc_post(to, SC_ADOPT, f);
				continue;
			}
			i++;
		}
		if (sc->sq_pending) {
			io_uring_submit(&sc->ring);
			sc->sq_pending = 0;
		}
		if (sc->uring_inflight)
			work += sc_reap(sc);
		if (sc->jobs_head)
			work += sc_jobs(sc);
		work += sc_finish(sc);
		uint64_t t1 = ioh_now_ns();
		__atomic_fetch_add(&sc->total_ns, t1 - t0, __ATOMIC_RELAXED);
		if (work) {
			__atomic_fetch_add(&sc->busy_ns, t1 - t0, __ATOMIC_RELAXED);
			__atomic_fetch_add(&sc->reqs, work, __ATOMIC_RELAXED);
			idle_since = t1;
		} else if (sc->jobs_head) {
			/* the workers are finishing their last parts */
			zl_cpu_relax();
		} else if (sc->uring_inflight && (sc->wait_head || t1 - idle_since < sc->idle_ns)) {
			/* the kernel's io_uring workers may be doing that I/O on
			 * this core: give them the core rather than spin */
			sched_yield();
		} else if (sc->wait_head) {
			/* requests wait for QoS tokens, which come with time:
			 * a client sharing this core may use it meanwhile */
			sched_yield();
		} else if (t1 - idle_since >= sc->idle_ns && run) {
			sc_sleep(sc);
			__atomic_store_n(&sc->round_start, 0, __ATOMIC_RELAXED);
			idle_since = ioh_now_ns();
			__atomic_fetch_add(&sc->total_ns, idle_since - t1, __ATOMIC_RELAXED);
		}
	}
	return NULL;
}

int sc_start(struct sidecore *sc, unsigned idx, int cpu, uint32_t idle_us)
{
	memset(sc, 0, sizeof(*sc));
	sc->idx = idx;
	sc->cpu = cpu;
	sc->idle_ns = idle_us * 1000u;
	sc->ring_efd = -1;
	pthread_mutex_init(&sc->inbox_lock, NULL);
	/* a completion (a disk's, from its interrupt) leaves its posting to
	 * this thread's next look instead of interrupting it: the sidecore
	 * polls anyway, and each interrupt between cores costs tens of
	 * microseconds on a VM; kernels before 5.19 lack it */
	int r = io_uring_queue_init(SC_RING_ENTRIES, &sc->ring,
				    IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG);
	if (r == -EINVAL)
		r = io_uring_queue_init(SC_RING_ENTRIES, &sc->ring, 0);
	if (r < 0)
		return r;
	sc->ring_ok = true;
	sc->ep = epoll_create1(EPOLL_CLOEXEC);
	sc->inbox_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	sc->ring_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (sc->ep < 0 || sc->inbox_efd < 0 || sc->ring_efd < 0)
		return -errno;
	/* every completion may wake a sleeper (the _async registration
	 * signals only those done by io_uring's worker threads: a disk's
	 * O_DIRECT reads, completed from its interrupt, never woke it); off
	 * while the sidecore polls, see sc_sleep (a kernel without the
	 * ring's flags field leaves it on: more signals, same result) */
	if ((r = io_uring_register_eventfd(&sc->ring, sc->ring_efd)) < 0)
		return r;
	(void)io_uring_cq_eventfd_toggle(&sc->ring, false);
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
	epoll_ctl(sc->ep, EPOLL_CTL_ADD, sc->inbox_efd, &ev);
	epoll_ctl(sc->ep, EPOLL_CTL_ADD, sc->ring_efd, &ev);
	r = pthread_create(&sc->th, NULL, sc_main, sc);
	return -r;
}

void sc_stop(struct sidecore *sc)
{
	sc_post(sc, SC_STOP, NULL);
	pthread_join(sc->th, NULL);
	io_uring_queue_exit(&sc->ring);
	close(sc->ep);
	close(sc->inbox_efd);
	close(sc->ring_efd);
	free(sc->fes);
	pthread_mutex_destroy(&sc->inbox_lock);
}
