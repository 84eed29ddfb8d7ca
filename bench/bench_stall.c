/* SPDX-License-Identifier: MIT */
/*
 * zerolink bench: the machine's own stalls. A thread spinning on core A,
 * reading the clock, counts the gaps over 1 ms between two readings: times
 * its CPU did not run it (on a VM, the host took the vCPU; on any machine,
 * an interrupt storm or a preemption). With a file given, core B
 * meanwhile reads it, 4 KiB at random with O_DIRECT through io_uring at
 * depth 32: on a VM whose host serves the disk from the cores that run the
 * vCPUs, that I/O stops the other vCPU now and then. A latency bound of a
 * few ms cannot hold across such a stall, whatever the I/O host does; the
 * QoS benchmark reports this beside its burst classes.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <liburing.h>

#include "bench.h"

struct probe {
	struct stall out;
	const char *file;
	uint64_t stop; /* when both stop (ns) */
};

static int spin(void *arg)
{
	struct probe *p = arg;
	uint64_t last = now_ns(), t = last;
	for (; t < p->stop; t = now_ns()) {
		if (t - last > 1000000) {
			p->out.gaps++;
			p->out.gap_ns += t - last;
			if (t - last > p->out.max_ns)
				p->out.max_ns = t - last;
		}
		last = t;
	}
	return 0;
}

static int reader(void *arg)
{
	const struct probe *p = arg;
	struct io_uring ring;
	struct stat st;
	void *buf = NULL;
	int fd = open(p->file, O_RDONLY | O_DIRECT | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) || st.st_size < 4096)
		return 1;
	if (posix_memalign(&buf, 4096, 32 * 4096) || io_uring_queue_init(32, &ring, 0))
		return 1;
	uint64_t x = 88172645463325252ull, blocks = (uint64_t)st.st_size / 4096;
	unsigned inflight = 0, slot = 0;
	int rc = 0;
	while (now_ns() < p->stop || inflight) {
		struct io_uring_sqe *sqe;
		while (now_ns() < p->stop && inflight < 32 && (sqe = io_uring_get_sqe(&ring))) {
			io_uring_prep_read(sqe, fd, (char *)buf + (size_t)(slot++ % 32) * 4096,
					   4096, (xorshift64(&x) % blocks) * 4096);
			inflight++;
		}
		if (io_uring_submit_and_wait(&ring, 1) < 0) {
			rc = 1;
			break;
		}
		struct io_uring_cqe *cqe;
		while (io_uring_peek_cqe(&ring, &cqe) == 0) {
			if (cqe->res != 4096)
				rc = 1;
			io_uring_cqe_seen(&ring, cqe);
			inflight--;
		}
	}
	io_uring_queue_exit(&ring);
	free(buf);
	close(fd);
	return rc;
}

int stall_measure(double secs, const char *file, struct stall *out)
{
	struct probe *p = shared_page(sizeof(*p)); /* (zeroed) */
	p->file = file;
	p->out.span_ns = (uint64_t)(secs * 1e9);
	p->stop = now_ns() + p->out.span_ns;
	pid_t r = file ? fork_child(reader, p, 1) : 0;
	pid_t s = fork_child(spin, p, 0);
	int e = wait_child(s);
	if (r && wait_child(r))
		e = -EIO;
	*out = p->out;
	munmap(p, sizeof(*p));
	return e ? -EIO : 0;
}
