/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

uint64_t zl__now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * Asymmetric wake-up fences (see "F_sleep" in chan.c). A process that is
 * registered for MEMBARRIER_CMD_GLOBAL_EXPEDITED receives a full memory
 * barrier on each of its running threads whenever any process calls
 * membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED). A sleeper that makes that
 * call after announcing its sleep therefore spares its registered wakers
 * the full fence they would otherwise need after every publish.
 */
bool zl__mb_ready;

static void mb_register(void)
{
	const char *e = getenv("ZEROLINK_MEMBARRIER");
	if (e && !strcmp(e, "0")) {
		zl__mb_ready = false;
		return;
	}
	long q = syscall(__NR_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
	zl__mb_ready =
		q > 0 && (q & MEMBARRIER_CMD_GLOBAL_EXPEDITED) &&
		syscall(__NR_membarrier, MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, 0, 0) == 0;
}

static void mb_once(void)
{
	mb_register();
	/* Whether a forked child inherits the registration depends on the
	 * kernel: register again (or learn that we cannot). */
	pthread_atfork(NULL, NULL, mb_register);
}

void zl__mb_init(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, mb_once);
}

int zl__mb_sleep_fence(void)
{
	if (syscall(__NR_membarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0) == 0)
		return 0;
	atomic_thread_fence(memory_order_seq_cst);
	return -errno;
}

int zl__set_cloexec_nonblock(int fd, bool nonblock)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0)
		return -errno;
	if (nonblock && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
		return -errno;
	return 0;
}

ZL_EXPORT const char *zl_strerror(int err)
{
	switch (err) {
	case 0:
		return "success";
	case -ECONNREFUSED:
		return "no such service (or no broker): start the listener first";
	case -EACCES:
		return "access refused: the service does not admit this user";
	case -ENOBUFS:
		return "pool exhausted: release buffers or make the pool larger";
	case -EPROTO:
		return "protocol violation by the peer: the channel was closed";
	case -ECONNRESET:
		return "peer died";
	case -EPIPE:
		return "channel closed for sending";
	case -EMSGSIZE:
		return "message too large for the buffer or the lane";
	case -EADDRINUSE:
		return "service name already taken";
	case -ETIMEDOUT:
		return "timed out";
	default:
		return err < 0 ? strerror(-err) : "unknown";
	}
}

int zl__fd_floor;

/* The floor, lowered to half the descriptor limit when the program set a
 * smaller one (servers often size it to their connection count). */
static int fd_floor_now(void)
{
	int floor = zl__fd_floor;
	struct rlimit rl;
	if (floor > 0 && getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    (rlim_t)floor > rl.rlim_cur / 2)
		floor = (int)(rl.rlim_cur / 2);
	return floor;
}

int zl__fd_dup_high(int fd)
{
	int floor = fd_floor_now();
	int h = floor > 0 ? fcntl(fd, F_DUPFD_CLOEXEC, floor) : -1;
	if (h < 0)
		h = fcntl(fd, F_DUPFD_CLOEXEC, 0); /* a low one rather than none */
	return h;
}

int zl__fd_high(int fd)
{
	if (fd < 0 || zl__fd_floor <= 0)
		return fd;
	int floor = fd_floor_now();
	if (floor <= 0 || fd >= floor)
		return fd;
	int h = fcntl(fd, F_DUPFD_CLOEXEC, floor);
	if (h < 0)
		return fd; /* the low one rather than none */
	close(fd);
	return h;
}
