/* SPDX-License-Identifier: MIT */
/*
 * The preload shim, seen from a program: plain socket calls on TCP
 * loopback, run under libzerolink-preload.so (meson sets LD_PRELOAD), with
 * a server process and a client process. Each case checks that the
 * connection is carried over zerolink (the process maps a peer's lane) and
 * that the calls behave as they do on the kernel path: blocking and
 * non-blocking reads and writes, MSG_PEEK / MSG_WAITALL / MSG_DONTWAIT,
 * FIONREAD, readv/writev and sendmsg/recvmsg, poll, select and epoll (level,
 * edge, one-shot, nested sets, EPOLLEXCLUSIVE), shutdown of each direction, close with data in
 * flight, EPIPE and SIGPIPE, a peer that dies, dup/dup2/dup3/F_DUPFD, a forking server, an epoll
 * set shared across fork, EINTR and SA_RESTART, ECONNREFUSED, sendfile and splice,
 * getsockname/getpeername/getsockopt, two threads on one socket, 10 000
 * connections open at once, and Unix stream sockets (a path and an abstract
 * name; descriptors passed with SCM_RIGHTS; a listener not under zerolink
 * keeps the kernel path), and a
 * carried connection that crosses exec or posix_spawn (handed back to the
 * kernel path: the new image, with or without the shim, continues the
 * stream with no byte lost or reordered; reset in the new image when the
 * peer does not answer, never a doorbell byte read as data).
 *
 * This program itself does not link libzerolink: what it exercises is the
 * C library's interface as the shim changes it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHECK(c)                                                                                   \
	do {                                                                                       \
		if (!(c)) {                                                                        \
			fprintf(stderr, "[%d] %s:%d: check failed: %s (errno %d %s)\n",            \
				(int)getpid(), __FILE__, __LINE__, #c, errno, strerror(errno));    \
			exit(1);                                                                   \
		}                                                                                  \
	} while (0)

static int lport; /* the listening port of the current case */

static int listener(void)
{
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(l >= 0);
	struct sockaddr_in a = {.sin_family = AF_INET};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	CHECK(bind(l, (struct sockaddr *)&a, sizeof(a)) == 0);
	socklen_t al = sizeof(a);
	CHECK(getsockname(l, (struct sockaddr *)&a, &al) == 0);
	lport = ntohs(a.sin_port);
	CHECK(listen(l, 1024) == 0);
	return l;
}

static int dial(int port)
{
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(s >= 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(s, (struct sockaddr *)&a, sizeof(a)) < 0) {
		int e = errno;
		close(s);
		errno = e;
		return -1;
	}
	return s;
}

/* Whether this process maps a peer's lane: a connection is carried. */
static int lanes_mapped(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	CHECK(f);
	char line[512];
	int n = 0;
	while (fgets(line, sizeof(line), f))
		n += strstr(line, "zerolink:lane") != NULL;
	fclose(f);
	return n;
}

static void full_write(int fd, const void *b, size_t n)
{
	const char *p = b;
	while (n) {
		ssize_t w = write(fd, p, n);
		CHECK(w > 0);
		p += w;
		n -= (size_t)w;
	}
}

static void full_read(int fd, void *b, size_t n)
{
	char *p = b;
	while (n) {
		ssize_t r = read(fd, p, n);
		CHECK(r > 0);
		p += r;
		n -= (size_t)r;
	}
}

static pid_t server(void (*fn)(int lfd))
{
	int l = listener();
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		fn(l);
		_exit(0);
	}
	close(l);
	return pid;
}

static void reap(pid_t pid)
{
	int st;
	CHECK(waitpid(pid, &st, 0) == pid);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* ---- echo: the data calls ---- */

static void echo_srv(int l)
{
	int c = accept(l, NULL, NULL);
	CHECK(c >= 0);
	CHECK(lanes_mapped() > 0);
	char b[65536];
	ssize_t n;
	while ((n = read(c, b, sizeof(b))) > 0)
		full_write(c, b, (size_t)n);
	CHECK(n == 0);
	close(c);
}

struct bigw {
	int fd;
	const char *buf;
	size_t len;
};

static void *big_writer(void *arg)
{
	struct bigw *b = arg;
	full_write(b->fd, b->buf, b->len);
	return NULL;
}

/* big bytes through an echo server, written by a thread while we read */
static void echo_big(int s, size_t big)
{
	char *out = malloc(big), *in = malloc(big);
	CHECK(out && in);
	for (size_t i = 0; i < big; i++)
		out[i] = (char)(i * 7 + (i >> 13));
	struct bigw bw = {s, out, big};
	pthread_t w;
	CHECK(pthread_create(&w, NULL, big_writer, &bw) == 0);
	full_read(s, in, big);
	CHECK(memcmp(in, out, big) == 0);
	pthread_join(w, NULL);
	free(out);
	free(in);
}

static void case_data(void)
{
	pid_t srv = server(echo_srv);
	int s = dial(lport);
	CHECK(s >= 0);
	CHECK(lanes_mapped() > 0);
	/* the descriptor is still the kernel socket */
	struct sockaddr_in a;
	socklen_t al = sizeof(a);
	CHECK(getpeername(s, (struct sockaddr *)&a, &al) == 0 && ntohs(a.sin_port) == lport);
	int v = -1;
	socklen_t vl = sizeof(v);
	CHECK(getsockopt(s, IPPROTO_TCP, TCP_NODELAY, &v, &vl) == 0 && v == 0);
	v = 1;
	CHECK(setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &v, sizeof(v)) == 0);
	vl = sizeof(v);
	CHECK(getsockopt(s, IPPROTO_TCP, TCP_NODELAY, &v, &vl) == 0 && v == 1);
	/* write / read, writev / readv */
	full_write(s, "hello", 5);
	char b[64] = {0};
	full_read(s, b, 5);
	CHECK(memcmp(b, "hello", 5) == 0);
	struct iovec wv[3] = {{"ab", 2}, {"cde", 3}, {"f", 1}};
	CHECK(writev(s, wv, 3) == 6);
	char r1[4], r2[2];
	struct iovec rv[2] = {{r1, 4}, {r2, 2}};
	size_t got = 0;
	while (got < 6) {
		ssize_t k = readv(s, rv, 2);
		CHECK(k > 0);
		got += (size_t)k;
		/* the echo may come in pieces: advance the vector */
		size_t adv = (size_t)k;
		for (int i = 0; i < 2 && adv; i++) {
			size_t t = adv < rv[i].iov_len ? adv : rv[i].iov_len;
			rv[i].iov_base = (char *)rv[i].iov_base + t;
			rv[i].iov_len -= t;
			adv -= t;
		}
	}
	CHECK(memcmp(r1, "abcd", 4) == 0 && memcmp(r2, "ef", 2) == 0);
	/* MSG_PEEK leaves the bytes; FIONREAD counts them; MSG_WAITALL */
	CHECK(send(s, "0123456789", 10, 0) == 10);
	int avail = 0;
	double t0 = now_s();
	while (avail < 10 && now_s() - t0 < 10)
		CHECK(ioctl(s, FIONREAD, &avail) == 0);
	CHECK(avail == 10);
	CHECK(recv(s, b, 4, MSG_PEEK) == 4 && memcmp(b, "0123", 4) == 0);
	CHECK(recv(s, b, 10, MSG_WAITALL) == 10 && memcmp(b, "0123456789", 10) == 0);
	/* sendmsg / recvmsg, sendto / recvfrom */
	struct iovec mv = {"msg", 3};
	struct msghdr mh = {.msg_iov = &mv, .msg_iovlen = 1};
	CHECK(sendmsg(s, &mh, MSG_NOSIGNAL) == 3);
	char mb[3];
	struct iovec mr = {mb, 3};
	struct msghdr mrh = {.msg_iov = &mr, .msg_iovlen = 1};
	CHECK(recvmsg(s, &mrh, MSG_WAITALL) == 3 && memcmp(mb, "msg", 3) == 0);
	CHECK(sendto(s, "to", 2, 0, NULL, 0) == 2);
	CHECK(recvfrom(s, b, 2, MSG_WAITALL, NULL, NULL) == 2 && memcmp(b, "to", 2) == 0);
	/* non-blocking: nothing to read */
	CHECK(recv(s, b, 1, MSG_DONTWAIT) == -1 && errno == EAGAIN);
	int fl = fcntl(s, F_GETFL);
	CHECK(fcntl(s, F_SETFL, fl | O_NONBLOCK) == 0);
	CHECK(fcntl(s, F_GETFL) & O_NONBLOCK);
	CHECK(read(s, b, 1) == -1 && errno == EAGAIN);
	CHECK(fcntl(s, F_SETFL, fl) == 0);
	/* 8 MB both ways, more than the lanes hold */
	echo_big(s, 8u << 20);
	close(s);
	reap(srv);
}

/* ---- poll, select, epoll ---- */

static void late_srv(int l)
{
	int c = accept(l, NULL, NULL);
	CHECK(c >= 0);
	char b[8];
	/* answer each byte after 20 ms, five times; then wait for the end */
	for (int i = 0; i < 5; i++) {
		full_read(c, b, 1);
		usleep(20000);
		full_write(c, "x", 1);
	}
	CHECK(read(c, b, 1) == 0);
	close(c);
}

static void case_readiness(void)
{
	pid_t srv = server(late_srv);
	int s = dial(lport);
	CHECK(s >= 0);
	char b[8];
	/* poll */
	full_write(s, "a", 1);
	struct pollfd p = {.fd = s, .events = POLLIN};
	CHECK(poll(&p, 1, 0) == 0);
	CHECK(poll(&p, 1, 5000) == 1 && (p.revents & POLLIN));
	CHECK(read(s, b, 1) == 1);
	/* select */
	full_write(s, "a", 1);
	fd_set rs;
	FD_ZERO(&rs);
	FD_SET(s, &rs);
	struct timeval tv = {5, 0};
	CHECK(select(s + 1, &rs, NULL, NULL, &tv) == 1 && FD_ISSET(s, &rs));
	CHECK(read(s, b, 1) == 1);
	/* epoll: writable at once; readable when the answer comes; one-shot
	 * reports once until re-armed; edge-triggered reports the arrival */
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = {.events = EPOLLOUT, .data.u64 = 0xfeedbeefcafeull};
	CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev) == 0);
	struct epoll_event out[4];
	CHECK(epoll_wait(ep, out, 4, 1000) == 1 && (out[0].events & EPOLLOUT) &&
	      out[0].data.u64 == 0xfeedbeefcafeull);
	ev.events = EPOLLIN | EPOLLONESHOT;
	CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, s, &ev) == 0);
	CHECK(epoll_wait(ep, out, 4, 0) == 0);
	full_write(s, "a", 1);
	CHECK(epoll_wait(ep, out, 4, 5000) == 1 && (out[0].events & EPOLLIN));
	CHECK(epoll_wait(ep, out, 4, 50) == 0); /* one-shot: disabled now */
	CHECK(read(s, b, 1) == 1);
	ev.events = EPOLLIN | EPOLLET;
	CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, s, &ev) == 0);
	CHECK(epoll_wait(ep, out, 4, 0) == 0);
	/* watched for reading and writing, edge-triggered (as nginx does):
	 * writable at once, then readable when the answer comes 20 ms later
	 * (long after any spinning: the peer must ring) */
	ev.events = EPOLLIN | EPOLLOUT | EPOLLET;
	CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, s, &ev) == 0);
	CHECK(epoll_wait(ep, out, 4, 1000) == 1 && (out[0].events & EPOLLOUT));
	full_write(s, "a", 1);
	double t1 = now_s();
	int got_in = 0;
	while (!got_in && now_s() - t1 < 5) {
		int k = epoll_wait(ep, out, 4, 5000);
		CHECK(k >= 0);
		got_in = k > 0 && (out[0].events & EPOLLIN);
	}
	CHECK(got_in);
	CHECK(read(s, b, 1) == 1);
	CHECK(epoll_ctl(ep, EPOLL_CTL_DEL, s, NULL) == 0);
	CHECK(epoll_wait(ep, out, 4, 0) == 0);
	/* nested: a set inside a set turns readable with the connection */
	ev.events = EPOLLIN;
	CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev) == 0);
	int outer = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event oev = {.events = EPOLLIN, .data.u64 = 42};
	CHECK(epoll_ctl(outer, EPOLL_CTL_ADD, ep, &oev) == 0);
	CHECK(epoll_wait(outer, out, 4, 0) == 0);
	full_write(s, "a", 1);
	CHECK(epoll_wait(outer, out, 4, 5000) == 1 && out[0].data.u64 == 42);
	CHECK(epoll_wait(ep, out, 4, 0) == 1 && (out[0].events & EPOLLIN));
	CHECK(read(s, b, 1) == 1);
	close(outer);
	close(ep);
	/* end: the server sees end of file */
	close(s);
	reap(srv);
}

/* ---- shutdown, close with data in flight, EPIPE, SIGPIPE ---- */

static void sink_srv(int l)
{
	int c = accept(l, NULL, NULL);
	CHECK(c >= 0);
	/* reads everything until the client's SHUT_WR, then answers */
	size_t total = 0;
	char b[65536];
	ssize_t n;
	while ((n = read(c, b, sizeof(b))) > 0)
		total += (size_t)n;
	CHECK(n == 0);
	char msg[32];
	int k = snprintf(msg, sizeof(msg), "%zu", total);
	full_write(c, msg, (size_t)k);
	CHECK(shutdown(c, SHUT_WR) == 0);
	close(c);
	/* a second client writes 3 MB and closes at once */
	c = accept(l, NULL, NULL);
	CHECK(c >= 0);
	total = 0;
	while ((n = read(c, b, sizeof(b))) > 0)
		total += (size_t)n;
	CHECK(n == 0);
	CHECK(total == 3u << 20);
	close(c);
	/* a third: closed by us at once, the client then writes */
	c = accept(l, NULL, NULL);
	CHECK(c >= 0);
	close(c);
}

static volatile sig_atomic_t pipes;
static void on_pipe(int sig)
{
	(void)sig;
	pipes++;
}

static void case_ends(void)
{
	pid_t srv = server(sink_srv);
	signal(SIGPIPE, on_pipe);
	int s = dial(lport);
	CHECK(s >= 0);
	char b[4096];
	memset(b, 'z', sizeof(b));
	for (int i = 0; i < 100; i++)
		full_write(s, b, sizeof(b));
	CHECK(shutdown(s, SHUT_WR) == 0);
	/* shut down for writing: EPIPE, and SIGPIPE unless MSG_NOSIGNAL */
	CHECK(send(s, "x", 1, MSG_NOSIGNAL) == -1 && errno == EPIPE);
	CHECK(pipes == 0);
	CHECK(write(s, "x", 1) == -1 && errno == EPIPE);
	CHECK(pipes == 1);
	pipes = 0;
	char ans[32] = {0};
	size_t got = 0;
	ssize_t n;
	while ((n = read(s, ans + got, sizeof(ans) - 1 - got)) > 0)
		got += (size_t)n;
	CHECK(n == 0);
	CHECK(strcmp(ans, "409600") == 0);
	close(s);
	/* close with 3 MB in flight: all of it arrives */
	s = dial(lport);
	CHECK(s >= 0);
	char *m = malloc(3u << 20);
	CHECK(m);
	memset(m, 'q', 3u << 20);
	full_write(s, m, 3u << 20);
	free(m);
	close(s);
	/* the peer closed: EPIPE with MSG_NOSIGNAL, SIGPIPE without */
	s = dial(lport);
	CHECK(s >= 0);
	CHECK(read(s, b, 1) == 0); /* its close, seen as end of file */
	ssize_t w = 0;
	for (int i = 0; i < 100 && w >= 0; i++)
		w = send(s, "x", 1, MSG_NOSIGNAL);
	CHECK(w == -1 && (errno == EPIPE || errno == ECONNRESET));
	CHECK(pipes == 0);
	w = write(s, "x", 1);
	CHECK(w == -1 && (errno == EPIPE || errno == ECONNRESET));
	CHECK(pipes >= 1 || errno == ECONNRESET);
	signal(SIGPIPE, SIG_DFL);
	close(s);
	reap(srv);
}

/* ---- a peer that dies ---- */

static void dying_srv(int l)
{
	int c = accept(l, NULL, NULL);
	CHECK(c >= 0);
	full_write(c, "bye", 3);
	raise(SIGKILL);
}

static void case_death(void)
{
	int l = listener();
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		dying_srv(l);
		_exit(1);
	}
	close(l);
	int s = dial(lport);
	CHECK(s >= 0);
	char b[8];
	full_read(s, b, 3);
	CHECK(memcmp(b, "bye", 3) == 0);
	int st;
	CHECK(waitpid(pid, &st, 0) == pid && WIFSIGNALED(st));
	/* the data came first; then end of file or a reset, never a hang */
	double t0 = now_s();
	ssize_t r = read(s, b, 1);
	CHECK(r == 0 || (r == -1 && errno == ECONNRESET));
	CHECK(now_s() - t0 < 5);
	close(s);
}

/* ---- dup, and a forking server ---- */

static void forking_srv(int l)
{
	for (int i = 0; i < 2; i++) {
		int c = accept(l, NULL, NULL);
		CHECK(c >= 0);
		pid_t h = fork();
		CHECK(h >= 0);
		if (h == 0) {
			close(l);
			/* the handler answers through a duplicate */
			int d = fcntl(c, F_DUPFD_CLOEXEC, 50);
			CHECK(d >= 50);
			close(c);
			char b[16];
			ssize_t n;
			while ((n = read(d, b, sizeof(b))) > 0)
				full_write(d, b, (size_t)n);
			CHECK(n == 0);
			close(d);
			_exit(0);
		}
		close(c); /* the parent forgets it; the handler keeps it */
		reap(h);
	}
}

static void case_dup_fork(void)
{
	pid_t srv = server(forking_srv);
	for (int i = 0; i < 2; i++) {
		int s = dial(lport);
		CHECK(s >= 0);
		int d1 = dup(s);
		CHECK(d1 >= 0);
		int d2 = dup2(s, 77);
		CHECK(d2 == 77);
		int d3 = dup3(s, 78, O_CLOEXEC);
		CHECK(d3 == 78);
		full_write(d1, "one", 3);
		char b[8];
		full_read(s, b, 3);
		CHECK(memcmp(b, "one", 3) == 0);
		close(s); /* the others still hold it */
		full_write(d2, "two", 3);
		full_read(d3, b, 3);
		CHECK(memcmp(b, "two", 3) == 0);
		close(d1);
		close(d2);
		close(d3); /* the last: the handler sees end of file */
	}
	reap(srv);
}

/* An epoll set shared across fork: the child waits on the parent's set
 * and takes the connection over; the parent closes its copies. */
static void case_epoll_fork(void)
{
	pid_t srv = server(late_srv);
	int s = dial(lport);
	CHECK(s >= 0);
	int ep = epoll_create1(0);
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 7};
	CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev) == 0);
	pid_t kid = fork();
	CHECK(kid >= 0);
	if (kid == 0) {
		char b[1];
		for (int i = 0; i < 5; i++) {
			full_write(s, "a", 1);
			struct epoll_event out[2];
			CHECK(epoll_wait(ep, out, 2, 5000) == 1 && out[0].data.u64 == 7);
			CHECK(read(s, b, 1) == 1 && b[0] == 'x');
		}
		close(s); /* the last holder: the server sees the end */
		_exit(0);
	}
	close(ep);
	close(s);
	reap(kid);
	reap(srv);
}

/* ---- signals ---- */

static void slow_srv(int l)
{
	int c = accept(l, NULL, NULL);
	CHECK(c >= 0);
	usleep(300000);
	full_write(c, "late", 4);
	char b[4];
	CHECK(read(c, b, 1) == 0);
	close(c);
}

static void on_alarm(int sig)
{
	(void)sig;
}

static void case_signals(void)
{
	pid_t srv = server(slow_srv);
	int s = dial(lport);
	CHECK(s >= 0);
	struct sigaction sa = {.sa_handler = on_alarm};
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0; /* no SA_RESTART: the read fails with EINTR */
	CHECK(sigaction(SIGALRM, &sa, NULL) == 0);
	ualarm(50000, 0);
	char b[8];
	CHECK(read(s, b, 4) == -1 && errno == EINTR);
	sa.sa_flags = SA_RESTART; /* restarted: it gets the data */
	CHECK(sigaction(SIGALRM, &sa, NULL) == 0);
	ualarm(50000, 0);
	full_read(s, b, 4);
	CHECK(memcmp(b, "late", 4) == 0);
	signal(SIGALRM, SIG_DFL);
	close(s);
	reap(srv);
}

/* ---- refused; sendfile and splice ---- */

static void files_srv(int l)
{
	int c = accept(l, NULL, NULL);
	CHECK(c >= 0);
	/* 1 MB from a file by sendfile, then 64 KB through a pipe by splice */
	char path[] = "/tmp/zl-shim-XXXXXX";
	int f = mkstemp(path);
	CHECK(f >= 0);
	unlink(path);
	char *d = malloc(1u << 20);
	CHECK(d);
	for (int i = 0; i < 1 << 20; i++)
		d[i] = (char)(i % 251);
	full_write(f, d, 1u << 20);
	free(d);
	off_t off = 0;
	size_t sent = 0;
	while (sent < 1u << 20) {
		ssize_t k = sendfile(c, f, &off, (1u << 20) - sent);
		CHECK(k > 0);
		sent += (size_t)k;
	}
	CHECK(off == 1 << 20);
	close(f);
	int p[2];
	CHECK(pipe(p) == 0);
	char chunk[4096];
	memset(chunk, 'p', sizeof(chunk));
	size_t moved = 0;
	while (moved < 32768) {
		full_write(p[1], chunk, sizeof(chunk));
		ssize_t k = splice(p[0], NULL, c, NULL, sizeof(chunk), 0);
		CHECK(k == (ssize_t)sizeof(chunk));
		moved += (size_t)k;
	}
	/* then 32 KB at once, while the lane may still hold the megabyte: a
	 * blocking splice moves all that the pipe has, as the kernel's does */
	for (int i = 0; i < 8; i++)
		full_write(p[1], chunk, sizeof(chunk));
	CHECK(splice(p[0], NULL, c, NULL, 32768, 0) == 32768);
	close(p[0]);
	close(p[1]);
	char b[1];
	CHECK(read(c, b, 1) == 0);
	close(c);
}

static void case_files(void)
{
	/* a port nobody listens on */
	int l = listener();
	int dead = lport;
	close(l);
	CHECK(dial(dead) == -1 && errno == ECONNREFUSED);
	pid_t srv = server(files_srv);
	int s = dial(lport);
	CHECK(s >= 0);
	char *d = malloc(1u << 20);
	CHECK(d);
	full_read(s, d, 1u << 20);
	for (int i = 0; i < 1 << 20; i++)
		CHECK(d[i] == (char)(i % 251));
	free(d);
	/* the 64 KB into a pipe by splice, and out of it */
	int p[2];
	CHECK(pipe(p) == 0);
	size_t moved = 0;
	char b[4096];
	while (moved < 65536) {
		ssize_t k = splice(s, NULL, p[1], NULL, sizeof(b), 0);
		CHECK(k > 0);
		full_read(p[0], b, (size_t)k);
		for (ssize_t i = 0; i < k; i++)
			CHECK(b[i] == 'p');
		moved += (size_t)k;
	}
	close(p[0]);
	close(p[1]);
	close(s);
	reap(srv);
}

/* ---- two threads on one socket ---- */

static int tsock;
static void *writer(void *arg)
{
	(void)arg;
	char b[1000];
	for (int i = 0; i < 2000; i++) {
		memset(b, 'a' + i % 26, sizeof(b));
		full_write(tsock, b, sizeof(b));
	}
	shutdown(tsock, SHUT_WR);
	return NULL;
}

static void case_threads(void)
{
	pid_t srv = server(echo_srv);
	tsock = dial(lport);
	CHECK(tsock >= 0);
	pthread_t t;
	CHECK(pthread_create(&t, NULL, writer, NULL) == 0);
	size_t total = 0;
	char b[7000];
	ssize_t n;
	while ((n = read(tsock, b, sizeof(b))) > 0) {
		for (ssize_t i = 0; i < n; i++)
			CHECK(b[i] == 'a' + (int)((total + (size_t)i) / 1000) % 26);
		total += (size_t)n;
	}
	CHECK(n == 0 && total == 2000u * 1000);
	pthread_join(t, NULL);
	close(tsock);
	reap(srv);
}

/* ---- many connections ---- */

/*
 * 10 000 connections open at once (the figure): a pre-forking
 * server of two workers sharing the listener and two client processes of
 * 5000 connections each, so that every process stays under this machine's
 * hard descriptor limit (20 000: a carried connection holds two descriptors
 * of the shim's besides the program's). With a limit too low even for that,
 * 1000 connections in one client.
 */
#define MANY_MAX 10000
#define MANY_PROCS 2

struct many_shared {
	_Atomic int accepted, closed, dialled;
};
static struct many_shared *msh;
static int many = MANY_MAX;

static void many_worker(int l)
{
	int ep = epoll_create1(0);
	CHECK(ep >= 0);
	CHECK(fcntl(l, F_SETFL, O_NONBLOCK) == 0);
	struct epoll_event lev = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
	CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, l, &lev) == 0);
	int held = 0;
	struct epoll_event out[64];
	double t0 = now_s();
	while (atomic_load(&msh->closed) < many) {
		CHECK(now_s() - t0 < 200); /* a client failed: do not wait for ever */
		int n = epoll_wait(ep, out, 64, 100);
		CHECK(n >= 0);
		for (int k = 0; k < n; k++) {
			if (out[k].data.u32 == UINT32_MAX) {
				/* take a share: the other worker takes the rest */
				if (held >= many / MANY_PROCS + many / 10)
					continue;
				int a = accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
				if (a < 0) {
					CHECK(errno == EAGAIN);
					continue;
				}
				held++;
				atomic_fetch_add(&msh->accepted, 1);
				struct epoll_event ev = {.events = EPOLLIN,
							 .data.u32 = (uint32_t)a};
				CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, a, &ev) == 0);
				continue;
			}
			int a = (int)out[k].data.u32;
			int v;
			ssize_t r = read(a, &v, sizeof(v));
			if (r < 0 && errno == EAGAIN)
				continue;
			if (r == 0) {
				CHECK(epoll_ctl(ep, EPOLL_CTL_DEL, a, NULL) == 0);
				close(a);
				held--;
				atomic_fetch_add(&msh->closed, 1);
				continue;
			}
			CHECK(r == sizeof(v));
			full_write(a, &v, sizeof(v));
		}
	}
	close(ep);
}

static void many_srv(int l)
{
	pid_t w[MANY_PROCS];
	for (int i = 0; i < MANY_PROCS; i++) {
		w[i] = fork();
		CHECK(w[i] >= 0);
		if (w[i] == 0) {
			many_worker(l);
			_exit(0);
		}
	}
	for (int i = 0; i < MANY_PROCS; i++)
		reap(w[i]);
}

static void many_client(int first, int count, int total)
{
	static int s[MANY_MAX];
	double t_dial = now_s();
	int before = lanes_mapped();
	for (int i = 0; i < count; i++) {
		s[i] = dial(lport);
		CHECK(s[i] >= 0);
	}
	CHECK(lanes_mapped() >= before + count); /* every one carried */
	if (getenv("ZL_TEST_VERBOSE"))
		fprintf(stderr, "many: client %d dialled %d in %.2f s\n", first, count,
			now_s() - t_dial);
	for (int i = 0; i < count; i++) {
		int v = first + i;
		full_write(s[i], &v, sizeof(v));
	}
	for (int i = 0; i < count; i++) {
		int v;
		full_read(s[i], &v, sizeof(v));
		CHECK(v == first + i);
	}
	/* all of them open at once, in every process, before any closes */
	atomic_fetch_add(&msh->dialled, count);
	double t0 = now_s();
	while (atomic_load(&msh->dialled) < total) {
		CHECK(now_s() - t0 < 120);
		usleep(1000);
	}
	CHECK(atomic_load(&msh->accepted) == total);
	for (int i = 0; i < count; i++)
		close(s[i]);
}

static void case_many(void)
{
	struct rlimit rl;
	CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
	}
	/* each process: its share, two of the shim's per connection, slack */
	int procs = MANY_PROCS;
	many = MANY_MAX;
	if (rl.rlim_cur < (rlim_t)(many / procs + many / 10) * 3 + 200) {
		many = 1000;
		procs = 1;
		fprintf(stderr, "many: descriptor limit %llu: %d connections only\n",
			(unsigned long long)rl.rlim_cur, many);
	}
	msh = mmap(NULL, sizeof(*msh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	CHECK(msh != MAP_FAILED);
	memset(msh, 0, sizeof(*msh));
	pid_t srv = server(many_srv);
	pid_t cl[MANY_PROCS];
	for (int i = 0; i < procs; i++) {
		cl[i] = fork();
		CHECK(cl[i] >= 0);
		if (cl[i] == 0) {
			many_client(i * (many / procs), many / procs, many);
			_exit(0);
		}
	}
	for (int i = 0; i < procs; i++)
		reap(cl[i]);
	reap(srv);
	CHECK(atomic_load(&msh->closed) == many);
	fprintf(stderr, "many: %d connections open at once, in %d client processes\n", many, procs);
	munmap(msh, sizeof(*msh));
}

/* ---- Unix stream sockets ---- */

static socklen_t unix_addr(struct sockaddr_un *a, const char *name, bool abstract)
{
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	size_t n = strlen(name);
	if (!abstract) {
		memcpy(a->sun_path, name, n);
		return (socklen_t)sizeof(*a);
	}
	memcpy(a->sun_path + 1, name, n);
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
}

static int unix_listen(const char *name, bool abstract, bool raw)
{
	struct sockaddr_un a;
	socklen_t al = unix_addr(&a, name, abstract);
	if (!abstract)
		unlink(name);
	int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(l >= 0);
	CHECK(bind(l, (struct sockaddr *)&a, al) == 0);
	/* raw: listen(2) without the C library, so the shim never sees it,
	 * as in a program not under zerolink */
	CHECK((raw ? syscall(SYS_listen, l, 16) : listen(l, 16)) == 0);
	return l;
}

static int unix_dial(const char *name, bool abstract)
{
	struct sockaddr_un a;
	socklen_t al = unix_addr(&a, name, abstract);
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(s >= 0);
	CHECK(connect(s, (struct sockaddr *)&a, al) == 0);
	return s;
}

static void unix_srv(int l)
{
	for (int k = 0; k < 2; k++) {
		int c = accept4(l, NULL, NULL, SOCK_CLOEXEC);
		CHECK(c >= 0);
		/* the client is not bound: a receive names no source */
		char b[65536];
		struct sockaddr_un from;
		struct iovec v = {b, 1};
		struct msghdr mh = {.msg_name = &from,
				    .msg_namelen = sizeof(from),
				    .msg_iov = &v,
				    .msg_iovlen = 1};
		CHECK(recvmsg(c, &mh, MSG_PEEK) == 1 && mh.msg_namelen == 0);
		struct ucred cr;
		socklen_t cl = sizeof(cr);
		CHECK(getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cr, &cl) == 0 && cr.pid == getppid());
		ssize_t n;
		while ((n = read(c, b, sizeof(b))) > 0)
			full_write(c, b, (size_t)n);
		CHECK(n == 0);
		close(c);
	}
}

static void unix_exchange(int s)
{
	full_write(s, "unix", 4);
	char b[8];
	full_read(s, b, 4);
	CHECK(memcmp(b, "unix", 4) == 0);
	echo_big(s, 4u << 20);
}

/* Descriptors over a carried Unix connection: each received one gets
 * "got" written into it and is closed; the bytes are echoed. A read that
 * brings a descriptor must hold the byte it was sent with (D or E). With
 * plain read(2) (after the 'E' byte announced it) the descriptor is closed
 * for the reader, as the kernel does. */
static void fd_srv(int l)
{
	int c = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	CHECK(c >= 0);
	char data[64];
	size_t have = 0;
	bool plain = false;
	for (;;) {
		char b[16];
		ssize_t r;
		if (plain) {
			r = read(c, b, sizeof(b));
		} else {
			union {
				struct cmsghdr a;
				char buf[CMSG_SPACE(4 * sizeof(int))];
			} cb;
			struct iovec v = {b, sizeof(b)};
			struct msghdr m = {.msg_iov = &v,
					   .msg_iovlen = 1,
					   .msg_control = cb.buf,
					   .msg_controllen = sizeof(cb.buf)};
			r = recvmsg(c, &m, 0);
			for (struct cmsghdr *h = r > 0 ? CMSG_FIRSTHDR(&m) : NULL; h;
			     h = CMSG_NXTHDR(&m, h)) {
				CHECK(h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_RIGHTS);
				CHECK(memchr(b, 'D', (size_t)r) != NULL);
				int fd;
				memcpy(&fd, CMSG_DATA(h), sizeof(fd));
				CHECK(fcntl(fd, F_GETFD) == 0); /* no MSG_CMSG_CLOEXEC asked */
				full_write(fd, "got", 3);
				close(fd);
			}
		}
		CHECK(r >= 0);
		if (r == 0)
			break;
		CHECK(have + (size_t)r <= sizeof(data));
		memcpy(data + have, b, (size_t)r);
		have += (size_t)r;
		plain = memchr(data, 'x', have) != NULL;
		full_write(c, b, (size_t)r);
	}
	close(c);
}

static ssize_t send_fd(int s, const char *byte, int fd)
{
	union {
		struct cmsghdr a;
		char buf[CMSG_SPACE(sizeof(int))];
	} cb;
	memset(&cb, 0, sizeof(cb));
	struct iovec v = {(void *)byte, 1};
	struct msghdr m = {.msg_iov = &v,
			   .msg_iovlen = 1,
			   .msg_control = cb.buf,
			   .msg_controllen = sizeof(cb.buf)};
	struct cmsghdr *h = CMSG_FIRSTHDR(&m);
	h->cmsg_level = SOL_SOCKET;
	h->cmsg_type = SCM_RIGHTS;
	h->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(h), &fd, sizeof(fd));
	return sendmsg(s, &m, 0);
}

static void unix_fds(const char *name)
{
	int l = unix_listen(name, true, false);
	pid_t srv = fork();
	CHECK(srv >= 0);
	if (srv == 0) {
		fd_srv(l);
		_exit(0);
	}
	close(l);
	int before = lanes_mapped();
	int s = unix_dial(name, true);
	CHECK(lanes_mapped() > before);
	int p[2], q[2];
	CHECK(pipe(p) == 0 && pipe(q) == 0);
	full_write(s, "abc", 3);
	CHECK(send_fd(s, "D", p[1]) == 1);
	close(p[1]);
	full_write(s, "x", 1);
	char b[8];
	full_read(p[0], b, 3);
	CHECK(memcmp(b, "got", 3) == 0);
	CHECK(read(p[0], b, 1) == 0); /* the server closed its copy */
	/* a reader that takes no control data: the descriptor is closed */
	CHECK(send_fd(s, "E", q[1]) == 1);
	close(q[1]);
	CHECK(read(q[0], b, 1) == 0);
	/* descriptors that are not: refused, nothing sent */
	CHECK(send_fd(s, "Z", 1000000) == -1 && errno == EBADF);
	char echo[8];
	full_read(s, echo, 6);
	CHECK(memcmp(echo, "abcDxE", 6) == 0);
	close(p[0]);
	close(q[0]);
	close(s);
	reap(srv);
}

static void case_unix(void)
{
	char path[108], name[64];
	snprintf(path, sizeof(path), "/tmp/zl-shim-%d.sock", (int)getpid());
	snprintf(name, sizeof(name), "zl-shim-%d", (int)getpid());
	int l = unix_listen(path, false, false);
	int la = unix_listen(name, true, false);
	pid_t srv = fork();
	CHECK(srv >= 0);
	if (srv == 0) {
		close(la);
		unix_srv(l);
		_exit(0);
	}
	pid_t srva = fork();
	CHECK(srva >= 0);
	if (srva == 0) {
		close(l);
		unix_srv(la);
		_exit(0);
	}
	close(l);
	close(la);
	int before = lanes_mapped();
	int s = unix_dial(path, false);
	CHECK(lanes_mapped() > before);
	/* still the kernel socket: its peer's name, its options */
	struct sockaddr_un pa;
	socklen_t pl = sizeof(pa);
	CHECK(getpeername(s, (struct sockaddr *)&pa, &pl) == 0 && strcmp(pa.sun_path, path) == 0);
	int v = 1;
	CHECK(setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &v, sizeof(v)) == -1);
	struct ucred cr;
	socklen_t cl = sizeof(cr);
	/* the listener's credentials when it listened: ours, before the fork */
	CHECK(getsockopt(s, SOL_SOCKET, SO_PEERCRED, &cr, &cl) == 0 && cr.pid == getpid());
	unix_exchange(s);
	/* the server's socket has the path for a name: a receive reports it */
	full_write(s, "n", 1);
	char b[4];
	struct sockaddr_un from;
	struct iovec iv = {b, 1};
	struct msghdr mh = {
		.msg_name = &from, .msg_namelen = sizeof(from), .msg_iov = &iv, .msg_iovlen = 1};
	CHECK(recvmsg(s, &mh, 0) == 1 && mh.msg_namelen > offsetof(struct sockaddr_un, sun_path) &&
	      strcmp(from.sun_path, path) == 0);
	/* the peer closes: end of file */
	int s2 = unix_dial(path, false);
	close(s);
	full_write(s2, "x", 1);
	full_read(s2, b, 1);
	close(s2);
	reap(srv);

	/* an abstract name */
	before = lanes_mapped();
	s = unix_dial(name, true);
	CHECK(lanes_mapped() > before);
	unix_exchange(s);
	close(s);
	s = unix_dial(name, true);
	full_write(s, "y", 1);
	full_read(s, b, 1);
	CHECK(b[0] == 'y');
	close(s);
	reap(srva);

	/* descriptors passed over a carried connection */
	char fdname[64];
	snprintf(fdname, sizeof(fdname), "zl-shim-fd-%d", (int)getpid());
	unix_fds(fdname);

	/* a listener not under zerolink: the kernel path, bytes untouched */
	l = unix_listen(path, false, true);
	before = lanes_mapped();
	s = unix_dial(path, false);
	int c = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	CHECK(c >= 0);
	CHECK(lanes_mapped() == before);
	full_write(s, "kernel", 6);
	char kb[8];
	CHECK(syscall(SYS_recvfrom, c, kb, 6, MSG_WAITALL, NULL, NULL) == 6 &&
	      memcmp(kb, "kernel", 6) == 0);
	close(c);
	close(s);
	close(l);
	unlink(path);
}

/* ---- exec ---- */

/* Bytes the server sends that the client has not read when it execs: they
 * wait in the lane and must reach the new image first, in order. More than
 * a kernel socket buffer holds at first, so that returning them waits for
 * the new image's reads. */
#define EXEC_PENDING (300 * 1024)

static char exec_pat(size_t i)
{
	return (char)('a' + (i * 7 + i / 251) % 26);
}

/* Read n bytes as a program waiting in one way or another would: blocking
 * reads (mode 0), edge-triggered epoll with non-blocking reads (1), poll
 * (2). The hand-back request must be answered from each of these waits. */
static void read_mode(int c, char *b, size_t n, int mode)
{
	if (mode == 0) {
		full_read(c, b, n);
		return;
	}
	int fl = fcntl(c, F_GETFL);
	CHECK(fcntl(c, F_SETFL, fl | O_NONBLOCK) == 0);
	int ep = -1;
	if (mode == 1) {
		ep = epoll_create1(EPOLL_CLOEXEC);
		struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.fd = c};
		CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev) == 0);
	}
	while (n) {
		ssize_t r = read(c, b, n);
		if (r > 0) {
			b += r;
			n -= (size_t)r;
			continue;
		}
		CHECK(r < 0 && errno == EAGAIN);
		if (mode == 1) {
			struct epoll_event out;
			CHECK(epoll_wait(ep, &out, 1, 20000) == 1);
		} else {
			struct pollfd p = {.fd = c, .events = POLLIN};
			CHECK(poll(&p, 1, 20000) == 1);
		}
	}
	if (ep >= 0)
		close(ep);
	CHECK(fcntl(c, F_SETFL, fl) == 0);
}

/* The server's side of a connection whose client execs: it notices nothing
 * but the order of the bytes. */
static void exec_srv(int l)
{
	for (int k = 0; k < 3; k++) {
		int c = accept(l, NULL, NULL);
		CHECK(c >= 0);
		char b[16];
		full_read(c, b, 1);
		CHECK(b[0] == 'a');
		full_write(c, "b", 1);
		char *big = malloc(EXEC_PENDING);
		CHECK(big);
		for (size_t i = 0; i < EXEC_PENDING; i++)
			big[i] = exec_pat(i);
		full_write(c, big, EXEC_PENDING);
		free(big);
		/* "pre" went into the lane before exec, "post" from the new
		 * image on the kernel path */
		read_mode(c, b, 7, k);
		CHECK(memcmp(b, "prepost", 7) == 0);
		full_write(c, "done", 4);
		CHECK(read(c, b, 1) == 0); /* the new image closed it */
		close(c);
	}
}

/* The new image: the descriptor that crossed exec while carried continues
 * the stream (here with or without the shim loaded). */
static int exec_child(int fd)
{
	char *big = malloc(EXEC_PENDING);
	CHECK(big);
	full_read(fd, big, EXEC_PENDING);
	for (size_t i = 0; i < EXEC_PENDING; i++)
		CHECK(big[i] == exec_pat(i));
	free(big);
	full_write(fd, "post", 4);
	char b[8];
	full_read(fd, b, 4);
	CHECK(memcmp(b, "done", 4) == 0);
	/* the kernel's connection, whole */
	struct sockaddr_in a;
	socklen_t al = sizeof(a);
	CHECK(getpeername(fd, (struct sockaddr *)&a, &al) == 0);
	CHECK(lanes_mapped() == 0);
	close(fd);
	return 0;
}

/* The old image: one exchange, the server's big write left unread (but
 * arrived), "pre" written, then exec with the connection (a dup without
 * FD_CLOEXEC). plain: the new image's environment lacks the shim. */
static void exec_client(bool plain)
{
	int s = dial(lport);
	CHECK(s >= 0 && lanes_mapped() > 0);
	full_write(s, "a", 1);
	char b[4];
	full_read(s, b, 1);
	CHECK(b[0] == 'b');
	for (int i = 0; i < 20000; i++) {
		int n = 0;
		CHECK(ioctl(s, FIONREAD, &n) == 0);
		if (n == EXEC_PENDING)
			break;
		usleep(500);
	}
	full_write(s, "pre", 3);
	int d = dup(s);
	CHECK(d >= 0);
	char fds[16];
	snprintf(fds, sizeof(fds), "%d", d);
	char *plain_env[] = {"PATH=/usr/bin:/bin", NULL};
	if (plain)
		execle("/proc/self/exe", "test_shim", "exec-child", fds, (char *)NULL, plain_env);
	else
		execl("/proc/self/exe", "test_shim", "exec-child", fds, (char *)NULL);
	_exit(127);
}

/* The peer does not answer the hand-back in time (stopped): the new image
 * gets a reset, never a doorbell byte as data. */
static void exec_stuck_srv(int l)
{
	int c = accept(l, NULL, NULL);
	CHECK(c >= 0);
	char b[4];
	full_read(c, b, 1);
	full_write(c, "b", 1);
	/* stopped here by the client; then the end comes (end of file or
	 * reset), no stray byte before it */
	ssize_t r = read(c, b, 1);
	CHECK(r == 0 || (r < 0 && errno == ECONNRESET));
	close(c);
}

static int exec_child_reset(int fd)
{
	char b[4];
	CHECK(read(fd, b, 1) == -1 && errno == ECONNRESET);
	CHECK(write(fd, "x", 1) == -1 && errno == ECONNRESET);
	struct sockaddr_in a;
	socklen_t al = sizeof(a);
	CHECK(getpeername(fd, (struct sockaddr *)&a, &al) == 0);
	close(fd);
	return 0;
}

/* posix_spawn: the child writes on the connection it inherits, then the
 * parent, which keeps it, writes and reads on: one stream, in order. */
static void spawn_srv(int l)
{
	for (int k = 0; k < 2; k++) {
		int c = accept(l, NULL, NULL);
		CHECK(c >= 0);
		char b[16];
		full_read(c, b, 1);
		full_write(c, "b", 1);
		full_read(c, b, 9);
		CHECK(memcmp(b, "kidparent", 9) == 0);
		full_write(c, "ok", 2);
		CHECK(read(c, b, 1) == 0);
		close(c);
	}
}

static int spawn_child(int fd)
{
	full_write(fd, "kid", 3);
	return 0;
}

static void case_exec(void)
{
	pid_t srv = server(exec_srv);
	for (int k = 0; k < 3; k++) {
		pid_t pid = fork();
		CHECK(pid >= 0);
		if (pid == 0)
			exec_client(k == 2);
		reap(pid);
	}
	reap(srv);

	srv = server(exec_stuck_srv);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		int s = dial(lport);
		CHECK(s >= 0 && lanes_mapped() > 0);
		full_write(s, "a", 1);
		char b[4];
		full_read(s, b, 1);
		CHECK(kill(srv, SIGSTOP) == 0);
		setenv("ZEROLINK_EXEC_WAIT_MS", "300", 1);
		int d = dup(s);
		char fds[16];
		snprintf(fds, sizeof(fds), "%d", d);
		execl("/proc/self/exe", "test_shim", "exec-child-reset", fds, (char *)NULL);
		_exit(127);
	}
	reap(pid);
	CHECK(kill(srv, SIGCONT) == 0);
	reap(srv);

	/* posix_spawn, then system(3), which spawns inside the C library */
	srv = server(spawn_srv);
	for (int k = 0; k < 2; k++) {
		int s = dial(lport);
		CHECK(s >= 0 && lanes_mapped() > 0);
		full_write(s, "a", 1);
		char b[4];
		full_read(s, b, 1);
		int d = dup(s);
		CHECK(d >= 0);
		char fds[16];
		snprintf(fds, sizeof(fds), "%d", d);
		if (k == 0) {
			char *argv[] = {"test_shim", "spawn-child", fds, NULL};
			extern char **environ;
			pid_t kid;
			CHECK(posix_spawn(&kid, "/proc/self/exe", NULL, NULL, argv, environ) == 0);
			reap(kid);
		} else {
			/* the shell's /proc/self/exe would be the shell: name
			 * the test program by its path */
			char self[256], cmd[400];
			ssize_t sl = readlink("/proc/self/exe", self, sizeof(self) - 1);
			CHECK(sl > 0);
			self[sl] = 0;
			snprintf(cmd, sizeof(cmd), "exec '%s' spawn-child %d", self, d);
			CHECK(system(cmd) == 0);
		}
		close(d);
		full_write(s, "parent", 6);
		full_read(s, b, 2);
		CHECK(memcmp(b, "ok", 2) == 0);
		close(s);
	}
	reap(srv);
}

/* ---- EPOLLEXCLUSIVE: one connection in two epoll sets ---- */

static int ex_ep;

static void *ex_waiter(void *arg)
{
	(void)arg;
	struct epoll_event out[2];
	intptr_t n = epoll_wait(ex_ep, out, 2, 600);
	return (void *)n;
}

static void case_exclusive(void)
{
	pid_t srv = server(late_srv);
	int s = dial(lport);
	CHECK(s >= 0 && lanes_mapped() > 0);
	int ep1 = epoll_create1(EPOLL_CLOEXEC);
	ex_ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.fd = s};
	CHECK(epoll_ctl(ep1, EPOLL_CTL_ADD, s, &ev) == 0);
	CHECK(epoll_ctl(ex_ep, EPOLL_CTL_ADD, s, &ev) == 0);
	/* as the kernel has it: an exclusive watch cannot be modified */
	CHECK(epoll_ctl(ep1, EPOLL_CTL_MOD, s, &ev) == -1 && errno == EINVAL);
	for (int i = 0; i < 5; i++) {
		/* both sets asleep; the answer wakes one of them at least */
		pthread_t t;
		CHECK(pthread_create(&t, NULL, ex_waiter, NULL) == 0);
		usleep(5000);
		full_write(s, "e", 1);
		struct epoll_event out[2];
		int n1 = epoll_wait(ep1, out, 2, 600);
		CHECK(n1 >= 0);
		void *r;
		pthread_join(t, &r);
		CHECK(n1 == 1 || (intptr_t)r == 1);
		char b;
		CHECK(read(s, &b, 1) == 1 && b == 'x');
	}
	close(ep1);
	close(ex_ep);
	close(s);
	reap(srv);
}

int main(int argc, char **argv)
{
	/* new images of the exec case (exec-child also without the shim) */
	if (argc > 2 && strcmp(argv[1], "exec-child") == 0)
		return exec_child(atoi(argv[2]));
	if (argc > 2 && strcmp(argv[1], "exec-child-reset") == 0)
		return exec_child_reset(atoi(argv[2]));
	if (argc > 2 && strcmp(argv[1], "spawn-child") == 0)
		return spawn_child(atoi(argv[2]));
	if (!getenv("LD_PRELOAD") || !strstr(getenv("LD_PRELOAD"), "zerolink-preload")) {
		fprintf(stderr, "skipped: run under libzerolink-preload.so\n");
		return 77;
	}
	static const struct {
		const char *name;
		void (*fn)(void);
	} cases[] = {
		{"data", case_data},           {"readiness", case_readiness},
		{"ends", case_ends},           {"death", case_death},
		{"dup_fork", case_dup_fork},   {"epoll_fork", case_epoll_fork},
		{"signals", case_signals},     {"files", case_files},
		{"threads", case_threads},     {"many", case_many},
		{"unix", case_unix},           {"exec", case_exec},
		{"exclusive", case_exclusive},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (argc > 1 && strcmp(argv[1], cases[i].name) != 0)
			continue;
		double t0 = now_s();
		cases[i].fn();
		printf("ok %s (%.2f s)\n", cases[i].name, now_s() - t0);
		fflush(stdout);
	}
	return 0;
}
