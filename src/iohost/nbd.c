/* SPDX-License-Identifier: MIT */
/*
 * The NBD front-end: the I/O host's devices as NBD exports, so that
 * unmodified tools (qemu-img, qemu-io, nbdinfo, nbdcopy, fio's nbd engine,
 * the kernel's nbd client) use the same devices as zerolink clients.
 *
 * The listeners (a Unix socket, TCP) belong to the control thread. A new
 * connection is negotiated on a thread of its own with a time limit (fixed
 * newstyle: EXPORT_NAME, GO, INFO, LIST, STRUCTURED_REPLY, ABORT, the meta
 * context options answered with none), so a slow or hostile client holds up
 * nothing else. In transmission the connection is a front-end endpoint on a
 * sidecore: requests are read without blocking, go down the same request
 * path as a zerolink queue's, and their replies (simple, or structured when
 * negotiated) are written back in batches.
 *
 * Access: a client on the Unix socket is admitted as by the device's ACL
 * (its uid and gid from SO_PEERCRED); TCP carries no credentials, so a
 * device is offered over TCP only when its ACL admits everyone (users = *).
 * A device with nbd = no is not offered at all.
 */
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "../lib/barrier.h"
#include "iohost.h"

/* ---- the protocol (the NBD project's proto.md) ---- */

#define NBDMAGIC 0x4e42444d41474943ull
#define IHAVEOPT 0x49484156454f5054ull
#define NBD_REP_MAGIC 0x0003e889045565a9ull
#define NBD_REQUEST_MAGIC 0x25609513u
#define NBD_SIMPLE_REPLY_MAGIC 0x67446698u
#define NBD_STRUCTURED_REPLY_MAGIC 0x668e33efu

#define NBD_FLAG_FIXED_NEWSTYLE 1u
#define NBD_FLAG_NO_ZEROES 2u
#define NBD_FLAG_C_FIXED_NEWSTYLE 1u
#define NBD_FLAG_C_NO_ZEROES 2u

enum {
	NBD_OPT_EXPORT_NAME = 1,
	NBD_OPT_ABORT = 2,
	NBD_OPT_LIST = 3,
	NBD_OPT_STARTTLS = 5,
	NBD_OPT_INFO = 6,
	NBD_OPT_GO = 7,
	NBD_OPT_STRUCTURED_REPLY = 8,
	NBD_OPT_LIST_META_CONTEXT = 9,
	NBD_OPT_SET_META_CONTEXT = 10,
};

#define NBD_REP_ACK 1u
#define NBD_REP_SERVER 2u
#define NBD_REP_INFO 3u
#define NBD_REP_ERR_UNSUP 0x80000001u
#define NBD_REP_ERR_POLICY 0x80000002u
#define NBD_REP_ERR_INVALID 0x80000003u
#define NBD_REP_ERR_UNKNOWN 0x80000006u
#define NBD_REP_ERR_SHUTDOWN 0x80000007u
#define NBD_REP_ERR_TOO_BIG 0x80000009u

#define NBD_INFO_EXPORT 0u
#define NBD_INFO_NAME 1u
#define NBD_INFO_BLOCK_SIZE 3u

/* transmission flags */
#define NBD_FLAG_HAS_FLAGS (1u << 0)
#define NBD_FLAG_READ_ONLY (1u << 1)
#define NBD_FLAG_SEND_FLUSH (1u << 2)
#define NBD_FLAG_SEND_FUA (1u << 3)
#define NBD_FLAG_SEND_TRIM (1u << 5)
#define NBD_FLAG_SEND_WRITE_ZEROES (1u << 6)
#define NBD_FLAG_SEND_DF (1u << 7)
#define NBD_FLAG_CAN_MULTI_CONN (1u << 8)

enum {
	NBD_CMD_READ = 0,
	NBD_CMD_WRITE = 1,
	NBD_CMD_DISC = 2,
	NBD_CMD_FLUSH = 3,
	NBD_CMD_TRIM = 4,
	NBD_CMD_WRITE_ZEROES = 6,
};
#define NBD_CMD_FLAG_FUA (1u << 0)
#define NBD_CMD_FLAG_NO_HOLE (1u << 1)
#define NBD_CMD_FLAG_DF (1u << 2)

#define NBD_REPLY_FLAG_DONE 1u
#define NBD_REPLY_TYPE_NONE 0u
#define NBD_REPLY_TYPE_OFFSET_DATA 1u
#define NBD_REPLY_TYPE_ERROR 0x8001u

#define NBD_EPERM 1u
#define NBD_EIO 5u
#define NBD_ENOMEM 12u
#define NBD_EINVAL 22u
#define NBD_ENOSPC 28u
#define NBD_ENOTSUP 95u
#define NBD_ESHUTDOWN 108u

#define NBD_REQ_SIZE 28u

/* ---- limits ---- */

#define NBD_DEPTH 64u           /* requests in flight per connection */
#define NBD_RX_CAP (256u << 10) /* request bytes read at once */
#define NBD_HS_TIMEOUT_S 10     /* the whole negotiation */
#define NBD_HS_MAX 64           /* negotiations at once */
#define NBD_OPT_MAX (64u << 10) /* option data read at most */
#define NBD_OPTS_MAX 1000u      /* options per negotiation */
#define NBD_TX_IOV 64u          /* iovecs per sendmsg */

static int hs_running; /* atomic */

/* ---- listeners ---- */

int nbd_listen(const char *addr, char *err, size_t errlen)
{
	int fd;
	if (!strncmp(addr, "unix:", 5)) {
		const char *path = addr + 5;
		struct sockaddr_un a = {.sun_family = AF_UNIX};
		if (!*path || strlen(path) >= sizeof(a.sun_path)) {
			snprintf(err, errlen, "nbd %s: bad socket path", addr);
			return -EINVAL;
		}
		snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0)
			goto fail;
		/* one left by a crashed I/O host is replaced; a live one is not */
		int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (probe >= 0 && connect(probe, (struct sockaddr *)&a, sizeof(a)) == 0) {
			close(probe);
			close(fd);
			snprintf(err, errlen, "nbd %s: something listens there already", addr);
			return -EADDRINUSE;
		}
		if (probe >= 0)
			close(probe);
		unlink(path);
		if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
			goto fail_fd;
		/* everyone may try; the device's ACL decides (SO_PEERCRED) */
		chmod(path, 0666);
	} else {
		char host[256], port[16];
		const char *colon = strrchr(addr, ':');
		if (!colon) {
			snprintf(host, sizeof(host), "127.0.0.1");
			snprintf(port, sizeof(port), "%s", addr);
		} else {
			size_t hl = (size_t)(colon - addr);
			if (hl >= sizeof(host) || strlen(colon + 1) >= sizeof(port)) {
				snprintf(err, errlen, "nbd %s: bad address", addr);
				return -EINVAL;
			}
			memcpy(host, addr, hl);
			host[hl] = 0;
			if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
				memmove(host, host + 1, hl - 2);
				host[hl - 2] = 0;
			}
			snprintf(port, sizeof(port), "%s", colon + 1);
		}
		struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
					 .ai_flags = AI_PASSIVE | AI_NUMERICSERV},
				*ai;
		int g = getaddrinfo(host[0] ? host : NULL, port, &hints, &ai);
		if (g) {
			snprintf(err, errlen, "nbd %s: %s", addr, gai_strerror(g));
			return -EINVAL;
		}
		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		int one = 1;
		if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
		    bind(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
			int e = errno;
			freeaddrinfo(ai);
			if (fd >= 0)
				close(fd);
			snprintf(err, errlen, "nbd %s: %s", addr, strerror(e));
			return -e;
		}
		freeaddrinfo(ai);
	}
	if (listen(fd, 64) < 0)
		goto fail_fd;
	return fd;
fail_fd : {
	int e = errno;
	close(fd);
	errno = e;
}
fail:
	snprintf(err, errlen, "nbd %s: %s", addr, strerror(errno));
	return -errno;
}

/* ---- negotiation (a thread per connection) ---- */

struct hs {
	int fd;
	bool is_unix;
	uint32_t uid, gid, pid;
	uint32_t gids[33]; /* primary and supplementary groups (Unix peers) */
	unsigned ngids;
	char peer[64];
	bool no_zeroes;
	bool structured;
	struct timespec deadline;
};

/* Wait for fd to be ready for events before the deadline. */
static int hs_wait(struct hs *h, short events)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	long ms = (h->deadline.tv_sec - now.tv_sec) * 1000 +
		  (h->deadline.tv_nsec - now.tv_nsec) / 1000000;
	if (ms <= 0)
		return -ETIMEDOUT;
	struct pollfd p = {.fd = h->fd, .events = events};
	int r = poll(&p, 1, (int)ms);
	if (r < 0)
		return errno == EINTR ? 0 : -errno;
	return r == 0 ? -ETIMEDOUT : 0;
}

static int hs_read(struct hs *h, void *buf, size_t n)
{
	char *b = buf;
	while (n) {
		ssize_t r = recv(h->fd, b, n, MSG_DONTWAIT);
		if (r > 0) {
			b += r;
			n -= (size_t)r;
		} else if (r == 0) {
			return -EPIPE;
		} else if (errno == EAGAIN || errno == EINTR) {
			int e = hs_wait(h, POLLIN);
			if (e)
				return e;
		} else {
			return -errno;
		}
	}
	return 0;
}

static int hs_writev(struct hs *h, struct iovec *v, int n)
{
	while (n) {
		struct msghdr m = {.msg_iov = v, .msg_iovlen = (size_t)n};
		ssize_t r = sendmsg(h->fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (r < 0) {
			if (errno != EAGAIN && errno != EINTR)
				return -errno;
			int e = hs_wait(h, POLLOUT);
			if (e)
				return e;
			continue;
		}
		size_t k = (size_t)r;
		while (n && k >= v->iov_len) {
			k -= v->iov_len;
			v++;
			n--;
		}
		if (n) {
			v->iov_base = (char *)v->iov_base + k;
			v->iov_len -= k;
		}
	}
	return 0;
}

static int hs_write(struct hs *h, const void *b, size_t n)
{
	struct iovec v = {.iov_base = (void *)b, .iov_len = n};
	return hs_writev(h, &v, 1);
}

static int opt_reply(struct hs *h, uint32_t opt, uint32_t type, const void *data, uint32_t len)
{
	unsigned char hd[20];
	uint64_t m = htobe64(NBD_REP_MAGIC);
	uint32_t o = htobe32(opt), t = htobe32(type), l = htobe32(len);
	memcpy(hd, &m, 8);
	memcpy(hd + 8, &o, 4);
	memcpy(hd + 12, &t, 4);
	memcpy(hd + 16, &l, 4);
	struct iovec v[2] = {{hd, sizeof(hd)}, {(void *)data, len}};
	return hs_writev(h, v, len ? 2 : 1);
}

/* Whether d may be offered to this client. */
static bool offered(const struct device *d, const struct hs *h)
{
	if (!d->conf.nbd || zl_read_once(&d->removing))
		return false;
	if (h->is_unix)
		return dev_admits(d, h->uid, h->gids, h->ngids);
	return d->conf.any_user;
}

/* The export called name ("": the only one offered), with a reference;
 * else NULL and *why holds the option error. */
static struct device *export_get(const struct hs *h, const char *name, uint32_t *why)
{
	*why = NBD_REP_ERR_UNKNOWN;
	if (!*name) {
		struct device *only = NULL;
		unsigned n = 0;
		pthread_mutex_lock(&ioh->lock);
		for (struct device *d = ioh->devs; d; d = d->next)
			if (offered(d, h)) {
				only = d;
				n++;
			}
		if (n == 1)
			dev_get(only);
		pthread_mutex_unlock(&ioh->lock);
		return n == 1 ? only : NULL;
	}
	struct device *d = ioh_dev_get(name);
	if (d && !offered(d, h)) {
		/* a name that exists but is refused: say so only to those
		 * who could see it otherwise (a local user) */
		*why = d->conf.nbd && h->is_unix && !zl_read_once(&d->removing)
			       ? NBD_REP_ERR_POLICY
			       : NBD_REP_ERR_UNKNOWN;
		dev_put(d);
		return NULL;
	}
	return d;
}

static uint16_t tx_flags(const struct device *d, bool structured)
{
	uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA |
		     NBD_FLAG_CAN_MULTI_CONN;
	if (d->flags & ZL_BLK_INFO_RO)
		f |= NBD_FLAG_READ_ONLY;
	if ((d->flags & ZL_BLK_INFO_DISCARD) && !(d->flags & ZL_BLK_INFO_RO))
		f |= NBD_FLAG_SEND_TRIM;
	if ((d->flags & ZL_BLK_INFO_WRITE_ZEROES) && !(d->flags & ZL_BLK_INFO_RO))
		f |= NBD_FLAG_SEND_WRITE_ZEROES;
	if (structured)
		f |= NBD_FLAG_SEND_DF;
	return f;
}

static int send_info(struct hs *h, uint32_t opt, const struct device *d, const uint16_t *reqs,
		     unsigned nreq, const char *name)
{
	unsigned char b[16];
	uint16_t t = htobe16(NBD_INFO_EXPORT), fl = htobe16(tx_flags(d, h->structured));
	uint64_t sz = htobe64(d->size);
	memcpy(b, &t, 2);
	memcpy(b + 2, &sz, 8);
	memcpy(b + 10, &fl, 2);
	int e = opt_reply(h, opt, NBD_REP_INFO, b, 12);
	/* block sizes whether asked or not: requests must be aligned to the
	 * device's block size */
	uint32_t mn = htobe32(d->conf.block_size),
		 pref = htobe32(d->conf.block_size > 4096 ? d->conf.block_size : 4096),
		 mx = htobe32(d->max_io);
	t = htobe16(NBD_INFO_BLOCK_SIZE);
	memcpy(b, &t, 2);
	memcpy(b + 2, &mn, 4);
	memcpy(b + 6, &pref, 4);
	memcpy(b + 10, &mx, 4);
	if (!e)
		e = opt_reply(h, opt, NBD_REP_INFO, b, 14);
	for (unsigned i = 0; i < nreq && !e; i++) {
		if (reqs[i] != NBD_INFO_NAME)
			continue;
		size_t nl = strlen(name);
		unsigned char nb[2 + IOH_NAME_MAX];
		t = htobe16(NBD_INFO_NAME);
		memcpy(nb, &t, 2);
		memcpy(nb + 2, name, nl);
		e = opt_reply(h, opt, NBD_REP_INFO, nb, (uint32_t)(2 + nl));
	}
	return e;
}

static void conn_start(struct hs *h, struct device *d);

/* Negotiate; on success the connection goes to a sidecore. */
static void negotiate(struct hs *h)
{
	unsigned char hello[18];
	uint64_t m1 = htobe64(NBDMAGIC), m2 = htobe64(IHAVEOPT);
	uint16_t gf = htobe16(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
	memcpy(hello, &m1, 8);
	memcpy(hello + 8, &m2, 8);
	memcpy(hello + 16, &gf, 2);
	uint32_t cf;
	if (hs_write(h, hello, sizeof(hello)) || hs_read(h, &cf, 4))
		return;
	cf = be32toh(cf);
	if (cf & ~(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES))
		return; /* flags we did not offer: the spec says close */
	h->no_zeroes = cf & NBD_FLAG_C_NO_ZEROES;
	char *data = malloc(NBD_OPT_MAX + 1);
	if (!data)
		return;
	for (unsigned n = 0; n < NBD_OPTS_MAX; n++) {
		unsigned char oh[16];
		if (hs_read(h, oh, sizeof(oh)))
			break;
		uint64_t magic;
		uint32_t opt, len;
		memcpy(&magic, oh, 8);
		memcpy(&opt, oh + 8, 4);
		memcpy(&len, oh + 12, 4);
		opt = be32toh(opt);
		len = be32toh(len);
		if (be64toh(magic) != IHAVEOPT)
			break;
		if (len > NBD_OPT_MAX) {
			/* read it away in pieces, then refuse */
			int e = 0;
			for (uint32_t left = len; left && !e;) {
				uint32_t k = left < NBD_OPT_MAX ? left : NBD_OPT_MAX;
				e = hs_read(h, data, k);
				left -= k;
			}
			if (e || opt == NBD_OPT_EXPORT_NAME ||
			    opt_reply(h, opt, NBD_REP_ERR_TOO_BIG, NULL, 0))
				break;
			continue;
		}
		if (hs_read(h, data, len))
			break;
		data[len] = 0;
		int e = 0;
		switch (opt) {
		case NBD_OPT_EXPORT_NAME: {
			uint32_t why;
			if (memchr(data, 0, len))
				goto out;
			struct device *d = export_get(h, data, &why);
			if (!d)
				goto out; /* no way to say why: the spec says close */
			unsigned char b[10 + 124] = {0};
			uint64_t sz = htobe64(d->size);
			uint16_t fl = htobe16(tx_flags(d, h->structured));
			memcpy(b, &sz, 8);
			memcpy(b + 8, &fl, 2);
			if (hs_write(h, b, h->no_zeroes ? 10 : sizeof(b))) {
				dev_put(d);
				goto out;
			}
			free(data);
			conn_start(h, d);
			return;
		}
		case NBD_OPT_ABORT:
			opt_reply(h, opt, NBD_REP_ACK, NULL, 0);
			goto out;
		case NBD_OPT_LIST: {
			if (len) {
				e = opt_reply(h, opt, NBD_REP_ERR_INVALID, NULL, 0);
				break;
			}
			char names[64][IOH_NAME_MAX];
			unsigned k = 0;
			pthread_mutex_lock(&ioh->lock);
			for (struct device *d = ioh->devs; d && k < 64; d = d->next)
				if (offered(d, h))
					snprintf(names[k++], IOH_NAME_MAX, "%s", d->conf.name);
			pthread_mutex_unlock(&ioh->lock);
			for (unsigned i = 0; i < k && !e; i++) {
				unsigned char b[4 + IOH_NAME_MAX];
				uint32_t nl = (uint32_t)strlen(names[i]), be = htobe32(nl);
				memcpy(b, &be, 4);
				memcpy(b + 4, names[i], nl);
				e = opt_reply(h, opt, NBD_REP_SERVER, b, 4 + nl);
			}
			if (!e)
				e = opt_reply(h, opt, NBD_REP_ACK, NULL, 0);
			break;
		}
		case NBD_OPT_INFO:
		case NBD_OPT_GO: {
			uint32_t nl;
			uint16_t nr;
			if (len < 6)
				goto invalid;
			memcpy(&nl, data, 4);
			nl = be32toh(nl);
			if (nl > len - 6)
				goto invalid;
			memcpy(&nr, data + 4 + nl, 2);
			nr = be16toh(nr);
			if (6u + nl + 2u * nr != len)
				goto invalid;
			char name[IOH_NAME_MAX + 1];
			uint32_t why = NBD_REP_ERR_UNKNOWN;
			struct device *d = NULL;
			if (nl <= IOH_NAME_MAX && !memchr(data + 4, 0, nl)) {
				memcpy(name, data + 4, nl);
				name[nl] = 0;
				d = export_get(h, name, &why);
			}
			if (!d) {
				e = opt_reply(h, opt, why, NULL, 0);
				break;
			}
			uint16_t reqs[64];
			unsigned nreq = nr < 64 ? nr : 64;
			for (unsigned i = 0; i < nreq; i++) {
				memcpy(&reqs[i], data + 6 + nl + 2 * i, 2);
				reqs[i] = be16toh(reqs[i]);
			}
			e = send_info(h, opt, d, reqs, nreq, d->conf.name);
			if (!e)
				e = opt_reply(h, opt, NBD_REP_ACK, NULL, 0);
			if (e || opt == NBD_OPT_INFO) {
				dev_put(d);
				break;
			}
			free(data);
			conn_start(h, d);
			return;
		invalid:
			e = opt_reply(h, opt, NBD_REP_ERR_INVALID, NULL, 0);
			break;
		}
		case NBD_OPT_STRUCTURED_REPLY:
			if (len) {
				e = opt_reply(h, opt, NBD_REP_ERR_INVALID, NULL, 0);
				break;
			}
			h->structured = true;
			e = opt_reply(h, opt, NBD_REP_ACK, NULL, 0);
			break;
		case NBD_OPT_LIST_META_CONTEXT:
		case NBD_OPT_SET_META_CONTEXT:
			/* no metadata contexts (no block status): none match */
			e = opt_reply(h, opt, h->structured ? NBD_REP_ACK : NBD_REP_ERR_INVALID,
				      NULL, 0);
			break;
		case NBD_OPT_STARTTLS:
			e = opt_reply(h, opt, NBD_REP_ERR_POLICY, NULL, 0);
			break;
		default:
			e = opt_reply(h, opt, NBD_REP_ERR_UNSUP, NULL, 0);
			break;
		}
		if (e)
			break;
	}
out:
	free(data);
	close(h->fd);
	h->fd = -1;
}

static void *hs_main(void *arg)
{
	struct hs *h = arg;
	negotiate(h);
	if (h->fd >= 0)
		close(h->fd); /* conn_start did not take it */
	free(h);
	__atomic_fetch_sub(&hs_running, 1, __ATOMIC_RELAXED);
	return NULL;
}

/* The peer's supplementary groups, from /proc/PID/status (as the broker
 * reads them for zerolink services). */
static void peer_groups(struct hs *h)
{
	char path[64], line[1024];
	snprintf(path, sizeof(path), "/proc/%u/status", h->pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "Groups:", 7))
			continue;
		char *p = line + 7, *e;
		for (;;) {
			unsigned long g = strtoul(p, &e, 10);
			if (e == p || h->ngids == sizeof(h->gids) / sizeof(h->gids[0]))
				break;
			h->gids[h->ngids++] = (uint32_t)g;
			p = e;
		}
		break;
	}
	fclose(f);
}

void nbd_accept(int lfd, bool is_unix)
{
	for (;;) {
		union {
			struct sockaddr_storage ss;
			struct sockaddr_in in;
			struct sockaddr_in6 in6;
		} a;
		socklen_t al = sizeof(a);
		int fd = accept4(lfd, (struct sockaddr *)&a, &al, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0)
			return;
		if (__atomic_fetch_add(&hs_running, 1, __ATOMIC_RELAXED) >= NBD_HS_MAX) {
			__atomic_fetch_sub(&hs_running, 1, __ATOMIC_RELAXED);
			close(fd); /* too many negotiations at once */
			continue;
		}
		struct hs *h = calloc(1, sizeof(*h));
		if (!h) {
			__atomic_fetch_sub(&hs_running, 1, __ATOMIC_RELAXED);
			close(fd);
			continue;
		}
		h->fd = fd;
		h->is_unix = is_unix;
		if (is_unix) {
			struct ucred cr;
			socklen_t cl = sizeof(cr);
			if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) == 0) {
				h->uid = cr.uid;
				h->gid = cr.gid;
				h->pid = (uint32_t)cr.pid;
				h->gids[h->ngids++] = cr.gid;
				peer_groups(h);
			} else {
				h->uid = h->gid = UINT32_MAX;
			}
			snprintf(h->peer, sizeof(h->peer), "pid %u", h->pid);
		} else {
			char host[INET6_ADDRSTRLEN] = "?";
			unsigned port = 0;
			if (a.ss.ss_family == AF_INET) {
				inet_ntop(AF_INET, &a.in.sin_addr, host, sizeof(host));
				port = ntohs(a.in.sin_port);
			} else if (a.ss.ss_family == AF_INET6) {
				inet_ntop(AF_INET6, &a.in6.sin6_addr, host, sizeof(host));
				port = ntohs(a.in6.sin6_port);
			}
			snprintf(h->peer, sizeof(h->peer), "%s:%u", host, port);
			h->uid = h->gid = UINT32_MAX;
			int one = 1;
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		}
		clock_gettime(CLOCK_MONOTONIC, &h->deadline);
		h->deadline.tv_sec += NBD_HS_TIMEOUT_S;
		pthread_attr_t at;
		pthread_attr_init(&at);
		pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
		pthread_t th;
		/* the sidecores' signal mask (SIGTERM, SIGINT blocked) is inherited */
		if (pthread_create(&th, &at, hs_main, h)) {
			__atomic_fetch_sub(&hs_running, 1, __ATOMIC_RELAXED);
			close(fd);
			free(h);
		}
		pthread_attr_destroy(&at);
	}
}

/* ---- transmission: the endpoint on a sidecore ---- */

struct nslot {
	struct ioreq r;
	char *buf; /* the request's data (write) or the data read */
	uint32_t cap;
	uint8_t hdr[32]; /* the reply's header */
	uint32_t hlen;
	uint64_t handle;
	uint32_t data_len; /* bytes of data after the header */
};

struct nbdc {
	struct fe fe;
	int fd;
	bool structured;
	bool disc;  /* the client said goodbye: finish and close */
	bool fatal; /* the connection broke or the client broke the protocol */
	struct nslot *slots;
	uint32_t free_stack[NBD_DEPTH];
	uint32_t nfree, inflight;
	char *rx;
	uint32_t rx_off, rx_len;
	struct nslot *wr;  /* a write whose data is arriving */
	uint32_t wr_got;   /* of its data */
	int32_t wr_status; /* the status it gets instead of running, or 0 */
	uint64_t skip;     /* data of a refused write still to read away */
	struct ioreq *tx_head, *tx_tail;
	uint32_t tx_off; /* bytes of the head's reply already sent */
	uint32_t ep_events;
};

static const struct fe_ops nbd_ops;

static uint32_t nbd_errno(int32_t st, uint8_t op)
{
	switch (st) {
	case 0:
		return 0;
	case ZL_BLK_S_EROFS:
		return NBD_EPERM;
	case ZL_BLK_S_ENOMEM:
		return NBD_ENOMEM;
	case ZL_BLK_S_EINVAL:
		return NBD_EINVAL;
	case ZL_BLK_S_ENOSPC:
		return NBD_ENOSPC;
	case ZL_BLK_S_ERANGE:
		/* the spec: beyond the end, ENOSPC for writes, EINVAL otherwise */
		return op == ZL_BLK_OP_READ ? NBD_EINVAL : NBD_ENOSPC;
	case ZL_BLK_S_EOPNOTSUPP:
		return NBD_ENOTSUP;
	case ZL_BLK_S_ESHUTDOWN:
		return NBD_ESHUTDOWN;
	default:
		return NBD_EIO;
	}
}

static void put16(uint8_t *p, uint16_t v)
{
	v = htobe16(v);
	memcpy(p, &v, 2);
}
static void put32(uint8_t *p, uint32_t v)
{
	v = htobe32(v);
	memcpy(p, &v, 4);
}
static void put64(uint8_t *p, uint64_t v)
{
	v = htobe64(v);
	memcpy(p, &v, 8);
}

/* Build s's reply and queue it. */
static void reply_queue(struct nbdc *c, struct nslot *s)
{
	struct ioreq *r = &s->r;
	uint32_t err = nbd_errno(r->status, r->op);
	bool data = r->op == ZL_BLK_OP_READ && !err;
	s->data_len = data ? r->len : 0;
	if (!c->structured) {
		put32(s->hdr, NBD_SIMPLE_REPLY_MAGIC);
		put32(s->hdr + 4, err);
		memcpy(s->hdr + 8, &s->handle, 8); /* opaque: as it came */
		s->hlen = 16;
	} else {
		put32(s->hdr, NBD_STRUCTURED_REPLY_MAGIC);
		put16(s->hdr + 4, NBD_REPLY_FLAG_DONE);
		memcpy(s->hdr + 8, &s->handle, 8); /* opaque: as it came */
		if (err) {
			put16(s->hdr + 6, NBD_REPLY_TYPE_ERROR);
			put32(s->hdr + 16, 6);
			put32(s->hdr + 20, err);
			put16(s->hdr + 24, 0); /* no message */
			s->hlen = 26;
		} else if (data) {
			put16(s->hdr + 6, NBD_REPLY_TYPE_OFFSET_DATA);
			put32(s->hdr + 16, 8 + r->len);
			put64(s->hdr + 20, r->off);
			s->hlen = 28;
		} else {
			put16(s->hdr + 6, NBD_REPLY_TYPE_NONE);
			put32(s->hdr + 16, 0);
			s->hlen = 20;
		}
	}
	r->next = NULL;
	if (c->tx_tail)
		c->tx_tail->next = r;
	else
		c->tx_head = r;
	c->tx_tail = r;
}

static void slot_free(struct nbdc *c, struct nslot *s)
{
	c->free_stack[c->nfree++] = (uint32_t)(s - c->slots);
	c->inflight--;
}

/* A request of this connection finished (sidecore thread). */
static void nbd_done(struct ioreq *r)
{
	struct nbdc *c = r->owner;
	struct nslot *s = (struct nslot *)r;
	fe_count(&c->fe, r);
	if (c->fatal) {
		slot_free(c, s);
		return;
	}
	reply_queue(c, s);
}

/* Write queued replies. Returns replies finished; the connection is fatal
 * when the socket breaks. */
static int tx_flush(struct nbdc *c)
{
	int done = 0;
	while (c->tx_head && !c->fatal) {
		struct iovec v[NBD_TX_IOV];
		int n = 0;
		uint32_t skip = c->tx_off;
		for (struct ioreq *r = c->tx_head; r && n + 2 <= (int)NBD_TX_IOV; r = r->next) {
			struct nslot *s = (struct nslot *)r;
			v[n++] = (struct iovec){s->hdr, s->hlen};
			if (s->data_len)
				v[n++] = (struct iovec){s->buf, s->data_len};
		}
		/* the head's reply may be partly sent */
		int i = 0;
		while (skip) {
			uint32_t k = skip < v[i].iov_len ? skip : (uint32_t)v[i].iov_len;
			v[i].iov_base = (char *)v[i].iov_base + k;
			v[i].iov_len -= k;
			skip -= k;
			if (v[i].iov_len == 0)
				i++;
		}
		struct msghdr m = {.msg_iov = v + i, .msg_iovlen = (size_t)(n - i)};
		ssize_t w = sendmsg(c->fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (w < 0) {
			if (errno != EAGAIN && errno != EINTR)
				c->fatal = true;
			break;
		}
		uint64_t sent = (uint64_t)w + c->tx_off;
		while (c->tx_head) {
			struct nslot *s = (struct nslot *)c->tx_head;
			uint64_t whole = s->hlen + s->data_len;
			if (sent < whole)
				break;
			sent -= whole;
			c->tx_head = c->tx_head->next;
			if (!c->tx_head)
				c->tx_tail = NULL;
			slot_free(c, s);
			done++;
		}
		c->tx_off = (uint32_t)sent;
		if (c->tx_head && sent)
			break; /* a partial write: the socket is full */
	}
	if (c->fatal) {
		while (c->tx_head) {
			struct nslot *s = (struct nslot *)c->tx_head;
			c->tx_head = c->tx_head->next;
			slot_free(c, s);
		}
		c->tx_tail = NULL;
		c->tx_off = 0;
	}
	return done;
}

static bool slot_buf(struct nbdc *c, struct nslot *s, uint32_t len)
{
	(void)c;
	if (s->cap >= len)
		return true;
	uint32_t cap = len < 65536 ? 65536 : len;
	void *b;
	if (posix_memalign(&b, 4096, cap))
		return false;
	free(s->buf);
	s->buf = b;
	s->cap = cap;
	return true;
}

/* Start a request whose data (if any) is all there. */
static void req_start(struct nbdc *c, struct nslot *s, int32_t st)
{
	struct ioreq *r = &s->r;
	if (!st)
		st = dev_check(c->fe.dev, r);
	if (st) {
		r->status = st;
		sc_complete(c->fe.sc, r);
		return;
	}
	if (r->op == ZL_BLK_OP_READ || r->op == ZL_BLK_OP_WRITE) {
		r->iov[0].iov_base = s->buf;
		r->iov[0].iov_len = r->len;
		r->niov = 1;
	}
	dev_submit(c->fe.sc, r);
}

/* One request header (28 bytes at p). */
static void req_parse(struct nbdc *c, const uint8_t *p)
{
	uint32_t magic, len;
	uint16_t flags, type;
	uint64_t handle, off;
	memcpy(&magic, p, 4);
	memcpy(&flags, p + 4, 2);
	memcpy(&type, p + 6, 2);
	memcpy(&handle, p + 8, 8);
	memcpy(&off, p + 16, 8);
	memcpy(&len, p + 24, 4);
	if (be32toh(magic) != NBD_REQUEST_MAGIC) {
		c->fatal = true; /* out of step: nothing after this can be trusted */
		return;
	}
	flags = be16toh(flags);
	type = be16toh(type);
	off = be64toh(off);
	len = be32toh(len);
	if (type == NBD_CMD_DISC) {
		c->disc = true;
		return;
	}
	struct nslot *s = &c->slots[c->free_stack[--c->nfree]];
	c->inflight++;
	struct ioreq *r = &s->r;
	char *buf = s->buf;
	uint32_t cap = s->cap;
	memset(s, 0, sizeof(*s));
	s->buf = buf;
	s->cap = cap;
	s->handle = handle;
	r->dev = c->fe.dev;
	r->owner = c;
	r->fe = &c->fe;
	r->done = nbd_done;
	r->sc = c->fe.sc;
	r->off = off;
	r->len = len;
	r->tag = handle;
	int32_t st = 0;
	uint16_t known = NBD_CMD_FLAG_FUA;
	switch (type) {
	case NBD_CMD_READ:
		r->op = ZL_BLK_OP_READ;
		known |= NBD_CMD_FLAG_DF; /* a read is never fragmented here */
		break;
	case NBD_CMD_WRITE:
		r->op = ZL_BLK_OP_WRITE;
		break;
	case NBD_CMD_FLUSH:
		r->op = ZL_BLK_OP_FLUSH;
		r->off = 0;
		r->len = 0;
		break;
	case NBD_CMD_TRIM:
		r->op = ZL_BLK_OP_DISCARD;
		break;
	case NBD_CMD_WRITE_ZEROES:
		r->op = ZL_BLK_OP_WRITE_ZEROES;
		known |= NBD_CMD_FLAG_NO_HOLE;
		break;
	default:
		st = ZL_BLK_S_EINVAL;
		r->op = 0;
		break;
	}
	if (flags & ~known)
		st = ZL_BLK_S_EINVAL;
	if (r->op == ZL_BLK_OP_WRITE || r->op == ZL_BLK_OP_WRITE_ZEROES)
		r->flags = (flags & NBD_CMD_FLAG_FUA) ? ZL_BLK_F_FUA : 0;
	if (r->op == ZL_BLK_OP_WRITE_ZEROES && (flags & NBD_CMD_FLAG_NO_HOLE))
		r->flags |= ZL_BLK_F_NOUNMAP;
	/* a trim's FUA and the flush's are what they always are here: the
	 * completion of a flush is durable, a trim is advisory */
	if (r->op == ZL_BLK_OP_READ || r->op == ZL_BLK_OP_WRITE) {
		if (len > c->fe.dev->max_io) {
			st = ZL_BLK_S_EINVAL;
		} else if (!slot_buf(c, s, len ? len : 1)) {
			st = ZL_BLK_S_ENOMEM;
		}
	}
	if (r->op == ZL_BLK_OP_WRITE) {
		if (st && len > (s->cap ? s->cap : 0)) {
			/* refused, and its data does not fit: read it away */
			c->skip = len;
			r->status = st;
			sc_complete(c->fe.sc, r);
			return;
		}
		c->wr = s;
		c->wr_got = 0;
		c->wr_status = st;
		return;
	}
	req_start(c, s, st);
}

/* Take what has arrived. Returns requests taken. */
static int rx_take(struct nbdc *c)
{
	int taken = 0;
	for (;;) {
		uint32_t avail = c->rx_len - c->rx_off;
		if (c->skip) {
			uint32_t k = avail < c->skip ? avail : (uint32_t)c->skip;
			c->rx_off += k;
			c->skip -= k;
			if (c->skip)
				goto more;
			continue;
		}
		if (c->wr) {
			struct nslot *s = c->wr;
			uint32_t need = s->r.len - c->wr_got;
			uint32_t k = avail < need ? avail : need;
			memcpy(s->buf + c->wr_got, c->rx + c->rx_off, k);
			c->rx_off += k;
			c->wr_got += k;
			need -= k;
			if (need && need >= NBD_RX_CAP / 4) {
				/* a large write: straight into its buffer */
				ssize_t n = recv(c->fd, s->buf + c->wr_got, need, MSG_DONTWAIT);
				if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
					c->fatal = true;
					c->wr = NULL;
					s->r.status = ZL_BLK_S_EIO;
					slot_free(c, s);
					return taken;
				}
				if (n < 0)
					return taken;
				c->wr_got += (uint32_t)n;
				need -= (uint32_t)n;
			}
			if (need)
				goto more;
			c->wr = NULL;
			req_start(c, s, c->wr_status);
			taken++;
			continue;
		}
		if (c->disc || c->fatal || zl_read_once(&c->fe.dev->removing))
			return taken;
		if (avail >= NBD_REQ_SIZE) {
			if (!c->nfree)
				return taken; /* the client waits for replies */
			req_parse(c, (const uint8_t *)c->rx + c->rx_off);
			c->rx_off += NBD_REQ_SIZE;
			if (!c->wr && !c->skip)
				taken++;
			continue;
		}
	more:
		/* read more */
		if (c->rx_off == c->rx_len) {
			c->rx_off = c->rx_len = 0;
		} else if (c->rx_off > NBD_RX_CAP / 2) {
			memmove(c->rx, c->rx + c->rx_off, c->rx_len - c->rx_off);
			c->rx_len -= c->rx_off;
			c->rx_off = 0;
		}
		if (c->rx_len == NBD_RX_CAP)
			return taken;
		ssize_t n = recv(c->fd, c->rx + c->rx_len, NBD_RX_CAP - c->rx_len, MSG_DONTWAIT);
		if (n > 0) {
			c->rx_len += (uint32_t)n;
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return taken;
		/* the client went away (or the socket broke) */
		c->fatal = true;
		if (c->wr) {
			slot_free(c, c->wr);
			c->wr = NULL;
		}
		return taken;
	}
}

static int nbd_poll(struct fe *f)
{
	struct nbdc *c = (struct nbdc *)f;
	int work = tx_flush(c);
	if (f->dead)
		c->fatal = true;
	if (!c->fatal)
		work += rx_take(c);
	if (c->fatal && c->tx_head)
		tx_flush(c); /* drops them */
	bool ending = c->fatal || c->disc || zl_read_once(&f->dev->removing);
	if (ending && c->inflight == 0)
		return -1;
	return work;
}

static int nbd_arm(struct fe *f)
{
	struct nbdc *c = (struct nbdc *)f;
	if (c->fatal || c->disc || zl_read_once(&f->dev->removing))
		return 1;
	if (c->rx_len - c->rx_off >= NBD_REQ_SIZE && c->nfree && !c->wr && !c->skip)
		return 1;
	uint32_t want = EPOLLIN | (c->tx_head ? EPOLLOUT : 0u);
	if (want != c->ep_events) {
		struct epoll_event ev = {.events = want, .data.ptr = f};
		epoll_ctl(f->sc->ep, EPOLL_CTL_MOD, c->fd, &ev);
		c->ep_events = want;
	}
	return 0;
}

static int nbd_fd(const struct fe *f)
{
	return ((const struct nbdc *)f)->fd;
}

static bool nbd_idle(const struct fe *f)
{
	const struct nbdc *c = (const struct nbdc *)f;
	return c->inflight == 0 && !c->wr;
}

static void nbd_free(struct fe *f)
{
	struct nbdc *c = (struct nbdc *)f;
	for (uint32_t i = 0; i < NBD_DEPTH; i++)
		free(c->slots[i].buf);
	free(c->slots);
	free(c->rx);
	close(c->fd);
	dev_put(f->dev);
	free(c);
}

static const struct fe_ops nbd_ops = {
	.kind = "nbd",
	.poll = nbd_poll,
	.arm = nbd_arm,
	.fd = nbd_fd,
	.idle = nbd_idle,
	.free = nbd_free,
};

/* The negotiation is over: the connection becomes an endpoint. Takes the
 * reference to d and h->fd. */
static void conn_start(struct hs *h, struct device *d)
{
	struct nbdc *c = calloc(1, sizeof(*c));
	if (c) {
		c->slots = calloc(NBD_DEPTH, sizeof(*c->slots));
		c->rx = malloc(NBD_RX_CAP);
	}
	if (!c || !c->slots || !c->rx) {
		if (c) {
			free(c->slots);
			free(c->rx);
			free(c);
		}
		dev_put(d);
		return; /* h->fd is closed by the caller */
	}
	c->fe.ops = &nbd_ops;
	c->fe.dev = d;
	c->fe.pid = h->pid;
	c->fe.uid = h->uid;
	c->fe.gid = h->gid;
	c->fe.depth = NBD_DEPTH;
	snprintf(c->fe.peer, sizeof(c->fe.peer), "%s", h->peer);
	c->fd = h->fd;
	h->fd = -1;
	c->structured = h->structured;
	c->ep_events = EPOLLIN;
	for (uint32_t i = 0; i < NBD_DEPTH; i++)
		c->free_stack[i] = NBD_DEPTH - 1 - i;
	c->nfree = NBD_DEPTH;
	ioh_fe_add(&c->fe);
}
