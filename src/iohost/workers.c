/* SPDX-License-Identifier: MIT */
/*
 * Workers: threads that share the CPU-heavy work of large requests (a
 * module's encryption) with the sidecore that serves them, fork-join. The
 * sidecore cuts the work into parts and calls workers_run(); it takes parts
 * itself while workers take others, and returns when every part is done.
 * With no workers, or all of them busy, the sidecore does every part
 * itself: the result is the same, only later.
 *
 * Parts are taken one at a time with an atomic counter, so a worker that
 * wakes late, or shares its core with a client, takes fewer of them: the
 * split balances itself. An idle worker spins briefly (yielding its core
 * to anything else runnable) and then sleeps on a futex, so an idle host
 * burns no CPU.
 */
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../lib/barrier.h"
#include "iohost.h"

/* how long an idle worker looks for the next job before it sleeps */
#define WORKER_SPIN_NS 50000u

_Thread_local unsigned ioh_slot = IOH_SLOTS; /* set by sidecores and workers */
_Thread_local sigjmp_buf *ioh_bus_env;

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
	(void)si;
	(void)uc;
	sigjmp_buf *env = ioh_bus_env;
	if (env) {
		ioh_bus_env = NULL;
		siglongjmp(*env, 1);
	}
	/* not a guarded access: die of it, as without the handler */
	signal(sig, SIG_DFL);
	raise(sig);
}

void ioh_bus_guard_install(void)
{
	/* SA_NODEFER: the jump leaves the handler without restoring the
	 * mask, which must not keep SIGBUS blocked */
	struct sigaction sa = {.sa_sigaction = on_sigbus, .sa_flags = SA_SIGINFO | SA_NODEFER};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);
}

static struct {
	pthread_mutex_t lock;
	struct wjob *head, *tail; /* jobs with parts maybe not taken yet */
	uint32_t seq;             /* atomic, a futex: bumped for every job */
	uint32_t sleepers;        /* atomic */
	bool stop;                /* atomic */
	pthread_t th[IOH_MAX_WORKERS];
	int cpus[IOH_MAX_WORKERS];
	unsigned n;
	uint64_t jobs, parts_by_workers; /* atomic */
} W = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void unlink_job(struct wjob *j)
{
	if (!j->listed)
		return;
	if (j->prev)
		j->prev->nextj = j->nextj;
	else
		__atomic_store_n(&W.head, j->nextj, __ATOMIC_RELAXED); /* workers_help peeks */
	if (j->nextj)
		j->nextj->prev = j->prev;
	else
		W.tail = j->prev;
	j->listed = false;
}

/* A part of some job, or NULL. Taken under the lock, so that the job is
 * still listed (alive) when its counter is bumped; its owner waits for
 * every part handed out this way. */
static struct wjob *take(unsigned *part)
{
	pthread_mutex_lock(&W.lock);
	struct wjob *j;
	while ((j = W.head)) {
		*part = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED);
		if (*part < j->nparts)
			break;
		unlink_job(j); /* every part is taken */
	}
	pthread_mutex_unlock(&W.lock);
	return j;
}

static void futex_wait(uint32_t *addr, uint32_t val)
{
	syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake(uint32_t *addr, int n)
{
	syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

static void *worker_main(void *arg)
{
	unsigned idx = (unsigned)(uintptr_t)arg;
	ioh_slot = IOH_MAX_SIDECORES + idx;
	char name[16];
	snprintf(name, sizeof(name), "zl-worker%u", idx);
	pthread_setname_np(pthread_self(), name);
	if (W.cpus[idx] >= 0 && !ioh->conf.nopin) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(W.cpus[idx], &set);
		pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	}
	for (;;) {
		uint32_t seen = __atomic_load_n(&W.seq, __ATOMIC_ACQUIRE);
		unsigned part;
		struct wjob *j = take(&part);
		if (j) {
			j->fn(j->arg, part);
			__atomic_fetch_add(&W.parts_by_workers, 1, __ATOMIC_RELAXED);
			/* A_rel: the part's writes before its owner sees it done;
			 * j is not touched after this */
			__atomic_fetch_add(&j->done, 1, __ATOMIC_RELEASE);
			continue;
		}
		if (__atomic_load_n(&W.stop, __ATOMIC_ACQUIRE))
			break;
		uint64_t t0 = ioh_now_ns();
		while (__atomic_load_n(&W.seq, __ATOMIC_ACQUIRE) == seen &&
		       ioh_now_ns() - t0 < WORKER_SPIN_NS)
			sched_yield(); /* at once when nothing else wants the core */
		if (__atomic_load_n(&W.seq, __ATOMIC_ACQUIRE) != seen)
			continue;
		__atomic_fetch_add(&W.sleepers, 1, __ATOMIC_SEQ_CST);
		/* a job listed after `seen` was read changed seq: no sleep */
		futex_wait(&W.seq, seen);
		__atomic_fetch_sub(&W.sleepers, 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

int workers_start(const int *cpus, unsigned n)
{
	for (unsigned i = 0; i < n && i < IOH_MAX_WORKERS; i++) {
		W.cpus[i] = cpus[i];
		int r = pthread_create(&W.th[i], NULL, worker_main, (void *)(uintptr_t)i);
		if (r) {
			workers_stop();
			return -r;
		}
		W.n = i + 1;
	}
	return 0;
}

void workers_stop(void)
{
	__atomic_store_n(&W.stop, true, __ATOMIC_RELEASE);
	__atomic_fetch_add(&W.seq, 1, __ATOMIC_SEQ_CST);
	futex_wake(&W.seq, INT32_MAX);
	for (unsigned i = 0; i < W.n; i++)
		pthread_join(W.th[i], NULL);
	W.n = 0;
}

unsigned workers_count(void)
{
	return W.n;
}

void workers_stats(uint64_t *jobs, uint64_t *parts)
{
	*jobs = __atomic_load_n(&W.jobs, __ATOMIC_RELAXED);
	*parts = __atomic_load_n(&W.parts_by_workers, __ATOMIC_RELAXED);
}

void workers_post(struct wjob *j)
{
	j->next = j->done = 0;
	j->listed = false;
	if (W.n == 0 || j->nparts < 2) {
		for (unsigned i = 0; i < j->nparts; i++)
			j->fn(j->arg, i);
		j->next = j->done = j->nparts;
		return;
	}
	pthread_mutex_lock(&W.lock);
	j->listed = true;
	j->nextj = NULL;
	j->prev = W.tail;
	if (W.tail)
		W.tail->nextj = j;
	else
		__atomic_store_n(&W.head, j, __ATOMIC_RELAXED);
	W.tail = j;
	pthread_mutex_unlock(&W.lock);
	__atomic_fetch_add(&W.jobs, 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&W.seq, 1, __ATOMIC_SEQ_CST);
	if (__atomic_load_n(&W.sleepers, __ATOMIC_SEQ_CST))
		futex_wake(&W.seq, (int)(j->nparts - 1 < W.n ? j->nparts - 1 : W.n));
}

/* Part p of j, on the calling thread. */
static void run_part(struct wjob *j, unsigned p)
{
	j->fn(j->arg, p);
	/* A_rel: pairs with workers_done's acquire */
	__atomic_fetch_add(&j->done, 1, __ATOMIC_RELEASE);
}

unsigned workers_help(void)
{
	unsigned n = 0, part;
	if (!__atomic_load_n(&W.head, __ATOMIC_RELAXED)) /* a hint; take() decides */
		return 0;
	for (struct wjob *j; (j = take(&part)); n++)
		run_part(j, part);
	return n;
}

bool workers_done(struct wjob *j)
{
	/* A_acq: every part's writes, by whichever thread, are seen */
	if (__atomic_load_n(&j->done, __ATOMIC_ACQUIRE) < j->nparts)
		return false;
	if (W.n) { /* still listed when its last parts were not taken by take() */
		pthread_mutex_lock(&W.lock);
		unlink_job(j);
		pthread_mutex_unlock(&W.lock);
	}
	return true;
}

void workers_run(void (*fn)(void *arg, unsigned part), void *arg, unsigned nparts)
{
	struct wjob j = {.fn = fn, .arg = arg, .nparts = nparts};
	workers_post(&j);
	for (;;) {
		unsigned p = __atomic_fetch_add(&j.next, 1, __ATOMIC_RELAXED);
		if (p >= nparts)
			break;
		run_part(&j, p);
	}
	while (!workers_done(&j))
		zl_cpu_relax();
}
