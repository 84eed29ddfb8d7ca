/* SPDX-License-Identifier: MIT */
/*
 * Round-trip latency and streaming throughput: zerolink (polling, blocking,
 * copy, zero-copy) next to TCP loopback, Unix stream sockets and pipes.
 * Side A (the parent, measuring) runs on one core, side B (a forked child)
 * on the other.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "../src/lib/barrier.h"
#include "bench_paths.h"

static int svc_seq;

int rv_prepare(struct rendezvous *rv, enum kind kind, const struct zl_chan_opts *copts)
{
	memset(rv, 0, sizeof(*rv));
	rv->kind = kind;
	rv->lfd = -1;
	if (copts)
		rv->copts = *copts;
	if (kind == K_TCP) {
		rv->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		struct sockaddr_in sa = {.sin_family = AF_INET,
					 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		socklen_t sl = sizeof(sa);
		if (bind(rv->lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
		    listen(rv->lfd, 8) < 0 || getsockname(rv->lfd, (struct sockaddr *)&sa, &sl) < 0)
			return -errno;
		rv->port = ntohs(sa.sin_port);
	} else if (kind == K_UNIX) {
		rv->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		struct sockaddr_un sa = {.sun_family = AF_UNIX};
		snprintf(rv->upath, sizeof(rv->upath), "/tmp/zl-bench-%d.%d.sock", (int)getpid(),
			 ++svc_seq);
		unlink(rv->upath);
		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", rv->upath);
		if (bind(rv->lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(rv->lfd, 8) < 0)
			return -errno;
	} else if (kind == K_PIPE) {
		if (pipe2(rv->p1, O_CLOEXEC) < 0 || pipe2(rv->p2, O_CLOEXEC) < 0)
			return -errno;
		/* 1 MiB pipes, as a tuned program would ask for */
		fcntl(rv->p1[1], F_SETPIPE_SZ, 1 << 20);
		fcntl(rv->p2[1], F_SETPIPE_SZ, 1 << 20);
	} else {
		snprintf(rv->svc, sizeof(rv->svc), "bench.%d.%d", (int)getpid(), ++svc_seq);
	}
	return 0;
}

int rv_listen(struct rendezvous *rv)
{
	if (rv->kind != K_ZL)
		return 0;
	struct zl_ctx_opts o = {.name = "bench"};
	int err = zl_ctx_open(&rv->ctx, &o);
	if (err)
		return err;
	return zl_listen(rv->ctx, rv->svc, NULL, &rv->lis);
}

static void sock_opts(int fd)
{
	int one = 1, big = 4 << 20;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
}

int rv_child(struct rendezvous *rv, struct endpoint *ep)
{
	memset(ep, 0, sizeof(*ep));
	ep->kind = rv->kind;
	ep->rfd = ep->wfd = -1;
	if (rv->kind == K_TCP) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		struct sockaddr_in sa = {.sin_family = AF_INET,
					 .sin_port = htons((uint16_t)rv->port),
					 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		sock_opts(fd);
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
			return -errno;
		ep->rfd = ep->wfd = fd;
	} else if (rv->kind == K_UNIX) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		struct sockaddr_un sa = {.sun_family = AF_UNIX};
		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", rv->upath);
		sock_opts(fd);
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
			return -errno;
		ep->rfd = ep->wfd = fd;
	} else if (rv->kind == K_PIPE) {
		ep->rfd = rv->p1[0];
		ep->wfd = rv->p2[1];
		close(rv->p1[1]);
		close(rv->p2[0]);
	} else {
		struct zl_ctx_opts o = {.name = "bench-peer"};
		int err = zl_ctx_open(&ep->ctx, &o);
		if (err)
			return err;
		/* the listener may be another child that is still starting */
		for (int i = 0; i < 500; i++) {
			err = zl_connect(ep->ctx, rv->svc, &rv->copts, &ep->ch);
			if (err != -ECONNREFUSED)
				break;
			usleep(10000);
		}
		if (err)
			return err;
	}
	return 0;
}

int rv_parent(struct rendezvous *rv, struct endpoint *ep)
{
	memset(ep, 0, sizeof(*ep));
	ep->kind = rv->kind;
	ep->rfd = ep->wfd = -1;
	if (rv->kind == K_TCP || rv->kind == K_UNIX) {
		int fd = accept4(rv->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			return -errno;
		sock_opts(fd);
		ep->rfd = ep->wfd = fd;
	} else if (rv->kind == K_PIPE) {
		ep->rfd = rv->p2[0];
		ep->wfd = rv->p1[1];
		close(rv->p1[0]);
		close(rv->p2[1]);
	} else {
		int err = zl_accept(rv->lis, &rv->copts, &ep->ch, 10000);
		if (err)
			return err;
	}
	return 0;
}

void rv_done(struct rendezvous *rv)
{
	if (rv->lfd >= 0)
		close(rv->lfd);
	if (rv->upath[0])
		unlink(rv->upath);
	zl_listener_close(rv->lis);
	zl_ctx_close(rv->ctx);
}

void ep_close(struct endpoint *ep)
{
	if (ep->kind == K_ZL) {
		zl_chan_close(ep->ch);
		ep->ch = NULL;
		if (ep->ctx)
			zl_ctx_close(ep->ctx);
		ep->ctx = NULL;
		return;
	}
	if (ep->rfd >= 0)
		close(ep->rfd);
	if (ep->wfd >= 0 && ep->wfd != ep->rfd)
		close(ep->wfd);
	ep->rfd = ep->wfd = -1;
}

int ep_send(struct endpoint *ep, const void *buf, size_t n)
{
	if (ep->kind == K_ZL)
		return zl_chan_send(ep->ch, buf, n, 0);
	size_t done = 0;
	while (done < n) {
		ssize_t k = write(ep->wfd, (const char *)buf + done, n - done);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -errno;
		done += (size_t)k;
	}
	return (int)n;
}

/* Receive exactly n bytes (one message on zerolink); 0 on end of stream. */
int ep_recv(struct endpoint *ep, void *buf, size_t n)
{
	if (ep->kind == K_ZL)
		return zl_chan_recv(ep->ch, buf, n, 0);
	size_t done = 0;
	while (done < n) {
		ssize_t k = read(ep->rfd, (char *)buf + done, n - done);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		if (k == 0)
			return 0;
		done += (size_t)k;
	}
	return (int)n;
}

/* ------------------------------------------------------------------ */
/* latency                                                             */

struct lat_arg {
	struct rendezvous *rv;
	size_t size;
};

static int echo_server(void *p)
{
	struct lat_arg *a = p;
	struct endpoint ep;
	if (rv_child(a->rv, &ep))
		return 1;
	char *buf = malloc(a->size);
	for (;;) {
		int r = ep_recv(&ep, buf, a->size);
		if (r <= 0)
			break;
		if (ep_send(&ep, buf, a->size) < 0)
			break;
	}
	ep_close(&ep);
	free(buf);
	return 0;
}

static void latency_one(const char *label, enum kind kind, const struct zl_chan_opts *co,
			size_t size)
{
	if (!path_wanted(label))
		return;
	struct rendezvous rv;
	if (rv_prepare(&rv, kind, co) || rv_listen(&rv)) {
		fprintf(stderr, "bench: cannot set up %s\n", label);
		return;
	}
	struct lat_arg a = {&rv, size};
	pid_t pid = fork_child(echo_server, &a, 1);
	pin_to(0);
	struct endpoint ep;
	if (rv_parent(&rv, &ep)) {
		fprintf(stderr, "bench: %s: peer did not connect\n", label);
		wait_child(pid);
		rv_done(&rv);
		return;
	}
	int iters = bo.lat_iters;
	if (size >= 65536)
		iters /= 4;
	char *buf = calloc(1, size);
	uint64_t *s = malloc(sizeof(uint64_t) * (size_t)iters);
	int warm = iters / 10 + 10;
	int ok = 1;
	for (int i = -warm; i < iters && ok; i++) {
		uint64_t t0 = lat_clock();
		if (ep_send(&ep, buf, size) < 0 || ep_recv(&ep, buf, size) <= 0)
			ok = 0;
		if (i >= 0)
			s[i] = (uint64_t)(lat_ns(lat_clock() - t0) * 10); /* tenths of ns */
	}
	ep_close(&ep);
	wait_child(pid);
	rv_done(&rv);
	if (ok) {
		sort_u64(s, (size_t)iters);
		result_add(label, "rtt", size, "rtt", "us", pct_u64(s, iters, 0.5) / 1e4,
			   pct_u64(s, iters, 0.99) / 1e4, pct_u64(s, iters, 0.999) / 1e4);
	} else {
		fprintf(stderr, "bench: %s round trip failed\n", label);
	}
	free(s);
	free(buf);
}

/*
 * The polling round trip against the cache-line floor, interleaved: the same
 * two processes alternate blocks of round trips over a bare cache line and
 * over a zerolink channel, so that both see the same placement of the two
 * virtual CPUs on the host and the same neighbours. Each block is timed as a
 * whole, as the floor is.
 */
#define ILV_PER 100

struct ilv_line {
	_Alignas(64) uint64_t flag;
};

struct ilv_arg {
	struct rendezvous *rv;
	struct ilv_line *line;
	size_t size;
	int blocks;
};

static int ilv_server(void *p)
{
	struct ilv_arg *a = p;
	struct endpoint ep;
	if (rv_child(a->rv, &ep))
		return 1;
	char *buf = malloc(a->size);
	uint64_t expect = 1;
	for (int b = 0; b < 2 * a->blocks; b++) {
		for (int i = 0; i < ILV_PER; i++) {
			if (b & 1) {
				if (ep_recv(&ep, buf, a->size) <= 0 ||
				    ep_send(&ep, buf, a->size) < 0)
					goto out;
			} else {
				while (zl_load_acquire(&a->line->flag) != expect)
					;
				zl_store_release(&a->line->flag, expect + 1);
				expect += 2;
			}
		}
	}
out:
	ep_close(&ep);
	free(buf);
	return 0;
}

static void latency_interleaved(size_t size)
{
	if (!path_wanted("zerolink-poll"))
		return;
	struct rendezvous rv;
	struct zl_chan_opts poll = {.spin_ns = ZL_SPIN_FOREVER};
	if (rv_prepare(&rv, K_ZL, &poll) || rv_listen(&rv)) {
		fprintf(stderr, "bench: cannot set up the interleaved round trip\n");
		return;
	}
	struct ilv_arg a = {&rv, shared_page(4096), size, bo.quick ? 600 : 4000};
	pid_t pid = fork_child(ilv_server, &a, 1);
	pin_to(0);
	struct endpoint ep;
	if (rv_parent(&rv, &ep)) {
		fprintf(stderr, "bench: interleaved round trip: peer did not connect\n");
		wait_child(pid);
		rv_done(&rv);
		return;
	}
	char *buf = calloc(1, size);
	uint64_t *fl = malloc(sizeof(uint64_t) * (size_t)a.blocks);
	uint64_t *zl = malloc(sizeof(uint64_t) * (size_t)a.blocks);
	uint64_t v = 0;
	int ok = 1;
	for (int b = 0; b < 2 * a.blocks && ok; b++) {
		uint64_t t0 = lat_clock();
		for (int i = 0; i < ILV_PER && ok; i++) {
			if (b & 1) {
				if (ep_send(&ep, buf, size) < 0 || ep_recv(&ep, buf, size) <= 0)
					ok = 0;
			} else {
				zl_store_release(&a.line->flag, v + 1);
				while (zl_load_acquire(&a.line->flag) != v + 2)
					;
				v += 2;
			}
		}
		uint64_t t = (uint64_t)(lat_ns(lat_clock() - t0) * 10 / ILV_PER); /* tenths */
		if (b & 1)
			zl[b / 2] = t;
		else
			fl[b / 2] = t;
	}
	ep_close(&ep);
	wait_child(pid);
	rv_done(&rv);
	if (ok) {
		/* the first tenth warms both paths up */
		int skip = a.blocks / 10, n = a.blocks - skip;
		sort_u64(fl + skip, (size_t)n);
		sort_u64(zl + skip, (size_t)n);
		result_add("floor", "cacheline-rtt-ilv", 64, "rtt", "us",
			   pct_u64(fl + skip, n, 0.5) / 1e4, pct_u64(fl + skip, n, 0.99) / 1e4, 0);
		result_add("zerolink-poll", "rtt-ilv", size, "rtt", "us",
			   pct_u64(zl + skip, n, 0.5) / 1e4, pct_u64(zl + skip, n, 0.99) / 1e4, 0);
	} else {
		fprintf(stderr, "bench: interleaved round trip failed\n");
	}
	munmap(a.line, 4096);
	free(fl);
	free(zl);
	free(buf);
}

void bench_latency(void)
{
	progress("round trip 64 B: zerolink polling and cache line, interleaved");
	latency_interleaved(64);
	static const size_t sizes[] = {8, 64, 512, 4096, 65536};
	struct zl_chan_opts poll = {.spin_ns = ZL_SPIN_FOREVER};
	struct zl_chan_opts block = {.flags = ZL_CHAN_NOSPIN};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		size_t sz = sizes[i];
		progress("round trip %zu B: zerolink polling", sz);
		latency_one("zerolink-poll", K_ZL, &poll, sz);
		progress("round trip %zu B: zerolink blocking", sz);
		latency_one("zerolink-block", K_ZL, &block, sz);
		progress("round trip %zu B: tcp", sz);
		latency_one("tcp", K_TCP, NULL, sz);
		progress("round trip %zu B: unix", sz);
		latency_one("unix", K_UNIX, NULL, sz);
		progress("round trip %zu B: pipe", sz);
		latency_one("pipe", K_PIPE, NULL, sz);
	}
}

/* ------------------------------------------------------------------ */
/* streaming                                                           */

struct stream_ctl {
	_Alignas(64) uint32_t stop;
};

struct stream_arg {
	struct rendezvous *rv;
	size_t size;
	bool zc;
	struct stream_ctl *ctl;
};

static int stream_sender(void *p)
{
	struct stream_arg *a = p;
	struct endpoint ep;
	if (rv_child(a->rv, &ep))
		return 1;
	char *buf = calloc(1, a->size);
	struct zl_pool *pool = NULL;
	if (a->zc) {
		uint32_t count = (uint32_t)((256u << 20) / a->size);
		if (count > 4096)
			count = 4096;
		if (count < 64)
			count = 64;
		struct zl_pool_opts po = {.nclasses = 1, .classes = {{(uint32_t)a->size, count}}};
		if (zl_pool_create(ep.ctx, &po, &pool))
			return 1;
	}
	uint64_t seq = 0;
	while (!zl_read_once(&a->ctl->stop)) {
		for (int k = 0; k < 64; k++) {
			int r;
			if (a->zc) {
				struct zl_buf b;
				while ((r = zl_buf_alloc(pool, a->size, &b)) == -ENOBUFS) {
					/* the pool is dry: wait for buffers to come home */
					if (zl_chan_wait_returns(ep.ch) < 0 ||
					    zl_read_once(&a->ctl->stop))
						goto out;
				}
				if (r)
					goto out;
				memcpy(b.data, &seq, sizeof(seq)); /* the payload is not copied */
				r = zl_chan_send_buf(ep.ch, &b, a->size, 0);
			} else {
				memcpy(buf, &seq, sizeof(seq));
				r = ep_send(&ep, buf, a->size);
			}
			if (r < 0)
				goto out;
			seq++;
		}
	}
out:
	if (ep.kind == K_ZL) {
		/* channel, pool, context: in this order (see zl_ctx_close) */
		zl_chan_close(ep.ch);
		ep.ch = NULL;
	}
	zl_pool_destroy(pool);
	ep_close(&ep);
	free(buf);
	return 0;
}

/* One run: returns messages/s, and CPU ns per message in *cpu. */
static double stream_run(const char *label, enum kind kind, const struct zl_chan_opts *co,
			 size_t size, bool zc, double *cpu)
{
	struct rendezvous rv;
	if (rv_prepare(&rv, kind, co) || rv_listen(&rv))
		return 0;
	struct stream_ctl *ctl = shared_page(4096);
	struct stream_arg a = {&rv, size, zc, ctl};
	pid_t pid = fork_child(stream_sender, &a, 1);
	pin_to(0);
	struct endpoint ep;
	if (rv_parent(&rv, &ep)) {
		fprintf(stderr, "bench: %s: peer did not connect\n", label);
		zl_write_once(&ctl->stop, 1);
		wait_child(pid);
		rv_done(&rv);
		return 0;
	}
	size_t bufsz = size;
	char *buf = malloc(bufsz);
	uint64_t msgs = 0, bytes = 0, t0 = 0, dt = 0, c0 = 0, p0 = 0, c1 = 0, p1 = 0;
	uint64_t window = (uint64_t)(bo.stream_s * 1e9);
	bool timing = true;
	for (;;) {
		int got = 0;
		if (kind == K_ZL && zc) {
			struct zl_msg m[32];
			int n = zl_chan_recv_burst(ep.ch, m, 32, 0);
			if (n <= 0)
				break;
			for (int i = 0; i < n; i++) {
				uint64_t v;
				memcpy(&v, m[i].seg[0].base, sizeof(v));
				bytes += m[i].len + (v & 0);
			}
			zl_msg_release_burst(m, (unsigned)n);
			got = n;
		} else if (kind == K_ZL) {
			int r = zl_chan_recv(ep.ch, buf, bufsz, 0);
			if (r <= 0)
				break;
			bytes += (uint64_t)r;
			got = 1;
		} else {
			ssize_t r = read(ep.rfd, buf, bufsz);
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0)
				break;
			bytes += (uint64_t)r;
		}
		if (!timing)
			continue;
		if (t0 == 0) {
			t0 = now_ns();
			c0 = cpu_ns_self();
			p0 = zl_proc_cpu_ns(pid);
			bytes = 0;
			msgs = 0;
			continue;
		}
		msgs += (uint64_t)got;
		if (((msgs & 63) == 0 || kind != K_ZL) && now_ns() - t0 >= window) {
			dt = now_ns() - t0;
			c1 = cpu_ns_self();
			p1 = zl_proc_cpu_ns(pid);
			if (kind != K_ZL)
				msgs = bytes / size;
			timing = false;
			zl_write_once(&ctl->stop, 1);
		}
	}
	if (kind == K_ZL && getenv("ZL_BENCH_DEBUG")) {
		struct zl_chan_info ci;
		zl_chan_info(ep.ch, &ci);
		fprintf(stderr, "\nreceiver %zu B: rx %llu kicks %llu spins %llu sleeps %llu\n",
			size, (unsigned long long)ci.rx_msgs, (unsigned long long)ci.kicks,
			(unsigned long long)ci.spins, (unsigned long long)ci.sleeps);
	}
	ep_close(&ep);
	wait_child(pid);
	rv_done(&rv);
	munmap(ctl, 4096);
	free(buf);
	if (!dt || !msgs)
		return 0;
	*cpu = (double)((c1 - c0) + (p1 - p0)) / (double)msgs;
	return (double)msgs / ((double)dt / 1e9);
}

static void stream_point(const char *label, enum kind kind, const struct zl_chan_opts *co,
			 size_t size, bool zc)
{
	double rate[9], cpu[9];
	int runs = bo.runs;
	if (!path_wanted(label))
		return;
	for (int k = 0; k < runs; k++)
		rate[k] = stream_run(label, kind, co, size, zc, &cpu[k]);
	double r = median_d(rate, (size_t)runs), c = median_d(cpu, (size_t)runs);
	if (r <= 0) {
		fprintf(stderr, "bench: %s stream %zu B failed\n", label, size);
		return;
	}
	result_add(label, "stream", size, "rate", "Mmsg/s", r / 1e6, 0, 0);
	result_add(label, "stream", size, "throughput", "GB/s", r * (double)size / 1e9, 0, 0);
	result_add(label, "stream", size, "cpu", "ns/msg", c, 0, 0);
}

void bench_stream(void)
{
	static const size_t sizes[] = {64, 1024, 4096, 65536, 1 << 20};
	struct zl_chan_opts co = {.slots = 4096};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		size_t sz = sizes[i];
		progress("stream %zu B: zerolink copy", sz);
		stream_point("zerolink", K_ZL, &co, sz, false);
		progress("stream %zu B: zerolink zero-copy", sz);
		stream_point("zerolink-zc", K_ZL, &co, sz, true);
		progress("stream %zu B: tcp", sz);
		stream_point("tcp", K_TCP, NULL, sz, false);
		progress("stream %zu B: unix", sz);
		stream_point("unix", K_UNIX, NULL, sz, false);
		progress("stream %zu B: pipe", sz);
		stream_point("pipe", K_PIPE, NULL, sz, false);
	}
}
