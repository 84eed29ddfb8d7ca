/* SPDX-License-Identifier: MIT */
/*
 * Contexts and the broker client: joining, naming, listening, connecting.
 * The broker is only on the set-up path; once two endpoints hold each
 * other's halves and eventfds, the channel needs nothing from it.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <poll.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "barrier.h"
#include "internal.h"

#ifndef ZL_ZEROLINKD_PATH
#define ZL_ZEROLINKD_PATH "/usr/local/sbin/zerolinkd"
#endif

#define BROKER_TIMEOUT_MS 5000

extern char **environ;

ZL_EXPORT int zl_broker_default_path(char *buf, size_t size)
{
	const char *e = getenv("ZEROLINK_BROKER");
	int n;
	struct stat st;
	if (e && *e)
		n = snprintf(buf, size, "%s", e);
	else if (stat("/run/zerolink/broker.sock", &st) == 0 && S_ISSOCK(st.st_mode))
		n = snprintf(buf, size, "/run/zerolink/broker.sock");
	else if ((e = getenv("XDG_RUNTIME_DIR")) && *e)
		n = snprintf(buf, size, "%s/zerolink/broker.sock", e);
	else
		n = snprintf(buf, size, "/tmp/zerolink-%u/broker.sock", (unsigned)getuid());
	if (n < 0 || (size_t)n >= size || (size_t)n >= sizeof(((struct sockaddr_un *)0)->sun_path))
		return -ENAMETOOLONG;
	return n;
}

/* Which zerolinkd to start: $ZEROLINKD, one beside this program, or the
 * installed one. */
static void zerolinkd_path(char *buf, size_t size)
{
	const char *e = getenv("ZEROLINKD");
	if (e && *e) {
		snprintf(buf, size, "%s", e);
		return;
	}
	char self[4096];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		self[n] = '\0';
		snprintf(buf, size, "%s/zerolinkd", dirname(self));
		if (access(buf, X_OK) == 0)
			return;
	}
	snprintf(buf, size, "%s", ZL_ZEROLINKD_PATH);
}

static int spawn_broker(const char *path)
{
	char exe[4200];
	zerolinkd_path(exe, sizeof(exe));
	char *argv[] = {"zerolinkd", "--embedded", "--socket", (char *)path, NULL};
	/* none of the program's descriptors: a listening socket inherited by
	 * the broker would keep its port bound after the program is gone */
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addclosefrom_np(&fa, 3);
	pid_t pid;
	int err = posix_spawn(&pid, exe, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (err)
		return -err;
	/* zerolinkd --embedded forks its daemon and exits once it listens. */
	int status;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	return 0;
}

static int dial_once(const char *path, int *out)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	int fd = zl__fd_high(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
	if (fd < 0)
		return -errno;
	int r;
	do
		r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	while (r < 0 && errno == EINTR);
	if (r < 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	*out = fd;
	return 0;
}

int zl__broker_dial(const char *path, bool spawn, int *out)
{
	int err = dial_once(path, out);
	if (err != -ENOENT && err != -ECONNREFUSED)
		return err;
	if (!spawn)
		return -ECONNREFUSED;
	int se = spawn_broker(path);
	if (se)
		return -ECONNREFUSED;
	for (int i = 0; i < 200; i++) {
		err = dial_once(path, out);
		if (err != -ENOENT && err != -ECONNREFUSED)
			return err;
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	return -ECONNREFUSED;
}

/* Read one reply with a deadline; returns its type or -errno. */
static int recv_reply(int fd, uint32_t seq, void *reply, size_t rcap, int *rfds, int *nrfds)
{
	int cap = nrfds ? *nrfds : 0;
	int fds[4];
	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int n = poll(&p, 1, BROKER_TIMEOUT_MS);
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0)
			return -ETIMEDOUT;
		char buf[ZL_PROTO_MAX];
		int nfds = 4;
		ssize_t len = zl__msg_recv(fd, buf, sizeof(buf), fds, &nfds, false);
		if (len == 0)
			return -ENOTCONN;
		if (len < 0)
			return (int)len;
		int type = zl__proto_check(buf, (size_t)len, nfds);
		struct zl_proto_hdr h;
		memcpy(&h, buf, sizeof(h));
		if (type < 0 || h.seq != seq || nfds > cap) {
			zl__close_fds(fds, nfds);
			if (type < 0 || nfds > cap)
				return -EPROTO;
			continue; /* a stale reply from before a time-out */
		}
		size_t blen = (size_t)len - sizeof(h);
		if (type == ZL_MSG_ERR) {
			struct zl_proto_err e;
			memcpy(&e, buf + sizeof(h), sizeof(e));
			return -e.err;
		}
		if (blen > rcap) {
			zl__close_fds(fds, nfds);
			return -EPROTO;
		}
		if (blen)
			memcpy(reply, buf + sizeof(h), blen);
		for (int i = 0; i < nfds; i++)
			rfds[i] = fds[i];
		if (nrfds)
			*nrfds = nfds;
		return type;
	}
}

static int say_hello(struct zl_ctx *ctx, int fd)
{
	struct zl_proto_hello hb = {.resume_domain = ctx->domain};
	snprintf(hb.name, sizeof(hb.name), "%s", ctx->name);
	uint32_t seq = ++ctx->seq;
	int err = zl__msg_send(fd, ZL_MSG_HELLO, seq, &hb, sizeof(hb), NULL, 0);
	if (err)
		return err;
	struct zl_proto_hello_ok ok;
	int type = recv_reply(fd, seq, &ok, sizeof(ok), NULL, NULL);
	if (type < 0)
		return type;
	if (type != ZL_MSG_HELLO_OK)
		return -EPROTO;
	ctx->domain = ok.domain;
	return 0;
}

/* Reconnect the main connection (broker restarted). Called with the lock. */
static int reconnect(struct zl_ctx *ctx)
{
	if (ctx->bfd >= 0)
		close(ctx->bfd);
	ctx->bfd = -1;
	int fd;
	int err = zl__broker_dial(ctx->path, !(ctx->flags & ZL_CTX_NO_SPAWN), &fd);
	if (err)
		return -ENOTCONN;
	err = say_hello(ctx, fd);
	if (err) {
		close(fd);
		return err;
	}
	ctx->bfd = fd;
	return 0;
}

int zl__broker_call(struct zl_ctx *ctx, uint8_t type, const void *body, size_t blen, const int *fds,
		    int nfds, void *reply, size_t rcap, int *rfds, int *nrfds)
{
	pthread_mutex_lock(&ctx->lock);
	int r = -ENOTCONN;
	for (int attempt = 0; attempt < 2; attempt++) {
		if (ctx->bfd < 0 && (r = reconnect(ctx)) < 0)
			break;
		uint32_t seq = ++ctx->seq;
		r = zl__msg_send(ctx->bfd, type, seq, body, blen, fds, nfds);
		if (r == 0)
			r = recv_reply(ctx->bfd, seq, reply, rcap, rfds, nrfds);
		if (r != -EPIPE && r != -ECONNRESET && r != -ENOTCONN)
			break;
		close(ctx->bfd);
		ctx->bfd = -1;
	}
	pthread_mutex_unlock(&ctx->lock);
	return r;
}

void zl__broker_notify(struct zl_ctx *ctx, uint8_t type, const void *body, size_t blen,
		       const int *fds, int nfds)
{
	if (!ctx)
		return;
	pthread_mutex_lock(&ctx->lock);
	if (ctx->bfd >= 0 && zl__msg_send(ctx->bfd, type, 0, body, blen, fds, nfds) < 0) {
		/* The broker is gone; the next request reconnects. Notices are
		 * best effort: the broker rebuilds its view from new traffic. */
		close(ctx->bfd);
		ctx->bfd = -1;
	}
	pthread_mutex_unlock(&ctx->lock);
}

ZL_EXPORT int zl_ctx_open(struct zl_ctx **out, const struct zl_ctx_opts *opts)
{
	if (!out)
		return -EINVAL;
	zl__mb_init();
	struct zl_ctx *ctx = calloc(1, sizeof(*ctx));
	if (!ctx)
		return -ENOMEM;
	pthread_mutex_init(&ctx->lock, NULL);
	ctx->refs = 1;
	ctx->bfd = -1;
	ctx->flags = opts ? opts->flags : 0;
	const char *name = opts && opts->name ? opts->name : program_invocation_short_name;
	snprintf(ctx->name, sizeof(ctx->name), "%s", name);
	int err;
	if (opts && opts->broker_path) {
		if (strlen(opts->broker_path) >= sizeof(ctx->path)) {
			free(ctx);
			return -ENAMETOOLONG;
		}
		snprintf(ctx->path, sizeof(ctx->path), "%s", opts->broker_path);
	} else if ((err = zl_broker_default_path(ctx->path, sizeof(ctx->path))) < 0) {
		free(ctx);
		return err;
	}
	if (!opts || !opts->broker_path) {
		/* make the per-user directory of the default path */
		char dir[sizeof(ctx->path)];
		snprintf(dir, sizeof(dir), "%s", ctx->path);
		char *slash = strrchr(dir, '/');
		if (slash && slash != dir) {
			*slash = '\0';
			mkdir(dir, 0700);
		}
	}
	if (opts && opts->pseudo_global && (err = zl__pgas_reserve(ctx))) {
		pthread_mutex_destroy(&ctx->lock);
		free(ctx);
		return err;
	}
	pthread_mutex_lock(&ctx->lock);
	err = reconnect(ctx);
	pthread_mutex_unlock(&ctx->lock);
	if (err) {
		zl__pgas_release(ctx);
		pthread_mutex_destroy(&ctx->lock);
		free(ctx);
		return err == -ENOTCONN ? -ECONNREFUSED : err;
	}
	*out = ctx;
	return 0;
}

void zl__ctx_get(struct zl_ctx *ctx)
{
	if (ctx)
		__atomic_fetch_add(&ctx->refs, 1, __ATOMIC_RELAXED);
}

void zl__ctx_put(struct zl_ctx *ctx)
{
	if (!ctx || __atomic_sub_fetch(&ctx->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	if (ctx->bfd >= 0)
		close(ctx->bfd);
	/* after the last region: none is left in the pseudo-global range */
	zl__pgas_release(ctx);
	pthread_mutex_destroy(&ctx->lock);
	free(ctx);
}

ZL_EXPORT void zl_ctx_close(struct zl_ctx *ctx)
{
	zl__ctx_put(ctx);
}

ZL_EXPORT struct zl_domain zl_ctx_domain(const struct zl_ctx *ctx)
{
	struct zl_domain d = {ctx->domain};
	return d;
}

/* ------------------------------------------------------------------ */
/* listening and connecting                                            */

static int listen_on(struct zl_ctx *ctx, struct zl_listener *lis, const struct zl_proto_listen *lb)
{
	int fd;
	int err = zl__broker_dial(ctx->path, !(ctx->flags & ZL_CTX_NO_SPAWN), &fd);
	if (err)
		return -ENOTCONN;
	struct zl_proto_listen b = *lb;
	b.domain = ctx->domain;
	err = zl__msg_send(fd, ZL_MSG_LISTEN, 1, &b, sizeof(b), NULL, 0);
	if (!err) {
		int type = recv_reply(fd, 1, NULL, 0, NULL, NULL);
		err = type < 0 ? type : type == ZL_MSG_OK ? 0 : -EPROTO;
	}
	if (err) {
		close(fd);
		return err;
	}
	if (lis->fd >= 0) {
		/* keep the descriptor number the application may be polling */
		dup3(fd, lis->fd, O_CLOEXEC);
		close(fd);
	} else {
		lis->fd = fd;
	}
	return 0;
}

struct zl_listener_full {
	struct zl_listener pub;
	struct zl_proto_listen lb;
};

ZL_EXPORT int zl_listen(struct zl_ctx *ctx, const char *service, const struct zl_listen_opts *opts,
			struct zl_listener **out)
{
	if (!ctx || !service || !out || !zl__name_ok(service, ZL_NAME_MAX))
		return -EINVAL;
	if (opts && (opts->nuids > ZL_ACL_MAX || opts->ngids > ZL_ACL_MAX))
		return -EINVAL;
	struct zl_listener_full *l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->pub.ctx = ctx;
	l->pub.fd = -1;
	snprintf(l->pub.service, sizeof(l->pub.service), "%s", service);
	struct zl_proto_listen *b = &l->lb;
	snprintf(b->service, sizeof(b->service), "%s", service);
	if (opts) {
		b->mode = opts->mode == ZL_MODE_ISOLATED ? ZL_PROTO_MODE_ISOLATED : 0;
		b->flags = (opts->flags & ZL_LISTEN_ANY) ? ZL_LISTEN_F_ANY : 0;
		b->nuid = opts->nuids;
		b->ngid = opts->ngids;
		memcpy(b->uid, opts->uids, sizeof(b->uid));
		memcpy(b->gid, opts->gids, sizeof(b->gid));
	}
	int err = listen_on(ctx, &l->pub, b);
	if (err) {
		free(l);
		return err;
	}
	zl__ctx_get(ctx);
	*out = &l->pub;
	return 0;
}

ZL_EXPORT int zl_listener_fd(const struct zl_listener *lis)
{
	return lis->fd;
}

ZL_EXPORT void zl_listener_close(struct zl_listener *lis)
{
	if (!lis)
		return;
	if (lis->fd >= 0)
		close(lis->fd);
	zl__ctx_put(lis->ctx);
	free((struct zl_listener_full *)lis);
}

static void refuse(int ctl, int err, const char *why)
{
	struct zl_proto_err e = {.err = -err};
	snprintf(e.text, sizeof(e.text), "%s", why);
	zl__msg_send(ctl, ZL_MSG_PEER_REFUSE, 0, &e, sizeof(e), NULL, 0);
	close(ctl);
}

static void chan_register(struct zl_chan *ch, uint32_t side)
{
	struct zl_proto_chan pc = {.chan = ch->id, .domain = ch->ctx->domain, .side = side};
	ch->side = side;
	zl__broker_notify(ch->ctx, ZL_MSG_CHAN_UP, &pc, sizeof(pc), &ch->mine->fd, 1);
	ch->registered = true;
}

ZL_EXPORT int zl_accept(struct zl_listener *lis, const struct zl_chan_opts *opts,
			struct zl_chan **out, int timeout_ms)
{
	struct zl_listener_full *lf = (struct zl_listener_full *)lis;
	for (;;) {
		struct pollfd p = {.fd = lis->fd, .events = POLLIN};
		int n = poll(&p, 1, timeout_ms);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EAGAIN;
		char buf[ZL_PROTO_MAX];
		int fds[4];
		int nfds = 4;
		ssize_t len = zl__msg_recv(lis->fd, buf, sizeof(buf), fds, &nfds, true);
		if (len == -EAGAIN)
			continue;
		if (len <= 0) {
			/* The broker went away: offer the service again on the
			 * broker that replaces it (started on demand). */
			int err = listen_on(lis->ctx, lis, &lf->lb);
			if (err)
				return -ENOTCONN;
			continue;
		}
		if (zl__proto_check(buf, (size_t)len, nfds) != ZL_MSG_INCOMING) {
			zl__close_fds(fds, nfds);
			return -EPROTO;
		}
		struct zl_proto_incoming in;
		memcpy(&in, buf + sizeof(struct zl_proto_hdr), sizeof(in));
		int err = 0;
		struct zl_chan *ch =
			zl__chan_new(lis->ctx, opts, (enum zl_mode)in.mode, fds[0], in.chan, &err);
		if (!ch) {
			refuse(fds[0], err, "listener could not create the channel");
			return err;
		}
		int tmo = opts && opts->timeout_ms ? (int)opts->timeout_ms : BROKER_TIMEOUT_MS;
		/* A client that has already closed (after writing, as a socket
		 * may) cannot read our hello, but its own is queued: accept the
		 * channel, which then reads as closed after its data. */
		err = zl__chan_hello_send(ch);
		if ((err && err != -EPIPE && err != -ECONNRESET) ||
		    (err = zl__chan_hello_recv(ch, tmo))) {
			zl__chan_free(ch);
			return err;
		}
		ch->peer_pid = in.peer_pid;
		ch->peer_uid = in.peer_uid;
		ch->peer_gid = in.peer_gid;
		chan_register(ch, 1);
		*out = ch;
		return 0;
	}
}

int zl__connect_begin(struct zl_ctx *ctx, const char *service, const struct zl_chan_opts *opts,
		      struct zl_chan **out)
{
	if (!ctx || !service || !out || !zl__name_ok(service, ZL_NAME_MAX))
		return -EINVAL;
	struct zl_proto_connect cb = {.domain = ctx->domain};
	cb.mode = opts && opts->mode == ZL_MODE_ISOLATED ? ZL_PROTO_MODE_ISOLATED : 0;
	snprintf(cb.service, sizeof(cb.service), "%s", service);
	struct zl_proto_incoming ok;
	int fds[1] = {-1};
	int nfds = 1;
	int type = zl__broker_call(ctx, ZL_MSG_CONNECT, &cb, sizeof(cb), NULL, 0, &ok, sizeof(ok),
				   fds, &nfds);
	if (type < 0)
		return type;
	if (type != ZL_MSG_CONNECT_OK || nfds != 1) {
		zl__close_fds(fds, nfds);
		return -EPROTO;
	}
	int err = 0;
	struct zl_chan *ch = zl__chan_new(ctx, opts, (enum zl_mode)ok.mode, fds[0], ok.chan, &err);
	if (!ch) {
		close(fds[0]);
		return err;
	}
	ch->peer_pid = ok.peer_pid;
	ch->peer_uid = ok.peer_uid;
	ch->peer_gid = ok.peer_gid;
	if ((err = zl__chan_hello_send(ch))) {
		zl__chan_free(ch);
		return err;
	}
	*out = ch;
	return 0;
}

int zl__connect_finish(struct zl_chan *ch, int timeout_ms)
{
	int err = zl__chan_hello_recv(ch, timeout_ms);
	if (err)
		return err == -ECONNRESET ? -ECONNREFUSED : err;
	if (!ch->registered)
		chan_register(ch, 0);
	return 0;
}

ZL_EXPORT int zl_connect(struct zl_ctx *ctx, const char *service, const struct zl_chan_opts *opts,
			 struct zl_chan **out)
{
	struct zl_chan *ch;
	int err = zl__connect_begin(ctx, service, opts, &ch);
	if (err)
		return err;
	int tmo = opts && opts->timeout_ms ? (int)opts->timeout_ms : BROKER_TIMEOUT_MS;
	if ((err = zl__connect_finish(ch, tmo))) {
		zl__chan_free(ch);
		return err;
	}
	*out = ch;
	return 0;
}

/* ------------------------------------------------------------------ */
/* kernel sockets carried over channels (the preload shim)             */

static int sock_call(struct zl_ctx *ctx, uint8_t type, int fd, const struct zl_proto_sock *body,
		     struct zl_proto_incoming *in, int *rfd)
{
	struct zl_proto_sock b = {0};
	if (body)
		b = *body;
	b.domain = ctx->domain;
	int fds[1] = {-1};
	int nfds = rfd ? 1 : 0;
	struct zl_proto_incoming tmp;
	int t = zl__broker_call(ctx, type, &b, sizeof(b), &fd, 1, in ? in : &tmp, sizeof(tmp),
				rfd ? fds : NULL, rfd ? &nfds : NULL);
	if (t < 0)
		return t;
	if (rfd) {
		if (t != ZL_MSG_SOCK_OK || nfds != 1) {
			zl__close_fds(fds, nfds);
			return -EPROTO;
		}
		*rfd = fds[0];
		return 0;
	}
	return t == ZL_MSG_OK ? 0 : -EPROTO;
}

int zl__sock_listen(struct zl_ctx *ctx, int fd)
{
	return sock_call(ctx, ZL_MSG_SOCK_LISTEN, fd, NULL, NULL, NULL);
}

int zl__sock_unlisten(struct zl_ctx *ctx, int fd)
{
	return sock_call(ctx, ZL_MSG_SOCK_UNLISTEN, fd, NULL, NULL, NULL);
}

int zl__sock_cancel(struct zl_ctx *ctx, int fd)
{
	return sock_call(ctx, ZL_MSG_SOCK_CANCEL, fd, NULL, NULL, NULL);
}

static int sock_begin(struct zl_ctx *ctx, int fd, const struct zl_proto_sock *b,
		      const struct zl_chan_opts *opts, struct zl_chan **out);

int zl__sock_begin(struct zl_ctx *ctx, int fd, int family, const void *addr, uint16_t port,
		   const struct zl_chan_opts *opts, struct zl_chan **out)
{
	struct zl_proto_sock b = {.family = (uint32_t)family, .port = port};
	memcpy(b.addr, addr, family == AF_INET ? 4 : 16);
	return sock_begin(ctx, fd, &b, opts, out);
}

int zl__sock_begin_unix(struct zl_ctx *ctx, int fd, uint64_t dev, uint64_t ino, const void *name,
			size_t namelen, const struct zl_chan_opts *opts, struct zl_chan **out)
{
	struct zl_proto_sock b = {.family = AF_UNIX};
	if (namelen >= sizeof(b.name))
		return -ENAMETOOLONG;
	if (namelen) {
		b.namelen = (uint16_t)namelen;
		memcpy(b.name, name, namelen);
	} else {
		memcpy(b.addr, &dev, 8);
		memcpy(b.addr + 8, &ino, 8);
	}
	return sock_begin(ctx, fd, &b, opts, out);
}

static int sock_begin(struct zl_ctx *ctx, int fd, const struct zl_proto_sock *b,
		      const struct zl_chan_opts *opts, struct zl_chan **out)
{
	struct zl_proto_incoming in;
	int ctl = -1;
	int err = sock_call(ctx, ZL_MSG_SOCK_CONNECT, fd, b, &in, &ctl);
	if (err)
		return err;
	struct zl_chan *ch = zl__chan_new(ctx, opts, ZL_MODE_ISOLATED, ctl, in.chan, &err);
	if (!ch) {
		close(ctl);
		return err;
	}
	if ((err = zl__chan_hello_send(ch))) {
		zl__chan_free(ch);
		return err;
	}
	/* now, while our half's memfd is open (a doorbell channel lets it go) */
	chan_register(ch, 0);
	*out = ch;
	return 0;
}

int zl__sock_accepted(struct zl_ctx *ctx, int fd, const struct zl_chan_opts *opts,
		      struct zl_chan **out)
{
	struct zl_proto_incoming in;
	int ctl = -1;
	int err = sock_call(ctx, ZL_MSG_SOCK_ACCEPT, fd, NULL, &in, &ctl);
	if (err)
		return err;
	struct zl_chan *ch = zl__chan_new(ctx, opts, ZL_MODE_ISOLATED, ctl, in.chan, &err);
	if (!ch) {
		close(ctl);
		return err;
	}
	int tmo = opts && opts->timeout_ms ? (int)opts->timeout_ms : BROKER_TIMEOUT_MS;
	/* the client said hello when it registered, before connect(2) */
	err = zl__chan_hello_send(ch);
	if ((err && err != -EPIPE && err != -ECONNRESET) || (err = zl__chan_hello_recv(ch, tmo))) {
		zl__chan_free(ch);
		return err;
	}
	chan_register(ch, 1);
	*out = ch;
	return 0;
}
