/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <time.h>

#include "internal.h"

uint64_t zl__now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
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
