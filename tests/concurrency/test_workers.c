/* SPDX-License-Identifier: MIT */
/*
 * The I/O host's workers (src/iohost/workers.c): four threads, as four
 * sidecores, share jobs of 1 to 40 parts with three workers, many at
 * once. Every part of every job runs exactly once, and its writes are seen
 * by the job's owner when workers_run() returns. Two of the callers post
 * their jobs without waiting (workers_post), eight at a time, help with
 * anyone's parts (workers_help) and check each job once workers_done()
 * says so, as a sidecore does. Workers that went to sleep wake for new
 * jobs. Built for ThreadSanitizer: the hand-over of
 * parts and their results must be ordered.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../src/iohost/iohost.h"

/* what workers.c reads of the I/O host: whether to pin (not here) */
static struct iohost host = {.conf = {.nopin = true}};
struct iohost *ioh = &host;

uint64_t ioh_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

#define CALLERS 4
#define JOBS 3000
#define MAXP 40

struct work {
	unsigned runs[MAXP];   /* plain: each part is one thread's */
	uint64_t result[MAXP]; /* plain: read by the owner after the join */
	uint64_t seed;
};

static void part(void *arg, unsigned p)
{
	struct work *w = arg;
	w->runs[p]++;
	uint64_t x = w->seed + p;
	for (int i = 0; i < 50; i++)
		x = x * 6364136223846793005ull + 1442695040888963407ull;
	w->result[p] = x;
}

/* Every part of w's n ran once, and its result is seen. */
static void check(const struct work *w, unsigned n, unsigned j, unsigned id)
{
	for (unsigned p = 0; p < MAXP; p++) {
		unsigned want = p < n;
		if (w->runs[p] != want) {
			fprintf(stderr, "job %u of %u: part %u of %u ran %u times\n", j, id, p, n,
				w->runs[p]);
			exit(1);
		}
		if (p < n) {
			uint64_t x = w->seed + p;
			for (int i = 0; i < 50; i++)
				x = x * 6364136223846793005ull + 1442695040888963407ull;
			if (w->result[p] != x) {
				fprintf(stderr, "job %u of %u: part %u's result not seen\n", j, id,
					p);
				exit(1);
			}
		}
	}
}

static unsigned next_n(uint64_t *rnd)
{
	*rnd ^= *rnd << 13;
	*rnd ^= *rnd >> 7;
	*rnd ^= *rnd << 17;
	return 1 + (unsigned)(*rnd % MAXP);
}

#define WINDOW 8

static void *caller(void *arg)
{
	unsigned id = (unsigned)(uintptr_t)arg;
	ioh_slot = id;
	uint64_t rnd = 88172645463325252ull ^ id;
	if (id % 2) {
		/* posted jobs, a window of them in flight, finished in order */
		struct work w[WINDOW];
		struct wjob wj[WINDOW];
		unsigned n[WINDOW];
		for (unsigned j = 0; j < JOBS + WINDOW; j++) {
			unsigned k = j % WINDOW;
			if (j >= WINDOW) {
				while (!workers_done(&wj[k]))
					workers_help();
				check(&w[k], n[k], j - WINDOW, id);
			}
			if (j >= JOBS)
				continue;
			n[k] = next_n(&rnd);
			w[k] = (struct work){.seed = rnd};
			wj[k] = (struct wjob){.fn = part, .arg = &w[k], .nparts = n[k]};
			workers_post(&wj[k]);
			if (j % 500 == 0)
				usleep(2000);
		}
		return NULL;
	}
	for (unsigned j = 0; j < JOBS; j++) {
		unsigned n = next_n(&rnd);
		struct work w = {.seed = rnd};
		workers_run(part, &w, n);
		check(&w, n, j, id);
		if (j % 500 == 0)
			usleep(2000); /* long enough for idle workers to sleep */
	}
	return NULL;
}

int main(void)
{
	/* no workers: the caller does every part */
	struct work w = {.seed = 1};
	workers_run(part, &w, 7);
	for (unsigned p = 0; p < 7; p++)
		if (w.runs[p] != 1)
			return 1;
	/* nor when posted: workers_post() runs them */
	struct work w2 = {.seed = 2};
	struct wjob j2 = {.fn = part, .arg = &w2, .nparts = 5};
	workers_post(&j2);
	if (!workers_done(&j2))
		return 1;
	check(&w2, 5, 0, 0);
	int cpus[3] = {-1, -1, -1};
	if (workers_start(cpus, 3)) {
		fprintf(stderr, "workers_start failed\n");
		return 1;
	}
	if (workers_count() != 3)
		return 1;
	pthread_t t[CALLERS];
	for (unsigned i = 0; i < CALLERS; i++)
		pthread_create(&t[i], NULL, caller, (void *)(uintptr_t)i);
	for (unsigned i = 0; i < CALLERS; i++)
		pthread_join(t[i], NULL);
	uint64_t jobs, parts;
	workers_stats(&jobs, &parts);
	workers_stop();
	printf("ok: %llu jobs shared, %llu parts done by workers\n", (unsigned long long)jobs,
	       (unsigned long long)parts);
	/* single-part jobs are not shared; every other one is */
	return jobs > 0 ? 0 : 1;
}
