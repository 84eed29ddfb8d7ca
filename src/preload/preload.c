/* SPDX-License-Identifier: MIT */
/*
 * libzerolink-preload.so: carries the TCP connections of an unmodified
 * program over zerolink channels when the other end runs under zerolink too
 * (`zerolink run -- PROGRAM`), and leaves every other descriptor to the
 * kernel, untouched.
 *
 * How (docs/sockets-plan.md has the reasons):
 * - listen(): the listening socket is shown to the broker, which records it.
 * - connect() to an address of this host: the socket is bound to a port
 *   first, then shown to the broker with its destination. If a socket under
 *   zerolink listens there, the broker hands back a channel, kept under the
 *   pair of ports until the server accepts; then the kernel connects as
 *   usual. Otherwise the connection is an ordinary one.
 * - accept(): on a recorded listener, the accepted socket is shown to the
 *   broker; if a channel waits for its pair of ports, the connection is
 *   carried over it.
 * - The kernel connection stays: it is the program's descriptor (getsockname,
 *   getpeername, fcntl, ss, /proc see a real socket), and it is the doorbell
 *   of the channel: a peer that finds us asleep writes one byte on it, so
 *   that poll, select and epoll on the descriptor see it readable. Its bytes
 *   are doorbells only and are never returned to the program.
 * - Before poll, select and epoll_wait sleep, the shim looks at the channels
 *   of the upgraded descriptors in the set: data already there is reported
 *   at once, the others are armed so that their peers ring.
 * - fork: after it, each process may use or close the connection; a close
 *   then only forgets the channel locally, and the peer learns that the last
 *   holder closed from the kernel connection's end of file.
 */
/* Define fcntl and fcntl64 both, as glibc exports both (on 64-bit
 * systems off_t is 64 bits either way). */
#undef _FILE_OFFSET_BITS
#include <dlfcn.h>
#include <stddef.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <ifaddrs.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include <zerolink/zerolink.h>

#include "../lib/barrier.h"
#include "../lib/internal.h"
#include "../sock/sock_internal.h"

#define EXPORT __attribute__((visibility("default")))

/* ------------------------------------------------------------------ */
/* the real calls                                                       */

static struct {
	int (*socket)(int, int, int);
	int (*connect)(int, const struct sockaddr *, socklen_t);
	int (*listen)(int, int);
	int (*accept)(int, struct sockaddr *, socklen_t *);
	int (*accept4)(int, struct sockaddr *, socklen_t *, int);
	int (*close)(int);
	ssize_t (*read)(int, void *, size_t);
	ssize_t (*write)(int, const void *, size_t);
	ssize_t (*readv)(int, const struct iovec *, int);
	ssize_t (*writev)(int, const struct iovec *, int);
	ssize_t (*recv)(int, void *, size_t, int);
	ssize_t (*send)(int, const void *, size_t, int);
	ssize_t (*recvfrom)(int, void *, size_t, int, struct sockaddr *, socklen_t *);
	ssize_t (*sendto)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
	ssize_t (*recvmsg)(int, struct msghdr *, int);
	ssize_t (*sendmsg)(int, const struct msghdr *, int);
	int (*shutdown)(int, int);
	int (*ioctl)(int, unsigned long, ...);
	int (*fcntl)(int, int, ...);
	int (*dup)(int);
	int (*dup2)(int, int);
	int (*dup3)(int, int, int);
	int (*poll)(struct pollfd *, nfds_t, int);
	int (*ppoll)(struct pollfd *, nfds_t, const struct timespec *, const sigset_t *);
	int (*select)(int, fd_set *, fd_set *, fd_set *, struct timeval *);
	int (*pselect)(int, fd_set *, fd_set *, fd_set *, const struct timespec *,
		       const sigset_t *);
	int (*epoll_create)(int);
	int (*epoll_create1)(int);
	int (*epoll_ctl)(int, int, int, struct epoll_event *);
	int (*epoll_wait)(int, struct epoll_event *, int, int);
	int (*epoll_pwait)(int, struct epoll_event *, int, int, const sigset_t *);
	ssize_t (*sendfile)(int, int, off_t *, size_t);
	ssize_t (*splice)(int, loff_t *, int, loff_t *, size_t, unsigned int);
	int (*getsockopt)(int, int, int, void *, socklen_t *);
	int (*setsockopt)(int, int, int, const void *, socklen_t);
	int (*execve)(const char *, char *const[], char *const[]);
	int (*execvpe)(const char *, char *const[], char *const[]);
	int (*fexecve)(int, char *const[], char *const[]);
	int (*posix_spawn)(pid_t *, const char *, const posix_spawn_file_actions_t *,
			   const posix_spawnattr_t *, char *const[], char *const[]);
	int (*posix_spawnp)(pid_t *, const char *, const posix_spawn_file_actions_t *,
			    const posix_spawnattr_t *, char *const[], char *const[]);
	int (*system)(const char *);
	FILE *(*popen)(const char *, const char *);
} real;

static bool enabled;
static bool unix_enabled; /* ZEROLINK_UNIX=0 leaves Unix sockets to the kernel */
static int debug;

static void dbg(const char *fmt, ...)
{
	if (!debug)
		return;
	char b[256];
	/* "zerolink: ..." becomes "zerolink[PID]: ...": which process said it */
	int n = 0;
	if (strncmp(fmt, "zerolink: ", 10) == 0) {
		n = snprintf(b, sizeof(b), "zerolink[%d]: ", (int)getpid());
		fmt += 10;
	}
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(b + n, sizeof(b) - 1 - (size_t)n, fmt, ap);
	va_end(ap);
	if (m < 0)
		return;
	n += m;
	if (n > (int)sizeof(b) - 2)
		n = (int)sizeof(b) - 2;
	b[n++] = '\n';
	ssize_t w = real.write ? real.write(2, b, (size_t)n) : -1;
	(void)w;
}

#define LOAD(name) real.name = dlsym(RTLD_NEXT, #name)

static void shim_init(void);
/* Another library's constructor may call us before ours has run. */
#define INIT()                                                                                     \
	do {                                                                                       \
		if (__builtin_expect(!real.close, 0))                                              \
			shim_init();                                                               \
	} while (0)

static void orphans_adopt(void);

__attribute__((constructor)) static void shim_init(void)
{
	LOAD(socket);
	LOAD(connect);
	LOAD(listen);
	LOAD(accept);
	LOAD(accept4);
	LOAD(close);
	LOAD(read);
	LOAD(write);
	LOAD(readv);
	LOAD(writev);
	LOAD(recv);
	LOAD(send);
	LOAD(recvfrom);
	LOAD(sendto);
	LOAD(recvmsg);
	LOAD(sendmsg);
	LOAD(shutdown);
	LOAD(ioctl);
	LOAD(fcntl);
	LOAD(dup);
	LOAD(dup2);
	LOAD(dup3);
	LOAD(poll);
	LOAD(ppoll);
	LOAD(select);
	LOAD(pselect);
	LOAD(epoll_create);
	LOAD(epoll_create1);
	LOAD(epoll_ctl);
	LOAD(epoll_wait);
	LOAD(epoll_pwait);
	LOAD(sendfile);
	LOAD(splice);
	LOAD(getsockopt);
	LOAD(setsockopt);
	LOAD(execve);
	LOAD(execvpe);
	LOAD(fexecve);
	LOAD(posix_spawn);
	LOAD(posix_spawnp);
	LOAD(system);
	LOAD(popen);
	const char *e = getenv("ZEROLINK_SOCKETS");
	enabled = !(e && strcmp(e, "0") == 0);
	e = getenv("ZEROLINK_UNIX");
	unix_enabled = !(e && strcmp(e, "0") == 0);
	e = getenv("ZEROLINK_DEBUG");
	debug = e && *e ? atoi(e) : 0;
	/* our descriptors high, out of the program's way (see zl__fd_floor) */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur >= 64)
		zl__fd_floor = rl.rlim_cur / 2 < 4096 ? (int)(rl.rlim_cur / 2) : 4096;
	orphans_adopt();
}

/* The library's own calls (see real.h): straight to the C library. */
int zl__real_socket(int d, int t, int p)
{
	INIT();
	return real.socket(d, t, p);
}
int zl__real_connect(int fd, const struct sockaddr *a, socklen_t l)
{
	INIT();
	return real.connect(fd, a, l);
}
int zl__real_close(int fd)
{
	INIT();
	return real.close(fd);
}
ssize_t zl__real_read(int fd, void *b, size_t n)
{
	INIT();
	return real.read(fd, b, n);
}
ssize_t zl__real_write(int fd, const void *b, size_t n)
{
	INIT();
	return real.write(fd, b, n);
}
ssize_t zl__real_recv(int fd, void *b, size_t n, int f)
{
	INIT();
	return real.recv(fd, b, n, f);
}
ssize_t zl__real_send(int fd, const void *b, size_t n, int f)
{
	INIT();
	return real.send(fd, b, n, f);
}
ssize_t zl__real_recvmsg(int fd, struct msghdr *m, int f)
{
	INIT();
	return real.recvmsg(fd, m, f);
}
ssize_t zl__real_sendmsg(int fd, const struct msghdr *m, int f)
{
	INIT();
	return real.sendmsg(fd, m, f);
}
int zl__real_shutdown(int fd, int how)
{
	INIT();
	return real.shutdown(fd, how);
}
int zl__real_fcntl(int fd, int cmd, ...)
{
	INIT();
	va_list ap;
	va_start(ap, cmd);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	return real.fcntl(fd, cmd, arg);
}
int zl__real_dup3(int a, int b, int f)
{
	INIT();
	return real.dup3(a, b, f);
}
int zl__real_poll(struct pollfd *p, nfds_t n, int t)
{
	INIT();
	return real.poll(p, n, t);
}
int zl__real_epoll_ctl(int ep, int op, int fd, struct epoll_event *ev)
{
	INIT();
	return real.epoll_ctl(ep, op, fd, ev);
}
int zl__real_epoll_wait(int ep, struct epoll_event *ev, int n, int t)
{
	INIT();
	return real.epoll_wait(ep, ev, n, t);
}

/* ------------------------------------------------------------------ */
/* the descriptor table                                                 */

/* K_ORPHAN: a connection that was carried when an earlier image of this
 * process called exec and could not be handed back (see "exec" below): it
 * cannot continue. K_HANDED: a connection handed back to the kernel path
 * (see "handing back"); until the bytes its channel still held are read
 * (left), reads and readiness are the shim's, then the kernel's alone. */
enum kind { K_LISTEN = 1, K_CONN = 2, K_ORPHAN = 3, K_HANDED = 4 };

struct anc_rec {
	uint64_t off; /* stream offset of the first byte it goes with */
	char *cmsg;   /* control data, its descriptors ours until delivered */
	size_t clen;
};

/* What the shim knows of one kernel socket; shared by the descriptors that
 * dup() made of it. */
struct zs {
	enum kind kind;
	int refs;    /* descriptors of this process naming it */
	int bell;    /* our own duplicate of the kernel socket: the doorbell */
	bool forked; /* another process may hold the connection too */
	bool nonblock;
	bool kconn;           /* the kernel connection is known to be established */
	bool unix_;           /* a Unix stream socket (no TCP options) */
	int nodelay, cork;    /* the program's TCP_NODELAY and TCP_CORK (see doorbell_opts) */
	_Atomic int sleepers; /* threads asleep on the doorbell in conn_wait() */
	/* Unix: ancillary data (descriptors) travels as records on the doorbell
	 * socket, each with the stream offset of the bytes it goes with (see
	 * "ancillary data" below) */
	uint64_t txoff, rxoff; /* bytes written to, read from the stream */
	struct anc_rec *recs;  /* received records not delivered yet, in order */
	unsigned nrec, caprec;
	uint32_t anc_parsed; /* records read from the doorbell */
	int rec_have;        /* bytes of a record being read (of 9) */
	uint8_t rec_part[9];
	char *rec_cmsg; /* its control data */
	size_t rec_clen;
	bool hb_seen; /* the peer asked to hand the connection back */
	char *left;   /* K_HANDED: bytes of the channel not read yet */
	size_t left_n, left_off, left_cap;
	struct sockaddr_storage peer; /* its peer's address, once known */
	socklen_t peerlen;
	pthread_mutex_t lock;
	struct zl_sock *s;
};

#define PAGE_BITS 10
#define PAGES 1024
static _Atomic(struct zs *) *tab[PAGES];
static pthread_mutex_t tab_lock = PTHREAD_MUTEX_INITIALIZER;

static struct zs *zs_get(int fd)
{
	if (fd < 0 || fd >= PAGES << PAGE_BITS)
		return NULL;
	_Atomic(struct zs *) *pg = tab[fd >> PAGE_BITS];
	if (!pg)
		return NULL;
	return atomic_load_explicit(&pg[fd & ((1 << PAGE_BITS) - 1)], memory_order_acquire);
}

static int zs_set(int fd, struct zs *z)
{
	if (fd < 0 || fd >= PAGES << PAGE_BITS)
		return -EBADF;
	pthread_mutex_lock(&tab_lock);
	if (!tab[fd >> PAGE_BITS]) {
		tab[fd >> PAGE_BITS] = calloc(1u << PAGE_BITS, sizeof(**tab));
		if (!tab[fd >> PAGE_BITS]) {
			pthread_mutex_unlock(&tab_lock);
			return -ENOMEM;
		}
	}
	atomic_store_explicit(&tab[fd >> PAGE_BITS][fd & ((1 << PAGE_BITS) - 1)], z,
			      memory_order_release);
	pthread_mutex_unlock(&tab_lock);
	return 0;
}

static struct zl_ctx *shim_ctx_p;
static pthread_mutex_t ctx_lock = PTHREAD_MUTEX_INITIALIZER;

static struct zl_ctx *shim_ctx(void)
{
	struct zl_ctx *c = __atomic_load_n(&shim_ctx_p, __ATOMIC_ACQUIRE);
	if (c)
		return c;
	pthread_mutex_lock(&ctx_lock);
	if (!shim_ctx_p) {
		struct zl_ctx_opts o = {.name = program_invocation_short_name};
		if (zl_ctx_open(&c, &o) == 0)
			__atomic_store_n(&shim_ctx_p, c, __ATOMIC_RELEASE);
		else
			dbg("zerolink: no broker, sockets stay on the kernel path");
	}
	pthread_mutex_unlock(&ctx_lock);
	return shim_ctx_p;
}

/* ------------------------------------------------------------------ */
/* ancillary data on carried Unix connections                           */

/*
 * Descriptors (SCM_RIGHTS) and credentials cannot go through shared memory.
 * The sender puts them on the kernel connection, the doorbell socket, as a
 * record of 9 bytes ('R', then the stream offset of the first byte they go
 * with, host order) carrying the control data, counts the record in its
 * half (anc), and only then writes the bytes into the lane. Doorbell kicks
 * are zero bytes, so a drain tells the two apart. A receiver that sees the
 * peer's count above what it has read drains the doorbell (with recvmsg)
 * first; a read then stops at the next record's offset, and the read that
 * starts there returns its control data, as the kernel stops a Unix stream
 * read at a message with descriptors.
 */

/* Each descriptor an SCM_RIGHTS message of control data c holds. */
static void cmsg_each_fd(const char *c, size_t clen, void (*fn)(int fd))
{
	struct msghdr m = {.msg_control = (void *)c, .msg_controllen = clen};
	for (struct cmsghdr *h = CMSG_FIRSTHDR(&m); h; h = CMSG_NXTHDR(&m, h)) {
		if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS)
			continue;
		size_t k = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(h) + i * sizeof(int), sizeof(int));
			fn(fd);
		}
	}
}

static void fd_close(int fd)
{
	real.close(fd);
}

static void fd_keep_on_exec(int fd)
{
	real.fcntl(fd, F_SETFD, 0);
}

static void cmsg_close_fds(const char *c, size_t clen)
{
	cmsg_each_fd(c, clen, fd_close);
}

static void anc_free(struct zs *z)
{
	for (unsigned i = 0; i < z->nrec; i++) {
		cmsg_close_fds(z->recs[i].cmsg, z->recs[i].clen);
		free(z->recs[i].cmsg);
	}
	free(z->recs);
	if (z->rec_cmsg) {
		cmsg_close_fds(z->rec_cmsg, z->rec_clen);
		free(z->rec_cmsg);
	}
	z->recs = NULL;
	z->nrec = z->caprec = 0;
	z->rec_cmsg = NULL;
}

/* The doorbell's bytes and control data, as a drain read them (under
 * z->lock: the channel calls us from its drains). */
static void bell_sink(void *arg, const char *b, size_t n, struct msghdr *m)
{
	struct zs *z = arg;
	bool taken = false;
	for (size_t i = 0; i < n; i++) {
		if (z->rec_have == 0) {
			if (b[i] == 'H') {
				/* the peer hands the connection back (see "handing
				 * back"): nothing follows until we answer */
				z->hb_seen = true;
				z->anc_parsed++;
				continue;
			}
			if (b[i] != 'R')
				continue; /* a kick */
			z->rec_have = 1;
			if (!taken && m->msg_controllen) {
				/* the kernel gives the control data with the read
				 * that holds the record's first byte */
				z->rec_cmsg = malloc(m->msg_controllen);
				if (z->rec_cmsg) {
					memcpy(z->rec_cmsg, m->msg_control, m->msg_controllen);
					z->rec_clen = m->msg_controllen;
					taken = true;
				}
			}
			continue;
		}
		z->rec_part[z->rec_have++] = (uint8_t)b[i];
		if (z->rec_have < 9)
			continue;
		z->rec_have = 0;
		z->anc_parsed++;
		if (z->nrec == z->caprec) {
			unsigned cap = z->caprec ? z->caprec * 2 : 4;
			struct anc_rec *nr = realloc(z->recs, cap * sizeof(*nr));
			if (!nr) {
				/* the descriptors cannot be kept: closed, as the
				 * kernel closes those a reader does not take */
				if (z->rec_cmsg)
					cmsg_close_fds(z->rec_cmsg, z->rec_clen);
				free(z->rec_cmsg);
				z->rec_cmsg = NULL;
				continue;
			}
			z->recs = nr;
			z->caprec = cap;
		}
		struct anc_rec *r = &z->recs[z->nrec++];
		memcpy(&r->off, z->rec_part + 1, 8);
		r->cmsg = z->rec_cmsg;
		r->clen = z->rec_cmsg ? z->rec_clen : 0;
		z->rec_cmsg = NULL;
	}
	if (!taken && m->msg_controllen)
		cmsg_close_fds(m->msg_control, m->msg_controllen);
}

/* Read the records the peer counted and we have not read yet (they are on
 * the doorbell socket: sent before the count). Under z->lock. */
static void anc_collect(struct zs *z)
{
	uint32_t want = zl__chan_peer_anc(z->s->ch);
	for (int tries = 0; z->anc_parsed != want && tries < 64; tries++)
		zl__chan_bell_drain(z->s->ch);
}

/* Hand record r's control data to the reader (m: recvmsg's, or NULL). */
static void anc_deliver(struct anc_rec *r, struct msghdr *m, int flags)
{
	if (!r->cmsg) {
		if (m)
			m->msg_controllen = 0;
		return;
	}
	if (!m || !m->msg_control || m->msg_controllen < r->clen) {
		if (m) {
			m->msg_flags |= MSG_CTRUNC;
			m->msg_controllen = 0;
		}
		cmsg_close_fds(r->cmsg, r->clen);
	} else {
		memcpy(m->msg_control, r->cmsg, r->clen);
		m->msg_controllen = r->clen;
		if (!(flags & MSG_CMSG_CLOEXEC))
			cmsg_each_fd(r->cmsg, r->clen, fd_keep_on_exec);
	}
	free(r->cmsg);
	r->cmsg = NULL;
}

static void zs_unref(struct zs *z)
{
	if (--z->refs > 0)
		return;
	if (z->kind == K_CONN) {
		if (z->forked) {
			/* another process may still use the channel: forget it
			 * here only; the peer learns of the last close from the
			 * kernel connection */
			free(z->s->q);
			free(z->s);
		} else {
			zl_sock_close(z->s);
			/* doorbells left unread would make the kernel reset the
			 * connection at its last close (RST): the peer would
			 * read ECONNRESET instead of the end of the stream */
			char b[256];
			while (real.recv(z->bell, b, sizeof(b), MSG_DONTWAIT) > 0)
				;
		}
		real.close(z->bell);
	} else if (z->kind == K_HANDED) {
		/* the channel is detached from the kernel connection, which
		 * now carries the stream itself: no drain, nothing sent */
		if (z->forked) {
			free(z->s->q);
			free(z->s);
		} else {
			zl_sock_close(z->s);
		}
		real.close(z->bell);
		free(z->left);
	} else if (z->kind == K_LISTEN) {
		struct zl_ctx *c = shim_ctx_p;
		if (c && !z->forked)
			zl__sock_unlisten(c, z->bell);
		real.close(z->bell);
	}
	anc_free(z);
	pthread_mutex_destroy(&z->lock);
	free(z);
}

static struct zs *zs_new(enum kind k, int fd)
{
	struct zs *z = calloc(1, sizeof(*z));
	if (!z)
		return NULL;
	z->kind = k;
	z->refs = 1;
	z->bell = zl__fd_dup_high(fd);
	if (z->bell < 0) {
		free(z);
		return NULL;
	}
	pthread_mutex_init(&z->lock, NULL);
	int fl = real.fcntl(fd, F_GETFL);
	z->nonblock = fl >= 0 && (fl & O_NONBLOCK);
	return z;
}

static void on_fork_child(void)
{
	bool any = false;
	for (int p = 0; p < PAGES; p++) {
		if (!tab[p])
			continue;
		for (int i = 0; i < 1 << PAGE_BITS; i++) {
			struct zs *z = atomic_load(&tab[p][i]);
			if (z) {
				z->forked = true;
				any = true;
			}
		}
	}
	/* the broker connection belongs to the parent: open our own, now
	 * when the child holds sockets under zerolink, before it changes user
	 * as pre-forking servers do (the broker's socket is its owner's) */
	shim_ctx_p = NULL;
	pthread_mutex_init(&ctx_lock, NULL);
	pthread_mutex_init(&tab_lock, NULL);
	if (any && enabled) {
		int e = errno;
		shim_ctx();
		errno = e;
	}
}

static void on_fork_parent(void)
{
	for (int p = 0; p < PAGES; p++) {
		if (!tab[p])
			continue;
		for (int i = 0; i < 1 << PAGE_BITS; i++) {
			struct zs *z = atomic_load(&tab[p][i]);
			if (z)
				z->forked = true;
		}
	}
}

__attribute__((constructor)) static void shim_atfork(void)
{
	pthread_atfork(NULL, on_fork_parent, on_fork_child);
}

/* ------------------------------------------------------------------ */
/* set-up: listen, connect, accept                                       */

/* A TCP socket, or (unless ZEROLINK_UNIX=0) a Unix stream socket: what can
 * be carried. */
static bool is_carried_kind(int fd, int *family)
{
	int type, dom;
	socklen_t l = sizeof(type);
	if (real.getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l) < 0 || type != SOCK_STREAM)
		return false;
	l = sizeof(dom);
	if (real.getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &dom, &l) < 0)
		return false;
	if (dom == AF_UNIX) {
		*family = dom;
		return unix_enabled;
	}
	if (dom != AF_INET && dom != AF_INET6)
		return false;
	int proto;
	l = sizeof(proto);
	if (real.getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &l) < 0 || proto != IPPROTO_TCP)
		return false;
	*family = dom;
	return true;
}

/* Is this address one of this host's (in our network namespace)? */
static bool addr_local(int family, const void *a)
{
	if (family == AF_INET && ((const uint8_t *)a)[0] == 127)
		return true;
	if (family == AF_INET6 && IN6_IS_ADDR_LOOPBACK((const struct in6_addr *)a))
		return true;
	struct ifaddrs *ifa;
	if (getifaddrs(&ifa) < 0)
		return false;
	bool found = false;
	for (struct ifaddrs *i = ifa; i && !found; i = i->ifa_next) {
		if (!i->ifa_addr || i->ifa_addr->sa_family != family)
			continue;
		if (family == AF_INET)
			found = memcmp(&((struct sockaddr_in *)i->ifa_addr)->sin_addr, a, 4) == 0;
		else
			found = memcmp(&((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr, a, 16) ==
				0;
	}
	freeifaddrs(ifa);
	return found;
}

static int64_t shim_spin_ns(void)
{
	const char *e = getenv("ZEROLINK_SPIN_US");
	if (e && *e)
		return (int64_t)(strtod(e, NULL) * 1000.0);
	return 0; /* the channel's default */
}

static void chan_opts(struct zl_chan_opts *co)
{
	memset(co, 0, sizeof(*co));
	/* the lane is the connection's buffer in each direction: 1 MiB by
	 * default, as much as a kernel socket holds once tuned */
	co->slots = 16384;
	const char *e = getenv("ZEROLINK_SOCK_KB");
	if (e && *e) {
		unsigned long kb = strtoul(e, NULL, 10);
		uint32_t sl = 64;
		while (sl < 65536 && (uint64_t)sl * 64 < kb * 1024)
			sl <<= 1;
		co->slots = sl;
	}
	co->lend = 16;
	co->mode = ZL_MODE_ISOLATED;
	/* poll, select and epoll_wait arm the channels of a set each time
	 * they sleep: plain fences cost less there than membarrier() */
	co->flags = ZL__CHAN_PLAIN_FENCE;
	/* a lane's pages are touched as the connection uses them: thousands
	 * of quiet connections hold little memory */
	co->flags |= ZL__CHAN_LAZY;
	int64_t sp = shim_spin_ns();
	if (sp > 0)
		co->spin_ns = sp;
	else if (getenv("ZEROLINK_SPIN_US") && sp == 0)
		co->flags |= ZL_CHAN_NOSPIN;
}

static int kconn_check(int fd, struct zs *z);

/* The doorbell's single bytes must leave at once: with Nagle's algorithm a
 * kick waits for the acknowledgement of the previous one, which the peer
 * delays by up to 40 ms. The socket gets TCP_NODELAY and no TCP_CORK; the
 * program's own settings are kept apart and shown to it by getsockopt. */
static void doorbell_opts(int fd, struct zs *z)
{
	int dom = 0;
	socklen_t l = sizeof(dom);
	if (real.getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &dom, &l) == 0 && dom == AF_UNIX) {
		z->unix_ = true; /* no Nagle there */
		return;
	}
	l = sizeof(int);
	if (real.getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &z->nodelay, &l) < 0)
		z->nodelay = 0;
	l = sizeof(int);
	if (real.getsockopt(fd, IPPROTO_TCP, TCP_CORK, &z->cork, &l) < 0)
		z->cork = 0;
	int one = 1, zero = 0;
	real.setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	real.setsockopt(fd, IPPROTO_TCP, TCP_CORK, &zero, sizeof(zero));
}

/* Wrap a channel as the connection behind descriptor fd. */
static int conn_attach(int fd, struct zl_chan *ch, bool pending, bool kconn)
{
	struct zs *z = zs_new(K_CONN, fd);
	if (!z)
		return -ENOMEM;
	int err = zl__sock_wrap(ch, SOCK_STREAM, 0, pending, &z->s);
	if (!err)
		err = zl__chan_set_bell(ch, z->bell);
	if (!err)
		err = zs_set(fd, z);
	if (err) {
		if (z->s) {
			zl_sock_close(z->s);
		} else {
			zl_chan_close(ch);
		}
		real.close(z->bell);
		free(z);
		return err;
	}
	z->kconn = false;
	doorbell_opts(fd, z);
	/* records (Unix: ancillary data) and the hand-back request arrive
	 * between the doorbell's kicks */
	zl__chan_set_bell_sink(ch, bell_sink, z);
	if (kconn)
		kconn_check(fd, z);
	return 0;
}

EXPORT int setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
	INIT();
	struct zs *z = zs_get(fd);
	if (!z || z->kind != K_CONN || z->unix_ || level != IPPROTO_TCP ||
	    (name != TCP_NODELAY && name != TCP_CORK))
		return real.setsockopt(fd, level, name, val, len);
	if (!val || len < sizeof(int)) {
		errno = EINVAL;
		return -1;
	}
	int v;
	memcpy(&v, val, sizeof(v));
	if (name == TCP_NODELAY)
		z->nodelay = v != 0;
	else
		z->cork = v != 0;
	return 0;
}

EXPORT int getsockopt(int fd, int level, int name, void *val, socklen_t *len)
{
	INIT();
	struct zs *z = zs_get(fd);
	if (!z || z->kind != K_CONN || z->unix_ || level != IPPROTO_TCP ||
	    (name != TCP_NODELAY && name != TCP_CORK))
		return real.getsockopt(fd, level, name, val, len);
	if (!val || !len) {
		errno = EFAULT;
		return -1;
	}
	int v = name == TCP_NODELAY ? z->nodelay : z->cork;
	socklen_t n = *len < sizeof(v) ? *len : sizeof(v);
	memcpy(val, &v, n);
	*len = n;
	return 0;
}

EXPORT int listen(int fd, int backlog)
{
	INIT();
	int r = real.listen(fd, backlog);
	int fam;
	if (r < 0 || !enabled || zs_get(fd) || !is_carried_kind(fd, &fam))
		return r;
	struct zl_ctx *c = shim_ctx();
	if (!c)
		return r;
	int e = errno;
	if (zl__sock_listen(c, fd) == 0) {
		struct zs *z = zs_new(K_LISTEN, fd);
		if (z && zs_set(fd, z) == 0) {
			dbg("zerolink: fd %d listens under zerolink", fd);
		} else {
			/* we could not tell its connections apart: withdraw it,
			 * so that no client waits for a channel */
			if (z)
				zs_unref(z);
			else
				zl__sock_unlisten(c, fd);
			dbg("zerolink: fd %d: out of memory; kernel path", fd);
		}
	}
	errno = e;
	return r;
}

/* connect(2) of a Unix stream socket: the destination is named to the
 * broker by its socket file (device and inode, as this process sees the
 * path) or its abstract name, before the kernel connects. */
static int connect_unix(int fd, const struct sockaddr_un *sun, socklen_t len)
{
	size_t off = offsetof(struct sockaddr_un, sun_path);
	if (len <= off + 1 || len > sizeof(*sun))
		return real.connect(fd, (const struct sockaddr *)sun, len);
	size_t plen = len - off;
	uint64_t dev = 0, ino = 0;
	const char *name = NULL;
	size_t namelen = 0;
	if (sun->sun_path[0] == '\0') {
		name = sun->sun_path + 1;
		namelen = plen - 1;
	} else {
		char path[sizeof(sun->sun_path) + 1];
		size_t n = strnlen(sun->sun_path, plen);
		memcpy(path, sun->sun_path, n);
		path[n] = '\0';
		struct stat st;
		if (stat(path, &st) < 0 || !S_ISSOCK(st.st_mode))
			return real.connect(fd, (const struct sockaddr *)sun, len);
		dev = (uint64_t)st.st_dev;
		ino = (uint64_t)st.st_ino;
	}
	struct zl_ctx *c = shim_ctx();
	if (!c)
		return real.connect(fd, (const struct sockaddr *)sun, len);
	struct zl_chan_opts co;
	chan_opts(&co);
	struct zl_chan *ch;
	int err = zl__sock_begin_unix(c, fd, dev, ino, name, namelen, &co, &ch);
	if (err) {
		if (err != -ENOENT)
			dbg("zerolink: connect fd %d: %s; kernel path", fd, zl_strerror(err));
		return real.connect(fd, (const struct sockaddr *)sun, len);
	}
	int r = real.connect(fd, (const struct sockaddr *)sun, len);
	int e = errno;
	if (r < 0) {
		/* a Unix connect either is made or is not (EAGAIN: backlog full,
		 * EINTR: given up): the channel goes */
		zl_chan_close(ch);
		zl__sock_cancel(c, fd);
		errno = e;
		return r;
	}
	err = conn_attach(fd, ch, true, true);
	if (err) {
		zl__sock_cancel(c, fd);
		real.shutdown(fd, SHUT_RDWR);
		errno = -err;
		return -1;
	}
	dbg("zerolink: fd %d connected over zerolink (unix)", fd);
	return 0;
}

EXPORT int connect(int fd, const struct sockaddr *addr, socklen_t len)
{
	INIT();
	int fam;
	if (!enabled || !addr || zs_get(fd) ||
	    (addr->sa_family != AF_INET && addr->sa_family != AF_INET6 &&
	     addr->sa_family != AF_UNIX) ||
	    !is_carried_kind(fd, &fam) || fam != addr->sa_family)
		return real.connect(fd, addr, len);
	if (fam == AF_UNIX)
		return connect_unix(fd, (const struct sockaddr_un *)addr, len);
	uint8_t a[16];
	uint16_t port;
	int dfam = addr->sa_family;
	if (dfam == AF_INET) {
		if (len < sizeof(struct sockaddr_in))
			return real.connect(fd, addr, len);
		const struct sockaddr_in *in = (const void *)addr;
		memcpy(a, &in->sin_addr, 4);
		port = ntohs(in->sin_port);
	} else {
		if (len < sizeof(struct sockaddr_in6))
			return real.connect(fd, addr, len);
		const struct sockaddr_in6 *in6 = (const void *)addr;
		memcpy(a, &in6->sin6_addr, 16);
		port = ntohs(in6->sin6_port);
		if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
			memmove(a, a + 12, 4);
			dfam = AF_INET;
		}
	}
	if (!addr_local(dfam, a))
		return real.connect(fd, addr, len);
	struct zl_ctx *c = shim_ctx();
	if (!c)
		return real.connect(fd, addr, len);
	struct zl_chan_opts co;
	chan_opts(&co);
	struct zl_chan *ch;
	int err = zl__sock_begin(c, fd, dfam, a, port, &co, &ch);
	if (err == -EXDEV) {
		/* outside the broker's network namespace the channel waits under
		 * our port: take one now */
		struct sockaddr_storage any = {.ss_family = (sa_family_t)fam};
		if (bind(fd, (struct sockaddr *)&any,
			 fam == AF_INET ? sizeof(struct sockaddr_in)
					: sizeof(struct sockaddr_in6)) < 0)
			return real.connect(fd, addr, len);
		err = zl__sock_begin(c, fd, dfam, a, port, &co, &ch);
	}
	if (err) {
		if (err != -ENOENT)
			dbg("zerolink: connect fd %d: %s; kernel path", fd, zl_strerror(err));
		return real.connect(fd, addr, len);
	}
	int r = real.connect(fd, addr, len);
	int e = errno;
	if (r < 0 && e != EINPROGRESS && e != EINTR) {
		zl_chan_close(ch);
		zl__sock_cancel(c, fd);
		errno = e;
		return r;
	}
	err = conn_attach(fd, ch, true, r == 0);
	if (err) {
		/* the server would wait for a channel we cannot hold: fail
		 * this connection rather than let it hang */
		zl__sock_cancel(c, fd);
		real.shutdown(fd, SHUT_RDWR);
		errno = -err;
		return -1;
	}
	dbg("zerolink: fd %d connected over zerolink", fd);
	errno = e;
	return r;
}

static int accepted(int lfd, int fd)
{
	if (fd < 0)
		return fd;
	struct zs *l = zs_get(lfd);
	if (!l || l->kind != K_LISTEN)
		return fd;
	struct zl_ctx *c = shim_ctx();
	if (!c) {
		/* a client under zerolink would wait for a channel: nothing
		 * can be done without the broker; said once */
		static bool said;
		if (!said)
			dbg("zerolink: accept on fd %d without the broker: kernel path", lfd);
		said = true;
		return fd;
	}
	int e = errno;
	struct zl_chan_opts co;
	chan_opts(&co);
	struct zl_chan *ch;
	int err = zl__sock_accepted(c, fd, &co, &ch);
	if (err == -ENOENT) {
		errno = e;
		return fd; /* an ordinary client */
	}
	if (err == 0)
		err = conn_attach(fd, ch, false, true);
	if (err) {
		/* the client expects the channel: this connection cannot work */
		dbg("zerolink: accept: %s; connection aborted", zl_strerror(err));
		real.close(fd);
		errno = ECONNABORTED;
		return -1;
	}
	dbg("zerolink: fd %d accepted over zerolink", fd);
	errno = e;
	return fd;
}

EXPORT int accept(int lfd, struct sockaddr *addr, socklen_t *len)
{
	INIT();
	return accepted(lfd, real.accept(lfd, addr, len));
}

EXPORT int accept4(int lfd, struct sockaddr *addr, socklen_t *len, int flags)
{
	INIT();
	return accepted(lfd, real.accept4(lfd, addr, len, flags));
}

/* ------------------------------------------------------------------ */
/* data                                                                */

/* A data call on a connection that crossed exec while carried. */
static ssize_t orphan_err(void)
{
	errno = ECONNRESET;
	return -1;
}

static ssize_t ret_errno(ssize_t r)
{
	if (r < 0) {
		errno = (int)-r;
		return -1;
	}
	return r;
}

/* A connection whose non-blocking connect(2) may not have completed. */
static int kconn_check(int fd, struct zs *z)
{
	if (z->kconn)
		return 0;
	struct sockaddr_storage ss;
	socklen_t l = sizeof(ss);
	if (getpeername(fd, (struct sockaddr *)&ss, &l) == 0) {
		z->peer = ss;
		z->peerlen = l;
		z->kconn = true;
		return 0;
	}
	int err = 0;
	l = sizeof(err);
	real.getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l);
	return err ? -err : -EAGAIN;
}

/* ------------------------------------------------------------------ */
/* handing back                                                         */

/*
 * A carried connection whose descriptor crosses exec (or posix_spawn)
 * returns to the kernel path, so that the new image, with or without the
 * shim, continues the stream with no byte lost or reordered. The side that
 * execs (E) and its peer (P) do it on the kernel connection, after the
 * doorbell bytes each has sent:
 *
 *   E -> P  'H'               E writes nothing more into its lane; counted
 *                             in E's half (anc) so that P looks
 *   P       takes what E wrote into the lane (left: read before the kernel
 *           stream), stops writing into its own lane
 *   P -> E  'A'               after P's last doorbell byte
 *   E       takes what P wrote into the lane and E has not read, drops its
 *           kicks and records up to 'A' (and no further)
 *   E -> P  'D', length (4 bytes), those bytes
 *   P -> E  the same bytes, as stream data
 *
 * and from then on both write and read the kernel socket itself. E waits
 * for 'A' up to ZEROLINK_EXEC_WAIT_MS (5000 ms by default); a peer that
 * does not answer in time (it is stopped, or handing back at the same
 * moment) leaves the connection orphaned as before: reset in the new image.
 * Descriptors in flight towards E (SCM_RIGHTS records) are dropped.
 */

static bool left_room(struct zs *z);

/* Send all n bytes on kernel socket fd (blocking or not) by the deadline
 * (0: none). Returns 0 or -errno. With absorb (P returning the peer's
 * unread bytes), what the peer's new image sends while they do not fit is
 * read into absorb->left, after the bytes already there (the stream's
 * order), so that two programs that both write before they read do not
 * wait on each other. */
static int kio_send_all(int fd, const void *b, size_t n, uint64_t dl, struct zs *absorb)
{
	size_t done = 0;
	while (done < n) {
		ssize_t r = real.send(fd, (const char *)b + done, n - done,
				      MSG_DONTWAIT | MSG_NOSIGNAL);
		if (r > 0) {
			done += (size_t)r;
			continue;
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		int ms = -1;
		if (dl) {
			uint64_t now = zl__now_ns();
			if (now >= dl)
				return -ETIMEDOUT;
			ms = (int)((dl - now) / 1000000u) + 1;
		}
		struct pollfd p = {.fd = fd, .events = (short)(POLLOUT | (absorb ? POLLIN : 0))};
		real.poll(&p, 1, ms);
		if (absorb && (p.revents & (POLLIN | POLLHUP | POLLERR))) {
			struct zs *z = absorb;
			ssize_t k = left_room(z) ? real.recv(fd, z->left + z->left_n,
							     z->left_cap - z->left_n, MSG_DONTWAIT)
						 : 0;
			if (k > 0)
				z->left_n += (size_t)k;
			else if (k == 0 || (errno != EAGAIN && errno != EINTR))
				absorb = NULL; /* end of file (it stays for the reads), or no memory
						*/
		}
	}
	return 0;
}

/* Wait until kernel socket fd is readable or the deadline passes. */
static int kio_wait_in(int fd, uint64_t dl)
{
	uint64_t now = zl__now_ns();
	if (now >= dl)
		return -ETIMEDOUT;
	struct pollfd p = {.fd = fd, .events = POLLIN};
	real.poll(&p, 1, (int)((dl - now) / 1000000u) + 1);
	return 0;
}

/* Read exactly n bytes from kernel socket fd by the deadline. Returns 0,
 * -EPIPE at end of file, -ETIMEDOUT, or -errno. */
static int kio_recv_exact(int fd, void *b, size_t n, uint64_t dl)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = real.recv(fd, (char *)b + got, n - got, MSG_DONTWAIT);
		if (r > 0) {
			got += (size_t)r;
			continue;
		}
		if (r == 0)
			return -EPIPE;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		int w = kio_wait_in(fd, dl);
		if (w < 0)
			return w;
	}
	return 0;
}

/* Room for more bytes at the end of z->left. */
static bool left_room(struct zs *z)
{
	if (z->left_n < z->left_cap)
		return true;
	size_t nc = z->left_cap ? z->left_cap * 2 : 65536;
	char *nb = realloc(z->left, nc);
	if (!nb)
		return false;
	z->left = nb;
	z->left_cap = nc;
	return true;
}

/* Everything the channel holds for us, appended to z->left. */
static void left_take_all(struct zs *z)
{
	while (left_room(z)) {
		struct iovec v = {z->left + z->left_n, z->left_cap - z->left_n};
		ssize_t r = zl_sock_recvv(z->s, &v, 1, MSG_DONTWAIT, NULL);
		if (r <= 0)
			return;
		z->left_n += (size_t)r;
	}
}

/* The kernel connection carries the stream from now on: the program's own
 * TCP options back, the channel detached from it (nothing more is sent on
 * it by the channel), and the write side shut if the program shut it. */
static void handed_finish(struct zs *z)
{
	bool shut = z->s->shut_wr;
	zl_sock_set_linger(z->s, false, 0);
	zl__chan_set_bell(z->s->ch, -1);
	zl__chan_set_bell_sink(z->s->ch, NULL, NULL);
	z->kind = K_HANDED;
	if (!z->unix_) {
		real.setsockopt(z->bell, IPPROTO_TCP, TCP_NODELAY, &z->nodelay, sizeof(int));
		real.setsockopt(z->bell, IPPROTO_TCP, TCP_CORK, &z->cork, sizeof(int));
	}
	if (shut)
		real.shutdown(z->bell, SHUT_WR);
}

static int exec_wait_ms(void)
{
	const char *e = getenv("ZEROLINK_EXEC_WAIT_MS");
	return e && *e ? atoi(e) : 5000;
}

/* P's side, under z->lock: the peer asked ('H' read by a drain). */
static void peer_handback(struct zs *z)
{
	z->hb_seen = false;
	left_take_all(z);
	handed_finish(z);
	uint64_t dl = zl__now_ns() + (uint64_t)exec_wait_ms() * 2000000u;
	char a = 'A';
	uint8_t h[5];
	int err = kio_send_all(z->bell, &a, 1, dl, NULL);
	if (!err)
		err = kio_recv_exact(z->bell, h, sizeof(h), dl);
	if (!err && h[0] != 'D')
		err = -EPROTO;
	uint32_t len = 0;
	if (!err)
		memcpy(&len, h + 1, 4);
	/* no more than a lane holds (the peer's word, checked) */
	if (!err && len > (64u << 20))
		err = -EPROTO;
	char *b = len ? malloc(len) : NULL;
	if (!err && len && !b)
		err = -ENOMEM;
	if (!err && len)
		err = kio_recv_exact(z->bell, b, len, dl);
	/* its unread bytes, returned as the first of the kernel stream: this
	 * waits while they do not fit, until the new image reads */
	if (!err && len)
		err = kio_send_all(z->bell, b, len, 0, z);
	free(b);
	if (err && err != -EPIPE) {
		/* the stream cannot be made whole: end it, as the kernel does
		 * a connection it cannot continue */
		real.shutdown(z->bell, SHUT_RDWR);
	}
	dbg("zerolink: connection handed back to the kernel path by its peer (%zu bytes "
	    "to read first, %u returned): %s",
	    z->left_n, len, err ? strerror(-err) : "ok");
}

/* Under z->lock: has the peer asked to hand the connection back? If so,
 * do it; true when z is K_HANDED now. */
static bool hb_check(struct zs *z)
{
	if (z->kind != K_CONN || !z->s->ch)
		return z->kind == K_HANDED;
	if (!z->hb_seen && zl__chan_peer_anc(z->s->ch) != z->anc_parsed)
		zl__chan_bell_drain(z->s->ch);
	if (!z->hb_seen)
		return false;
	peer_handback(z);
	return true;
}

/* Readiness of a handed-back connection: the kernel's, and readable while
 * bytes of its channel wait. */
static int handed_ready(struct zs *z, int events)
{
	struct pollfd p = {.fd = z->bell, .events = (short)events};
	if (real.poll(&p, 1, 0) < 0)
		p.revents = 0;
	int rev = p.revents;
	if (z->left_off < z->left_n && (events & POLLIN))
		rev |= POLLIN;
	return rev;
}

/* Is the readiness (and are the reads) of this descriptor the shim's? */
static bool zs_virt(const struct zs *z)
{
	return z && (z->kind == K_CONN || (z->kind == K_HANDED && z->left_off < z->left_n));
}

/* E's side, under z->lock, before exec: hand the connection back. Returns
 * 0 (the kernel connection is whole: the new image reads and writes it
 * directly) or -errno (nothing changed on our side but the request). */
static int self_handback(struct zs *z, uint64_t dl)
{
	struct zl_chan *ch = z->s->ch;
	if (!ch || z->s->pending || !z->kconn)
		return -ENOTCONN;
	char hb = 'H';
	int err = kio_send_all(z->bell, &hb, 1, dl, NULL);
	if (err)
		return err;
	zl__chan_anc_sent(ch);
	/* up to the peer's answer: its kicks and records (their descriptors
	 * dropped), nothing after it */
	bool found = false, eof = false;
	while (!found) {
		uint8_t b[256];
		ssize_t r = real.recv(z->bell, b, sizeof(b), MSG_PEEK | MSG_DONTWAIT);
		if (r == 0) {
			eof = true; /* the peer is gone */
			break;
		}
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				return -errno;
			err = kio_wait_in(z->bell, dl);
			if (err)
				return err;
			continue;
		}
		size_t take = 0;
		while (take < (size_t)r && !found) {
			uint8_t c = b[take++];
			if (z->rec_have) {
				if (++z->rec_have == 9)
					z->rec_have = 0;
			} else if (c == 'R') {
				z->rec_have = 1;
			} else if (c == 'A') {
				found = true;
			} else if (c == 'H') {
				return -EDEADLK; /* both ends exec at once */
			}
		}
		while (take) {
			union zl__bell_cmsg cb;
			struct iovec v = {b, take};
			struct msghdr m = {.msg_iov = &v,
					   .msg_iovlen = 1,
					   .msg_control = cb.buf,
					   .msg_controllen = sizeof(cb.buf)};
			ssize_t k = real.recvmsg(z->bell, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
			if (k <= 0)
				return k == 0 ? -EPIPE : -errno;
			if (m.msg_controllen)
				cmsg_close_fds(m.msg_control, m.msg_controllen);
			take -= (size_t)k;
		}
	}
	/* the peer writes nothing more into its lane: what it holds that we
	 * have not read goes back to it, to come again on the kernel path
	 * (z->left, empty on a carried connection, holds it meanwhile) */
	left_take_all(z);
	size_t len = z->left_n;
	if (!eof) {
		uint8_t h[5] = {'D'};
		uint32_t l32 = (uint32_t)len;
		memcpy(h + 1, &l32, 4);
		err = kio_send_all(z->bell, h, sizeof(h), dl, NULL);
		if (!err && len)
			err = kio_send_all(z->bell, z->left, len, dl, NULL);
	} else if (len) {
		err = -EPIPE; /* the peer is gone: nobody to return them to */
	}
	free(z->left);
	z->left = NULL;
	z->left_n = z->left_cap = 0;
	if (err)
		return err;
	anc_free(z);
	handed_finish(z);
	return 0;
}

/* A blocking call waits for its connection: it spins for the channel's
 * budget, then arms the channel and sleeps in the kernel on the doorbell
 * (a blocking recv(MSG_PEEK) of one byte on our duplicate of the kernel
 * socket). The kernel then applies the program's signal dispositions as it
 * does for a socket read: a handler installed with SA_RESTART restarts the
 * wait, one without makes it fail with EINTR; SO_RCVTIMEO ends it with
 * EAGAIN. Returns 0 (look again), or -errno. */
static int conn_wait(struct zs *z, int events)
{
	int64_t budget = z->s->ch ? z->s->ch->spin_ns : 0;
	uint64_t t0 = zl__now_ns();
	for (uint32_t i = 1; budget > 0; i++) {
		pthread_mutex_lock(&z->lock);
		int rev = zl_sock_poll(z->s, events);
		pthread_mutex_unlock(&z->lock);
		if (rev)
			return 0;
		zl_cpu_relax();
		if ((i & 63) == 0 && (int64_t)(zl__now_ns() - t0) >= budget)
			break;
	}
	if (atomic_fetch_add(&z->sleepers, 1) > 0) {
		/* another thread sleeps on this connection's doorbell, and
		 * owns the channel's sleep flag: look every 20 us instead */
		atomic_fetch_sub(&z->sleepers, 1);
		for (;;) {
			pthread_mutex_lock(&z->lock);
			int rev = zl_sock_poll(z->s, events);
			pthread_mutex_unlock(&z->lock);
			if (rev)
				return 0;
			struct timespec ts = {0, 20000};
			if (nanosleep(&ts, NULL) < 0 && errno == EINTR)
				return -EINTR;
		}
	}
	pthread_mutex_lock(&z->lock);
	int a = zl_sock_arm(z->s, events);
	if (a == 0 && z->hb_seen) {
		/* a hand-back request came with the kicks the arming drained:
		 * the caller answers it */
		zl__chan_disarm(z->s->ch);
		a = 1;
	}
	pthread_mutex_unlock(&z->lock);
	if (a != 0) {
		atomic_fetch_sub(&z->sleepers, 1);
		return a < 0 ? a : 0;
	}
	char c;
	ssize_t r = real.recv(z->bell, &c, 1, MSG_PEEK);
	int e = errno;
	zl__chan_disarm(z->s->ch);
	atomic_fetch_sub(&z->sleepers, 1);
	if (r > 0)
		return 0; /* rung */
	if (r < 0 && e == EINTR)
		return -EINTR;
	if (r < 0 && (e == EAGAIN || e == EWOULDBLOCK))
		return -EAGAIN;
	/* end of file or an error on the kernel connection: every holder of
	 * the other end closed it (after a fork, they only forget the channel)
	 * or died. The channel learns it from the doorbell's end of file. */
	pthread_mutex_lock(&z->lock);
	zl__chan_bell_drain(z->s->ch);
	pthread_mutex_unlock(&z->lock);
	int w = zl_sock_wait(z->s, events, 10);
	return w < 0 ? w : 0;
}

/* iov cut to at most len bytes, in small (n <= 8) or a heap copy (*heap). */
static const struct iovec *iov_cap(const struct iovec *iov, int *n, size_t len,
				   struct iovec small[8], struct iovec **heap)
{
	size_t t = 0;
	int k = 0;
	for (; k < *n && t + iov[k].iov_len <= len; k++)
		t += iov[k].iov_len;
	if (k == *n)
		return iov;
	struct iovec *v = *n <= 8 ? small : (*heap = malloc(sizeof(*v) * (size_t)*n));
	if (!v)
		return iov;
	memcpy(v, iov, sizeof(*v) * (size_t)k);
	v[k].iov_base = iov[k].iov_base;
	v[k].iov_len = len - t;
	*n = k + 1;
	return v;
}

static ssize_t conn_recv_m(int fd, struct zs *z, const struct iovec *iov, int n, int flags,
			   int *oflags, struct msghdr *mh);

static ssize_t conn_recv(int fd, struct zs *z, const struct iovec *iov, int n, int flags,
			 int *oflags)
{
	return conn_recv_m(fd, z, iov, n, flags, oflags, NULL);
}

/* A read of a handed-back connection: the kernel's (its channel's bytes
 * are all read). */
static ssize_t handed_kernel_recv(int fd, const struct iovec *iov, int n, int flags, int *oflags,
				  struct msghdr *mh)
{
	struct msghdr km = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)n};
	if (mh) {
		km.msg_control = mh->msg_control;
		km.msg_controllen = mh->msg_controllen;
	}
	ssize_t r = real.recvmsg(fd, &km, flags);
	if (r < 0)
		return -errno;
	if (mh)
		mh->msg_controllen = km.msg_controllen;
	if (oflags)
		*oflags = km.msg_flags;
	return r;
}

/* Bytes of a handed-back connection's channel, first. Under z->lock. */
static ssize_t left_recv(struct zs *z, const struct iovec *iov, int n, int flags)
{
	size_t off = z->left_off, done = 0;
	for (int i = 0; i < n && off < z->left_n; i++) {
		size_t k = iov[i].iov_len;
		if (k > z->left_n - off)
			k = z->left_n - off;
		memcpy(iov[i].iov_base, z->left + off, k);
		off += k;
		done += k;
	}
	if (!(flags & MSG_PEEK)) {
		z->left_off = off;
		if (off == z->left_n) {
			free(z->left);
			z->left = NULL;
			z->left_n = z->left_off = z->left_cap = 0;
		}
	}
	return (ssize_t)done;
}

/* MSG_WAITALL past a handed-back connection's left bytes: the rest of
 * iov (from byte got) from the kernel. Returns the bytes read (0 on error:
 * what was read is returned first, as the kernel does). */
static ssize_t handed_rest(int fd, const struct iovec *iov, int n, size_t got, int flags)
{
	struct iovec small[8], *v = n <= 8 ? small : malloc(sizeof(*v) * (size_t)n);
	if (!v)
		return 0;
	int k = 0;
	for (int i = 0; i < n; i++) {
		if (got >= iov[i].iov_len) {
			got -= iov[i].iov_len;
			continue;
		}
		v[k].iov_base = (char *)iov[i].iov_base + got;
		v[k].iov_len = iov[i].iov_len - got;
		got = 0;
		k++;
	}
	ssize_t r = k ? handed_kernel_recv(fd, v, k, flags, NULL, NULL) : 0;
	if (v != small)
		free(v);
	return r > 0 ? r : 0;
}

static ssize_t conn_recv_m(int fd, struct zs *z, const struct iovec *iov, int n, int flags,
			   int *oflags, struct msghdr *mh)
{
	int err = z->kind == K_CONN ? kconn_check(fd, z) : 0;
	if (err == -EAGAIN && !(z->nonblock || (flags & MSG_DONTWAIT)))
		err = 0; /* the read waits on the channel */
	if (err)
		return err;
	bool wait = !z->nonblock && !(flags & MSG_DONTWAIT);
	/* No arming here when the lane runs dry: a program waits in poll,
	 * select or epoll_wait, which look at the channel and arm it before
	 * they sleep; a blocking read arms in zl_sock_wait(). */
	for (;;) {
		pthread_mutex_lock(&z->lock);
		if (hb_check(z) && z->left_off >= z->left_n) {
			pthread_mutex_unlock(&z->lock);
			return handed_kernel_recv(fd, iov, n, flags, oflags, mh);
		}
		const struct iovec *use = iov;
		int un = n;
		struct iovec small[8], *heap = NULL;
		bool deliver = false;
		if (z->unix_ && z->s->ch) {
			if (z->kind == K_CONN)
				anc_collect(z);
			/* a record at our offset goes with this read; the read
			 * stops at the next one */
			unsigned i = 0;
			if (z->nrec && z->recs[0].off <= z->rxoff) {
				deliver = !(flags & MSG_PEEK);
				i = 1;
			}
			for (; i < z->nrec; i++) {
				if (z->recs[i].off > z->rxoff) {
					use = iov_cap(iov, &un, z->recs[i].off - z->rxoff, small,
						      &heap);
					break;
				}
			}
		}
		bool handed = z->kind == K_HANDED;
		ssize_t r = handed ? left_recv(z, use, un, flags)
				   : zl_sock_recvv(z->s, use, un, flags | MSG_DONTWAIT, oflags);
		if (handed && oflags)
			*oflags = 0;
		if (r > 0 && z->unix_ && !(flags & MSG_PEEK))
			z->rxoff += (uint64_t)r;
		if (r > 0 && deliver) {
			anc_deliver(&z->recs[0], mh, flags);
			memmove(z->recs, z->recs + 1, sizeof(*z->recs) * --z->nrec);
		} else if (mh && r >= 0) {
			mh->msg_controllen = 0;
		}
		pthread_mutex_unlock(&z->lock);
		free(heap);
		if (debug > 1)
			dbg("recv fd %d n %d len %zu flags %#x -> %zd", fd, n,
			    n ? iov[0].iov_len : 0, flags, r);
		if (handed && r > 0 && use == iov && wait && (flags & MSG_WAITALL) &&
		    !(flags & MSG_PEEK))
			r += handed_rest(fd, iov, n, (size_t)r, flags);
		if (r != -EAGAIN || !wait)
			return r;
		int w = conn_wait(z, POLLIN);
		if (w < 0)
			return w;
	}
}

static ssize_t conn_send(int fd, struct zs *z, const struct iovec *iov, int n, int flags)
{
	int err = kconn_check(fd, z);
	if (err && err != -EAGAIN)
		return err;
	bool wait = !z->nonblock && !(flags & MSG_DONTWAIT);
	if (err == -EAGAIN && !wait)
		return -EAGAIN;
	/* a blocking send returns once all is in (as the kernel's does), or
	 * with what went in before an error or a signal */
	struct iovec small[8], *copy = NULL;
	const struct iovec *v = iov;
	size_t total = 0, done = 0;
	for (int i = 0; i < n; i++)
		total += iov[i].iov_len;
	ssize_t r;
	for (;;) {
		pthread_mutex_lock(&z->lock);
		if (hb_check(z)) {
			/* handed back: the rest on the kernel path, after what
			 * the peer returned */
			pthread_mutex_unlock(&z->lock);
			struct msghdr km = {.msg_iov = (struct iovec *)v, .msg_iovlen = (size_t)n};
			ssize_t k = real.sendmsg(fd, &km, flags | MSG_NOSIGNAL);
			r = k < 0 ? -errno : k;
			if (k > 0)
				done += (size_t)k;
			break;
		}
		r = zl_sock_sendv(z->s, v, n, (flags & ~MSG_NOSIGNAL) | MSG_DONTWAIT);
		pthread_mutex_unlock(&z->lock);
		if (r > 0) {
			done += (size_t)r;
			if (!wait || done == total)
				break;
			/* the rest, from where this send stopped */
			if (!copy) {
				copy = n <= 8 ? small : malloc(sizeof(*copy) * (size_t)n);
				if (!copy)
					break;
				memcpy(copy, iov, sizeof(*copy) * (size_t)n);
				v = copy;
			}
			struct iovec *w = (struct iovec *)v;
			size_t k = (size_t)r;
			while (k && n) {
				if (k >= w->iov_len) {
					k -= w->iov_len;
					w++;
					n--;
				} else {
					w->iov_base = (char *)w->iov_base + k;
					w->iov_len -= k;
					k = 0;
				}
			}
			v = w;
			continue;
		}
		if (r != -EAGAIN || !wait)
			break;
		int w = conn_wait(z, POLLOUT);
		if (w < 0) {
			r = w;
			break;
		}
	}
	if (copy && copy != small)
		free(copy);
	if (done && z->unix_) {
		/* the offset records of ancillary data are sent at */
		pthread_mutex_lock(&z->lock);
		z->txoff += done;
		pthread_mutex_unlock(&z->lock);
	}
	if (r == -EPIPE && !(flags & MSG_NOSIGNAL) && !done)
		raise(SIGPIPE);
	return done ? (ssize_t)done : r;
}

/* sendmsg(2) with control data on a carried Unix connection: the record on
 * the doorbell socket first (see "ancillary data"), then the bytes. */
static ssize_t conn_send_anc(int fd, struct zs *z, const struct msghdr *m, int flags)
{
	size_t total = 0;
	for (size_t i = 0; i < m->msg_iovlen; i++)
		total += m->msg_iov[i].iov_len;
	if (total == 0)
		return 0; /* as a stream socket does: nothing goes, no descriptor */
	int err = kconn_check(fd, z);
	if (err && err != -EAGAIN)
		return err;
	bool wait = !z->nonblock && !(flags & MSG_DONTWAIT);
	/* room for a byte at least, so that the descriptors do not go ahead
	 * of a send that then fails */
	for (;;) {
		pthread_mutex_lock(&z->lock);
		uint32_t room = z->s->ch ? zl__chan_tx_room(z->s->ch) : 0;
		pthread_mutex_unlock(&z->lock);
		if (room)
			break;
		if (!wait)
			return -EAGAIN;
		int w = conn_wait(z, POLLOUT);
		if (w < 0)
			return w;
	}
	pthread_mutex_lock(&z->lock);
	char rec[9] = {'R'};
	memcpy(rec + 1, &z->txoff, 8);
	struct iovec v = {rec, sizeof(rec)};
	struct msghdr km = {.msg_iov = &v,
			    .msg_iovlen = 1,
			    .msg_control = m->msg_control,
			    .msg_controllen = m->msg_controllen};
	size_t sent = 0;
	while (sent < sizeof(rec)) {
		ssize_t r = real.sendmsg(z->bell, &km, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
			/* the doorbell socket is full of kicks the peer has not
			 * drained yet: it drains them when it next waits */
			pthread_mutex_unlock(&z->lock);
			struct pollfd p = {.fd = z->bell, .events = POLLOUT};
			real.poll(&p, 1, 100);
			pthread_mutex_lock(&z->lock);
			continue;
		}
		if (r < 0) {
			int e = errno;
			pthread_mutex_unlock(&z->lock);
			if (e == EPIPE && !(flags & MSG_NOSIGNAL))
				raise(SIGPIPE);
			return -e; /* EBADF, ETOOMANYREFS, ...: nothing went */
		}
		sent += (size_t)r;
		v.iov_base = rec + sent;
		v.iov_len = sizeof(rec) - sent;
		km.msg_control = NULL; /* went with the first byte */
		km.msg_controllen = 0;
	}
	zl__chan_anc_sent(z->s->ch);
	pthread_mutex_unlock(&z->lock);
	return conn_send(fd, z, m->msg_iov, (int)m->msg_iovlen, flags);
}

EXPORT ssize_t read(int fd, void *buf, size_t len)
{
	INIT();
	struct zs *z = zs_get(fd);
	if (z && z->kind == K_ORPHAN)
		return orphan_err();
	if (!zs_virt(z))
		return real.read(fd, buf, len);
	struct iovec v = {buf, len};
	return ret_errno(conn_recv(fd, z, &v, 1, 0, NULL));
}

EXPORT ssize_t write(int fd, const void *buf, size_t len)
{
	INIT();
	struct zs *z = zs_get(fd);
	if (z && z->kind == K_ORPHAN)
		return orphan_err();
	if (!z || z->kind != K_CONN)
		return real.write(fd, buf, len);
	struct iovec v = {(void *)buf, len};
	return ret_errno(conn_send(fd, z, &v, 1, 0));
}

EXPORT ssize_t readv(int fd, const struct iovec *iov, int n)
{
	INIT();
	struct zs *z = zs_get(fd);
	if (z && z->kind == K_ORPHAN)
		return orphan_err();
	if (!zs_virt(z))
		return real.readv(fd, iov, n);
	return ret_errno(conn_recv(fd, z, iov, n, 0, NULL));
}

EXPORT ssize_t writev(int fd, const struct iovec *iov, int n)
{
	INIT();
	struct zs *z = zs_get(fd);
	if (z && z->kind == K_ORPHAN)
		return orphan_err();
	if (!z || z->kind != K_CONN)
		return real.writev(fd, iov, n);
	return ret_errno(conn_send(fd, z, iov, n, 0));
}

EXPORT ssize_t recv(int fd, void *buf, size_t len, int flags)
{
	INIT();
	struct zs *z = zs_get(fd);
	if (z && z->kind == K_ORPHAN)
		return orphan_err();
	if (!zs_virt(z))
		return real.recv(fd, buf, len, flags);
	struct iovec v = {buf, len};
	return ret_errno(conn_recv(fd, z, &v, 1, flags, NULL));
}

EXPORT ssize_t send(int fd, const void *buf, size_t len, int flags)
{
	INIT();
	struct zs *z = zs_get(fd);
	if (z && z->kind == K_ORPHAN)
		return orphan_err();
	if (!z || z->kind != K_CONN)
		return real.send(fd, buf, len, flags);
	struct iovec v = {(void *)buf, len};
	return ret_errno(conn_send(fd, z, &v, 1, flags));
}

/* The source address a receive reports, as the kernel does: the peer's
 * address for TCP; for a Unix stream socket the peer's name if it has one,
 * else nothing (length 0). Returns the length to report. */
static socklen_t peer_name(const struct zs *z, void *to, socklen_t cap)
{
	if (z->unix_ && z->peerlen <= sizeof(sa_family_t))
		return 0;
	socklen_t k = cap < z->peerlen ? cap : z->peerlen;
	memcpy(to, &z->peer, k);
	return z->peerlen;
}

EXPORT ssize_t recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *from,
			socklen_t *fl)
{
	INIT();
	struct zs *z = zs_get(fd);
	if (z && z->kind == K_ORPHAN)
		return orphan_err();
	if (!zs_virt(z))
		return real.recvfrom(fd, buf, len, flags, from, fl);
	struct iovec v = {buf, len};
	ssize_t r = conn_recv(fd, z, &v, 1, flags, NULL);
	if (r >= 0 && from && fl)
		*fl = peer_name(z, from, *fl);
	return ret_errno(r);
}

EXPORT ssize_t sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *to,
		      socklen_t tl)
{
	INIT();
	struct zs *z = zs_get(fd);
	if (z && z->kind == K_ORPHAN)
		return orphan_err();
	if (!z || z->kind != K_CONN)
		return real.sendto(fd, buf, len, flags, to, tl);
	struct iovec v = {(void *)buf, len};
	return ret_errno(conn_send(fd, z, &v, 1, flags)); /* TCP ignores the address */
}

EXPORT ssize_t recvmsg(int fd, struct msghdr *m, int flags)
{
	INIT();
	struct zs *z = zs_get(fd);
	if (z && z->kind == K_ORPHAN)
		return orphan_err();
	if (!zs_virt(z))
		return real.recvmsg(fd, m, flags);
	int of = 0;
	/* the control data a record brings with this read, if any */
	struct msghdr cm = *m;
	cm.msg_flags = 0;
	ssize_t r = conn_recv_m(fd, z, m->msg_iov, (int)m->msg_iovlen, flags, &of, &cm);
	if (r >= 0) {
		m->msg_flags = of | (cm.msg_flags & MSG_CTRUNC);
		m->msg_controllen = cm.msg_controllen;
		if (m->msg_name && m->msg_namelen)
			m->msg_namelen = peer_name(z, m->msg_name, m->msg_namelen);
	}
	return ret_errno(r);
}

EXPORT ssize_t sendmsg(int fd, const struct msghdr *m, int flags)
{
	INIT();
	struct zs *z = zs_get(fd);
	if (z && z->kind == K_ORPHAN)
		return orphan_err();
	if (!z || z->kind != K_CONN)
		return real.sendmsg(fd, m, flags);
	if (m->msg_controllen && z->unix_)
		return ret_errno(conn_send_anc(fd, z, m, flags));
	if (m->msg_controllen) {
		errno = EOPNOTSUPP; /* TCP carries no ancillary data either */
		return -1;
	}
	return ret_errno(conn_send(fd, z, m->msg_iov, (int)m->msg_iovlen, flags));
}

EXPORT ssize_t sendfile(int out, int in, off_t *off, size_t count)
{
	INIT();
	struct zs *z = zs_get(out);
	if (z && z->kind == K_ORPHAN)
		return orphan_err();
	if (!z || z->kind != K_CONN)
		return real.sendfile(out, in, off, count);
	/* a copy through a buffer: the file's bytes go into the lane */
	char buf[65536];
	size_t done = 0;
	while (done < count) {
		size_t k = count - done < sizeof(buf) ? count - done : sizeof(buf);
		ssize_t r = off ? pread(in, buf, k, *off) : real.read(in, buf, k);
		if (r < 0) {
			if (done)
				break;
			return -1;
		}
		if (r == 0)
			break;
		struct iovec v = {buf, (size_t)r};
		ssize_t w = conn_send(out, z, &v, 1, 0);
		if (w < 0) {
			if (!off && done == 0) {
				errno = (int)-w;
				return -1;
			}
			if (done)
				break;
			errno = (int)-w;
			return -1;
		}
		if (off)
			*off += w;
		else if (w < r)
			lseek(in, w - r, SEEK_CUR);
		done += (size_t)w;
		if (w < r)
			break;
	}
	return (ssize_t)done;
}

/* Programs built with 64-bit file offsets call sendfile64. */
EXPORT ssize_t sendfile64(int out, int in, off64_t *off, size_t count)
{
	INIT();
	return sendfile(out, in, (off_t *)off, count);
}

/* splice(2) to or from an upgraded connection: a copy through a buffer.
 * Into the connection, only what the lane takes now is read from the
 * source, so no byte is lost; out of it, the bytes are peeked, written,
 * and then consumed as far as the destination took them. */
EXPORT ssize_t splice(int in, loff_t *off_in, int out, loff_t *off_out, size_t len,
		      unsigned int flags)
{
	INIT();
	struct zs *zi = zs_get(in), *zo = zs_get(out);
	bool ui = zs_virt(zi), uo = zo && zo->kind == K_CONN;
	if (!ui && !uo)
		return real.splice(in, off_in, out, off_out, len, flags);
	if (ui && uo) {
		errno = EINVAL; /* neither end would be a pipe */
		return -1;
	}
	char buf[65536];
	if (len > sizeof(buf))
		len = sizeof(buf);
	int mflags = (flags & SPLICE_F_NONBLOCK) ? MSG_DONTWAIT : 0;
	if (uo) {
		if (off_out) {
			errno = ESPIPE;
			return -1;
		}
		/* Wait for room, then read no more than fits. A blocking splice
		 * goes on, as the kernel's does, while the source has bytes
		 * ready (a file always has; a pipe or socket is asked without
		 * waiting) and the lane takes them; a non-blocking one moves
		 * what fits now. */
		bool block = !zo->nonblock && !mflags;
		size_t moved = 0;
		while (moved < len) {
			if (moved && !off_in) {
				struct pollfd p = {.fd = in, .events = POLLIN};
				if (real.poll(&p, 1, 0) <= 0 || !(p.revents & POLLIN))
					break;
			}
			size_t room;
			for (;;) {
				pthread_mutex_lock(&zo->lock);
				room = zl__chan_tx_room(zo->s->ch);
				pthread_mutex_unlock(&zo->lock);
				if (room)
					break;
				if (!block) {
					errno = EAGAIN;
					return -1;
				}
				int w = conn_wait(zo, POLLOUT);
				if (w < 0) {
					if (moved)
						return (ssize_t)moved;
					errno = -w;
					return -1;
				}
			}
			size_t want = len - moved < room ? len - moved : room;
			ssize_t r =
				off_in ? pread(in, buf, want, *off_in) : real.read(in, buf, want);
			if (r <= 0) {
				if (moved)
					break;
				return r;
			}
			if (off_in)
				*off_in += r;
			struct iovec v = {buf, (size_t)r};
			ssize_t k = conn_send(out, zo, &v, 1, mflags);
			if (k < 0) {
				if (moved)
					break;
				return ret_errno(k);
			}
			moved += (size_t)k;
			if ((size_t)r < want || !block)
				break;
		}
		return (ssize_t)moved;
	}
	if (off_in) {
		errno = ESPIPE;
		return -1;
	}
	struct iovec v = {buf, len};
	ssize_t r = conn_recv(in, zi, &v, 1, MSG_PEEK | mflags, NULL);
	if (r <= 0)
		return ret_errno(r);
	ssize_t w =
		off_out ? pwrite(out, buf, (size_t)r, *off_out) : real.write(out, buf, (size_t)r);
	if (w <= 0)
		return w;
	if (off_out)
		*off_out += w;
	v.iov_len = (size_t)w;
	return ret_errno(conn_recv(in, zi, &v, 1, MSG_DONTWAIT, NULL));
}

EXPORT int shutdown(int fd, int how)
{
	INIT();
	struct zs *z = zs_get(fd);
	if (!z || z->kind != K_CONN)
		return real.shutdown(fd, how);
	pthread_mutex_lock(&z->lock);
	int r = zl_sock_shutdown(z->s, how);
	pthread_mutex_unlock(&z->lock);
	/* the kernel connection stays open both ways: it is the doorbell */
	return (int)ret_errno(r);
}

/* ------------------------------------------------------------------ */
/* descriptors                                                         */

static void watches_forget(int fd);

static void ep_mark(int fd, uint8_t v);
static bool is_epoll_fd(int fd);

EXPORT int close(int fd)
{
	INIT();
	struct zs *z = zs_get(fd);
	if (z) {
		zs_set(fd, NULL);
		zs_unref(z);
	}
	watches_forget(fd);
	if (is_epoll_fd(fd))
		ep_mark(fd, 0);
	return real.close(fd);
}

static int dup_to(int old, int nfd)
{
	if (nfd < 0 || nfd == old)
		return nfd;
	struct zs *prev = zs_get(nfd);
	if (prev) {
		zs_set(nfd, NULL);
		zs_unref(prev);
	}
	struct zs *z = zs_get(old);
	if (z) {
		z->refs++;
		zs_set(nfd, z);
	}
	return nfd;
}

EXPORT int dup(int fd)
{
	INIT();
	return dup_to(fd, real.dup(fd));
}

EXPORT int dup2(int fd, int nfd)
{
	INIT();
	struct zs *prev = zs_get(nfd);
	if (prev && nfd != fd) {
		zs_set(nfd, NULL);
		zs_unref(prev);
	}
	return dup_to(fd, real.dup2(fd, nfd));
}

EXPORT int dup3(int fd, int nfd, int flags)
{
	INIT();
	struct zs *prev = zs_get(nfd);
	if (prev && nfd != fd) {
		zs_set(nfd, NULL);
		zs_unref(prev);
	}
	return dup_to(fd, real.dup3(fd, nfd, flags));
}

EXPORT int fcntl(int fd, int cmd, ...)
{
	INIT();
	va_list ap;
	va_start(ap, cmd);
	long arg = va_arg(ap, long);
	va_end(ap);
	int r = real.fcntl(fd, cmd, arg);
	struct zs *z = zs_get(fd);
	if (!z || r < 0)
		return r;
	if (cmd == F_SETFL)
		z->nonblock = (arg & O_NONBLOCK) != 0;
	else if (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC)
		dup_to(fd, r);
	return r;
}

EXPORT int fcntl64(int fd, int cmd, ...) __attribute__((alias("fcntl")));

EXPORT int ioctl(int fd, unsigned long req, ...)
{
	INIT();
	va_list ap;
	va_start(ap, req);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	struct zs *z = zs_get(fd);
	if (zs_virt(z) && req == FIONREAD) {
		/* the channel's bytes; once handed back, the bytes it left
		 * and the kernel's */
		pthread_mutex_lock(&z->lock);
		bool handed = hb_check(z);
		int n = handed ? (int)(z->left_n - z->left_off) : zl_sock_nread(z->s);
		pthread_mutex_unlock(&z->lock);
		int k = 0;
		if (handed && real.ioctl(fd, req, &k) < 0)
			return -1;
		if (n < 0) {
			errno = -n;
			return -1;
		}
		*(int *)arg = n + k;
		return 0;
	}
	int r = real.ioctl(fd, req, arg);
	if (z && r == 0 && req == FIONBIO)
		z->nonblock = *(int *)arg != 0;
	return r;
}

/* ------------------------------------------------------------------ */
/* readiness                                                           */

static int tmo_left(int tmo, uint64_t t0);

/* What the channel says of an upgraded descriptor (POLL* bits), arming it
 * when nothing is ready so that the peer rings the kernel socket. */
static int conn_ready(struct zs *z, int events, bool arm)
{
	int want = events & (POLLIN | POLLOUT | POLLRDHUP);
	pthread_mutex_lock(&z->lock);
	if (hb_check(z)) {
		pthread_mutex_unlock(&z->lock);
		return handed_ready(z, want);
	}
	int rev = zl_sock_poll(z->s, want);
	/* arm for what is not ready yet: a connection watched for reading
	 * and writing that has room (writable) still waits for data, and its
	 * peer must ring when the data comes */
	int need = want & ~rev & (POLLIN | POLLOUT);
	if (!want)
		need = POLLIN;
	if (arm && need && !(rev & (POLLIN | POLLRDHUP | POLLERR | POLLHUP)) &&
	    zl_sock_arm(z->s, need) == 1)
		rev = zl_sock_poll(z->s, want);
	/* arming drains the doorbell: a hand-back request read there is
	 * answered now, or nobody would wake for it */
	if (z->hb_seen && hb_check(z))
		rev = handed_ready(z, want);
	pthread_mutex_unlock(&z->lock);
	return rev;
}

/* poll(2) with upgraded descriptors: those ready on their channel answer at
 * once; the kernel waits for the others and for the doorbells. */
static int64_t spin_budget(void);
static void spin_slept(uint64_t waited_ns, bool event);

/* After the kernel answered poll(2) on a set: the carried descriptors'
 * readiness is their channel's, not the kernel's (which is only the
 * doorbell); their flags come down (we are awake), and doorbells that rang
 * for nothing are drained. Returns the count of ready descriptors. */
static int poll_merge(struct pollfd *fds, nfds_t n)
{
	int count = 0;
	for (nfds_t i = 0; i < n; i++) {
		struct zs *z = zs_get(fds[i].fd);
		if (z && z->kind == K_HANDED) {
			if (z->left_off < z->left_n && (fds[i].events & POLLIN))
				fds[i].revents |= POLLIN;
		} else if (z && z->kind == K_CONN) {
			bool rung = fds[i].revents != 0;
			pthread_mutex_lock(&z->lock);
			if (!atomic_load(&z->sleepers)) /* see epoll_once */
				zl__chan_disarm(z->s->ch);
			fds[i].revents = (short)zl_sock_poll(z->s, fds[i].events);
			if (rung && !fds[i].revents)
				zl__chan_bell_drain(z->s->ch);
			if (rung && hb_check(z))
				fds[i].revents = (short)handed_ready(z, fds[i].events);
			pthread_mutex_unlock(&z->lock);
		}
		if (fds[i].revents)
			count++;
	}
	return count;
}

/* Spin phase of poll(): the channels of the upgraded descriptors each
 * time, the kernel (without waiting) every 16th. Returns the count ready,
 * 0 when the budget ran out, -1 when the set has nothing upgraded. */
static int poll_spin(struct pollfd *fds, nfds_t n)
{
	int64_t budget = spin_budget();
	if (budget <= 0)
		return 0;
	uint64_t t0 = zl__now_ns();
	for (uint32_t i = 0;; i++) {
		int ready = 0;
		bool any = false;
		for (nfds_t k = 0; k < n; k++) {
			struct zs *z = zs_get(fds[k].fd);
			if (!zs_virt(z))
				continue;
			any = true;
			if (conn_ready(z, fds[k].events, false))
				ready++;
		}
		if (!any)
			return -1;
		if (ready || (i & 15) == 15) {
			int r = real.poll(fds, n, 0);
			if (r < 0)
				return r;
			int count = poll_merge(fds, n);
			if (count)
				return count;
		}
		if ((int64_t)(zl__now_ns() - t0) >= budget)
			return 0;
		zl_cpu_relax();
	}
}

static int poll_common(struct pollfd *fds, nfds_t n, int tmo_ms, const struct timespec *ts,
		       const sigset_t *sig, bool use_ppoll)
{
	int ready = 0;
	bool any = false;
	bool waits = use_ppoll ? (!ts || ts->tv_sec || ts->tv_nsec) : tmo_ms != 0;
	uint64_t t0 = zl__now_ns();
	if (waits) {
		int r = poll_spin(fds, n);
		if (r > 0 || (r < 0 && r != -1))
			return r;
	}
	for (nfds_t i = 0; i < n; i++) {
		struct zs *z = zs_get(fds[i].fd);
		if (!zs_virt(z))
			continue;
		any = true;
		int rev = conn_ready(z, fds[i].events, true);
		if (rev)
			ready++;
	}
	if (!any)
		return use_ppoll ? real.ppoll(fds, n, ts, sig) : real.poll(fds, n, tmo_ms);
	struct timespec zero = {0, 0};
	int r = use_ppoll ? real.ppoll(fds, n, ready ? &zero : ts, sig)
			  : real.poll(fds, n, ready ? 0 : tmo_ms);
	if (r < 0)
		return r;
	int count = poll_merge(fds, n);
	if (waits && !ready)
		spin_slept(zl__now_ns() - t0, count > 0);
	return count;
}

EXPORT int poll(struct pollfd *fds, nfds_t n, int tmo)
{
	INIT();
	uint64_t t0 = zl__now_ns();
	for (;;) {
		int r = poll_common(fds, n, tmo_left(tmo, t0), NULL, NULL, false);
		if (r != 0 || tmo_left(tmo, t0) == 0)
			return r;
	}
}

EXPORT int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *ts, const sigset_t *sig)
{
	INIT();
	return poll_common(fds, n, -1, ts, sig, true);
}

/* The fortified entry points (_FORTIFY_SOURCE) that programs built with
 * it call instead: checked as the C library checks, then the same. */
extern void __chk_fail(void) __attribute__((noreturn));

EXPORT ssize_t __read_chk(int fd, void *buf, size_t len, size_t buflen)
{
	if (len > buflen)
		__chk_fail();
	return read(fd, buf, len);
}

EXPORT ssize_t __recv_chk(int fd, void *buf, size_t len, size_t buflen, int flags)
{
	if (len > buflen)
		__chk_fail();
	return recv(fd, buf, len, flags);
}

EXPORT ssize_t __recvfrom_chk(int fd, void *buf, size_t len, size_t buflen, int flags,
			      struct sockaddr *addr, socklen_t *alen)
{
	if (len > buflen)
		__chk_fail();
	return recvfrom(fd, buf, len, flags, addr, alen);
}

EXPORT int __poll_chk(struct pollfd *fds, nfds_t n, int tmo, size_t fdslen)
{
	if (fdslen / sizeof(*fds) < n)
		__chk_fail();
	return poll(fds, n, tmo);
}

EXPORT int __ppoll_chk(struct pollfd *fds, nfds_t n, const struct timespec *ts, const sigset_t *sig,
		       size_t fdslen)
{
	if (fdslen / sizeof(*fds) < n)
		__chk_fail();
	return ppoll(fds, n, ts, sig);
}

/* select(2) over upgraded descriptors: done as poll(2), which knows how. */
static int select_common(int nfds, fd_set *r, fd_set *w, fd_set *e, struct timeval *tv,
			 const struct timespec *ts, const sigset_t *sig, bool use_p)
{
	bool any = false;
	for (int fd = 0; fd < nfds && fd < FD_SETSIZE && !any; fd++) {
		struct zs *z = zs_get(fd);
		any = zs_virt(z) && ((r && FD_ISSET(fd, r)) || (w && FD_ISSET(fd, w)));
	}
	if (!any)
		return use_p ? real.pselect(nfds, r, w, e, ts, sig)
			     : real.select(nfds, r, w, e, tv);
	struct pollfd stack[64], *pf = stack;
	int np = 0;
	for (int fd = 0; fd < nfds && fd < FD_SETSIZE; fd++) {
		short ev = (short)((r && FD_ISSET(fd, r) ? POLLIN : 0) |
				   (w && FD_ISSET(fd, w) ? POLLOUT : 0) |
				   (e && FD_ISSET(fd, e) ? POLLPRI : 0));
		if (!ev)
			continue;
		if (np == 64 && pf == stack) {
			pf = malloc(sizeof(*pf) * FD_SETSIZE);
			if (!pf) {
				errno = ENOMEM;
				return -1;
			}
			memcpy(pf, stack, sizeof(stack));
		}
		pf[np].fd = fd;
		pf[np].events = ev;
		pf[np].revents = 0;
		np++;
	}
	int n;
	if (use_p) {
		n = poll_common(pf, (nfds_t)np, -1, ts, sig, true);
	} else {
		int tmo = -1;
		if (tv)
			tmo = (int)(tv->tv_sec * 1000 + (tv->tv_usec + 999) / 1000);
		uint64_t t0 = zl__now_ns();
		for (;;) {
			n = poll_common(pf, (nfds_t)np, tmo_left(tmo, t0), NULL, NULL, false);
			if (n != 0 || tmo_left(tmo, t0) == 0)
				break;
		}
	}
	if (n >= 0) {
		int count = 0;
		for (int i = 0; i < np; i++) {
			int fd = pf[i].fd;
			short rv = pf[i].revents;
			if (pf[i].revents & POLLNVAL) {
				n = -1;
				errno = EBADF;
				break;
			}
			if (r && FD_ISSET(fd, r) && !(rv & (POLLIN | POLLHUP | POLLERR)))
				FD_CLR(fd, r);
			if (w && FD_ISSET(fd, w) && !(rv & (POLLOUT | POLLERR)))
				FD_CLR(fd, w);
			if (e && FD_ISSET(fd, e) && !(rv & POLLPRI))
				FD_CLR(fd, e);
			count += (r && FD_ISSET(fd, r)) + (w && FD_ISSET(fd, w)) +
				 (e && FD_ISSET(fd, e));
		}
		if (n >= 0)
			n = count;
	}
	if (pf != stack)
		free(pf);
	return n;
}

EXPORT int select(int nfds, fd_set *r, fd_set *w, fd_set *e, struct timeval *tv)
{
	INIT();
	return select_common(nfds, r, w, e, tv, NULL, NULL, false);
}

EXPORT int pselect(int nfds, fd_set *r, fd_set *w, fd_set *e, const struct timespec *ts,
		   const sigset_t *sig)
{
	INIT();
	return select_common(nfds, r, w, e, NULL, ts, sig, true);
}

/* epoll: the shim remembers which upgraded descriptors each epoll set
 * watches, with their events and data, so that epoll_wait can report what
 * their channels hold before the kernel sleeps. */
struct ep_watch {
	int epfd, fd;
	uint32_t events;
	epoll_data_t data;
	bool disabled; /* EPOLLONESHOT reported, until EPOLL_CTL_MOD */
	bool nested;   /* fd is an epoll set itself (nested sets) */
	struct ep_watch *next;
};

/* The epoll sets this process made (for nested sets), by descriptor. */
static _Atomic(uint8_t) *epmap[PAGES];

static void ep_mark(int fd, uint8_t v)
{
	if (fd < 0 || fd >= PAGES << PAGE_BITS)
		return;
	pthread_mutex_lock(&tab_lock);
	if (!epmap[fd >> PAGE_BITS] && v)
		epmap[fd >> PAGE_BITS] = calloc(1u << PAGE_BITS, 1);
	if (epmap[fd >> PAGE_BITS])
		atomic_store(&epmap[fd >> PAGE_BITS][fd & ((1 << PAGE_BITS) - 1)], v);
	pthread_mutex_unlock(&tab_lock);
}

static bool is_epoll_fd(int fd)
{
	if (fd < 0 || fd >= PAGES << PAGE_BITS)
		return false;
	_Atomic(uint8_t) *pg = epmap[fd >> PAGE_BITS];
	return pg && atomic_load(&pg[fd & ((1 << PAGE_BITS) - 1)]);
}

EXPORT int epoll_create(int size)
{
	INIT();
	int fd = real.epoll_create(size);
	ep_mark(fd, 1);
	return fd;
}

EXPORT int epoll_create1(int flags)
{
	INIT();
	int fd = real.epoll_create1(flags);
	ep_mark(fd, 1);
	return fd;
}
static struct ep_watch *watches;
static pthread_mutex_t watch_lock = PTHREAD_MUTEX_INITIALIZER;

/* A closed descriptor leaves the epoll sets it was in (as the kernel does
 * once it was the last one), and a closed epoll set forgets its watches. */
static void watches_forget(int fd)
{
	if (!__atomic_load_n(&watches, __ATOMIC_RELAXED))
		return;
	pthread_mutex_lock(&watch_lock);
	for (struct ep_watch **pp = &watches; *pp;) {
		struct ep_watch *w = *pp;
		if (w->fd == fd || w->epfd == fd) {
			*pp = w->next;
			free(w);
		} else {
			pp = &w->next;
		}
	}
	pthread_mutex_unlock(&watch_lock);
}

EXPORT int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
	INIT();
	int r = real.epoll_ctl(epfd, op, fd, ev);
	if (r < 0)
		return r;
	struct zs *z = zs_get(fd);
	pthread_mutex_lock(&watch_lock);
	struct ep_watch **pp = &watches;
	for (; *pp; pp = &(*pp)->next)
		if ((*pp)->epfd == epfd && (*pp)->fd == fd)
			break;
	if (op == EPOLL_CTL_DEL) {
		if (*pp) {
			struct ep_watch *w = *pp;
			*pp = w->next;
			free(w);
		}
	} else if (ev && (zs_virt(z) || (*pp && (*pp)->nested) ||
			  (!z && op == EPOLL_CTL_ADD && is_epoll_fd(fd)))) {
		struct ep_watch *w = *pp;
		if (!w && (w = calloc(1, sizeof(*w)))) {
			w->epfd = epfd;
			w->fd = fd;
			w->next = watches;
			__atomic_store_n(&watches, w, __ATOMIC_RELEASE);
		}
		if (w) {
			w->events = ev->events;
			w->data = ev->data;
			w->disabled = false;
			w->nested = !z;
		}
	}
	pthread_mutex_unlock(&watch_lock);
	return r;
}

static int conn_ready(struct zs *z, int events, bool arm);

/* Whether an epoll set nested in another has a carried connection ready
 * (arming them on the way when the outer set is about to sleep); *any says
 * whether it watches carried connections at all. watch_lock held. */
static bool nested_ready(int epfd, bool arm, int depth, bool *any)
{
	bool ready = false;
	for (struct ep_watch *w = watches; w && !ready; w = w->next) {
		if (w->epfd != epfd || w->disabled)
			continue;
		if (w->nested) {
			if (depth < 4)
				ready = nested_ready(w->fd, arm, depth + 1, any);
			continue;
		}
		struct zs *z = zs_get(w->fd);
		if (!zs_virt(z))
			continue;
		*any = true;
		int rev = conn_ready(z, (int)(w->events & (EPOLLIN | EPOLLOUT | EPOLLRDHUP)), arm);
		ready = (rev & (POLLIN | POLLRDHUP | POLLHUP | POLLERR)) != 0;
	}
	return ready;
}

/* Whether one of the first n events (those the channels reported) has this
 * data: the kernel's copy of the same watch is then not news. */
static bool evs_reported(const struct epoll_event *evs, int n, epoll_data_t data)
{
	for (int j = 0; j < n; j++)
		if (memcmp(&evs[j].data, &data, sizeof(data)) == 0)
			return true;
	return false;
}

static int epoll_once(int epfd, struct epoll_event *evs, int max, int tmo, const sigset_t *sig,
		      bool use_p, bool *dropped, bool spin, bool *any_up)
{
	int n = 0;
	bool any = false;
	pthread_mutex_lock(&watch_lock);
	for (struct ep_watch *w = watches; w; w = w->next) {
		if (w->epfd != epfd || w->disabled)
			continue;
		if (w->nested) {
			/* a nested set is readable when one of its carried
			 * connections is: the kernel sees only their doorbells */
			if (n < max && nested_ready(w->fd, !spin, 1, &any) &&
			    (w->events & EPOLLIN)) {
				evs[n].events = EPOLLIN;
				evs[n].data = w->data;
				if (w->events & EPOLLONESHOT)
					w->disabled = true;
				n++;
			}
			continue;
		}
		struct zs *z = zs_get(w->fd);
		if (!zs_virt(z))
			continue;
		any = true;
		if (n >= max)
			continue;
		int rev =
			conn_ready(z, (int)(w->events & (EPOLLIN | EPOLLOUT | EPOLLRDHUP)), !spin);
		/* EPOLLOUT alone is what the kernel reports too (the socket
		 * is writable): leave it to the kernel when nothing else */
		if (rev & (POLLIN | POLLRDHUP | POLLHUP | POLLERR)) {
			evs[n].events = (uint32_t)rev;
			evs[n].data = w->data;
			if (w->events & EPOLLONESHOT)
				w->disabled = true;
			n++;
		}
	}
	pthread_mutex_unlock(&watch_lock);
	*any_up = any;
	if (spin && (n || tmo != 0 || !any))
		return n; /* spinning: the kernel is asked now and then only (tmo 0) */
	if (!any)
		return use_p ? real.epoll_pwait(epfd, evs, max, tmo, sig)
			     : real.epoll_wait(epfd, evs, max, tmo);
	int k = use_p ? real.epoll_pwait(epfd, evs + n, max - n, n ? 0 : tmo, sig)
		      : real.epoll_wait(epfd, evs + n, max - n, n ? 0 : tmo);
	if (k < 0)
		return n ? n : k;
	/* Awake: take the flags of the set's channels down at once, so that
	 * their peers stop ringing (one doorbell was enough to wake us; each
	 * further one is a system call on their side). */
	pthread_mutex_lock(&watch_lock);
	for (struct ep_watch *w = watches; w; w = w->next) {
		if (w->epfd != epfd)
			continue;
		struct zs *z = zs_get(w->fd);
		if (z && z->kind == K_CONN && z->s && z->s->ch && !atomic_load(&z->sleepers))
			zl__chan_disarm(z->s->ch);
	}
	pthread_mutex_unlock(&watch_lock);
	/* events from the kernel on upgraded descriptors are doorbells: say
	 * what the channel holds instead, and drop them if nothing */
	int out = n;
	for (int i = n; i < n + k; i++) {
		struct ep_watch *w = NULL;
		pthread_mutex_lock(&watch_lock);
		for (struct ep_watch *x = watches; x; x = x->next)
			if (x->epfd == epfd && memcmp(&x->data, &evs[i].data, sizeof(x->data)) == 0)
				w = x;
		struct zs *z = w ? zs_get(w->fd) : NULL;
		uint32_t wev = w ? w->events : 0;
		bool disabled = w && w->disabled;
		bool nested = w && w->nested;
		pthread_mutex_unlock(&watch_lock);
		if (nested) {
			bool dup = evs_reported(evs, n, evs[i].data);
			if (dup || disabled)
				continue; /* reported from the channels already */
		}
		if (z && z->kind == K_CONN && disabled) {
			/* EPOLLONESHOT already reported by us: the kernel's copy
			 * of the watch does not know; the doorbell is not news */
			pthread_mutex_lock(&z->lock);
			zl__chan_bell_drain(z->s->ch);
			hb_check(z);
			pthread_mutex_unlock(&z->lock);
			*dropped = true;
			continue;
		}
		if (z && z->kind == K_HANDED) {
			/* the kernel's own event now; once only, if we reported
			 * the connection's left bytes already */
			bool dup = evs_reported(evs, n, evs[i].data);
			if (dup || disabled) {
				if (!dup)
					*dropped = true;
				continue;
			}
		}
		if (z && z->kind == K_CONN) {
			bool dup = evs_reported(evs, n, evs[i].data);
			if (dup)
				continue;
			pthread_mutex_lock(&z->lock);
			int rev =
				zl_sock_poll(z->s, (int)(wev & (EPOLLIN | EPOLLOUT | EPOLLRDHUP)));
			if (!(rev & POLLOUT) && (wev & EPOLLOUT))
				zl_sock_arm(z->s, POLLOUT);
			if (!rev) /* doorbells, or the end of the kernel connection */
				zl__chan_bell_drain(z->s->ch);
			if (!rev && hb_check(z))
				rev = handed_ready(z,
						   (int)(wev & (EPOLLIN | EPOLLOUT | EPOLLRDHUP)));
			pthread_mutex_unlock(&z->lock);
			if (!rev) {
				*dropped = true;
				continue;
			}
			evs[i].events = (uint32_t)rev;
			if (wev & EPOLLONESHOT) {
				/* reported: disabled until EPOLL_CTL_MOD, here as
				 * in the kernel */
				pthread_mutex_lock(&watch_lock);
				for (struct ep_watch *x = watches; x; x = x->next)
					if (x->epfd == epfd &&
					    memcmp(&x->data, &evs[i].data, sizeof(x->data)) == 0)
						x->disabled = true;
				pthread_mutex_unlock(&watch_lock);
			}
		}
		evs[out++] = evs[i];
	}
	return out;
}

/* Milliseconds left of a timeout that started at t0 (-1: forever). */
static int tmo_left(int tmo, uint64_t t0)
{
	if (tmo < 0)
		return -1;
	uint64_t el = (zl__now_ns() - t0) / 1000000u;
	return el >= (uint64_t)tmo ? 0 : tmo - (int)el;
}

/* The busy-polling policy of poll, select and epoll_wait on sets with
 * upgraded descriptors. A wait spins for the current budget before it
 * sleeps in the kernel. The budget follows how long waits last: a wait that
 * ended (by an event) within the ceiling ($ZEROLINK_SPIN_US, 50 us by
 * default) raises it to twice that wait, so that the next one is caught
 * spinning; a longer wait, or a timeout, halves it, down to a sixteenth of
 * the ceiling. A program that waits long (an idle one) thus spins a few
 * microseconds per wait and sleeps in the kernel as usual. */
static _Atomic int64_t spin_cur = -1;
static int64_t spin_ceil = -1;

static int64_t spin_budget(void)
{
	int64_t b = atomic_load_explicit(&spin_cur, memory_order_relaxed);
	if (b < 0) {
		const char *e = getenv("ZEROLINK_SPIN_US");
		spin_ceil = e && *e ? (int64_t)(strtod(e, NULL) * 1000.0) : 50000;
		if (spin_ceil < 0)
			spin_ceil = 0;
		b = spin_ceil;
		atomic_store_explicit(&spin_cur, b, memory_order_relaxed);
	}
	return b;
}

/* A wait that spun and slept is over after waited_ns; event: it ended by
 * an event rather than by its timeout. */
static void spin_slept(uint64_t waited_ns, bool event)
{
	int64_t b = spin_budget(), full = spin_ceil;
	if (event && (int64_t)waited_ns <= full) {
		int64_t want = 2 * (int64_t)waited_ns;
		b = want > full ? full : (want > b ? want : b);
	} else {
		b = b / 2 > full / 16 ? b / 2 : full / 16;
	}
	atomic_store_explicit(&spin_cur, b, memory_order_relaxed);
}

static int epoll_common(int epfd, struct epoll_event *evs, int max, int tmo, const sigset_t *sig,
			bool use_p)
{
	/* no carried connection in any set: the kernel's call, as it is */
	if (!__atomic_load_n(&watches, __ATOMIC_ACQUIRE))
		return use_p ? real.epoll_pwait(epfd, evs, max, tmo, sig)
			     : real.epoll_wait(epfd, evs, max, tmo);
	uint64_t t0 = zl__now_ns();
	int64_t budget = tmo != 0 ? spin_budget() : 0;
	if (budget > 0) {
		for (uint32_t i = 0;; i++) {
			bool dropped = false, any = false;
			/* the channels every time, the kernel every 16th */
			int n = epoll_once(epfd, evs, max, (i & 15) ? -1 : 0, sig, use_p, &dropped,
					   true, &any);
			if (n != 0)
				return n; /* caught spinning (or the kernel's answer) */
			if (!any)
				break; /* nothing upgraded in this set: no spinning */
			if ((int64_t)(zl__now_ns() - t0) >= budget)
				break;
			zl_cpu_relax();
		}
	}
	for (;;) {
		bool dropped = false, any = false;
		int n = epoll_once(epfd, evs, max, tmo_left(tmo, t0), sig, use_p, &dropped, false,
				   &any);
		/* woken by doorbells only (the data was read meanwhile): the
		 * program asked to wait, so wait on */
		if (n != 0 || !dropped || tmo_left(tmo, t0) == 0) {
			if (any && tmo != 0)
				spin_slept(zl__now_ns() - t0, n > 0);
			return n;
		}
	}
}

EXPORT int epoll_wait(int epfd, struct epoll_event *evs, int max, int tmo)
{
	INIT();
	return epoll_common(epfd, evs, max, tmo, NULL, false);
}

EXPORT int epoll_pwait(int epfd, struct epoll_event *evs, int max, int tmo, const sigset_t *sig)
{
	INIT();
	return epoll_common(epfd, evs, max, tmo, sig, true);
}

/* ------------------------------------------------------------------ */
/* exec                                                                */

/*
 * A carried connection whose descriptor survives exec (no FD_CLOEXEC) is
 * handed back to the kernel path first (see "handing back"). One that
 * cannot be (its peer did not answer in time) cannot continue in the new
 * image: its channel (mappings, control socket) goes with the old one, and
 * the kernel socket holds doorbell bytes, which the new image would read as
 * data. The new image must see a connection reset, never those bytes. The
 * exec functions pass the list of such descriptors in ZEROLINK_ORPHANS
 * ("fd" or "fd:s", s: another process still holds the channel), and the new
 * image's shim marks them: data calls fail with ECONNRESET. A connection no
 * other process holds is also shut down, so that both the new image's
 * waits and the peer see its end.
 */

#define ORPHANS_VAR "ZEROLINK_ORPHANS="

/* Hand back every carried connection whose descriptor would cross exec
 * (see "handing back"); those that cannot be stay K_CONN. */
static void handback_crossing(void)
{
	uint64_t dl = 0;
	for (int p = 0; p < PAGES; p++) {
		if (!tab[p])
			continue;
		for (int i = 0; i < 1 << PAGE_BITS; i++) {
			struct zs *z = atomic_load(&tab[p][i]);
			if (!z || z->kind != K_CONN)
				continue;
			int fd = (p << PAGE_BITS) | i;
			int fl = real.fcntl(fd, F_GETFD);
			if (fl < 0 || (fl & FD_CLOEXEC))
				continue;
			/* one deadline for all: exec waits that long at most */
			if (!dl)
				dl = zl__now_ns() + (uint64_t)exec_wait_ms() * 1000000u;
			pthread_mutex_lock(&z->lock);
			int hb = z->kind == K_CONN ? self_handback(z, dl) : 0;
			pthread_mutex_unlock(&z->lock);
			if (hb == 0)
				dbg("zerolink: fd %d handed back to the kernel path before exec",
				    fd);
			else
				dbg("zerolink: fd %d could not be handed back before exec (%s): "
				    "reset "
				    "in the new image",
				    fd, strerror(-hb));
		}
	}
}

/* "ZEROLINK_ORPHANS=..." for the descriptors that cross exec and cannot
 * continue there (for spawn: held by the parent too), or NULL. Malloc'd. */
static char *orphans_entry(bool spawn)
{
	size_t cap = 256, n = 0;
	char *b = NULL;
	for (int p = 0; p < PAGES; p++) {
		if (!tab[p])
			continue;
		for (int i = 0; i < 1 << PAGE_BITS; i++) {
			struct zs *z = atomic_load(&tab[p][i]);
			if (!z || (z->kind != K_CONN && z->kind != K_ORPHAN && !zs_virt(z)))
				continue;
			int fd = (p << PAGE_BITS) | i;
			int fl = real.fcntl(fd, F_GETFD);
			if (fl < 0 || (fl & FD_CLOEXEC))
				continue;
			if (!b || cap - n < 24) {
				cap *= 2;
				char *nb = realloc(b, cap);
				if (!nb) {
					free(b);
					return NULL;
				}
				if (!b)
					n = (size_t)snprintf(nb, cap, "%s", ORPHANS_VAR);
				b = nb;
			}
			bool shared = spawn || z->forked;
			n += (size_t)snprintf(b + n, cap - n, "%s%d%s",
					      n > sizeof(ORPHANS_VAR) - 1 ? "," : "", fd,
					      shared ? ":s" : "");
		}
	}
	return b;
}

/* envp with our entry in place of any inherited one; *mem to free. */
static char *const *orphans_env(char *const envp[], bool spawn, void **mem)
{
	*mem = NULL;
	handback_crossing();
	char *e = orphans_entry(spawn);
	size_t k = 0;
	bool had = false;
	for (; envp && envp[k]; k++)
		had |= strncmp(envp[k], ORPHANS_VAR, sizeof(ORPHANS_VAR) - 1) == 0;
	if (!e && !had)
		return envp;
	char **v = malloc((k + 2) * sizeof(*v));
	if (!v) {
		free(e);
		return envp;
	}
	size_t j = 0;
	for (size_t i = 0; i < k; i++)
		if (strncmp(envp[i], ORPHANS_VAR, sizeof(ORPHANS_VAR) - 1) != 0)
			v[j++] = envp[i];
	if (e)
		v[j++] = e;
	v[j] = NULL;
	/* one block to free: the array, with the entry's pointer kept last */
	void **m = malloc(2 * sizeof(*m));
	if (!m) {
		free(v);
		free(e);
		return envp;
	}
	m[0] = v;
	m[1] = e;
	*mem = m;
	return v;
}

static void orphans_free(void *mem)
{
	if (!mem)
		return;
	void **m = mem;
	int e = errno;
	free(m[0]);
	free(m[1]);
	free(m);
	errno = e;
}

static void orphans_adopt(void)
{
	const char *e = getenv("ZEROLINK_ORPHANS");
	if (!e)
		return;
	char *list = strdup(e);
	unsetenv("ZEROLINK_ORPHANS");
	if (!list)
		return;
	for (char *save = NULL, *t = strtok_r(list, ",", &save); t;
	     t = strtok_r(NULL, ",", &save)) {
		char *end;
		long fd = strtol(t, &end, 10);
		bool shared = strcmp(end, ":s") == 0;
		struct stat st;
		if (end == t || (*end && !shared) || fd < 0 || fd > INT_MAX || zs_get((int)fd) ||
		    fstat((int)fd, &st) < 0 || !S_ISSOCK(st.st_mode))
			continue;
		struct zs *z = calloc(1, sizeof(*z));
		if (!z)
			break;
		z->kind = K_ORPHAN;
		z->refs = 1;
		z->bell = -1;
		pthread_mutex_init(&z->lock, NULL);
		if (zs_set((int)fd, z) < 0) {
			free(z);
			continue;
		}
		if (!shared)
			real.shutdown((int)fd, SHUT_RDWR);
		dbg("zerolink: fd %ld was carried over zerolink when exec replaced the program: "
		    "it cannot continue (ECONNRESET)",
		    fd);
	}
	free(list);
}

EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
	INIT();
	void *mem;
	char *const *env = orphans_env(envp, false, &mem);
	int r = real.execve(path, argv, env);
	orphans_free(mem);
	return r;
}

EXPORT int execv(const char *path, char *const argv[])
{
	return execve(path, argv, environ);
}

EXPORT int execvpe(const char *file, char *const argv[], char *const envp[])
{
	INIT();
	void *mem;
	char *const *env = orphans_env(envp, false, &mem);
	int r = real.execvpe(file, argv, env);
	orphans_free(mem);
	return r;
}

EXPORT int execvp(const char *file, char *const argv[])
{
	return execvpe(file, argv, environ);
}

EXPORT int fexecve(int fd, char *const argv[], char *const envp[])
{
	INIT();
	void *mem;
	char *const *env = orphans_env(envp, false, &mem);
	int r = real.fexecve(fd, argv, env);
	orphans_free(mem);
	return r;
}

/* execl, execle, execlp: the arguments into an array (and, for execle, the
 * environment after them). */
static char **va_argv(const char *arg0, va_list ap, char ***envp)
{
	va_list aq;
	va_copy(aq, ap);
	size_t n = 1;
	while (va_arg(aq, char *))
		n++;
	va_end(aq);
	char **v = malloc((n + 1) * sizeof(*v));
	if (!v)
		return NULL;
	v[0] = (char *)arg0;
	for (size_t i = 1; i <= n; i++)
		v[i] = va_arg(ap, char *); /* the last is the NULL */
	if (envp)
		*envp = va_arg(ap, char **);
	return v;
}

EXPORT int execl(const char *path, const char *arg0, ...)
{
	va_list ap;
	va_start(ap, arg0);
	char **v = va_argv(arg0, ap, NULL);
	va_end(ap);
	if (!v)
		return -1;
	int r = execve(path, v, environ);
	free(v);
	return r;
}

EXPORT int execle(const char *path, const char *arg0, ...)
{
	va_list ap;
	va_start(ap, arg0);
	char **envp = NULL;
	char **v = va_argv(arg0, ap, &envp);
	va_end(ap);
	if (!v)
		return -1;
	int r = execve(path, v, envp);
	free(v);
	return r;
}

EXPORT int execlp(const char *file, const char *arg0, ...)
{
	va_list ap;
	va_start(ap, arg0);
	char **v = va_argv(arg0, ap, NULL);
	va_end(ap);
	if (!v)
		return -1;
	int r = execvpe(file, v, environ);
	free(v);
	return r;
}

/* posix_spawn: the child's new image inherits the descriptors while this
 * process keeps using them. */
EXPORT int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
		       const posix_spawnattr_t *at, char *const argv[], char *const envp[])
{
	INIT();
	void *mem;
	char *const *env = orphans_env(envp, true, &mem);
	int r = real.posix_spawn(pid, path, fa, at, argv, env);
	orphans_free(mem);
	return r;
}

EXPORT int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa,
			const posix_spawnattr_t *at, char *const argv[], char *const envp[])
{
	INIT();
	void *mem;
	char *const *env = orphans_env(envp, true, &mem);
	int r = real.posix_spawnp(pid, file, fa, at, argv, env);
	orphans_free(mem);
	return r;
}

/* system(3) and popen(3) spawn inside the C library: the connections that
 * would cross are handed back before. One that cannot be (its peer does not
 * answer) reaches the child as it is: the environment the C library passes
 * cannot carry the list of orphans. */
EXPORT int system(const char *cmd)
{
	INIT();
	if (cmd)
		handback_crossing();
	return real.system(cmd);
}

EXPORT FILE *popen(const char *cmd, const char *mode)
{
	INIT();
	handback_crossing();
	return real.popen(cmd, mode);
}
