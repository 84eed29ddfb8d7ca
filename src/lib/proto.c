/* SPDX-License-Identifier: MIT */
/*
 * Framing and checking of control datagrams (broker and peer protocols).
 * Everything that arrives from another process passes zl__proto_check()
 * before any field is used.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

#define ZL_MAX_FDS 4

bool zl__name_ok(const char *s, size_t max)
{
	size_t n = strnlen(s, max);
	if (n == 0 || n >= max)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x21 || c > 0x7e || c == '/')
			return false;
	}
	return true;
}

void zl__close_fds(int *fds, int n)
{
	for (int i = 0; i < n; i++) {
		if (fds[i] >= 0)
			close(fds[i]);
		fds[i] = -1;
	}
}

int zl__proto_body_size(uint8_t type)
{
	switch (type) {
	case ZL_MSG_HELLO:
		return sizeof(struct zl_proto_hello);
	case ZL_MSG_LISTEN:
		return sizeof(struct zl_proto_listen);
	case ZL_MSG_CONNECT:
		return sizeof(struct zl_proto_connect);
	case ZL_MSG_CHAN_UP:
	case ZL_MSG_CHAN_DOWN:
		return sizeof(struct zl_proto_chan);
	case ZL_MSG_REGION_UP:
	case ZL_MSG_REGION_DOWN:
		return sizeof(struct zl_proto_region);
	case ZL_MSG_SOCK_LISTEN:
	case ZL_MSG_SOCK_UNLISTEN:
	case ZL_MSG_SOCK_CONNECT:
	case ZL_MSG_SOCK_ACCEPT:
	case ZL_MSG_SOCK_CANCEL:
		return sizeof(struct zl_proto_sock);
	case ZL_MSG_LS:
	case ZL_MSG_WATCH:
	case ZL_MSG_SHUTDOWN:
	case ZL_MSG_OK:
	case ZL_MSG_LS_END:
		return 0;
	case ZL_MSG_ERR:
	case ZL_MSG_PEER_REFUSE:
		return sizeof(struct zl_proto_err);
	case ZL_MSG_HELLO_OK:
		return sizeof(struct zl_proto_hello_ok);
	case ZL_MSG_CONNECT_OK:
	case ZL_MSG_INCOMING:
	case ZL_MSG_SOCK_OK:
		return sizeof(struct zl_proto_incoming);
	case ZL_MSG_LS_DOMAIN:
		return sizeof(struct zl_proto_ls_domain);
	case ZL_MSG_LS_SERVICE:
		return sizeof(struct zl_proto_ls_service);
	case ZL_MSG_LS_CHAN:
		return sizeof(struct zl_proto_ls_chan);
	case ZL_MSG_LS_REGION:
		return sizeof(struct zl_proto_region);
	case ZL_MSG_EVENT:
		return sizeof(struct zl_proto_event);
	case ZL_MSG_PEER_HELLO:
		return sizeof(struct zl_proto_peer_hello);
	case ZL_MSG_PEER_REGION:
		return sizeof(struct zl_proto_peer_region);
	default:
		return -1;
	}
}

/* Descriptors each type must carry. */
static int proto_fds(uint8_t type)
{
	switch (type) {
	case ZL_MSG_CHAN_UP:
	case ZL_MSG_CONNECT_OK:
	case ZL_MSG_INCOMING:
	case ZL_MSG_PEER_REGION:
	case ZL_MSG_SOCK_LISTEN:
	case ZL_MSG_SOCK_UNLISTEN:
	case ZL_MSG_SOCK_CONNECT:
	case ZL_MSG_SOCK_ACCEPT:
	case ZL_MSG_SOCK_CANCEL:
	case ZL_MSG_SOCK_OK:
		return 1;
	case ZL_MSG_PEER_HELLO:
		return 2;
	default:
		return 0;
	}
}

static bool str_ok(const char *s, size_t max)
{
	return memchr(s, '\0', max) != NULL;
}

int zl__proto_check(const void *buf, size_t len, int nfds)
{
	struct zl_proto_hdr h;
	if (len < sizeof(h) || len > ZL_PROTO_MAX)
		return -EPROTO;
	memcpy(&h, buf, sizeof(h));
	if (h.magic != ZL_PROTO_MAGIC || h.version != ZL_PROTO_VERSION || h.len != len)
		return -EPROTO;
	int body = zl__proto_body_size(h.type);
	if (body < 0 || len - sizeof(h) != (size_t)body)
		return -EPROTO;
	if (h.nfds != (unsigned)proto_fds(h.type) || nfds != h.nfds)
		return -EPROTO;
	const char *b = (const char *)buf + sizeof(h);
	/* Strings must be terminated inside their arrays. Copy the body so that
	 * no alignment is assumed of the receive buffer. */
	union {
		struct zl_proto_hello hello;
		struct zl_proto_listen listen;
		struct zl_proto_connect connect;
		struct zl_proto_incoming incoming;
		struct zl_proto_err err;
		struct zl_proto_ls_domain lsd;
		struct zl_proto_ls_service lss;
		struct zl_proto_ls_chan lsc;
		struct zl_proto_event ev;
		struct zl_proto_sock sock;
	} u;
	if ((size_t)body <= sizeof(u))
		memcpy(&u, b, (size_t)body);
	switch (h.type) {
	case ZL_MSG_HELLO:
		if (!str_ok(u.hello.name, sizeof(u.hello.name)))
			return -EPROTO;
		break;
	case ZL_MSG_LISTEN:
		if (!str_ok(u.listen.service, ZL_NAME_MAX) || u.listen.nuid > ZL_ACL_MAX ||
		    u.listen.ngid > ZL_ACL_MAX || u.listen.mode > ZL_PROTO_MODE_ISOLATED)
			return -EPROTO;
		break;
	case ZL_MSG_CONNECT:
		if (!str_ok(u.connect.service, ZL_NAME_MAX) ||
		    u.connect.mode > ZL_PROTO_MODE_ISOLATED)
			return -EPROTO;
		break;
	case ZL_MSG_CONNECT_OK:
	case ZL_MSG_INCOMING:
	case ZL_MSG_SOCK_OK:
		if (!str_ok(u.incoming.service, ZL_NAME_MAX) ||
		    u.incoming.mode > ZL_PROTO_MODE_ISOLATED)
			return -EPROTO;
		break;
	case ZL_MSG_ERR:
	case ZL_MSG_PEER_REFUSE:
		if (!str_ok(u.err.text, sizeof(u.err.text)) || u.err.err <= 0 || u.err.err > 4095)
			return -EPROTO;
		break;
	case ZL_MSG_LS_DOMAIN:
		if (!str_ok(u.lsd.name, ZL_NAME_MAX))
			return -EPROTO;
		break;
	case ZL_MSG_LS_SERVICE:
		if (!str_ok(u.lss.service, ZL_NAME_MAX))
			return -EPROTO;
		break;
	case ZL_MSG_LS_CHAN:
		if (!str_ok(u.lsc.service, ZL_NAME_MAX))
			return -EPROTO;
		break;
	case ZL_MSG_EVENT:
		if (!str_ok(u.ev.name, ZL_NAME_MAX))
			return -EPROTO;
		break;
	case ZL_MSG_SOCK_CONNECT:
		if (u.sock.family != AF_INET && u.sock.family != AF_INET6 &&
		    u.sock.family != AF_UNIX)
			return -EPROTO;
		if (u.sock.namelen > sizeof(u.sock.name) - 1)
			return -EPROTO;
		break;
	default:
		break;
	}
	return h.type;
}

int zl__msg_send(int fd, uint8_t type, uint32_t seq, const void *body, size_t blen, const int *fds,
		 int nfds)
{
	char buf[ZL_PROTO_MAX];
	struct zl_proto_hdr h = {
		.magic = ZL_PROTO_MAGIC,
		.version = ZL_PROTO_VERSION,
		.type = type,
		.len = (uint16_t)(sizeof(h) + blen),
		.nfds = (uint16_t)nfds,
		.seq = seq,
	};
	if (blen > sizeof(buf) - sizeof(h) || nfds > ZL_MAX_FDS)
		return -EINVAL;
	memcpy(buf, &h, sizeof(h));
	if (blen)
		memcpy(buf + sizeof(h), body, blen);
	struct iovec iov = {.iov_base = buf, .iov_len = sizeof(h) + blen};
	union {
		char b[CMSG_SPACE(sizeof(int) * ZL_MAX_FDS)];
		struct cmsghdr align;
	} cm;
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	if (nfds > 0) {
		memset(&cm, 0, sizeof(cm));
		mh.msg_control = cm.b;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
	}
	for (;;) {
		ssize_t n = sendmsg(fd, &mh, MSG_NOSIGNAL);
		if (n >= 0)
			return 0;
		if (errno != EINTR)
			return -errno;
	}
}

ssize_t zl__msg_recv(int fd, void *buf, size_t cap, int *fds, int *nfds, bool dontwait)
{
	int capfds = *nfds;
	*nfds = 0;
	struct iovec iov = {.iov_base = buf, .iov_len = cap};
	union {
		char b[CMSG_SPACE(sizeof(int) * ZL_MAX_FDS)];
		struct cmsghdr align;
	} cm;
	struct msghdr mh = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = cm.b,
		.msg_controllen = sizeof(cm.b),
	};
	ssize_t n;
	do
		n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC | (dontwait ? MSG_DONTWAIT : 0));
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	/* Collect every descriptor that arrived, even from a malformed message,
	 * so that nothing leaks: keep what fits, close the rest. */
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k; i++) {
			int rfd;
			memcpy(&rfd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (*nfds < capfds)
				fds[(*nfds)++] = zl__fd_high(rfd);
			else
				close(rfd);
		}
	}
	if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
		zl__close_fds(fds, *nfds);
		*nfds = 0;
		return -EPROTO;
	}
	return n;
}
