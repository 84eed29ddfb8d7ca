/* SPDX-License-Identifier: MIT */
/* zerolink sockets: a byte stream across messages (partial reads, MSG_PEEK,
 * MSG_WAITALL, FIONREAD), records with truncation, writes before the
 * listener accepts, shutdown of each direction, EOF after the data, EPIPE,
 * readiness, large writes that wait for the reader, a blocked read
 * interrupted by a signal, linger, the POSIX-style layer. */
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>

#include "../zltest.h"

static struct zl_ctx *ctx;

static void on_alarm(int sig)
{
	(void)sig;
}

static void stream_basics(void)
{
	struct zl_sock *p[2];
	struct zl_sock_opts o = {.flags = ZL_SOCK_NOSPIN};
	char buf[256];
	CHECK_EQ(zl_sock_pair(ctx, SOCK_STREAM, &o, p), 0);

	/* three writes, read as bytes across them */
	CHECK_EQ(zl_sock_send(p[0], "hello ", 6, 0), 6);
	CHECK_EQ(zl_sock_send(p[0], "stream ", 7, 0), 7);
	CHECK_EQ(zl_sock_send(p[0], "world", 5, 0), 5);
	CHECK_EQ(zl_sock_nread(p[1]), 18);
	CHECK_EQ(zl_sock_recv(p[1], buf, 4, 0), 4);
	CHECK(memcmp(buf, "hell", 4) == 0);
	/* peek across a message boundary does not consume */
	CHECK_EQ(zl_sock_recv(p[1], buf, 8, MSG_PEEK), 8);
	CHECK(memcmp(buf, "o stream", 8) == 0);
	CHECK_EQ(zl_sock_nread(p[1]), 14);
	CHECK_EQ(zl_sock_recv(p[1], buf, sizeof(buf), 0), 14);
	CHECK(memcmp(buf, "o stream world", 14) == 0);
	CHECK_EQ(zl_sock_recv(p[1], buf, sizeof(buf), MSG_DONTWAIT), -EAGAIN);
	CHECK_EQ(zl_sock_poll(p[1], POLLIN | POLLOUT), POLLOUT);
	CHECK_EQ(zl_sock_send(p[0], "", 0, 0), 0);

	/* scatter and gather */
	struct iovec v[3] = {{"ab", 2}, {"", 0}, {"cdef", 4}};
	CHECK_EQ(zl_sock_sendv(p[0], v, 3, 0), 6);
	char x[3], y[3];
	struct iovec r[2] = {{x, 3}, {y, 3}};
	int of;
	CHECK_EQ(zl_sock_recvv(p[1], r, 2, MSG_WAITALL, &of), 6);
	CHECK(memcmp(x, "abc", 3) == 0 && memcmp(y, "def", 3) == 0);
	CHECK_EQ(of, 0);

	/* shutdown for writing: the peer reads the data, then EOF, forever;
	 * the other direction still works */
	CHECK_EQ(zl_sock_send(p[0], "last", 4, 0), 4);
	CHECK_EQ(zl_sock_shutdown(p[0], SHUT_WR), 0);
	CHECK_EQ(zl_sock_send(p[0], "x", 1, 0), -EPIPE);
	CHECK(zl_sock_poll(p[1], POLLIN | POLLRDHUP) & POLLIN);
	CHECK_EQ(zl_sock_recv(p[1], buf, sizeof(buf), 0), 4);
	CHECK_EQ(zl_sock_recv(p[1], buf, sizeof(buf), 0), 0);
	CHECK_EQ(zl_sock_recv(p[1], buf, sizeof(buf), 0), 0);
	CHECK(zl_sock_poll(p[1], POLLIN | POLLRDHUP) == (POLLIN | POLLRDHUP));
	CHECK_EQ(zl_sock_send(p[1], "reply", 5, 0), 5);
	CHECK_EQ(zl_sock_recv(p[0], buf, sizeof(buf), 0), 5);
	/* both ways shut: hang-up */
	CHECK_EQ(zl_sock_shutdown(p[1], SHUT_WR), 0);
	CHECK_EQ(zl_sock_recv(p[0], buf, sizeof(buf), 0), 0);
	CHECK(zl_sock_poll(p[0], POLLIN) & POLLHUP);
	CHECK_EQ(zl_sock_shutdown(p[0], 7), -EINVAL);
	CHECK_EQ(zl_sock_close(p[0]), 0);
	CHECK_EQ(zl_sock_close(p[1]), 0);

	/* close with data in flight: all of it arrives, then EOF; writing to
	 * a closed peer is EPIPE */
	CHECK_EQ(zl_sock_pair(ctx, SOCK_STREAM, &o, p), 0);
	for (int i = 0; i < 50; i++) {
		fill(buf, 100, (uint64_t)i);
		CHECK_EQ(zl_sock_send(p[0], buf, 100, 0), 100);
	}
	CHECK_EQ(zl_sock_close(p[0]), 0);
	for (int i = 0; i < 50; i++) {
		CHECK_EQ(zl_sock_recv(p[1], buf, 100, MSG_WAITALL), 100);
		CHECK(verify(buf, 100, (uint64_t)i) == 0);
	}
	CHECK_EQ(zl_sock_recv(p[1], buf, sizeof(buf), 0), 0);
	CHECK_EQ(zl_sock_send(p[1], "x", 1, 0), -EPIPE);
	CHECK_EQ(zl_sock_close(p[1]), 0);
}

static void records(void)
{
	struct zl_sock *p[2];
	char buf[64];
	CHECK_EQ(zl_sock_pair(ctx, SOCK_SEQPACKET, NULL, p), 0);
	CHECK_EQ(zl_sock_send(p[0], "first record", 12, 0), 12);
	CHECK_EQ(zl_sock_send(p[0], "second", 6, 0), 6);
	CHECK_EQ(zl_sock_nread(p[1]), 12);
	/* a short read truncates the record and drops the rest */
	struct iovec v = {buf, 5};
	int of = 0;
	CHECK_EQ(zl_sock_recvv(p[1], &v, 1, 0, &of), 5);
	CHECK_EQ(of, MSG_TRUNC);
	CHECK(memcmp(buf, "first", 5) == 0);
	/* MSG_TRUNC asks for the real length */
	CHECK_EQ(zl_sock_recv(p[1], buf, 3, MSG_PEEK | MSG_TRUNC), 6);
	CHECK_EQ(zl_sock_recv(p[1], buf, sizeof(buf), 0), 6);
	CHECK(memcmp(buf, "second", 6) == 0);
	char *big = malloc(zl_sock_max_record(p[0]) + 1);
	CHECK_EQ(zl_sock_send(p[0], big, zl_sock_max_record(p[0]) + 1, 0), -EMSGSIZE);
	CHECK_EQ(zl_sock_send(p[0], big, zl_sock_max_record(p[0]), 0),
		 (long long)zl_sock_max_record(p[0]));
	CHECK_EQ(zl_sock_recv(p[1], big, zl_sock_max_record(p[0]), 0),
		 (long long)zl_sock_max_record(p[0]));
	free(big);
	zl_sock_close(p[0]);
	CHECK_EQ(zl_sock_recv(p[1], buf, sizeof(buf), 0), 0);
	zl_sock_close(p[1]);
}

/* A stream much larger than the lane, written in odd sizes by one thread
 * and read in other odd sizes by another: every byte, in order. */
struct bulk {
	struct zl_sock *s;
	size_t total;
};

static void *bulk_writer(void *arg)
{
	struct bulk *b = arg;
	char *buf = malloc(300000);
	size_t sent = 0, k = 0;
	static const size_t sizes[] = {1, 1000, 70000, 299999, 17, 65536};
	while (sent < b->total) {
		size_t n = sizes[k++ % 6];
		if (n > b->total - sent)
			n = b->total - sent;
		for (size_t i = 0; i < n; i++)
			buf[i] = (char)((sent + i) * 131 >> 3);
		ssize_t r = zl_sock_send(b->s, buf, n, 0);
		CHECK_EQ(r, (long long)n);
		sent += n;
	}
	free(buf);
	zl_sock_shutdown(b->s, SHUT_WR);
	return NULL;
}

static void bulk(void)
{
	struct zl_sock *p[2];
	struct zl_sock_opts o = {.slots = 256};
	CHECK_EQ(zl_sock_pair(ctx, SOCK_STREAM, &o, p), 0);
	struct bulk b = {.s = p[0], .total = 20u << 20};
	pthread_t t;
	CHECK_EQ(pthread_create(&t, NULL, bulk_writer, &b), 0);
	char *buf = malloc(100000);
	size_t got = 0, k = 0;
	static const size_t sizes[] = {7, 4096, 99999, 1, 33333};
	for (;;) {
		ssize_t r = zl_sock_recv(p[1], buf, sizes[k++ % 5], 0);
		CHECK(r >= 0);
		if (r == 0)
			break;
		for (ssize_t i = 0; i < r; i++)
			if (buf[i] != (char)((got + (size_t)i) * 131 >> 3)) {
				fprintf(stderr, "byte %zu differs\n", got + (size_t)i);
				exit(1);
			}
		got += (size_t)r;
	}
	CHECK_EQ(got, b.total);
	pthread_join(t, NULL);
	free(buf);
	zl_sock_close(p[0]);
	zl_sock_close(p[1]);
}

static void nonblocking(void)
{
	struct zl_sock *p[2];
	struct zl_sock_opts o = {.slots = 64, .flags = ZL_SOCK_NONBLOCK};
	CHECK_EQ(zl_sock_pair(ctx, SOCK_STREAM, &o, p), 0);
	char buf[1000] = {0};
	/* fill the lane: a partial write, then EAGAIN, and POLLOUT is gone */
	size_t sent = 0;
	ssize_t r;
	while ((r = zl_sock_send(p[0], buf, sizeof(buf), 0)) > 0)
		sent += (size_t)r;
	CHECK_EQ(r, -EAGAIN);
	CHECK(sent > 0 && sent < 64 * 64);
	CHECK_EQ(zl_sock_poll(p[0], POLLOUT), 0);
	/* reading makes room */
	size_t got = 0;
	while ((r = zl_sock_recv(p[1], buf, 300, 0)) > 0)
		got += (size_t)r;
	CHECK_EQ(r, -EAGAIN);
	CHECK_EQ(got, sent);
	CHECK_EQ(zl_sock_poll(p[0], POLLOUT), POLLOUT);
	/* arm, then a write from the peer turns the descriptor readable */
	CHECK_EQ(zl_sock_arm(p[1], POLLIN), 0);
	struct pollfd pf = {.fd = zl_sock_fd(p[1]), .events = POLLIN};
	CHECK_EQ(poll(&pf, 1, 0), 0);
	CHECK_EQ(zl_sock_send(p[0], "k", 1, 0), 1);
	CHECK_EQ(poll(&pf, 1, 5000), 1);
	CHECK_EQ(zl_sock_wait(p[1], POLLIN, 1000), POLLIN);
	CHECK_EQ(zl_sock_recv(p[1], buf, sizeof(buf), 0), 1);
	CHECK_EQ(zl_sock_wait(p[1], POLLIN, 20), 0); /* times out */
	zl_sock_close(p[0]);
	zl_sock_close(p[1]);
}

static void interrupted(void)
{
	struct zl_sock *p[2];
	CHECK_EQ(zl_sock_pair(ctx, SOCK_STREAM, NULL, p), 0);
	struct sigaction sa = {.sa_handler = on_alarm};
	sigaction(SIGALRM, &sa, NULL);
	alarm(1);
	char buf[8];
	uint64_t t0 = test_now_ns();
	CHECK_EQ(zl_sock_recv(p[1], buf, sizeof(buf), 0), -EINTR);
	CHECK(test_now_ns() - t0 >= 500000000ull);
	zl_sock_close(p[0]);
	zl_sock_close(p[1]);
}

static void by_name(void)
{
	const char *name = test_service("sock");
	struct zl_sock *l, *c, *a, *c2;
	char buf[64];
	CHECK_EQ(zl_sock_listen(ctx, name, SOCK_STREAM, NULL, &l), 0);
	CHECK_EQ(zl_sock_listen(ctx, name, SOCK_STREAM, NULL, &c), -EADDRINUSE);
	CHECK_EQ(zl_sock_listen(ctx, "", SOCK_STREAM, NULL, &c), -EINVAL);
	CHECK_EQ(zl_sock_listen(ctx, name, SOCK_DGRAM, NULL, &c), -EINVAL);
	CHECK_EQ(zl_sock_connect(ctx, "nobody-listens-here", SOCK_STREAM, NULL, &c), -ECONNREFUSED);
	/* the wrong type finds nobody */
	CHECK_EQ(zl_sock_connect(ctx, name, SOCK_SEQPACKET, NULL, &c), -ECONNREFUSED);
	CHECK_EQ(zl_sock_poll(l, POLLIN), 0);
	/* connect returns before the accept, and writes wait in the lane */
	CHECK_EQ(zl_sock_connect(ctx, name, SOCK_STREAM, NULL, &c), 0);
	CHECK_EQ(zl_sock_send(c, "early", 5, 0), 5);
	CHECK_EQ(zl_sock_send(c, " bird", 5, 0), 5);
	CHECK_EQ(zl_sock_recv(c, buf, sizeof(buf), MSG_DONTWAIT), -EAGAIN);
	/* a second client that writes, then closes, before the accept */
	CHECK_EQ(zl_sock_connect(ctx, name, SOCK_STREAM, NULL, &c2), 0);
	CHECK_EQ(zl_sock_send(c2, "bye", 3, 0), 3);
	CHECK_EQ(zl_sock_close(c2), 0);
	CHECK_EQ(zl_sock_poll(l, POLLIN), POLLIN);
	CHECK_EQ(zl_sock_accept(l, 0, &a), 0);
	CHECK_EQ(zl_sock_recv(a, buf, 10, MSG_WAITALL), 10);
	CHECK(memcmp(buf, "early bird", 10) == 0);
	CHECK_EQ(zl_sock_send(a, "welcome", 7, 0), 7);
	CHECK_EQ(zl_sock_recv(c, buf, sizeof(buf), 0), 7);
	CHECK(memcmp(buf, "welcome", 7) == 0);
	zl_sock_close(a);
	CHECK_EQ(zl_sock_recv(c, buf, sizeof(buf), 0), 0);
	zl_sock_close(c);
	CHECK_EQ(zl_sock_accept(l, 0, &a), 0);
	CHECK_EQ(zl_sock_recv(a, buf, sizeof(buf), 0), 3);
	CHECK_EQ(zl_sock_recv(a, buf, sizeof(buf), 0), 0);
	zl_sock_close(a);
	/* a client whose listener goes away before accepting: refused */
	CHECK_EQ(zl_sock_connect(ctx, name, SOCK_STREAM, NULL, &c), 0);
	zl_sock_close(l);
	CHECK_EQ(zl_sock_recv(c, buf, sizeof(buf), 0), -ECONNREFUSED);
	CHECK_EQ(zl_sock_send(c, "x", 1, 0), -ECONNREFUSED);
	zl_sock_close(c);
}

static void linger(void)
{
	struct zl_sock *p[2];
	CHECK_EQ(zl_sock_pair(ctx, SOCK_STREAM, NULL, p), 0);
	CHECK_EQ(zl_sock_send(p[0], "unread", 6, 0), 6);
	zl_sock_set_linger(p[0], true, 1);
	uint64_t t0 = test_now_ns();
	CHECK_EQ(zl_sock_close(p[0]), -EWOULDBLOCK); /* nobody reads: the time runs out */
	CHECK(test_now_ns() - t0 >= 900000000ull);
	char buf[8];
	CHECK_EQ(zl_sock_recv(p[1], buf, sizeof(buf), 0), 6); /* delivered all the same */
	zl_sock_close(p[1]);
}

static void posix_face(void)
{
	struct zl_sock *p[2];
	CHECK_EQ(zl_posix_socketpair(ctx, SOCK_STREAM, NULL, p), 0);
	char a[3], b[4];
	struct iovec v[2] = {{a, 3}, {b, 4}};
	struct msghdr mh = {.msg_iov = v, .msg_iovlen = 2};
	CHECK_EQ(zl_posix_send(p[0], "1234567", 7, 0), 7);
	CHECK_EQ(zl_posix_recvmsg(p[1], &mh, MSG_WAITALL), 7);
	CHECK(memcmp(a, "123", 3) == 0 && memcmp(b, "4567", 4) == 0);
	errno = 0;
	CHECK_EQ(zl_posix_recv(p[1], a, 3, MSG_DONTWAIT), -1);
	CHECK_EQ(errno, EAGAIN);
	CHECK_EQ(zl_posix_sendmsg(p[0], &mh, 0), 7);
	CHECK_EQ(zl_posix_shutdown(p[0], 99), -1);
	CHECK_EQ(errno, EINVAL);
	CHECK_EQ(zl_posix_close(p[0]), 0);
	CHECK_EQ(zl_posix_recv(p[1], b, 4, MSG_WAITALL), 4);
	CHECK_EQ(zl_posix_recv(p[1], b, 4, MSG_WAITALL), 3);
	CHECK_EQ(zl_posix_recv(p[1], b, 4, 0), 0);
	CHECK_EQ(zl_posix_close(p[1]), 0);
}

int main(void)
{
	ctx = test_ctx("test_sock");
	int fds0 = count_fds();
	stream_basics();
	records();
	bulk();
	nonblocking();
	interrupted();
	by_name();
	linger();
	posix_face();
	CHECK_EQ(count_fds(), fds0);
	zl_ctx_close(ctx);
	return 0;
}
