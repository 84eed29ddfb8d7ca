/* SPDX-License-Identifier: MIT */
/*
 * The broker's side of carried TCP connections (SOCK_LISTEN, SOCK_CONNECT,
 * SOCK_ACCEPT): it believes only what the sockets passed to it say, and
 * anything else gets a clear error while the broker and other domains keep
 * working. Then a whole match: a listener, a client's channel kept under
 * its pair of ports, the server's accept taking it, bytes both ways. The
 * same for Unix stream sockets, named by their socket file or abstract name.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "../zltest.h"
#include "../../src/lib/internal.h"

static int tcp_listener(uint16_t *port)
{
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(l >= 0);
	int one = 1; /* its port is bound again after the close, below */
	CHECK(setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0);
	struct sockaddr_in a = {.sin_family = AF_INET};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	CHECK(bind(l, (struct sockaddr *)&a, sizeof(a)) == 0);
	socklen_t al = sizeof(a);
	CHECK(getsockname(l, (struct sockaddr *)&a, &al) == 0);
	*port = ntohs(a.sin_port);
	CHECK(listen(l, 16) == 0);
	return l;
}

static int bound_client(void)
{
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(s >= 0);
	struct sockaddr_in a = {.sin_family = AF_INET};
	CHECK(bind(s, (struct sockaddr *)&a, sizeof(a)) == 0);
	return s;
}

/* After the accept: the client's early bytes arrive, and an answer goes
 * back. */
static void both_ways(struct zl_chan *cch, struct zl_chan *sch)
{
	CHECK_EQ(zl__connect_finish(cch, 5000), 0);
	char b[16];
	CHECK_EQ(zl_chan_recv(sch, b, sizeof(b), 0), 5);
	CHECK(memcmp(b, "early", 5) == 0);
	CHECK_EQ(zl_chan_send(sch, "late", 4, 0), 4);
	CHECK_EQ(zl_chan_recv(cch, b, sizeof(b), 0), 4);
	CHECK(memcmp(b, "late", 4) == 0);
}

static int unix_listener(struct sockaddr_un *a, socklen_t *al, const char *path, bool abstract)
{
	int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(l >= 0);
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	size_t n = strlen(path);
	if (abstract) {
		memcpy(a->sun_path + 1, path, n);
		*al = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
	} else {
		unlink(path);
		memcpy(a->sun_path, path, n);
		*al = sizeof(*a);
	}
	CHECK(bind(l, (struct sockaddr *)a, *al) == 0);
	CHECK(listen(l, 16) == 0);
	return l;
}

static void sock_file(const char *path, uint64_t *dev, uint64_t *ino)
{
	struct stat st;
	CHECK(stat(path, &st) == 0);
	*dev = st.st_dev;
	*ino = st.st_ino;
}

/* A whole Unix match: begin, connect, an early write, accept, both ways. */
static void unix_match(struct zl_ctx *ctx, int l, const struct sockaddr_un *a, socklen_t al,
		       uint64_t dev, uint64_t ino, const char *name)
{
	struct zl_chan_opts co = {.slots = 256};
	struct zl_chan *cch, *sch, *ch;
	int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(c >= 0);
	CHECK_EQ(zl__sock_begin_unix(ctx, c, dev, ino, name, name ? strlen(name) : 0, &co, &cch),
		 0);
	CHECK(connect(c, (const struct sockaddr *)a, al) == 0);
	/* once connected, the same socket cannot register again */
	CHECK_EQ(zl__sock_begin_unix(ctx, c, dev, ino, name, name ? strlen(name) : 0, &co, &ch),
		 -EINVAL);
	CHECK_EQ(zl__chan_send_early(cch, &(struct iovec){"early", 5}, 1, 5), 5);
	int s = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	CHECK(s >= 0);
	CHECK_EQ(zl__sock_accepted(ctx, s, &co, &sch), 0);
	both_ways(cch, sch);
	CHECK_EQ(zl__sock_accepted(ctx, s, &co, &ch), -ENOENT);
	zl_chan_close(cch);
	zl_chan_close(sch);
	close(s);
	close(c);
}

static void unix_cases(struct zl_ctx *ctx)
{
	struct zl_chan_opts co = {.slots = 256};
	struct zl_chan *ch;
	char path[108];
	snprintf(path, sizeof(path), "/tmp/zl-sockbroker-%d.sock", (int)getpid());
	struct sockaddr_un a;
	socklen_t al;
	/* bound but not listening, or not bound: refused */
	int nb = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK_EQ(zl__sock_listen(ctx, nb), -EINVAL);
	int l = unix_listener(&a, &al, path, false);
	uint64_t dev, ino;
	sock_file(path, &dev, &ino);
	/* not registered: the kernel path, and an accepted socket is ordinary */
	int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK_EQ(zl__sock_begin_unix(ctx, c, dev, ino, NULL, 0, &co, &ch), -ENOENT);
	CHECK(connect(c, (struct sockaddr *)&a, al) == 0);
	int s = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	CHECK(s >= 0);
	CHECK_EQ(zl__sock_accepted(ctx, s, &co, &ch), -ENOENT);
	close(s);
	close(c);
	CHECK_EQ(zl__sock_listen(ctx, l), 0);
	/* another file (same device, another inode): nobody listens there */
	c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK_EQ(zl__sock_begin_unix(ctx, c, dev, ino + 1, NULL, 0, &co, &ch), -ENOENT);
	close(c);
	unix_match(ctx, l, &a, al, dev, ino, NULL);

	/* the file replaced by a listener not under zerolink: its new inode
	 * is not the registered one, so no client waits for a channel there */
	int l2 = unix_listener(&a, &al, path, false);
	uint64_t dev2, ino2;
	sock_file(path, &dev2, &ino2);
	CHECK(ino2 != ino);
	c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK_EQ(zl__sock_begin_unix(ctx, c, dev2, ino2, NULL, 0, &co, &ch), -ENOENT);
	close(c);
	close(l2);

	/* a client that gives up leaves nothing for the server */
	c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK_EQ(zl__sock_begin_unix(ctx, c, dev, ino, NULL, 0, &co, &ch), 0);
	CHECK_EQ(zl__sock_cancel(ctx, c), 0);
	zl_chan_close(ch);
	close(c);
	CHECK_EQ(zl__sock_unlisten(ctx, l), 0);
	c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK_EQ(zl__sock_begin_unix(ctx, c, dev, ino, NULL, 0, &co, &ch), -ENOENT);
	close(c);
	close(l);
	unlink(path);

	/* an abstract name */
	char name[64];
	snprintf(name, sizeof(name), "zl-sockbroker-%d", (int)getpid());
	l = unix_listener(&a, &al, name, true);
	CHECK_EQ(zl__sock_listen(ctx, l), 0);
	c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK_EQ(zl__sock_begin_unix(ctx, c, 0, 0, "zl-sockbroker-x", 15, &co, &ch), -ENOENT);
	close(c);
	unix_match(ctx, l, &a, al, 0, 0, name);
	close(l);
	close(nb);
}

/* In a network namespace of its own (the broker's diagnostics do not reach
 * it): a TCP client binds first and is matched by its pair of ports; a Unix
 * socket there stays on the kernel path. Skipped without the privilege to
 * make a namespace. */
static void other_netns(void)
{
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		if (unshare(CLONE_NEWNET) < 0) {
			printf("netns: %s: skipped\n", strerror(errno));
			_exit(0);
		}
		int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		struct ifreq ifr;
		memset(&ifr, 0, sizeof(ifr));
		snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
		CHECK(ioctl(s, SIOCGIFFLAGS, &ifr) == 0);
		ifr.ifr_flags |= IFF_UP;
		CHECK(ioctl(s, SIOCSIFFLAGS, &ifr) == 0);
		close(s);
		struct zl_ctx *ctx = test_ctx("test_sock_broker_ns");
		struct zl_chan_opts co = {.slots = 256};
		struct zl_chan *ch, *cch, *sch;
		struct in_addr lo = {htonl(INADDR_LOOPBACK)};
		uint16_t lport;
		int l = tcp_listener(&lport);
		CHECK_EQ(zl__sock_listen(ctx, l), 0);
		int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		CHECK_EQ(zl__sock_begin(ctx, c, AF_INET, &lo, lport, &co, &ch), -EXDEV);
		close(c);
		c = bound_client();
		CHECK_EQ(zl__sock_begin(ctx, c, AF_INET, &lo, lport, &co, &cch), 0);
		struct sockaddr_in la = {.sin_family = AF_INET, .sin_port = htons(lport)};
		la.sin_addr = lo;
		CHECK(connect(c, (struct sockaddr *)&la, sizeof(la)) == 0);
		CHECK_EQ(zl__chan_send_early(cch, &(struct iovec){"early", 5}, 1, 5), 5);
		int a = accept4(l, NULL, NULL, SOCK_CLOEXEC);
		CHECK(a >= 0);
		CHECK_EQ(zl__sock_accepted(ctx, a, &co, &sch), 0);
		both_ways(cch, sch);
		zl_chan_close(cch);
		zl_chan_close(sch);
		close(a);
		close(c);
		close(l);
		struct sockaddr_un ua;
		socklen_t ual;
		int ul = unix_listener(&ua, &ual, "zl-sockbroker-ns", true);
		CHECK_EQ(zl__sock_listen(ctx, ul), -EXDEV);
		close(ul);
		zl_ctx_close(ctx);
		_exit(0);
	}
	int st;
	CHECK(waitpid(pid, &st, 0) == pid);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

int main(void)
{
	struct zl_ctx *ctx = test_ctx("test_sock_broker");
	struct in_addr lo = {htonl(INADDR_LOOPBACK)};
	struct zl_chan_opts co = {.slots = 256};
	struct zl_chan *ch;

	/* not sockets, not TCP, not listening: refused, nothing recorded */
	int p[2];
	CHECK(pipe(p) == 0);
	CHECK_EQ(zl__sock_listen(ctx, p[0]), -ENOTSOCK);
	int u = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	CHECK_EQ(zl__sock_listen(ctx, u), -EAFNOSUPPORT);
	int un = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	CHECK_EQ(zl__sock_listen(ctx, un), -EAFNOSUPPORT);
	int t = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK_EQ(zl__sock_listen(ctx, t), -EINVAL); /* neither bound nor listening */
	/* nobody under zerolink listens there yet: the kernel path */
	uint16_t lport;
	int l = tcp_listener(&lport);
	CHECK_EQ(zl__sock_begin(ctx, t, AF_INET, &lo, lport, &co, &ch), -ENOENT);
	int c = bound_client();
	CHECK_EQ(zl__sock_begin(ctx, c, AF_INET, &lo, lport, &co, &ch), -ENOENT);
	/* an accepted socket nobody waits for: an ordinary client */
	struct sockaddr_in la = {.sin_family = AF_INET, .sin_port = htons(lport)};
	la.sin_addr = lo;
	CHECK(connect(c, (struct sockaddr *)&la, sizeof(la)) == 0);
	/* a connect must come from a socket not connected yet */
	CHECK_EQ(zl__sock_begin(ctx, c, AF_INET, &lo, lport, &co, &ch), -EINVAL);
	int a = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	CHECK(a >= 0);
	CHECK_EQ(zl__sock_accepted(ctx, a, &co, &ch), -ENOENT);
	CHECK_EQ(zl__sock_accepted(ctx, p[1], &co, &ch), -ENOTSOCK);
	close(a);
	close(c);

	/* the whole match: a client the kernel's connect gives a port (the
	 * channel waits under its socket's inode), and one bound first */
	CHECK_EQ(zl__sock_listen(ctx, l), 0);
	for (int k = 0; k < 2; k++) {
		c = k ? bound_client() : socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		CHECK(c >= 0);
		struct zl_chan *cch, *sch;
		CHECK_EQ(zl__sock_begin(ctx, c, AF_INET, &lo, lport, &co, &cch), 0);
		CHECK(connect(c, (struct sockaddr *)&la, sizeof(la)) == 0);
		/* the client writes before the accept: it waits in its lane */
		CHECK_EQ(zl__chan_send_early(cch, &(struct iovec){"early", 5}, 1, 5), 5);
		a = accept4(l, NULL, NULL, SOCK_CLOEXEC);
		CHECK(a >= 0);
		CHECK_EQ(zl__sock_accepted(ctx, a, &co, &sch), 0);
		both_ways(cch, sch);
		/* a second accept of the same connection finds nothing */
		CHECK_EQ(zl__sock_accepted(ctx, a, &co, &ch), -ENOENT);
		zl_chan_close(cch);
		zl_chan_close(sch);
		close(a);
		close(c);
	}
	struct zl_chan *cch;

	/* withdrawn: connects fall back again */
	CHECK_EQ(zl__sock_unlisten(ctx, l), 0);
	c = bound_client();
	CHECK_EQ(zl__sock_begin(ctx, c, AF_INET, &lo, lport, &co, &ch), -ENOENT);
	close(c);

	/* a client that gives up (cancel) leaves nothing for the server */
	CHECK_EQ(zl__sock_listen(ctx, l), 0);
	c = bound_client();
	CHECK_EQ(zl__sock_begin(ctx, c, AF_INET, &lo, lport, &co, &cch), 0);
	CHECK_EQ(zl__sock_cancel(ctx, c), 0);
	zl_chan_close(cch);
	CHECK(connect(c, (struct sockaddr *)&la, sizeof(la)) == 0);
	a = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	CHECK(a >= 0);
	CHECK_EQ(zl__sock_accepted(ctx, a, &co, &ch), -ENOENT);
	close(a);
	close(c);

	/* a listener closed without being withdrawn (as after a fork), its
	 * port taken by a program not under zerolink: the stale record must
	 * not catch the connection */
	CHECK_EQ(zl__sock_listen(ctx, l), 0);
	close(l);
	l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(l >= 0);
	int one = 1;
	CHECK(setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0);
	CHECK(bind(l, (struct sockaddr *)&la, sizeof(la)) == 0);
	CHECK(listen(l, 16) == 0);
	c = bound_client();
	CHECK_EQ(zl__sock_begin(ctx, c, AF_INET, &lo, lport, &co, &ch), -ENOENT);
	close(c);

	unix_cases(ctx);
	other_netns();

	/* the broker still serves everyone else */
	struct zl_listener *zl;
	CHECK_EQ(zl_listen(ctx, test_service("sockbroker.after"), NULL, &zl), 0);
	zl_listener_close(zl);
	close(l);
	close(t);
	close(u);
	close(un);
	close(p[0]);
	close(p[1]);
	zl_ctx_close(ctx);
	printf("ok\n");
	return 0;
}
