/* SPDX-License-Identifier: MIT */
/*
 * The socket API in the POSIX style: the zl_sock_*() calls, with -1 and
 * errno instead of a negative errno. The conversion is in one place.
 */
#include <errno.h>

#include <zerolink/sock.h>

#include "../lib/internal.h"

static long posix_ret(long r)
{
	if (r < 0) {
		errno = (int)-r;
		return -1;
	}
	return r;
}

ZL_EXPORT int zl_posix_listen(struct zl_ctx *ctx, const char *name, int type,
			      const struct zl_sock_opts *opts, struct zl_sock **out)
{
	return (int)posix_ret(zl_sock_listen(ctx, name, type, opts, out));
}

ZL_EXPORT int zl_posix_accept(struct zl_sock *ls, unsigned flags, struct zl_sock **out)
{
	return (int)posix_ret(zl_sock_accept(ls, flags, out));
}

ZL_EXPORT int zl_posix_connect(struct zl_ctx *ctx, const char *name, int type,
			       const struct zl_sock_opts *opts, struct zl_sock **out)
{
	return (int)posix_ret(zl_sock_connect(ctx, name, type, opts, out));
}

ZL_EXPORT int zl_posix_socketpair(struct zl_ctx *ctx, int type, const struct zl_sock_opts *opts,
				  struct zl_sock *out[2])
{
	return (int)posix_ret(zl_sock_pair(ctx, type, opts, out));
}

ZL_EXPORT ssize_t zl_posix_send(struct zl_sock *s, const void *buf, size_t len, int flags)
{
	return posix_ret(zl_sock_send(s, buf, len, flags));
}

ZL_EXPORT ssize_t zl_posix_recv(struct zl_sock *s, void *buf, size_t len, int flags)
{
	return posix_ret(zl_sock_recv(s, buf, len, flags));
}

ZL_EXPORT ssize_t zl_posix_sendmsg(struct zl_sock *s, const struct msghdr *msg, int flags)
{
	if (msg->msg_controllen)
		return posix_ret(-EOPNOTSUPP); /* no ancillary data over channels */
	return posix_ret(zl_sock_sendv(s, msg->msg_iov, (int)msg->msg_iovlen, flags));
}

ZL_EXPORT ssize_t zl_posix_recvmsg(struct zl_sock *s, struct msghdr *msg, int flags)
{
	int of = 0;
	ssize_t r = zl_sock_recvv(s, msg->msg_iov, (int)msg->msg_iovlen, flags, &of);
	if (r >= 0) {
		msg->msg_flags = of;
		msg->msg_controllen = 0;
		msg->msg_namelen = 0;
	}
	return posix_ret(r);
}

ZL_EXPORT int zl_posix_shutdown(struct zl_sock *s, int how)
{
	return (int)posix_ret(zl_sock_shutdown(s, how));
}

ZL_EXPORT int zl_posix_close(struct zl_sock *s)
{
	return (int)posix_ret(zl_sock_close(s));
}
