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

struct job {
	void (*fn)(void *arg, unsigned part);
	void *arg;
	unsigned nparts;
	unsigned next; /* atomic: the next part to take */
	unsigned done; /* atomic: parts finished */
	bool listed;   /* under W.lock */
	struct job *prev, *nextj;
};

static struct {
	pthread_mutex_t lock;
	struct job *head, *tail; /* jobs with parts maybe not taken yet */
	uint32_t seq;            /* atomic, a futex: bumped for every job */
	uint32_t sleepers;       /* atomic */
	bool stop;               /* atomic */
	pthread_t th[IOH_MAX_WORKERS];
	int cpus[IOH_MAX_WORKERS];
	unsigned n;
	uint64_t jobs, parts_by_workers; /* atomic */
} W = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void unlink_job(struct job *j)
{
	if (!j->listed)
		return;
	if (j->prev)
		j->prev->nextj = j->nextj;
	else
		W.head = j->nextj;
	if (j->nextj)
		j->nextj->prev = j->prev;
	else
		W.tail = j->prev;
	j->listed = false;
}

/* A part of some job, or NULL. Taken under the lock, so that the job is
 * still listed (alive) when its counter is bumped; its owner waits for
 * every part handed out this way. */
static struct job *take(unsigned *part)
{
	pthread_mutex_lock(&W.lock);
	struct job *j;
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
		struct job *j = take(&part);
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

void workers_run(void (*fn)(void *arg, unsigned part), void *arg, unsigned nparts)
{
	if (W.n == 0 || nparts < 2) {
		for (unsigned i = 0; i < nparts; i++)
			fn(arg, i);
		return;
	}
	struct job j = {.fn = fn, .arg = arg, .nparts = nparts};
	pthread_mutex_lock(&W.lock);
	j.listed = true;
	j.prev = W.tail;
	if (W.tail)
		W.tail->nextj = &j;
	else
		W.head = &j;
	W.tail = &j;
	pthread_mutex_unlock(&W.lock);
	__atomic_fetch_add(&W.jobs, 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&W.seq, 1, __ATOMIC_SEQ_CST);
	if (__atomic_load_n(&W.sleepers, __ATOMIC_SEQ_CST))
		futex_wake(&W.seq, (int)(nparts - 1 < W.n ? nparts - 1 : W.n));
	unsigned mine = 0;
	for (;;) {
		unsigned p = __atomic_fetch_add(&j.next, 1, __ATOMIC_RELAXED);
		if (p >= nparts)
			break;
		fn(arg, p);
		mine++;
	}
	pthread_mutex_lock(&W.lock);
	unlink_job(&j);
	pthread_mutex_unlock(&W.lock);
	/* A_acq: pairs with the workers' release of done */
	while (__atomic_load_n(&j.done, __ATOMIC_ACQUIRE) + mine < nparts)
		zl_cpu_relax();
}
