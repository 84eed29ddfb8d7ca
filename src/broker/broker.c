/* SPDX-License-Identifier: MIT */
/*
 * zerolinkd: names services, checks credentials, sets channels up, tracks
 * membership. Single-threaded, one epoll loop. It is never on the data path:
 * a channel is two domains holding each other's halves; the broker only
 * hands them a control socket pair and reads counters for `zerolink ls`.
 *
 * Every datagram is checked by zl__proto_check() before use; a connection
 * that sends anything malformed is dropped, and nothing else is affected.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <linux/inet_diag.h>
#include <unistd.h>

#include "../lib/internal.h"
#include "broker.h"

enum role { R_NEW, R_MAIN, R_LISTENER, R_WATCH };

struct conn {
	int fd;
	pid_t pid;
	uid_t uid;
	gid_t gid;
	enum role role;
	uint32_t domain;
	struct conn *next;
};

struct domain {
	uint32_t id;
	pid_t pid;
	uid_t uid;
	gid_t gid;
	uint64_t since;
	char name[ZL_NAME_MAX];
	struct conn *main;
	struct domain *next;
};

struct service {
	char name[ZL_NAME_MAX];
	struct zl_proto_listen acl;
	uint32_t domain;
	struct conn *lis;
	struct service *next;
};

struct chan {
	uint64_t id;
	char service[ZL_NAME_MAX];
	uint32_t dom[2]; /* client, server */
	uint32_t mode;
	const struct zl_abi_half *half[2];
	bool up[2];
	struct chan *next;
};

struct region {
	struct zl_proto_region r;
	struct region *next;
};

/* A TCP or Unix stream socket listening in a domain under zerolink
 * (SOCK_LISTEN). */
struct sock_lis {
	uint64_t netns, ino;
	uint32_t domain;
	int family; /* AF_INET, AF_INET6 or AF_UNIX */
	uint8_t addr[16];
	uint16_t port;
	bool any, v6only;
	/* AF_UNIX: the socket file (vdev, vino: as stat(2) gives them), or
	 * the abstract name (namelen > 0, without its leading NUL) */
	uint64_t vdev, vino;
	uint8_t name[108];
	uint16_t namelen;
	struct sock_lis *next;
};

/* A client's channel waiting for the server's accept(2) (SOCK_CONNECT). */
struct sock_pend {
	uint64_t netns;
	uint16_t cport, sport;
	uint64_t cino;   /* AF_UNIX: the client socket's inode (cport is 0) */
	uint32_t domain; /* the client's */
	pid_t pid;
	uid_t uid;
	gid_t gid;
	uint64_t chan;
	int fd; /* the server's end of the control socket */
	struct sock_pend *next;
};

static struct {
	int ep, lfd, lockfd;
	char path[108];
	char idfile[128];
	bool verbose, embedded;
	int idle_exit;
	uid_t uid;
	struct conn *conns;
	struct domain *domains;
	struct service *services;
	struct chan *chans;
	struct region *regions;
	struct sock_lis *slis;
	struct sock_pend *spend;
	uint32_t next_domain, reserved_domain;
	uint64_t next_chan;
	bool stop;
	bool diag_tried;
	int diag; /* NETLINK_SOCK_DIAG, opened on the first Unix socket */
	uint64_t diag_netns;
	uint32_t diag_seq;
} B;

static void logf_(const char *fmt, ...)
{
	if (!B.verbose)
		return;
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "zerolinkd: ");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static uint64_t realtime_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- ids that stay unique across broker restarts ---- */

static void ids_load(void)
{
	B.next_domain = 1;
	FILE *f = fopen(B.idfile, "r");
	if (f) {
		unsigned long v;
		if (fscanf(f, "%lu", &v) == 1 && v > 0 && v < UINT32_MAX - 4096)
			B.next_domain = (uint32_t)v;
		fclose(f);
	}
	B.reserved_domain = B.next_domain;
	/* channel ids: time-based so that a restarted broker does not reuse them */
	B.next_chan = realtime_ns() / 1000;
}

static uint32_t ids_take_domain(void)
{
	if (B.next_domain >= B.reserved_domain) {
		B.reserved_domain = B.next_domain + 256;
		char tmp[160];
		snprintf(tmp, sizeof(tmp), "%s.tmp", B.idfile);
		FILE *f = fopen(tmp, "w");
		if (f) {
			fprintf(f, "%u\n", B.reserved_domain);
			fclose(f);
			rename(tmp, B.idfile);
		}
	}
	return B.next_domain++;
}

/* ---- lookups ---- */

static struct domain *domain_find(uint32_t id)
{
	for (struct domain *d = B.domains; d; d = d->next)
		if (d->id == id)
			return d;
	return NULL;
}

static struct service *service_find(const char *name)
{
	for (struct service *s = B.services; s; s = s->next)
		if (strcmp(s->name, name) == 0)
			return s;
	return NULL;
}

static struct chan *chan_find(uint64_t id)
{
	for (struct chan *c = B.chans; c; c = c->next)
		if (c->id == id)
			return c;
	return NULL;
}

/* ---- replies and events ---- */

static void reply_err(struct conn *c, uint32_t seq, int err, const char *fmt, ...)
{
	struct zl_proto_err e = {.err = err};
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e.text, sizeof(e.text), fmt, ap);
	va_end(ap);
	logf_("pid %d: %s", (int)c->pid, e.text);
	zl__msg_send(c->fd, ZL_MSG_ERR, seq, &e, sizeof(e), NULL, 0);
}

static void event(uint32_t kind, uint32_t domain, uint64_t chan, const char *name)
{
	struct zl_proto_event ev = {.kind = kind, .domain = domain, .chan = chan};
	snprintf(ev.name, sizeof(ev.name), "%s", name ? name : "");
	for (struct conn *c = B.conns; c; c = c->next)
		if (c->role == R_WATCH)
			zl__msg_send(c->fd, ZL_MSG_EVENT, 0, &ev, sizeof(ev), NULL, 0);
}

/* ---- access control ---- */

static bool in_groups(pid_t pid, uint32_t gid)
{
	char path[64], line[4096];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return false;
	bool found = false;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "Groups:", 7) != 0)
			continue;
		char *p = line + 7, *end;
		for (;;) {
			unsigned long g = strtoul(p, &end, 10);
			if (end == p)
				break;
			if (g == gid)
				found = true;
			p = end;
		}
		break;
	}
	fclose(f);
	return found;
}

static bool acl_allows(const struct service *s, const struct conn *c)
{
	struct domain *owner = domain_find(s->domain);
	if (s->acl.flags & ZL_LISTEN_F_ANY)
		return true;
	if (c->uid == 0 || (owner && c->uid == owner->uid) || (s->lis && c->uid == s->lis->uid))
		return true;
	for (uint32_t i = 0; i < s->acl.nuid; i++)
		if (s->acl.uid[i] == c->uid)
			return true;
	for (uint32_t i = 0; i < s->acl.ngid; i++)
		if (s->acl.gid[i] == c->gid || in_groups(c->pid, s->acl.gid[i]))
			return true;
	return false;
}

/* ---- message handlers ---- */

static struct domain *domain_add(uint32_t id, struct conn *c, const char *name)
{
	struct domain *d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	d->id = id;
	d->pid = c->pid;
	d->uid = c->uid;
	d->gid = c->gid;
	d->since = realtime_ns();
	snprintf(d->name, sizeof(d->name), "%s", name);
	d->next = B.domains;
	B.domains = d;
	return d;
}

static int on_hello(struct conn *c, uint32_t seq, const struct zl_proto_hello *h)
{
	if (c->role != R_NEW)
		return -EPROTO;
	uint32_t id = 0;
	struct domain *d = NULL;
	if (h->resume_domain) {
		d = domain_find(h->resume_domain);
		if (d && d->pid == c->pid && !d->main)
			id = d->id; /* its listener got here first */
		else if (!d && h->resume_domain < B.reserved_domain)
			id = h->resume_domain;
		else
			d = NULL;
	}
	if (!id)
		id = ids_take_domain();
	if (!d && !(d = domain_add(id, c, h->name)))
		return -ENOMEM;
	snprintf(d->name, sizeof(d->name), "%s", h->name);
	d->main = c;
	c->role = R_MAIN;
	c->domain = id;
	struct zl_proto_hello_ok ok = {
		.domain = id, .broker_version = ZL_PROTO_VERSION, .broker_pid = (uint32_t)getpid()};
	zl__msg_send(c->fd, ZL_MSG_HELLO_OK, seq, &ok, sizeof(ok), NULL, 0);
	logf_("domain %u up: %s (pid %d uid %d)", id, d->name, (int)c->pid, (int)c->uid);
	event(ZL_EVENT_DOMAIN_UP, id, 0, d->name);
	return 0;
}

static int on_listen(struct conn *c, uint32_t seq, const struct zl_proto_listen *l)
{
	if (c->role != R_NEW)
		return -EPROTO;
	if (!zl__name_ok(l->service, ZL_NAME_MAX)) {
		reply_err(c, seq, EINVAL, "bad service name");
		return 0;
	}
	struct domain *d = domain_find(l->domain);
	if (d && d->pid != c->pid) {
		reply_err(c, seq, EPERM, "domain %u is not yours", l->domain);
		return 0;
	}
	if (service_find(l->service)) {
		reply_err(c, seq, EADDRINUSE, "service '%s' is already offered", l->service);
		return 0;
	}
	if (!d) {
		/* A listener re-offering its service after a broker restart may
		 * arrive before its domain's main connection says hello. */
		if (l->domain == 0 || l->domain >= B.reserved_domain) {
			reply_err(c, seq, EPERM, "unknown domain %u", l->domain);
			return 0;
		}
		if (!(d = domain_add(l->domain, c, "?")))
			return -ENOMEM;
	}
	struct service *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	snprintf(s->name, sizeof(s->name), "%s", l->service);
	s->acl = *l;
	s->domain = l->domain;
	s->lis = c;
	s->next = B.services;
	B.services = s;
	c->role = R_LISTENER;
	c->domain = l->domain;
	zl__msg_send(c->fd, ZL_MSG_OK, seq, NULL, 0, NULL, 0);
	logf_("service '%s' offered by domain %u", s->name, s->domain);
	event(ZL_EVENT_SERVICE_UP, s->domain, 0, s->name);
	return 0;
}

static int on_connect(struct conn *c, uint32_t seq, const struct zl_proto_connect *r)
{
	if (c->role != R_MAIN || r->domain != c->domain)
		return -EPROTO;
	struct service *s = service_find(r->service);
	if (!s) {
		reply_err(c, seq, ECONNREFUSED, "no service '%s'", r->service);
		return 0;
	}
	if (!acl_allows(s, c)) {
		reply_err(c, seq, EACCES, "service '%s' does not admit uid %d", r->service,
			  (int)c->uid);
		return 0;
	}
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		reply_err(c, seq, errno, "socketpair: %s", strerror(errno));
		return 0;
	}
	struct chan *ch = calloc(1, sizeof(*ch));
	if (!ch) {
		close(sv[0]);
		close(sv[1]);
		return -ENOMEM;
	}
	ch->id = ++B.next_chan;
	ch->mode = s->acl.mode > r->mode ? s->acl.mode : r->mode;
	ch->dom[0] = c->domain;
	ch->dom[1] = s->domain;
	snprintf(ch->service, sizeof(ch->service), "%s", s->name);
	struct zl_proto_incoming in = {.chan = ch->id,
				       .peer_domain = c->domain,
				       .peer_pid = (uint32_t)c->pid,
				       .peer_uid = c->uid,
				       .peer_gid = c->gid,
				       .mode = ch->mode};
	snprintf(in.service, sizeof(in.service), "%s", s->name);
	if (zl__msg_send(s->lis->fd, ZL_MSG_INCOMING, 0, &in, sizeof(in), &sv[1], 1) < 0) {
		close(sv[0]);
		close(sv[1]);
		free(ch);
		reply_err(c, seq, ECONNREFUSED, "service '%s' does not take connections",
			  r->service);
		return 0;
	}
	struct zl_proto_incoming ok = in;
	ok.peer_domain = s->domain;
	ok.peer_pid = (uint32_t)s->lis->pid;
	ok.peer_uid = s->lis->uid;
	ok.peer_gid = s->lis->gid;
	zl__msg_send(c->fd, ZL_MSG_CONNECT_OK, seq, &ok, sizeof(ok), &sv[0], 1);
	close(sv[0]);
	close(sv[1]);
	ch->next = B.chans;
	B.chans = ch;
	logf_("channel %llu: domain %u -> '%s' (%s)", (unsigned long long)ch->id, c->domain,
	      s->name, ch->mode ? "isolated" : "shared");
	event(ZL_EVENT_CHAN_UP, c->domain, ch->id, s->name);
	return 0;
}

static void chan_remove(struct chan *ch)
{
	for (struct chan **pp = &B.chans; *pp; pp = &(*pp)->next) {
		if (*pp == ch) {
			*pp = ch->next;
			break;
		}
	}
	for (int i = 0; i < 2; i++)
		if (ch->half[i])
			munmap((void *)ch->half[i], 4096);
	event(ZL_EVENT_CHAN_DOWN, ch->dom[0], ch->id, ch->service);
	free(ch);
}

static int on_chan(struct conn *c, uint8_t type, const struct zl_proto_chan *pc, int fd)
{
	struct chan *ch = chan_find(pc->chan);
	if (c->role != R_MAIN || pc->side > 1 || !ch || ch->dom[pc->side] != c->domain) {
		if (fd >= 0)
			close(fd);
		return 0; /* stale or unknown: ignore, it is only a notice */
	}
	if (type == ZL_MSG_CHAN_UP) {
		struct stat st;
		if (!ch->half[pc->side] && fstat(fd, &st) == 0 && st.st_size >= 4096) {
			void *p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
			if (p != MAP_FAILED) {
				const struct zl_abi_half *h = p;
				if (h->magic == ZL_ABI_HALF_MAGIC) {
					ch->half[pc->side] = h;
				} else {
					munmap(p, 4096);
				}
			}
		}
		close(fd);
		ch->up[pc->side] = true;
	} else {
		ch->up[pc->side] = false;
		if (!ch->up[0] && !ch->up[1])
			chan_remove(ch);
	}
	return 0;
}

static int on_region(struct conn *c, uint8_t type, const struct zl_proto_region *r)
{
	if (c->role != R_MAIN || r->domain != c->domain)
		return 0;
	if (type == ZL_MSG_REGION_UP) {
		struct region *n = calloc(1, sizeof(*n));
		if (!n)
			return -ENOMEM;
		n->r = *r;
		n->next = B.regions;
		B.regions = n;
	} else {
		for (struct region **pp = &B.regions; *pp; pp = &(*pp)->next) {
			if ((*pp)->r.id == r->id && (*pp)->r.domain == c->domain) {
				struct region *d = *pp;
				*pp = d->next;
				free(d);
				break;
			}
		}
	}
	return 0;
}

static void copy_counters(const struct zl_abi_half *h, void *dst)
{
	struct zl_abi_counters cnt;
	if (!h) {
		memset(dst, 0, sizeof(cnt));
		return;
	}
	memcpy(&cnt, &h->cnt, sizeof(cnt));
	memcpy(dst, &cnt, sizeof(cnt));
}

static int on_ls(struct conn *c, uint32_t seq)
{
	for (struct domain *d = B.domains; d; d = d->next) {
		struct zl_proto_ls_domain x = {.domain = d->id,
					       .pid = (uint32_t)d->pid,
					       .uid = d->uid,
					       .gid = d->gid,
					       .since_ns = d->since};
		snprintf(x.name, sizeof(x.name), "%s", d->name);
		zl__msg_send(c->fd, ZL_MSG_LS_DOMAIN, seq, &x, sizeof(x), NULL, 0);
	}
	for (struct service *s = B.services; s; s = s->next) {
		struct zl_proto_ls_service x = {
			.domain = s->domain, .mode = s->acl.mode, .flags = s->acl.flags};
		snprintf(x.service, sizeof(x.service), "%s", s->name);
		zl__msg_send(c->fd, ZL_MSG_LS_SERVICE, seq, &x, sizeof(x), NULL, 0);
	}
	for (struct chan *ch = B.chans; ch; ch = ch->next) {
		struct zl_proto_ls_chan x = {.chan = ch->id,
					     .client = ch->dom[0],
					     .server = ch->dom[1],
					     .mode = ch->mode,
					     .state =
						     (ch->up[0] ? 1u : 0u) | (ch->up[1] ? 2u : 0u)};
		for (int i = 0; i < 2; i++) {
			copy_counters(ch->half[i], &x.cnt[i]);
			if (ch->half[i] && !x.slots && i == 0)
				x.slots = ch->half[i]->slot_count;
		}
		snprintf(x.service, sizeof(x.service), "%s", ch->service);
		zl__msg_send(c->fd, ZL_MSG_LS_CHAN, seq, &x, sizeof(x), NULL, 0);
	}
	for (struct region *r = B.regions; r; r = r->next)
		zl__msg_send(c->fd, ZL_MSG_LS_REGION, seq, &r->r, sizeof(r->r), NULL, 0);
	zl__msg_send(c->fd, ZL_MSG_LS_END, seq, NULL, 0, NULL, 0);
	return 0;
}

/* ---- connections ---- */

/* ------------------------------------------------------------------ */
/* kernel sockets carried over channels (see struct zl_proto_sock)     */

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif

struct sock_facts {
	int family, type, listening;
	int nfam; /* the family of addr and paddr: AF_INET for v4-mapped IPv6 */
	bool connected;
	uint64_t netns, ino;
	uint8_t addr[16], paddr[16];
	uint16_t port, pport; /* 0: unbound, or not connected */
	bool any;             /* bound to the wildcard address */
};

/* An address as (family, 16 bytes, port); IPv4-mapped IPv6 counts as IPv4. */
static int addr_norm(const struct sockaddr_storage *ss, uint8_t a[16], uint16_t *port, bool *any)
{
	memset(a, 0, 16);
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
		memcpy(a, &in->sin_addr, 4);
		*port = ntohs(in->sin_port);
		*any = in->sin_addr.s_addr == htonl(INADDR_ANY);
		return AF_INET;
	}
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
		*port = ntohs(in6->sin6_port);
		if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
			memcpy(a, &in6->sin6_addr.s6_addr[12], 4);
			*any = false;
			return AF_INET;
		}
		memcpy(a, &in6->sin6_addr, 16);
		*any = IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr);
		return AF_INET6;
	}
	return -1;
}

/* What the socket itself says: the broker believes nothing else. */
static int sock_facts(int fd, struct sock_facts *f)
{
	memset(f, 0, sizeof(*f));
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISSOCK(st.st_mode))
		return -ENOTSOCK;
	f->ino = st.st_ino;
	socklen_t l = sizeof(int);
	if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &f->family, &l) < 0)
		return -errno;
	l = sizeof(int);
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &f->type, &l) < 0)
		return -errno;
	l = sizeof(int);
	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &f->listening, &l) < 0)
		return -errno;
	l = sizeof(f->netns);
	if (getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &f->netns, &l) < 0)
		return -errno;
	if (f->type != SOCK_STREAM ||
	    (f->family != AF_INET && f->family != AF_INET6 && f->family != AF_UNIX))
		return -EAFNOSUPPORT;
	struct sockaddr_storage ss;
	if (f->family == AF_UNIX) {
		l = sizeof(ss);
		f->connected = getpeername(fd, (struct sockaddr *)&ss, &l) == 0;
		return 0;
	}
	l = sizeof(ss);
	bool any;
	if (getsockname(fd, (struct sockaddr *)&ss, &l) == 0 &&
	    (f->nfam = addr_norm(&ss, f->addr, &f->port, &f->any)) < 0)
		return -EAFNOSUPPORT;
	l = sizeof(ss);
	if (getpeername(fd, (struct sockaddr *)&ss, &l) == 0)
		addr_norm(&ss, f->paddr, &f->pport, &any);
	return 0;
}

/* What the kernel says of one Unix socket of the broker's network namespace
 * (sock_diag, the interface ss(8) uses): its peer's inode, the file it is
 * bound to, or its abstract name. */
struct unix_facts {
	uint8_t state;       /* TCP_LISTEN (10) for a listener */
	uint32_t peer;       /* 0: none */
	uint64_t vdev, vino; /* 0: not bound to a file */
	uint8_t name[108];   /* abstract name, without its leading NUL */
	uint16_t namelen;    /* 0: none */
};

static int diag_open(void)
{
	if (!B.diag_tried) {
		B.diag_tried = true;
		B.diag = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
		socklen_t l = sizeof(B.diag_netns);
		if (B.diag >= 0 &&
		    getsockopt(B.diag, SOL_SOCKET, SO_NETNS_COOKIE, &B.diag_netns, &l) < 0) {
			close(B.diag);
			B.diag = -1;
		}
		if (B.diag >= 0) {
			struct timeval tv = {1, 0};
			setsockopt(B.diag, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		}
	}
	return B.diag;
}

/* Whether the TCP listener of record x still listens (inet_diag: a socket
 * of its inode in state LISTEN on its port). Unknown (another network
 * namespace, no sock_diag) counts as yes. */
static bool tcp_listener_alive(const struct sock_lis *x)
{
	if (diag_open() < 0 || x->netns != B.diag_netns)
		return true;
	struct {
		struct nlmsghdr nh;
		struct inet_diag_req_v2 r;
	} q;
	memset(&q, 0, sizeof(q));
	q.nh.nlmsg_len = sizeof(q);
	q.nh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
	q.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	q.nh.nlmsg_seq = ++B.diag_seq;
	q.r.sdiag_family = (uint8_t)x->family;
	q.r.sdiag_protocol = IPPROTO_TCP;
	q.r.idiag_states = 1u << 10; /* TCP_LISTEN */
	q.r.id.idiag_sport = htons(x->port);
	if (send(B.diag, &q, sizeof(q), 0) < 0)
		return true;
	bool found = false;
	for (;;) {
		long buf[2048];
		ssize_t n = recv(B.diag, buf, sizeof(buf), 0);
		if (n <= 0)
			return true;
		for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, n);
		     h = NLMSG_NEXT(h, n)) {
			if (h->nlmsg_seq != B.diag_seq)
				continue;
			if (h->nlmsg_type == NLMSG_DONE)
				return found;
			if (h->nlmsg_type == NLMSG_ERROR)
				return true;
			if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY ||
			    h->nlmsg_len < NLMSG_LENGTH(sizeof(struct inet_diag_msg)))
				continue;
			const struct inet_diag_msg *m = NLMSG_DATA(h);
			if (m->idiag_inode == x->ino && ntohs(m->id.idiag_sport) == x->port)
				found = true;
		}
	}
}

/* One sock_diag request (q, its netlink header's seq and len set here)
 * answered by one message: its payload is copied to out (at most cap bytes).
 * Returns the payload's length, or -errno (-ENOENT: no such socket). */
static int diag_exact(void *q, size_t qlen, void *out, size_t cap)
{
	if (diag_open() < 0)
		return -EOPNOTSUPP;
	struct nlmsghdr *qh = q;
	qh->nlmsg_len = (uint32_t)qlen;
	qh->nlmsg_type = SOCK_DIAG_BY_FAMILY;
	qh->nlmsg_flags = NLM_F_REQUEST;
	qh->nlmsg_seq = ++B.diag_seq;
	if (send(B.diag, q, qlen, 0) < 0)
		return -errno;
	for (;;) {
		long buf[1024];
		ssize_t n = recv(B.diag, buf, sizeof(buf), 0);
		if (n < 0)
			return -errno;
		for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, n);
		     h = NLMSG_NEXT(h, n)) {
			if (h->nlmsg_seq != B.diag_seq)
				continue; /* an answer to a request given up on */
			if (h->nlmsg_type == NLMSG_ERROR) {
				const struct nlmsgerr *e = NLMSG_DATA(h);
				return e->error ? e->error : -ENOENT;
			}
			if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY)
				return -EPROTO;
			size_t len = h->nlmsg_len - NLMSG_LENGTH(0);
			if (len > cap)
				len = cap;
			memcpy(out, NLMSG_DATA(h), len);
			return (int)len;
		}
	}
}

static int unix_diag(uint64_t ino, struct unix_facts *u)
{
	memset(u, 0, sizeof(*u));
	struct {
		struct nlmsghdr nh;
		struct unix_diag_req r;
	} q;
	memset(&q, 0, sizeof(q));
	q.r.sdiag_family = AF_UNIX;
	q.r.udiag_states = ~0u;
	q.r.udiag_ino = (uint32_t)ino;
	q.r.udiag_show = UDIAG_SHOW_NAME | UDIAG_SHOW_VFS | UDIAG_SHOW_PEER;
	q.r.udiag_cookie[0] = q.r.udiag_cookie[1] = ~0u; /* no cookie: by inode */
	long buf[512];
	int len = diag_exact(&q, sizeof(q), buf, sizeof(buf));
	if (len < 0)
		return len;
	if ((size_t)len < sizeof(struct unix_diag_msg))
		return -EPROTO;
	const struct unix_diag_msg *m = (const void *)buf;
	if (m->udiag_ino != (uint32_t)ino)
		return -ENOENT;
	u->state = m->udiag_state;
	int alen = len - (int)sizeof(*m);
	const struct nlattr *a = (const void *)(m + 1);
	for (; alen >= (int)sizeof(*a) && a->nla_len >= sizeof(*a) && a->nla_len <= alen;
	     alen -= NLA_ALIGN(a->nla_len),
	     a = (const void *)((const char *)a + NLA_ALIGN(a->nla_len))) {
		const void *d = a + 1;
		size_t dl = a->nla_len - sizeof(*a);
		if (a->nla_type == UNIX_DIAG_PEER && dl >= 4) {
			memcpy(&u->peer, d, 4);
		} else if (a->nla_type == UNIX_DIAG_VFS && dl >= sizeof(struct unix_diag_vfs)) {
			struct unix_diag_vfs v;
			memcpy(&v, d, sizeof(v));
			/* the kernel's device number, as stat(2) encodes it */
			u->vdev = makedev(v.udiag_vfs_dev >> 20, v.udiag_vfs_dev & 0xfffff);
			u->vino = v.udiag_vfs_ino;
		} else if (a->nla_type == UNIX_DIAG_NAME && dl > 1 &&
			   ((const char *)d)[0] == '\0') {
			u->namelen =
				(uint16_t)(dl - 1 < sizeof(u->name) ? dl - 1 : sizeof(u->name));
			memcpy(u->name, (const char *)d + 1, u->namelen);
		}
	}
	return 0;
}

/* The inode of the client socket of the TCP connection whose accepted end
 * has facts f (its peer's address is the client's own), 0 if unknown
 * (another network namespace, or gone). */
static uint32_t tcp_client_ino(const struct sock_facts *f)
{
	if (diag_open() < 0 || f->netns != B.diag_netns || !f->pport)
		return 0;
	struct {
		struct nlmsghdr nh;
		struct inet_diag_req_v2 r;
	} q;
	memset(&q, 0, sizeof(q));
	q.r.sdiag_family = (uint8_t)f->nfam;
	q.r.sdiag_protocol = IPPROTO_TCP;
	q.r.idiag_states = ~0u;
	q.r.id.idiag_sport = htons(f->pport);
	q.r.id.idiag_dport = htons(f->port);
	size_t al = f->nfam == AF_INET ? 4 : 16;
	memcpy(q.r.id.idiag_src, f->paddr, al);
	memcpy(q.r.id.idiag_dst, f->addr, al);
	q.r.id.idiag_cookie[0] = q.r.id.idiag_cookie[1] = ~0u; /* no cookie */
	struct inet_diag_msg m;
	int len = diag_exact(&q, sizeof(q), &m, sizeof(m));
	if (len < (int)sizeof(m) || ntohs(m.id.idiag_sport) != f->pport)
		return 0;
	return m.idiag_inode;
}

static void sock_lis_remove(uint64_t netns, uint64_t ino, uint32_t domain)
{
	for (struct sock_lis **pp = &B.slis; *pp;) {
		struct sock_lis *x = *pp;
		if ((x->netns == netns && x->ino == ino) || (ino == 0 && x->domain == domain)) {
			*pp = x->next;
			logf_("tcp listener :%u of domain %u withdrawn", x->port, x->domain);
			free(x);
		} else {
			pp = &x->next;
		}
	}
}

static void sock_pend_free(struct sock_pend *p)
{
	close(p->fd);
	free(p);
}

/* Drop waiting channels whose client is gone (its end hung up), those of a
 * domain that went away (domain != 0), those of one client port, and that of
 * one Unix client socket (cino). */
static void sock_pend_sweep(uint32_t domain, uint64_t netns, uint16_t cport, uint64_t cino)
{
	for (struct sock_pend **pp = &B.spend; *pp;) {
		struct sock_pend *p = *pp;
		struct pollfd pf = {.fd = p->fd, .events = 0};
		bool gone = poll(&pf, 1, 0) > 0 && (pf.revents & (POLLHUP | POLLERR));
		if (gone || (domain && p->domain == domain) ||
		    (cport && p->cport == cport && p->netns == netns) ||
		    (cino && p->cino == cino && p->netns == netns)) {
			*pp = p->next;
			struct chan *ch = chan_find(p->chan);
			if (ch)
				chan_remove(ch);
			sock_pend_free(p);
		} else {
			pp = &p->next;
		}
	}
}

/* A client under zerolink is about to connect to a listener of domain
 * ldomain: make the channel, keep its server end until the accept, and give
 * the client its end. */
static int sock_pend_new(struct conn *c, uint32_t seq, uint64_t netns, uint16_t cport,
			 uint16_t sport, uint64_t cino, uint32_t ldomain, const char *svc)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		reply_err(c, seq, errno, "socketpair: %s", strerror(errno));
		return 0;
	}
	struct sock_pend *p = calloc(1, sizeof(*p));
	struct chan *ch = calloc(1, sizeof(*ch));
	if (!p || !ch) {
		free(p);
		free(ch);
		close(sv[0]);
		close(sv[1]);
		return -ENOMEM;
	}
	ch->id = ++B.next_chan;
	ch->mode = ZL_PROTO_MODE_ISOLATED;
	ch->dom[0] = c->domain;
	ch->dom[1] = ldomain;
	snprintf(ch->service, sizeof(ch->service), "%s", svc);
	ch->next = B.chans;
	B.chans = ch;
	p->netns = netns;
	p->cport = cport;
	p->sport = sport;
	p->cino = cino;
	p->domain = c->domain;
	p->pid = c->pid;
	p->uid = c->uid;
	p->gid = c->gid;
	p->chan = ch->id;
	p->fd = sv[1];
	p->next = B.spend;
	B.spend = p;
	struct zl_proto_incoming in = {.mode = ZL_PROTO_MODE_ISOLATED};
	in.chan = ch->id;
	in.peer_domain = ldomain;
	snprintf(in.service, sizeof(in.service), "%s", ch->service);
	zl__msg_send(c->fd, ZL_MSG_SOCK_OK, seq, &in, sizeof(in), &sv[0], 1);
	close(sv[0]);
	event(ZL_EVENT_CHAN_UP, c->domain, ch->id, ch->service);
	return 0;
}

/* The server accepted the connection of waiting channel p (taken off the
 * list): it gets the channel's other end. */
static void sock_pend_give(struct conn *c, uint32_t seq, struct sock_pend *p)
{
	struct zl_proto_incoming in = {.mode = ZL_PROTO_MODE_ISOLATED};
	struct chan *ch = chan_find(p->chan);
	if (ch)
		ch->dom[1] = c->domain;
	in.chan = p->chan;
	in.peer_domain = p->domain;
	in.peer_pid = (uint32_t)p->pid;
	in.peer_uid = p->uid;
	in.peer_gid = p->gid;
	if (ch)
		snprintf(in.service, sizeof(in.service), "%s", ch->service);
	zl__msg_send(c->fd, ZL_MSG_SOCK_OK, seq, &in, sizeof(in), &p->fd, 1);
	sock_pend_free(p);
}

/* SOCK_* for a Unix stream socket (facts f, already read from fd). Only
 * sockets of the broker's own network namespace: sock_diag answers for
 * that one. */
static int on_sock_unix(struct conn *c, uint8_t type, uint32_t seq, const struct zl_proto_sock *b,
			int fd, const struct sock_facts *f)
{
	struct unix_facts u;
	int err = diag_open() < 0 ? -EOPNOTSUPP : f->netns != B.diag_netns ? -EXDEV : 0;
	if (!err)
		err = unix_diag(f->ino, &u);
	close(fd);
	if (err == -EXDEV) {
		reply_err(c, seq, EXDEV,
			  "unix sockets are carried in the broker's network namespace only");
		return 0;
	}
	if (err) {
		reply_err(c, seq, -err, "sock_diag: %s", strerror(-err));
		return 0;
	}
	if (type == ZL_MSG_SOCK_UNLISTEN) {
		sock_lis_remove(f->netns, f->ino, 0);
		zl__msg_send(c->fd, ZL_MSG_OK, seq, NULL, 0, NULL, 0);
		return 0;
	}
	if (type == ZL_MSG_SOCK_CANCEL) {
		sock_pend_sweep(0, f->netns, 0, f->ino);
		zl__msg_send(c->fd, ZL_MSG_OK, seq, NULL, 0, NULL, 0);
		return 0;
	}
	if (type == ZL_MSG_SOCK_LISTEN) {
		if (!f->listening || (!u.vino && !u.namelen)) {
			reply_err(c, seq, EINVAL, "not a bound, listening unix socket");
			return 0;
		}
		sock_lis_remove(f->netns, f->ino, 0);
		struct sock_lis *x = calloc(1, sizeof(*x));
		if (!x)
			return -ENOMEM;
		x->netns = f->netns;
		x->ino = f->ino;
		x->domain = c->domain;
		x->family = AF_UNIX;
		x->vdev = u.vdev;
		x->vino = u.vino;
		x->namelen = u.namelen;
		memcpy(x->name, u.name, u.namelen);
		x->next = B.slis;
		B.slis = x;
		logf_("unix listener (inode %lu) offered by domain %u", (unsigned long)f->ino,
		      x->domain);
		zl__msg_send(c->fd, ZL_MSG_OK, seq, NULL, 0, NULL, 0);
		return 0;
	}
	if (type == ZL_MSG_SOCK_ACCEPT) {
		struct sock_pend **pp = &B.spend, *p = NULL;
		for (; u.peer && *pp; pp = &(*pp)->next) {
			if ((*pp)->netns == f->netns && (*pp)->cino == u.peer) {
				p = *pp;
				break;
			}
		}
		if (f->listening || !p) {
			reply_err(c, seq, ENOENT, "no client under zerolink on this connection");
			return 0;
		}
		*pp = p->next;
		sock_pend_give(c, seq, p);
		return 0;
	}
	/* SOCK_CONNECT: an unconnected socket, and the destination's file or
	 * abstract name */
	if (f->listening || f->connected) {
		reply_err(c, seq, EINVAL, "the socket must not be connected yet");
		return 0;
	}
	uint64_t vdev, vino;
	memcpy(&vdev, b->addr, 8);
	memcpy(&vino, b->addr + 8, 8);
	struct sock_lis *x = B.slis;
	for (; x; x = x->next) {
		if (x->family != AF_UNIX || x->netns != f->netns)
			continue;
		if (b->namelen ? x->namelen == b->namelen && !memcmp(x->name, b->name, b->namelen)
			       : !x->namelen && x->vino == vino && x->vdev == vdev)
			break;
	}
	/* the record may be stale: its socket closed by every holder (after a
	 * fork nobody withdraws it), and the file replaced by another whose
	 * inode number was reused. Only a live listener bound there counts. */
	struct unix_facts lu;
	if (x && (unix_diag(x->ino, &lu) != 0 || lu.state != 10 /* TCP_LISTEN */ ||
		  lu.namelen != x->namelen || memcmp(lu.name, x->name, x->namelen) != 0 ||
		  lu.vdev != x->vdev || lu.vino != x->vino)) {
		sock_lis_remove(x->netns, x->ino, 0);
		x = NULL;
	}
	if (!x) {
		reply_err(c, seq, ENOENT, "nobody under zerolink listens there");
		return 0;
	}
	sock_pend_sweep(0, f->netns, 0, f->ino);
	char svc[ZL_NAME_MAX];
	if (x->namelen)
		snprintf(svc, sizeof(svc), "unix:@%.*s", (int)x->namelen, (const char *)x->name);
	else
		snprintf(svc, sizeof(svc), "unix:%lu", (unsigned long)x->vino);
	for (char *q = svc; *q; q++)
		if ((unsigned char)*q < 32 || (unsigned char)*q > 126)
			*q = '?';
	return sock_pend_new(c, seq, f->netns, 0, 0, f->ino, x->domain, svc);
}

static int on_sock(struct conn *c, uint8_t type, uint32_t seq, const struct zl_proto_sock *b,
		   int fd)
{
	if (c->role != R_MAIN || b->domain != c->domain) {
		close(fd);
		return -EPROTO;
	}
	struct sock_facts f;
	int err = sock_facts(fd, &f);
	if (!err && f.family == AF_UNIX)
		return on_sock_unix(c, type, seq, b, fd, &f);
	if (type == ZL_MSG_SOCK_LISTEN && !err) {
		if (!f.listening || !f.port) {
			err = -EINVAL;
		} else {
			sock_lis_remove(f.netns, f.ino, 0);
			struct sock_lis *x = calloc(1, sizeof(*x));
			if (!x) {
				close(fd);
				return -ENOMEM;
			}
			x->netns = f.netns;
			x->ino = f.ino;
			x->domain = c->domain;
			x->family = f.family;
			memcpy(x->addr, f.addr, 16);
			x->port = f.port;
			x->any = f.any;
			int v6only = 0;
			socklen_t l = sizeof(v6only);
			if (f.family == AF_INET6)
				getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &l);
			x->v6only = v6only != 0;
			x->next = B.slis;
			B.slis = x;
			logf_("tcp listener :%u offered by domain %u", x->port, x->domain);
		}
	} else if (type == ZL_MSG_SOCK_UNLISTEN && !err) {
		sock_lis_remove(f.netns, f.ino, 0);
	} else if (type == ZL_MSG_SOCK_CANCEL && !err) {
		sock_pend_sweep(0, f.netns, f.port, f.ino);
	}
	close(fd);
	if (type == ZL_MSG_SOCK_LISTEN || type == ZL_MSG_SOCK_UNLISTEN ||
	    type == ZL_MSG_SOCK_CANCEL) {
		if (err)
			reply_err(c, seq, -err, "not a socket this broker can carry");
		else
			zl__msg_send(c->fd, ZL_MSG_OK, seq, NULL, 0, NULL, 0);
		return 0;
	}
	if (err) {
		reply_err(c, seq, -err, "not a TCP socket");
		return 0;
	}
	if (type == ZL_MSG_SOCK_ACCEPT) {
		/* the client socket itself (inet_diag), in our namespace; by
		 * the pair of ports in another */
		uint32_t ci = f.listening ? 0 : tcp_client_ino(&f);
		struct sock_pend **pp = &B.spend, *p = NULL;
		for (; *pp; pp = &(*pp)->next) {
			if ((*pp)->netns != f.netns)
				continue;
			if ((*pp)->cino ? ci && (*pp)->cino == ci
					: (*pp)->cport == f.pport && (*pp)->sport == f.port) {
				p = *pp;
				break;
			}
		}
		if (f.listening || !f.pport || !p) {
			reply_err(c, seq, ENOENT, "no client under zerolink on this connection");
			return 0;
		}
		*pp = p->next;
		sock_pend_give(c, seq, p);
		return 0;
	}
	/* SOCK_CONNECT: a bound client socket, and a destination */
	uint8_t dst[16] = {0};
	int dfam = (int)b->family;
	bool dany = false;
	if (dfam == AF_INET) {
		memcpy(dst, b->addr, 4);
	} else {
		struct sockaddr_storage ss = {.ss_family = AF_INET6};
		memcpy(&((struct sockaddr_in6 *)&ss)->sin6_addr, b->addr, 16);
		uint16_t pdummy;
		dfam = addr_norm(&ss, dst, &pdummy, &dany);
	}
	/* In the broker's network namespace the waiting channel is kept under
	 * the client socket's inode, which the accepted socket leads back to
	 * (inet_diag): the client needs no port before its connect, and takes
	 * the one the kernel's connect picks (which reuses ports in TIME_WAIT
	 * as it does for every client). Elsewhere, under its pair of ports:
	 * the client binds first. */
	bool by_ino = diag_open() >= 0 && f.netns == B.diag_netns;
	if (f.listening || f.pport) {
		reply_err(c, seq, EINVAL, "the socket must not be connected yet");
		return 0;
	}
	if (!by_ino && !f.port) {
		reply_err(c, seq, EXDEV, "another network namespace: bind the socket first");
		return 0;
	}
	struct sock_lis *x = B.slis;
	for (; x; x = x->next) {
		if (x->netns != f.netns || x->port != b->port)
			continue;
		if (x->family == dfam && (x->any || memcmp(x->addr, dst, 16) == 0))
			break;
		if (x->family == AF_INET6 && dfam == AF_INET && x->any && !x->v6only)
			break;
	}
	/* a record whose socket every holder closed (after a fork nobody
	 * withdraws it) must not catch a port another program now listens on */
	if (x && !tcp_listener_alive(x)) {
		sock_lis_remove(x->netns, x->ino, 0);
		x = NULL;
	}
	if (!x) {
		reply_err(c, seq, ENOENT, "nobody under zerolink listens there");
		return 0;
	}
	sock_pend_sweep(0, f.netns, by_ino ? 0 : f.port, by_ino ? f.ino : 0);
	char svc[ZL_NAME_MAX];
	snprintf(svc, sizeof(svc), "tcp:%u", x->port);
	return sock_pend_new(c, seq, f.netns, by_ino ? 0 : f.port, x->port, by_ino ? f.ino : 0,
			     x->domain, svc);
}

static void conn_drop(struct conn *c)
{
	for (struct conn **pp = &B.conns; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	epoll_ctl(B.ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	if (c->role == R_LISTENER) {
		for (struct service **pp = &B.services; *pp; pp = &(*pp)->next) {
			if ((*pp)->lis == c) {
				struct service *s = *pp;
				*pp = s->next;
				logf_("service '%s' withdrawn", s->name);
				event(ZL_EVENT_SERVICE_DOWN, s->domain, 0, s->name);
				free(s);
				break;
			}
		}
	}
	if (c->role == R_MAIN) {
		uint32_t id = c->domain;
		for (struct domain **pp = &B.domains; *pp; pp = &(*pp)->next) {
			if ((*pp)->id == id) {
				struct domain *d = *pp;
				*pp = d->next;
				logf_("domain %u down: %s", id, d->name);
				event(ZL_EVENT_DOMAIN_DOWN, id, 0, d->name);
				free(d);
				break;
			}
		}
		sock_lis_remove(0, 0, id);
		sock_pend_sweep(id, 0, 0, 0);
		for (struct region **pp = &B.regions; *pp;) {
			if ((*pp)->r.domain == id) {
				struct region *r = *pp;
				*pp = r->next;
				free(r);
			} else {
				pp = &(*pp)->next;
			}
		}
		for (struct chan *ch = B.chans, *nx; ch; ch = nx) {
			nx = ch->next;
			for (int i = 0; i < 2; i++)
				if (ch->dom[i] == id)
					ch->up[i] = false;
			if (!ch->up[0] && !ch->up[1])
				chan_remove(ch);
		}
	}
	free(c);
}

static void conn_accept(void)
{
	int fd = accept4(B.lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd < 0)
		return;
	struct ucred cr;
	socklen_t len = sizeof(cr);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0) {
		close(fd);
		return;
	}
	struct conn *c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return;
	}
	c->fd = fd;
	c->pid = cr.pid;
	c->uid = cr.uid;
	c->gid = cr.gid;
	struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
	if (epoll_ctl(B.ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
		close(fd);
		free(c);
		return;
	}
	c->next = B.conns;
	B.conns = c;
}

/* Handle one datagram; returns <0 to drop the connection. */
int zl__broker_handle(struct conn *c, const char *buf, size_t len, int *fds, int nfds);

int zl__broker_handle(struct conn *c, const char *buf, size_t len, int *fds, int nfds)
{
	int type = zl__proto_check(buf, len, nfds);
	if (type < 0) {
		zl__close_fds(fds, nfds);
		logf_("pid %d sent a malformed message: dropped", (int)c->pid);
		return -EPROTO;
	}
	struct zl_proto_hdr h;
	memcpy(&h, buf, sizeof(h));
	const char *body = buf + sizeof(h);
	union {
		struct zl_proto_hello hello;
		struct zl_proto_listen listen;
		struct zl_proto_connect connect;
		struct zl_proto_chan chan;
		struct zl_proto_region region;
		struct zl_proto_sock sock;
	} u;
	size_t blen = len - sizeof(h);
	if (blen > sizeof(u)) {
		zl__close_fds(fds, nfds);
		return -EPROTO;
	}
	memcpy(&u, body, blen);
	switch (type) {
	case ZL_MSG_HELLO:
		return on_hello(c, h.seq, &u.hello);
	case ZL_MSG_LISTEN:
		return on_listen(c, h.seq, &u.listen);
	case ZL_MSG_CONNECT:
		return on_connect(c, h.seq, &u.connect);
	case ZL_MSG_CHAN_UP:
	case ZL_MSG_CHAN_DOWN:
		return on_chan(c, (uint8_t)type, &u.chan, nfds ? fds[0] : -1);
	case ZL_MSG_REGION_UP:
	case ZL_MSG_REGION_DOWN:
		return on_region(c, (uint8_t)type, &u.region);
	case ZL_MSG_SOCK_LISTEN:
	case ZL_MSG_SOCK_UNLISTEN:
	case ZL_MSG_SOCK_CONNECT:
	case ZL_MSG_SOCK_ACCEPT:
	case ZL_MSG_SOCK_CANCEL:
		return on_sock(c, (uint8_t)type, h.seq, &u.sock, fds[0]);
	case ZL_MSG_LS:
		return on_ls(c, h.seq);
	case ZL_MSG_WATCH:
		if (c->role != R_NEW)
			return -EPROTO;
		c->role = R_WATCH;
		zl__msg_send(c->fd, ZL_MSG_OK, h.seq, NULL, 0, NULL, 0);
		return 0;
	case ZL_MSG_SHUTDOWN:
		if (c->uid != 0 && c->uid != B.uid) {
			reply_err(c, h.seq, EPERM, "only root or the broker's user may stop it");
			return 0;
		}
		zl__msg_send(c->fd, ZL_MSG_OK, h.seq, NULL, 0, NULL, 0);
		B.stop = true;
		return 0;
	default:
		zl__close_fds(fds, nfds);
		return -EPROTO; /* a broker-to-domain or peer message sent to us */
	}
}

static void conn_read(struct conn *c)
{
	for (;;) {
		char buf[ZL_PROTO_MAX];
		int fds[4];
		int nfds = 4;
		ssize_t n = zl__msg_recv(c->fd, buf, sizeof(buf), fds, &nfds, true);
		if (n == -EAGAIN)
			return;
		if (n <= 0 || zl__broker_handle(c, buf, (size_t)n, fds, nfds) < 0) {
			conn_drop(c);
			return;
		}
	}
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: zerolinkd [--socket PATH] [--embedded] [--public] [--idle-exit SEC] [-v]\n"
		"  Runs the zerolink broker: service names, credentials, channel set-up and\n"
		"  membership. Not on the data path: channels keep working if it restarts.\n"
		"  --socket PATH    listen here (default: $ZEROLINK_BROKER, else\n"
		"                   $XDG_RUNTIME_DIR/zerolink/broker.sock, else\n"
		"                   /tmp/zerolink-UID/broker.sock)\n"
		"  --embedded       started on demand: daemonize once listening, and exit\n"
		"                   after --idle-exit seconds (default 10) with no domain\n"
		"  --public         let every local user reach the socket (mode 0666);\n"
		"                   access is then decided per service\n"
		"  --idle-exit SEC  exit after SEC seconds without connections (0: never)\n"
		"  -v, --verbose    log to standard error\n");
}

int zl_broker_main(int argc, char **argv)
{
	static const struct option lo[] = {
		{"socket", required_argument, 0, 's'},
		{"embedded", no_argument, 0, 'e'},
		{"public", no_argument, 0, 'p'},
		{"idle-exit", required_argument, 0, 'i'},
		{"verbose", no_argument, 0, 'v'},
		{"help", no_argument, 0, 'h'},
		{0, 0, 0, 0},
	};
	memset(&B, 0, sizeof(B));
	B.idle_exit = -1;
	bool public = false;
	int o;
	optind = 1;
	while ((o = getopt_long(argc, argv, "s:epi:vh", lo, NULL)) != -1) {
		switch (o) {
		case 's':
			if (strlen(optarg) >= sizeof(B.path)) {
				fprintf(stderr, "zerolinkd: socket path too long: %s\n", optarg);
				return 2;
			}
			snprintf(B.path, sizeof(B.path), "%s", optarg);
			break;
		case 'e':
			B.embedded = true;
			break;
		case 'p':
			public
			= true;
			break;
		case 'i':
			B.idle_exit = atoi(optarg);
			break;
		case 'v':
			B.verbose = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!B.path[0] && zl_broker_default_path(B.path, sizeof(B.path)) < 0) {
		fprintf(stderr, "zerolinkd: default socket path too long\n");
		return 2;
	}
	if (B.idle_exit < 0)
		B.idle_exit = B.embedded ? 10 : 0;
	B.uid = getuid();
	signal(SIGPIPE, SIG_IGN);

	char dir[sizeof(B.path)];
	snprintf(dir, sizeof(dir), "%s", B.path);
	char *slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		mkdir(dir, public ? 0755 : 0700);
	}
	char lockpath[160];
	snprintf(lockpath, sizeof(lockpath), "%s.lock", B.path);
	snprintf(B.idfile, sizeof(B.idfile), "%s.ids", B.path);
	B.lockfd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (B.lockfd < 0) {
		fprintf(stderr, "zerolinkd: cannot open %s: %s\n", lockpath, strerror(errno));
		return 1;
	}
	if (flock(B.lockfd, LOCK_EX | LOCK_NB) < 0) {
		if (B.embedded)
			return 0; /* another one won the race to start: fine */
		fprintf(stderr, "zerolinkd: another broker is running on %s\n", B.path);
		return 1;
	}
	ids_load();
	unlink(B.path);
	B.lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", B.path);
	if (B.lfd < 0 || bind(B.lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(B.lfd, 512) < 0) {
		fprintf(stderr, "zerolinkd: cannot listen on %s: %s\n", B.path, strerror(errno));
		return 1;
	}
	chmod(B.path, public ? 0666 : 0600);
	if (B.embedded) {
		pid_t pid = fork();
		if (pid < 0) {
			fprintf(stderr, "zerolinkd: fork: %s\n", strerror(errno));
			return 1;
		}
		if (pid > 0)
			_exit(0); /* the socket listens already: the starter may connect */
		setsid();
		int nul = open("/dev/null", O_RDWR);
		if (nul >= 0) {
			dup2(nul, 0);
			dup2(nul, 1);
			if (!B.verbose)
				dup2(nul, 2);
			if (nul > 2)
				close(nul);
		}
		if (chdir("/") < 0) {
			/* nothing to do: the broker uses absolute paths only */
		}
	}
	B.ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
	epoll_ctl(B.ep, EPOLL_CTL_ADD, B.lfd, &ev);
	logf_("listening on %s (pid %d)", B.path, (int)getpid());
	sigset_t ss;
	sigemptyset(&ss);
	sigaddset(&ss, SIGTERM);
	sigaddset(&ss, SIGINT);
	int sfd = -1;
	if (sigprocmask(SIG_BLOCK, &ss, NULL) == 0) {
		sfd = signalfd(-1, &ss, SFD_CLOEXEC);
		struct epoll_event sev = {.events = EPOLLIN, .data.ptr = &B};
		if (sfd >= 0)
			epoll_ctl(B.ep, EPOLL_CTL_ADD, sfd, &sev);
	}
	uint64_t idle_since = zl__now_ns();
	while (!B.stop) {
		struct epoll_event evs[32];
		int n = epoll_wait(B.ep, evs, 32, 1000);
		if (n < 0 && errno != EINTR)
			break;
		for (int i = 0; i < n; i++) {
			if (evs[i].data.ptr == NULL)
				conn_accept();
			else if (evs[i].data.ptr == &B)
				B.stop = true;
			else
				conn_read(evs[i].data.ptr);
		}
		if (B.conns)
			idle_since = zl__now_ns();
		else if (B.idle_exit > 0 &&
			 zl__now_ns() - idle_since > (uint64_t)B.idle_exit * 1000000000ull)
			break;
	}
	logf_("exiting");
	/* We still hold the lock, so no successor has bound the path yet. */
	unlink(B.path);
	while (B.conns)
		conn_drop(B.conns);
	close(B.lfd);
	close(B.ep);
	close(B.lockfd);
	return 0;
}
