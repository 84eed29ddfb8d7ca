/* SPDX-License-Identifier: MIT */
/*
 * Fido's question: can separate components match a monolith? A three-stage
 * pipeline (producer -> middle -> consumer) moving records of 4 KiB to
 * 1 MiB, built four ways:
 *
 *   zerolink   three processes; the producer fills pool buffers, the middle
 *              forwards them unread (transitive zero-copy), the consumer reads
 *              and releases; buffers return hop by hop.
 *   monolith   three threads of one process passing pointers through rings.
 *   tcp, unix  three processes relaying the bytes through kernel sockets.
 *
 * Placement is the same for all: producer and consumer share core A, the
 * middle stage runs on core B. Waiting: the monolith and zerolink (in its
 * polling mode) spin and then yield the core, never sleeping; the kernel
 * paths block in the kernel. Producers write an 8-byte sequence number in
 * each record and consumers read it; the rest of the record is not touched
 * by any variant, so what is compared is the cost of moving records.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../src/lib/barrier.h"
#include "bench_paths.h"

struct pipe_ctl {
	_Alignas(64) uint32_t stop;
	_Alignas(64) uint64_t records;
	uint64_t ns;
	uint64_t cpu_ns;
};

struct stage_arg {
	struct rendezvous *in, *out; /* in: we accept (or connect, for producer) */
	size_t rec;
	struct pipe_ctl *ctl;
	enum kind kind;
};

/* ---- zerolink and kernel stages as processes ---- */

static int producer(void *p)
{
	struct stage_arg *a = p;
	struct endpoint ep;
	if (rv_child(a->out, &ep))
		return 1;
	uint64_t seq = 0;
	if (a->kind == K_ZL) {
		uint32_t count = (uint32_t)((512u << 20) / a->rec);
		if (count > 2048)
			count = 2048;
		struct zl_pool_opts po = {.nclasses = 1,
					  .classes = {{(uint32_t)a->rec, count}},
					  .flags = ZL_POOL_FORWARD};
		struct zl_pool *pool;
		if (zl_pool_create(ep.ctx, &po, &pool))
			return 1;
		/* bursts of 16 records, published at once */
		struct zl_buf b[16];
		uint32_t lens[16];
		while (!zl_read_once(&a->ctl->stop)) {
			int got = zl_buf_alloc_burst(pool, a->rec, b, 16);
			if (got == -ENOBUFS) {
				/* the pool is dry: wait for buffers to come home */
				if (zl_chan_wait_returns(ep.ch) < 0)
					break;
				continue;
			}
			if (got < 0)
				break;
			unsigned n = (unsigned)got;
			for (unsigned i = 0; i < n; i++) {
				memcpy(b[i].data, &seq, sizeof(seq));
				lens[i] = (uint32_t)a->rec;
				seq++;
			}
			int r = zl_chan_send_buf_burst(ep.ch, b, lens, n, 0);
			if (r < 0)
				break;
			for (unsigned i = (unsigned)r; i < n; i++)
				zl_buf_free(&b[i]);
		}
		/* the channel gives back what it holds of the pool, the pool
		 * goes, then the context (in this order: see zl_ctx_close) */
		zl_chan_close(ep.ch);
		ep.ch = NULL;
		zl_pool_destroy(pool);
		ep_close(&ep);
		return 0;
	}
	char *buf = calloc(1, a->rec);
	while (!zl_read_once(&a->ctl->stop)) {
		memcpy(buf, &seq, sizeof(seq));
		if (ep_send(&ep, buf, a->rec) < 0)
			break;
		seq++;
	}
	ep_close(&ep);
	free(buf);
	return 0;
}

static int middle(void *p)
{
	struct stage_arg *a = p;
	struct endpoint in, out;
	/* connect downstream first, then take the producer */
	if (rv_child(a->out, &out))
		return 1;
	if (rv_listen(a->in) || rv_parent(a->in, &in))
		return 1;
	if (a->kind == K_ZL) {
		struct zl_msg m[32];
		for (;;) {
			int n = zl_chan_recv_burst(in.ch, m, 32, 0);
			if (n <= 0)
				break;
			if (zl_chan_forward_burst(out.ch, m, (unsigned)n, 0) != n)
				goto done;
		}
	} else {
		char *buf = malloc(a->rec);
		for (;;) {
			if (ep_recv(&in, buf, a->rec) <= 0 || ep_send(&out, buf, a->rec) < 0)
				break;
		}
		free(buf);
	}
done:
	ep_close(&in);
	ep_close(&out);
	return 0;
}

static double pipeline_procs(enum kind kind, size_t rec, double *cpu)
{
	/* The monolith's stages never sleep: they spin, then yield the core.
	 * zerolink's polling mode is the same policy (ZL_SPIN_FOREVER spins a
	 * moment, then yields while it waits); the kernel paths block, as
	 * they must. */
	struct zl_chan_opts co = {.slots = 1024, .spin_ns = ZL_SPIN_FOREVER};
	struct rendezvous r1, r2; /* r1: producer -> middle, r2: middle -> consumer */
	if (rv_prepare(&r1, kind, &co) || rv_prepare(&r2, kind, &co) || rv_listen(&r2))
		return 0;
	struct pipe_ctl *ctl = shared_page(4096);
	struct stage_arg am = {&r1, &r2, rec, ctl, kind};
	struct stage_arg ap = {NULL, &r1, rec, ctl, kind};
	pid_t pm = fork_child(middle, &am, 1);
	pid_t pp = fork_child(producer, &ap, 0);
	pin_to(0);
	struct endpoint ep;
	if (rv_parent(&r2, &ep)) {
		zl_write_once(&ctl->stop, 1);
		wait_child(pp);
		wait_child(pm);
		return 0;
	}
	char *buf = kind == K_ZL ? NULL : malloc(rec);
	uint64_t n = 0, t0 = 0, dt = 0, c0 = 0, c1 = 0;
	uint64_t window = (uint64_t)(bo.stream_s * 1e9);
	for (;;) {
		int got;
		if (kind == K_ZL) {
			struct zl_msg m[32];
			got = zl_chan_recv_burst(ep.ch, m, 32, 0);
			if (got <= 0)
				break;
			for (int i = 0; i < got; i++) {
				uint64_t v;
				memcpy(&v, m[i].seg[0].base, sizeof(v));
			}
			zl_msg_release_burst(m, (unsigned)got);
		} else {
			if (ep_recv(&ep, buf, rec) <= 0)
				break;
			got = 1;
		}
		if (dt)
			continue;
		if (!t0) {
			t0 = now_ns();
			c0 = cpu_ns_self() + zl_proc_cpu_ns(pp) + zl_proc_cpu_ns(pm);
			continue;
		}
		n += (uint64_t)got;
		if (now_ns() - t0 >= window) {
			dt = now_ns() - t0;
			c1 = cpu_ns_self() + zl_proc_cpu_ns(pp) + zl_proc_cpu_ns(pm);
			zl_write_once(&ctl->stop, 1);
		}
	}
	if (kind == K_ZL && getenv("ZL_BENCH_DEBUG")) {
		struct zl_chan_info ci;
		zl_chan_info(ep.ch, &ci);
		fprintf(stderr, "\nconsumer: rx %llu kicks %llu spins %llu sleeps %llu\n",
			(unsigned long long)ci.rx_msgs, (unsigned long long)ci.kicks,
			(unsigned long long)ci.spins, (unsigned long long)ci.sleeps);
	}
	ep_close(&ep);
	wait_child(pp);
	wait_child(pm);
	rv_done(&r1);
	rv_done(&r2);
	munmap(ctl, 4096);
	free(buf);
	if (!dt || !n)
		return 0;
	*cpu = (double)(c1 - c0) / (double)n;
	return (double)n / ((double)dt / 1e9);
}

/* ---- the monolith: three threads, rings of pointers ---- */

#define MRING 1024u
struct pring {
	_Alignas(64) uint32_t prod;
	_Alignas(64) uint32_t cons;
	_Alignas(64) void *slot[MRING];
};

static bool pring_push(struct pring *r, void *p)
{
	uint32_t prod = zl_read_once(&r->prod);
	if (prod - zl_load_acquire(&r->cons) >= MRING)
		return false;
	r->slot[prod & (MRING - 1)] = p;
	zl_store_release(&r->prod, prod + 1);
	return true;
}

static void *pring_pop(struct pring *r)
{
	uint32_t cons = zl_read_once(&r->cons);
	if (zl_load_acquire(&r->prod) == cons)
		return NULL;
	void *p = r->slot[cons & (MRING - 1)];
	zl_store_release(&r->cons, cons + 1);
	return p;
}

/* Wait policy of the monolith: spin a little, then let the other thread of
 * the same core run. */
static void mono_wait(unsigned *spins)
{
	if (++*spins < 64) {
		zl_cpu_relax();
	} else {
		*spins = 0;
		sched_yield();
	}
}

struct mono {
	struct pring a, b, freel;
	size_t rec;
	uint32_t stop;
	uint32_t done[3];
	uint64_t n, ns;
};

static void pin_thread(int side)
{
	if (!bo.pinned)
		return;
	cpu_set_t s;
	CPU_ZERO(&s);
	CPU_SET(bo.cpu[side], &s);
	pthread_setaffinity_np(pthread_self(), sizeof(s), &s);
}

static void *mono_producer(void *p)
{
	struct mono *m = p;
	pin_thread(0);
	uint64_t seq = 0;
	unsigned sp = 0;
	while (!zl_read_once(&m->stop)) {
		char *buf = pring_pop(&m->freel);
		if (!buf) {
			mono_wait(&sp);
			continue;
		}
		memcpy(buf, &seq, sizeof(seq));
		seq++;
		while (!pring_push(&m->a, buf))
			mono_wait(&sp);
	}
	zl_store_release(&m->done[0], 1);
	return NULL;
}

static void *mono_middle(void *p)
{
	struct mono *m = p;
	pin_thread(1);
	unsigned sp = 0;
	for (;;) {
		void *buf = pring_pop(&m->a);
		if (!buf) {
			if (zl_load_acquire(&m->done[0]) && !pring_pop(&m->a))
				break;
			mono_wait(&sp);
			continue;
		}
		while (!pring_push(&m->b, buf))
			mono_wait(&sp);
	}
	zl_store_release(&m->done[1], 1);
	return NULL;
}

static void *mono_consumer(void *p)
{
	struct mono *m = p;
	pin_thread(0);
	unsigned sp = 0;
	uint64_t n = 0, t0 = 0;
	uint64_t window = (uint64_t)(bo.stream_s * 1e9);
	for (;;) {
		char *buf = pring_pop(&m->b);
		if (!buf) {
			if (zl_load_acquire(&m->done[1]))
				break;
			mono_wait(&sp);
			continue;
		}
		uint64_t v;
		memcpy(&v, buf, sizeof(v));
		while (!pring_push(&m->freel, buf))
			mono_wait(&sp);
		if (m->ns)
			continue;
		if (!t0) {
			t0 = now_ns();
			continue;
		}
		n++;
		if ((n & 15) == 0 && now_ns() - t0 >= window) {
			m->ns = now_ns() - t0;
			m->n = n;
			zl_store_release(&m->stop, 1);
		}
	}
	return NULL;
}

static int mono_main(void *p)
{
	struct pipe_ctl *ctl = p;
	size_t rec = (size_t)ctl->records;
	struct mono *m = aligned_alloc(64, sizeof(*m));
	memset(m, 0, sizeof(*m));
	m->rec = rec;
	uint32_t count = (uint32_t)((512u << 20) / rec);
	if (count > 1023)
		count = 1023;
	char *mem = mmap(NULL, rec * count, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	for (uint32_t i = 0; i < count; i++)
		pring_push(&m->freel, mem + (size_t)i * rec);
	uint64_t c0 = cpu_ns_self();
	pthread_t t[3];
	pthread_create(&t[0], NULL, mono_producer, m);
	pthread_create(&t[1], NULL, mono_middle, m);
	pthread_create(&t[2], NULL, mono_consumer, m);
	for (int i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	ctl->records = m->n;
	ctl->ns = m->ns;
	ctl->cpu_ns = cpu_ns_self() - c0;
	munmap(mem, rec * count);
	free(m);
	return 0;
}

static double pipeline_mono(size_t rec, double *cpu)
{
	struct pipe_ctl *ctl = shared_page(4096);
	ctl->records = rec;
	pid_t pid = fork_child(mono_main, ctl, 0);
	wait_child(pid);
	double r = 0;
	if (ctl->ns && ctl->records) {
		r = (double)ctl->records / ((double)ctl->ns / 1e9);
		/* CPU of the whole run over records counted in the window: an
		 * upper bound, comparable across variants only roughly */
		*cpu = (double)ctl->cpu_ns / ((double)ctl->records * 1.0);
	}
	munmap(ctl, 4096);
	return r;
}

void bench_pipeline(void)
{
	static const size_t recs[] = {4096, 65536, 1 << 20};
	static const struct {
		const char *label;
		int kind; /* -1 monolith */
	} vars[] = {{"zerolink", K_ZL}, {"monolith", -1}, {"tcp", K_TCP}, {"unix", K_UNIX}};
	for (size_t i = 0; i < 3; i++) {
		/* The runs of the paths take turns (zerolink, monolith, tcp,
		 * unix, zerolink, ...), so that a change in how the host places
		 * our two virtual CPUs, which moves every figure by up to a
		 * factor of three, falls on all paths alike rather than on the
		 * one measured at that moment. */
		double rate[4][9], cpu[4][9];
		for (int k = 0; k < bo.runs; k++) {
			for (size_t v = 0; v < 4; v++) {
				if (!path_wanted(vars[v].label))
					continue;
				progress("pipeline %zu B: %s, run %d of %d", recs[i], vars[v].label,
					 k + 1, bo.runs);
				cpu[v][k] = 0;
				rate[v][k] = vars[v].kind < 0
						     ? pipeline_mono(recs[i], &cpu[v][k])
						     : pipeline_procs((enum kind)vars[v].kind,
								      recs[i], &cpu[v][k]);
			}
		}
		for (size_t v = 0; v < 4; v++) {
			if (!path_wanted(vars[v].label))
				continue;
			double r = median_d(rate[v], (size_t)bo.runs);
			if (r <= 0) {
				fprintf(stderr, "bench: pipeline %s %zu B failed\n", vars[v].label,
					recs[i]);
				continue;
			}
			result_add(vars[v].label, "pipeline", recs[i], "rate", "Mrec/s", r / 1e6, 0,
				   0);
			result_add(vars[v].label, "pipeline", recs[i], "throughput", "GB/s",
				   r * (double)recs[i] / 1e9, 0, 0);
			result_add(vars[v].label, "pipeline", recs[i], "cpu", "ns/rec",
				   median_d(cpu[v], (size_t)bo.runs), 0, 0);
		}
	}
}
