/* SPDX-License-Identifier: MIT */
/*
 * zerolink-iohost: the I/O host daemon.
 *
 * The main thread is the control thread: it accepts block queues on the
 * devices' services and hands them to sidecores, serves the control socket,
 * and rebalances queues between sidecores. It is never on the request path.
 */
#include <errno.h>
#include <malloc.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <unistd.h>

#include "../lib/barrier.h"
#include "ctlpath.h"
#include "iohost.h"

struct iohost *ioh;

/* epoll tags of the control thread */
enum { EV_CTL = 1, EV_SIG, EV_TIMER, EV_LIS, EV_NBD };

struct ev_tag {
	int kind;
	struct device *dev;
	int fd;       /* EV_NBD: the listener */
	bool is_unix; /* EV_NBD */
};

static struct ev_tag tag_ctl = {.kind = EV_CTL}, tag_sig = {.kind = EV_SIG},
		     tag_timer = {.kind = EV_TIMER}, tag_nbd[4];

static struct device *dev_find(const char *name)
{
	for (struct device *d = ioh->devs; d; d = d->next)
		if (!strcmp(d->conf.name, name))
			return d;
	return NULL;
}

int ioh_tenant_set(const struct tenantconf *t, char *err, size_t errlen)
{
	int r = tenantconf_check(t, err, errlen);
	if (r)
		return r;
	struct device *d = ioh_dev_get(t->device);
	if (!d) {
		snprintf(err, errlen, "tenant %s: no device %s", t->name, t->device);
		return -ENOENT;
	}
	r = qos_set(d, t, err, errlen);
	dev_put(d);
	return r;
}

int ioh_add_device(const struct devconf *c, char *err, size_t errlen)
{
	pthread_mutex_lock(&ioh->lock);
	bool dup = dev_find(c->name) != NULL;
	pthread_mutex_unlock(&ioh->lock);
	if (dup) {
		snprintf(err, errlen, "device %s exists", c->name);
		return -EEXIST;
	}
	struct device *d;
	int r = dev_create(c, &d, err, errlen);
	if (r)
		return r;
	struct zl_listen_opts lo = {.mode = ZL_MODE_SHARED};
	if (c->any_user)
		lo.flags = ZL_LISTEN_ANY;
	memcpy(lo.uids, c->uids, sizeof(lo.uids));
	memcpy(lo.gids, c->gids, sizeof(lo.gids));
	lo.nuids = c->nuids;
	lo.ngids = c->ngids;
	char service[64];
	snprintf(service, sizeof(service), "%s%s", ZL_BLK_SERVICE_PREFIX, c->name);
	if ((r = zl_listen(ioh->ctx, service, &lo, &d->lis))) {
		snprintf(err, errlen, "device %s: cannot offer service %s: %s", c->name, service,
			 zl_strerror(r));
		dev_put(d);
		return r;
	}
	struct ev_tag *t = calloc(1, sizeof(*t));
	if (!t) {
		zl_listener_close(d->lis);
		dev_put(d);
		return -ENOMEM;
	}
	t->kind = EV_LIS;
	t->dev = d;
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = t};
	epoll_ctl(ioh->ep, EPOLL_CTL_ADD, zl_listener_fd(d->lis), &ev);
	d->tag = t;
	pthread_mutex_lock(&ioh->lock);
	d->next = ioh->devs;
	ioh->devs = d;
	pthread_mutex_unlock(&ioh->lock);
	return 0;
}

int ioh_remove_device(const char *name, char *err, size_t errlen)
{
	pthread_mutex_lock(&ioh->lock);
	struct device **pp = &ioh->devs;
	while (*pp && strcmp((*pp)->conf.name, name))
		pp = &(*pp)->next;
	struct device *d = *pp;
	if (d)
		*pp = d->next;
	pthread_mutex_unlock(&ioh->lock);
	if (!d) {
		snprintf(err, errlen, "no device %s", name);
		return -ENOENT;
	}
	epoll_ctl(ioh->ep, EPOLL_CTL_DEL, zl_listener_fd(d->lis), NULL);
	zl_listener_close(d->lis);
	d->lis = NULL;
	free(d->tag);
	/* queues see it, finish what they have in flight and close */
	zl_write_once(&d->removing, true);
	for (unsigned i = 0; i < ioh->nsc; i++)
		sc_post(&ioh->sc[i], SC_WAKE, NULL);
	dev_put(d);
	return 0;
}

void ioh_fe_gone(struct fe *f)
{
	pthread_mutex_lock(&ioh->lock);
	struct fe **pp = &ioh->fes;
	while (*pp && *pp != f)
		pp = &(*pp)->next_all;
	if (*pp)
		*pp = f->next_all;
	pthread_mutex_unlock(&ioh->lock);
	f->ops->free(f);
}

struct device *ioh_dev_get(const char *name)
{
	pthread_mutex_lock(&ioh->lock);
	struct device *d = dev_find(name);
	if (d)
		dev_get(d);
	pthread_mutex_unlock(&ioh->lock);
	return d;
}

/* The sidecore with the fewest queues, the least busy among equals. */
static struct sidecore *sc_pick(void)
{
	struct sidecore *best = &ioh->sc[0];
	for (unsigned i = 1; i < ioh->nsc; i++) {
		struct sidecore *s = &ioh->sc[i];
		uint32_t a = zl_read_once(&s->nqueues), b = zl_read_once(&best->nqueues);
		if (a < b)
			best = s;
	}
	return best;
}

static void accept_queue(struct device *d)
{
	for (;;) {
		struct zl_chan *ch;
		struct zl_chan_opts co = {.slots = 4096, .lend = 4096, .timeout_ms = 2000};
		int r = zl_accept(d->lis, &co, &ch, 0);
		if (r == -EAGAIN)
			return;
		if (r) {
			fprintf(stderr, "zerolink-iohost: device %s: accept: %s\n", d->conf.name,
				zl_strerror(r));
			return;
		}
		struct fe *f = bq_new(ch, d);
		if (!f) {
			zl_chan_close(ch);
			return;
		}
		ioh_fe_add(f);
	}
}

void ioh_fe_add(struct fe *f)
{
	pthread_mutex_lock(&ioh->lock);
	f->id = ++ioh->next_id;
	f->next_all = ioh->fes;
	ioh->fes = f;
	struct sidecore *sc = sc_pick();
	f->sc = sc;
	pthread_mutex_unlock(&ioh->lock);
	sc_post(sc, SC_ADOPT, f);
}

/* Move load from the busiest sidecore to the least busy one: a queue whose
 * share of the busy one's work is closest to half the difference moves
 * (when it is idle between two requests). */
static void rebalance(void)
{
	static uint64_t last_busy[IOH_MAX_SIDECORES], last_total[IOH_MAX_SIDECORES];
	if (ioh->nsc < 2)
		return;
	double frac[IOH_MAX_SIDECORES];
	unsigned hi = 0, lo = 0;
	for (unsigned i = 0; i < ioh->nsc; i++) {
		uint64_t b = zl_read_once(&ioh->sc[i].busy_ns),
			 t = zl_read_once(&ioh->sc[i].total_ns);
		uint64_t db = b - last_busy[i], dt = t - last_total[i];
		last_busy[i] = b;
		last_total[i] = t;
		frac[i] = dt ? (double)db / (double)dt : 0;
		if (frac[i] > frac[hi])
			hi = i;
		if (frac[i] < frac[lo])
			lo = i;
	}
	pthread_mutex_lock(&ioh->lock);
	uint64_t total = 0;
	unsigned active = 0;
	for (struct fe *q = ioh->fes; q; q = q->next_all) {
		uint64_t n = zl_read_once(&q->reqs_done);
		q->load_delta = n - q->load_mark;
		q->load_mark = n;
		if (zl_read_once(&q->sc) == &ioh->sc[hi] && q->load_delta) {
			total += q->load_delta;
			active++;
		}
	}
	double gap = (frac[hi] - frac[lo]) / 2;
	if (frac[hi] - frac[lo] > 0.25 && active >= 2 && total) {
		struct fe *best = NULL;
		double bestd = 2;
		for (struct fe *q = ioh->fes; q; q = q->next_all) {
			if (zl_read_once(&q->sc) != &ioh->sc[hi] || !q->load_delta)
				continue;
			double share = frac[hi] * (double)q->load_delta / (double)total;
			double dd = share > gap ? share - gap : gap - share;
			if (dd < bestd) {
				bestd = dd;
				best = q;
			}
		}
		if (best)
			zl_write_once(&best->move_to, &ioh->sc[lo]);
	}
	pthread_mutex_unlock(&ioh->lock);
}

static int ctl_listen(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	/* a socket left by a crashed I/O host is replaced; a live one is not */
	int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (probe >= 0 && connect(probe, (struct sockaddr *)&a, sizeof(a)) == 0) {
		close(probe);
		close(fd);
		return -EADDRINUSE;
	}
	if (probe >= 0)
		close(probe);
	unlink(path);
	char dir[sizeof(a.sun_path)];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = 0;
		mkdir(dir, 0700);
	}
	/* bound now (the place is taken), listening once the devices are
	 * served: whoever gets an answer finds them */
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	return fd;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: zerolink-iohost [-c CONFIG] [--control PATH] [--sidecores LIST]\n"
		   "                       [--workers LIST|none] [--device NAME:key=value,...]...\n"
		   "                       [--nbd ADDRESS]...\n"
		   "Serves block devices to zerolink domains from polling sidecores.\n"
		   "See zerolink-iohost(8) and zerolink-iohost.conf(5).\n");
}

/* "NAME:key=value,key=value" */
static int device_arg(const char *arg, struct devconf *d, char *err, size_t errlen)
{
	char buf[1024];
	snprintf(buf, sizeof(buf), "%s", arg);
	char *colon = strchr(buf, ':');
	if (colon)
		*colon = 0;
	if (strlen(buf) >= IOH_NAME_MAX) {
		snprintf(err, errlen, "device name too long");
		return -EINVAL;
	}
	devconf_init(d, buf);
	if (!colon)
		return devconf_check(d, err, errlen);
	for (char *save = NULL, *t = strtok_r(colon + 1, ",", &save); t;
	     t = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(t, '=');
		if (!eq) {
			snprintf(err, errlen, "expected key=value, got '%s'", t);
			return -EINVAL;
		}
		*eq = 0;
		int r = devconf_set(d, t, eq + 1, err, errlen);
		if (r)
			return r;
	}
	return devconf_check(d, err, errlen);
}

int main(int argc, char **argv)
{
	/* buffers of up to a request's size (a module's, 1 MiB at most) come
	 * from the heap and are reused, rather than mapped and unmapped, and
	 * faulted in, for every request */
	mallopt(M_MMAP_THRESHOLD, 8 << 20);
	mallopt(M_TRIM_THRESHOLD, 64 << 20);
	static const struct option lopts[] = {
		{"config", required_argument, NULL, 'c'},
		{"control", required_argument, NULL, 'C'},
		{"sidecores", required_argument, NULL, 's'},
		{"workers", required_argument, NULL, 'w'},
		{"device", required_argument, NULL, 'd'},
		{"nbd", required_argument, NULL, 'n'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	static struct iohost host;
	ioh = &host;
	char err[512];
	const char *config = NULL, *control = NULL, *sidecores = NULL, *workers = NULL;
	struct devconf *extra = NULL;
	unsigned nextra = 0;
	const char *nbd_args[4];
	unsigned nnbd = 0;
	int c;
	while ((c = getopt_long(argc, argv, "c:C:s:w:d:n:h", lopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			config = optarg;
			break;
		case 'C':
			control = optarg;
			break;
		case 's':
			sidecores = optarg;
			break;
		case 'w':
			workers = optarg;
			break;
		case 'd': {
			struct devconf *n = realloc(extra, (nextra + 1) * sizeof(*n));
			if (!n)
				return 1;
			extra = n;
			if (device_arg(optarg, &extra[nextra], err, sizeof(err))) {
				fprintf(stderr, "zerolink-iohost: --device %s: %s\n", optarg, err);
				return 2;
			}
			nextra++;
			break;
		}
		case 'n':
			if (nnbd == 4) {
				fprintf(stderr, "zerolink-iohost: at most 4 --nbd listeners\n");
				return 2;
			}
			nbd_args[nnbd++] = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		usage(stderr);
		return 2;
	}
	if (config) {
		if (conf_load(config, &host.conf, err, sizeof(err))) {
			fprintf(stderr, "zerolink-iohost: %s\n", err);
			return 2;
		}
	} else {
		conf_load("/dev/null", &host.conf, err, sizeof(err));
	}
	for (unsigned i = 0; i < nnbd; i++)
		if (conf_add_nbd(&host.conf, nbd_args[i])) {
			fprintf(stderr, "zerolink-iohost: --nbd %s: at most 4 listeners\n",
				nbd_args[i]);
			return 2;
		}
	if (sidecores && conf_set_sidecores(&host.conf, sidecores)) {
		fprintf(stderr, "zerolink-iohost: bad --sidecores '%s'\n", sidecores);
		return 2;
	}
	if (workers && conf_set_workers(&host.conf, workers)) {
		fprintf(stderr, "zerolink-iohost: bad --workers '%s'\n", workers);
		return 2;
	}
	if (control)
		snprintf(host.conf.control, sizeof(host.conf.control), "%s", control);
	else if (!host.conf.control[0] &&
		 ioh_control_path(host.conf.control, sizeof(host.conf.control)) < 0) {
		fprintf(stderr, "zerolink-iohost: control socket path too long\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	/* a file in memory that shrinks under its mapping: the request fails */
	ioh_bus_guard_install();
	/* a file that may not grow is a full disk: the write fails with EFBIG */
	signal(SIGXFSZ, SIG_IGN);
	sigset_t ss;
	sigemptyset(&ss);
	sigaddset(&ss, SIGINT);
	sigaddset(&ss, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &ss, NULL); /* the sidecores inherit it */
	pthread_mutex_init(&host.lock, NULL);
	host.started_ns = ioh_now_ns();
	struct zl_ctx_opts co = {.name = "zerolink-iohost"};
	int r = zl_ctx_open(&host.ctx, &co);
	if (r) {
		fprintf(stderr, "zerolink-iohost: cannot reach the broker: %s\n", zl_strerror(r));
		return 1;
	}
	host.ep = epoll_create1(EPOLL_CLOEXEC);
	host.ctl_fd = ctl_listen(host.conf.control);
	if (host.ctl_fd < 0) {
		fprintf(stderr, "zerolink-iohost: control socket %s: %s\n", host.conf.control,
			host.ctl_fd == -EADDRINUSE ? "another I/O host is running there"
						   : strerror(-host.ctl_fd));
		return 1;
	}
	host.nsc = host.conf.nsidecores;
	for (unsigned i = 0; i < host.nsc; i++) {
		if ((r = sc_start(&host.sc[i], i, host.conf.cpus[i], host.conf.idle_us))) {
			fprintf(stderr, "zerolink-iohost: sidecore %u: %s\n", i, strerror(-r));
			return 1;
		}
	}
	if ((r = workers_start(host.conf.worker_cpus, host.conf.nworkers))) {
		fprintf(stderr, "zerolink-iohost: workers: %s\n", strerror(-r));
		return 1;
	}
	for (unsigned i = 0; i < host.conf.ndevs + nextra; i++) {
		const struct devconf *d =
			i < host.conf.ndevs ? &host.conf.devs[i] : &extra[i - host.conf.ndevs];
		if (ioh_add_device(d, err, sizeof(err))) {
			fprintf(stderr, "zerolink-iohost: %s\n", err);
			return 1;
		}
	}
	for (unsigned i = 0; i < host.conf.ntenants; i++)
		if (ioh_tenant_set(&host.conf.tenants[i], err, sizeof(err))) {
			fprintf(stderr, "zerolink-iohost: %s\n", err);
			return 1;
		}
	for (unsigned i = 0; i < host.conf.nnbd; i++) {
		int fd = nbd_listen(host.conf.nbd[i], err, sizeof(err));
		if (fd < 0) {
			fprintf(stderr, "zerolink-iohost: %s\n", err);
			return 1;
		}
		tag_nbd[i] = (struct ev_tag){.kind = EV_NBD,
					     .fd = fd,
					     .is_unix = !strncmp(host.conf.nbd[i], "unix:", 5)};
		struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &tag_nbd[i]};
		epoll_ctl(host.ep, EPOLL_CTL_ADD, fd, &ev);
	}
	int sfd = signalfd(-1, &ss, SFD_CLOEXEC);
	int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
	if (host.conf.balance_ms) {
		struct itimerspec it = {
			.it_interval = {host.conf.balance_ms / 1000,
					(long)(host.conf.balance_ms % 1000) * 1000000},
		};
		it.it_value = it.it_interval;
		timerfd_settime(tfd, 0, &it, NULL);
	}
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &tag_ctl};
	epoll_ctl(host.ep, EPOLL_CTL_ADD, host.ctl_fd, &ev);
	if (listen(host.ctl_fd, 16) < 0) {
		fprintf(stderr, "zerolink-iohost: control socket %s: %s\n", host.conf.control,
			strerror(errno));
		return 1;
	}
	ev.data.ptr = &tag_sig;
	epoll_ctl(host.ep, EPOLL_CTL_ADD, sfd, &ev);
	ev.data.ptr = &tag_timer;
	epoll_ctl(host.ep, EPOLL_CTL_ADD, tfd, &ev);
	fprintf(stderr, "zerolink-iohost: serving %u device(s) on %u sidecore(s); control %s\n",
		host.conf.ndevs + nextra, host.nsc, host.conf.control);
	for (unsigned i = 0; i < host.conf.nnbd; i++)
		fprintf(stderr, "zerolink-iohost: NBD on %s\n", host.conf.nbd[i]);
	bool run = true;
	while (run) {
		struct epoll_event evs[16];
		int n = epoll_wait(host.ep, evs, 16, -1);
		for (int i = 0; i < n; i++) {
			struct ev_tag *t = evs[i].data.ptr;
			if (t->kind == EV_CTL) {
				int cfd = accept4(host.ctl_fd, NULL, NULL, SOCK_CLOEXEC);
				if (cfd >= 0) {
					ctl_serve(cfd);
					close(cfd);
				}
			} else if (t->kind == EV_SIG) {
				run = false;
			} else if (t->kind == EV_TIMER) {
				uint64_t v;
				ssize_t rr = read(tfd, &v, sizeof(v));
				(void)rr;
				rebalance();
			} else if (t->kind == EV_LIS) {
				accept_queue(t->dev);
			} else if (t->kind == EV_NBD) {
				nbd_accept(t->fd, t->is_unix);
			}
		}
	}
	/* Stop: no new queues; the sidecores finish what is in flight. */
	for (unsigned i = 0; i < host.conf.nnbd; i++) {
		close(tag_nbd[i].fd);
		if (tag_nbd[i].is_unix)
			unlink(host.conf.nbd[i] + 5);
	}
	while (host.devs) {
		char name[IOH_NAME_MAX];
		snprintf(name, sizeof(name), "%s", host.devs->conf.name);
		ioh_remove_device(name, err, sizeof(err));
	}
	for (unsigned i = 0; i < host.nsc; i++)
		sc_stop(&host.sc[i]);
	workers_stop();
	unlink(host.conf.control);
	close(host.ctl_fd);
	zl_ctx_close(host.ctx);
	conf_free(&host.conf);
	free(extra);
	return 0;
}
