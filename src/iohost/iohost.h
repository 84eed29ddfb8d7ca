/* SPDX-License-Identifier: MIT */
/*
 * The I/O host (zerolink-iohost): internal interfaces between its parts.
 *
 *   config.c       the configuration file and run-time device/tenant specs
 *   device.c       devices: checks, the request path, completion
 *   backend_*.c    where the I/O happens (null, ram, file through io_uring)
 *   sidecore.c     the polling threads
 *   queue.c        the zerolink block-queue front-end
 *   ctl.c          the control socket (`zerolink iohost ...`)
 *   main.c         start-up, the control thread, the balancer
 *
 * A request travels: front-end -> dev_submit() -> backend -> sc_complete()
 * -> the front-end's done(). No front-end code runs below dev_submit(), so
 * other front-ends (NBD, virtio) use the same path.
 */
#ifndef ZL_IOHOST_H
#define ZL_IOHOST_H

#include <pthread.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include <liburing.h>

#include <zerolink/abi/blk.h>
#include <zerolink/zerolink.h>

#define IOH_NAME_MAX 48
#define IOH_MAX_SIDECORES 64
#define IOH_MAX_SEGS 16
#define IOH_MAX_MODS 4
#define IOH_MAX_WORKERS 64
/* threads that run request work: sidecores, then workers */
#define IOH_SLOTS (IOH_MAX_SIDECORES + IOH_MAX_WORKERS)

struct device;
struct sidecore;
struct ioreq;
struct fe;

/* ---- configuration (config.c) ---- */

enum backend_kind { BK_NULL, BK_RAM, BK_FILE };

struct devconf {
	char name[IOH_NAME_MAX];
	enum backend_kind backend;
	char path[256];
	uint64_t size; /* bytes; 0: the file's size */
	uint32_t block_size;
	int direct;    /* -1 auto, 0 no, 1 yes */
	int inline_io; /* -1 auto (files in memory), 0 no, 1 yes */
	bool readonly;
	bool any_user;
	uint32_t uids[8], gids[8];
	unsigned nuids, ngids;
	uint32_t max_depth; /* per queue */
	bool nbd;           /* offered on the NBD listeners */
	/* the interposition chain, nearest the client first */
	char mods[IOH_MAX_MODS][16];
	unsigned nmods;
	char crypt_key[256]; /* crypt: the key file (64 bytes) */
	enum crypt_engine { CRYPT_AUTO, CRYPT_VAES, CRYPT_OPENSSL } crypt_engine;
	char crc_file[256]; /* crc32c: the side file (default PATH.crc32c) */
};

#define QOS_CLASSES 4

/* A tenant of a device's QoS (qos.c): who, and what it is promised.
 * Rates are operations per second (an operation moves up to 4 KiB). */
struct tenantconf {
	char name[IOH_NAME_MAX];
	char device[IOH_NAME_MAX];
	uint32_t uids[8];
	unsigned nuids;
	bool tcp;         /* NBD clients over TCP */
	uint64_t reserve; /* guaranteed; 0 none */
	uint64_t limit;   /* at most; 0 none */
	uint32_t weight;  /* share of the spare capacity (1 to 10000) */
	/* burst classes (Nested QoS), innermost first: class k holds the
	 * tenant's requests that fit, with those of the classes inside it, in
	 * a bucket of size[k] operations refilled at the reservation, and is
	 * promised bound_ns from arrival to completion */
	struct {
		uint32_t size;
		uint64_t bound_ns;
	} burst[QOS_CLASSES];
	unsigned nburst;
};

struct hostconf {
	int cpus[IOH_MAX_SIDECORES];
	unsigned nsidecores;
	int worker_cpus[IOH_MAX_WORKERS]; /* workers (workers.c); none by default */
	unsigned nworkers;
	bool nopin; /* threads are not pinned to their cores */
	uint32_t idle_us;
	uint32_t balance_ms;
	char control[108];
	char nbd[4][108]; /* NBD listeners: "unix:PATH" or "HOST:PORT" */
	unsigned nnbd;
	struct devconf *devs;
	unsigned ndevs;
	struct tenantconf *tenants;
	unsigned ntenants;
};

/* Parse a configuration file into c (zeroed first). On error, err holds
 * "file:line: what". */
int conf_load(const char *path, struct hostconf *c, char *err, size_t errlen);
void conf_free(struct hostconf *c);
/* Add an NBD listener address ("unix:PATH", "HOST:PORT", "PORT"). */
int conf_add_nbd(struct hostconf *c, const char *val);
/* "0,1", "2-3" or "auto". */
int conf_set_sidecores(struct hostconf *c, const char *val);
/* "0,1", "2-3" or "none". */
int conf_set_workers(struct hostconf *c, const char *val);
/* Defaults of a device section. */
void devconf_init(struct devconf *d, const char *name);
/* Apply one "key = value" of a device section. */
int devconf_set(struct devconf *d, const char *key, const char *val, char *err, size_t errlen);
/* Check a complete device spec. */
int devconf_check(const struct devconf *d, char *err, size_t errlen);
/* Defaults of a tenant, and one "key = value" of it (device, users,
 * reserve, limit, weight). */
void tenantconf_init(struct tenantconf *t, const char *name);
int tenantconf_set(struct tenantconf *t, const char *key, const char *val, char *err,
		   size_t errlen);
int tenantconf_check(const struct tenantconf *t, char *err, size_t errlen);
/* "1G", "512k", "4096" -> bytes. */
int parse_size(const char *s, uint64_t *out);

/* ---- requests ---- */

struct ioreq {
	uint8_t op;
	uint16_t flags;
	uint64_t off;
	uint32_t len;
	uint64_t tag;                   /* the front-end's request id */
	struct iovec iov[IOH_MAX_SEGS]; /* write: the data; read: where it goes */
	unsigned niov;
	struct iovec riov[IOH_MAX_SEGS]; /* what is left of iov, as submitted */
	int32_t status;
	uint32_t done_bytes; /* a short transfer is resumed from here */
	void *bounce;        /* aligned copy for O_DIRECT, or NULL */
	uint64_t t_start;
	struct device *dev;
	struct sidecore *sc;
	void (*done)(struct ioreq *r); /* the front-end's completion */
	void *owner;                   /* front-end's */
	struct fe *fe;                 /* who asked (its uid is the tenant) */
	unsigned fe_flags;             /* front-end's */
	uint8_t mods_run;              /* modules whose submit hook ran */
	void *mod_priv[IOH_MAX_MODS];  /* each module's, for this request */
	struct qos_tenant *qos_t;      /* admitted by the device's QoS */
	uint32_t qos_cost;
	uint8_t qos_class; /* its tenant's burst class + 1; 0 none */
	bool qos_spare;    /* admitted on spare capacity (counts in its depth) */
	struct ioreq *next;
};

/* ---- backends (backend_*.c) ---- */

struct backend_ops {
	const char *name;
	int (*open)(struct device *d, char *err, size_t errlen);
	void (*close)(struct device *d);
	/* Start r on sidecore sc; it completes through sc_complete(). */
	void (*submit)(struct sidecore *sc, struct ioreq *r);
	/* An io_uring completion of r (backends that use the ring). */
	void (*cqe)(struct sidecore *sc, struct ioreq *r, int res);
};

/* A request's status for a backend's -errno (ENOSPC, EROFS, ...; EIO
 * for the rest). */
int32_t dev_status(int err);
/* fn(arg), which reaches [off, off+len) of d through d->mem: for a file,
 * with SIGBUS caught (the file cut short under the mapping: -EIO; a write
 * fault on a full tmpfs: -ENOSPC). fn's result otherwise. */
int dev_mem_call(struct device *d, bool write, uint64_t off, uint32_t len, int (*fn)(void *),
		 void *arg);

/* A read (op READ) from the device bytes at mem into the segments, or a
 * write of them there. */
void mem_copy(char *mem, uint8_t op, const struct iovec *iov, unsigned n);
/* The part [from, from+len) of the segments iov[0..n): up to
 * IOH_MAX_SEGS segments in out; their number. */
unsigned iov_slice(const struct iovec *iov, unsigned n, size_t from, size_t len, struct iovec *out);

/* The flags a write of r asks of the file (preadv2/pwritev2, io_uring):
 * RWF_DSYNC for FUA, else 0. */
static inline int dev_rw_flags(const struct ioreq *r)
{
	return r->op == ZL_BLK_OP_WRITE && (r->flags & ZL_BLK_F_FUA) ? RWF_DSYNC : 0;
}

extern const struct backend_ops backend_null, backend_ram, backend_file;

/* ---- interposition modules (mod*.c) ---- */

/* The text of a control answer (ctl.c). */
struct out {
	char *buf;
	size_t len, cap;
};
void outf(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

struct mod_ops {
	const char *name;
	/* On device d (its keys in d->conf; it may change d->flags). */
	int (*open)(struct device *d, void **state, char *err, size_t errlen);
	void (*close)(void *state);
	/* On the way to the backend (sidecore thread): 0 go on, or a status
	 * the request completes with. It may replace r's data segments, and
	 * keep what it needs until complete in *priv (NULL at first). The
	 * last module of the chain may also do the I/O itself through the
	 * device's rw (when it has one): MOD_DONE, r->status set. */
	int32_t (*submit)(void *state, struct ioreq *r, void **priv);
	/* On the way back, in reverse order, for those whose submit ran. */
	void (*complete)(void *state, struct ioreq *r, void **priv);
	/* Counters: a few lines of `ls` (prom false), or Prometheus text. */
	void (*report)(void *state, const struct device *d, struct out *o, bool prom);
};

#define MOD_DONE (-1)
/* submit's other answer when last: the module started the I/O on the
 * workers (sc_job_start) and completes r when it is done. */
#define MOD_ASYNC (-2)

extern const struct mod_ops mod_crypt, mod_crc32c, mod_meter, mod_ro;
const struct mod_ops *mod_find(const char *name);
int mods_open(struct device *d, char *err, size_t errlen);
void mods_close(struct device *d);

/* ---- QoS (qos.c) ---- */

#define QOS_TENANTS 64

struct qos_tenant {
	struct tenantconf c;
	bool configured;            /* a named tenant; else one user's own (weight 1) */
	uint32_t uid;               /* the user of an unnamed one (UINT32_MAX: tcp) */
	double tok_r, tok_s, tok_l; /* buckets: reservation, spare, limit */
	double tok_b[QOS_CLASSES];  /* burst classes' buckets */
	uint64_t cls_reqs[QOS_CLASSES], cls_late[QOS_CLASSES];
	/* late ones that were in flight across a long round of their
	 * sidecore's (it did not look at them for over 1 ms) */
	uint64_t cls_late_long[QOS_CLASSES];
	uint64_t win_cls_done, win_cls_late; /* this window, all classes */
	uint64_t last_ns;
	uint32_t outstanding, deferred;
	uint64_t busy_since, busy_ns; /* this window: time with requests out or waiting */
	uint64_t idle_since;          /* when it last had none (0: never busy) */
	uint64_t win_done, win_spare; /* this window: ops done, ops on spare */
	bool win_held;                /* this window: a request had to wait */
	double rate;                  /* ops/s in the last window */
	double got;                   /* reserved: share of it delivered (smoothed) */
	uint64_t reqs, units, deferrals;
};

struct qos {
	pthread_mutex_t lock;
	struct qos_tenant t[QOS_TENANTS];
	unsigned n;
	unsigned configured; /* named tenants: 0, and the gate is open */
	double spare;        /* ops/s shared by weight; < 0 unlimited */
	double sumw;         /* weights of the tenants active lately */
	double dev_rate;     /* ops/s the device delivered, last window */
	/* ops admitted on spare capacity and not done, and the most of
	 * them allowed at once (< 0 unlimited): bounded while a burst
	 * class runs late, so that it waits behind a short device queue */
	uint32_t spare_out, win_spare_peak;
	int32_t spare_depth;
	unsigned calm; /* windows in a row no protected tenant was busy */
	uint64_t win_start;
	uint64_t cuts, depth_cuts;
};

/* The operations a request counts for. */
uint32_t qos_cost(const struct ioreq *r);
/* May r start now (the caller's clock)? If not, it waits (sidecore's
 * list). head: r is the first waiting request of its tenant on this
 * sidecore, tried again. */
bool qos_admit(struct qos *q, struct ioreq *r, bool head, uint64_t now);
/* An admitted request finished. */
void qos_done(struct ioreq *r);
/* Add or change a named tenant of d; remove one (control thread). */
int qos_set(struct device *d, const struct tenantconf *c, char *err, size_t errlen);
int qos_unset(struct device *d, const char *name, char *err, size_t errlen);
void qos_report(struct device *d, struct out *o, bool prom);
void qos_free(struct qos *q);

/* ---- devices (device.c) ---- */

struct dev_stats {
	uint64_t ops[6]; /* by op: read, write, flush, discard, write-zeroes */
	uint64_t bytes_read, bytes_written;
	uint64_t errors;
};

struct device {
	struct devconf conf;
	const struct backend_ops *be;
	uint64_t size;
	uint32_t flags;  /* ZL_BLK_INFO_* */
	uint32_t max_io; /* bytes */
	/* backend state */
	int fd;
	bool direct;
	bool inline_io;     /* file I/O done by the sidecore itself, not io_uring */
	uint32_t dio_align; /* memory alignment O_DIRECT needs */
	char *ram;
	/* Synchronous I/O on any thread, for backends whose I/O is a copy
	 * (RAM, files in memory); NULL for the others. flags: RWF_DSYNC for
	 * FUA writes. 0 or -errno. */
	int (*rw)(struct device *d, uint8_t op, uint64_t off, const struct iovec *iov, unsigned n,
		  uint32_t len, int flags);
	/* The device's bytes, mapped, when they are in memory: the RAM disk,
	 * or a file on tmpfs/ramfs served inline (mem_file: an access the
	 * file no longer covers raises SIGBUS; see ioh_bus_env). */
	char *mem;
	bool mem_file;
	/* A file's mapping is used where it is warm: one bit per MEM_CHUNK
	 * bytes, set by the warmer thread once the chunk's pages are data
	 * and have been touched (first touches are slow: on a VM with shadow
	 * page tables, tens of microseconds a page), cleared when a discard
	 * makes holes. Elsewhere the file is read and written with system
	 * calls. */
	uint8_t *mem_ok;         /* atomic bytes */
	uint64_t mem_warm_bytes; /* atomic: bytes made warm so far */
	bool warm_done;          /* atomic: the warmer has finished */
	pthread_t warmer;
	bool warmer_on;
	bool warm_stop; /* atomic */
	/* life */
	int refs;      /* atomic: the registry and every queue */
	bool removing; /* atomic: no new queues; queues close when idle */
	const struct mod_ops *mods[IOH_MAX_MODS];
	void *mod_state[IOH_MAX_MODS];
	unsigned nmods;
	struct qos *qos; /* made with the first named tenant (atomic) */
	struct zl_listener *lis;
	void *tag;           /* the control thread's epoll tag of lis */
	struct dev_stats st; /* atomic adds */
	struct device *next;
};

#define MEM_CHUNK_SHIFT 16

/* Whether [off, off+len) of d may be reached through d->mem. */
static inline bool dev_mem_ok(const struct device *d, uint64_t off, uint32_t len)
{
	if (!d->mem)
		return false;
	if (!d->mem_file)
		return true;
	for (uint64_t c = off >> MEM_CHUNK_SHIFT; c <= (off + len - 1) >> MEM_CHUNK_SHIFT; c++)
		if (!(__atomic_load_n(&d->mem_ok[c >> 3], __ATOMIC_RELAXED) & (1u << (c & 7))))
			return false;
	return true;
}
int dev_create(const struct devconf *c, struct device **out, char *err, size_t errlen);
void dev_get(struct device *d);
void dev_put(struct device *d);
/* Check r against the device (op, flags, alignment, range): 0 or a status. */
int dev_check(const struct device *d, const struct ioreq *r);
/* Start a checked request (it may wait for the device's QoS). */
void dev_submit(struct sidecore *sc, struct ioreq *r);
/* Past QoS: the interposition chain, then the backend. */
void dev_dispatch(struct sidecore *sc, struct ioreq *r);
/* A read or write of a device with d->rw (synchronous: RAM, a file in
 * memory), backend's submit: over DEV_PART bytes and with workers, its
 * copy is left to them in parts (true; completed when they are done);
 * false: the caller does it. */
#define DEV_PART (128u << 10)
bool dev_rw_parts(struct sidecore *sc, struct ioreq *r);
/* Count a finished request in the device's statistics. */
void dev_account(struct ioreq *r);
/* A finished request on its way back: the modules' complete hooks, then
 * the statistics (sidecore thread, before the front-end's done()). */
void dev_finish(struct ioreq *r);

/* ---- sidecores (sidecore.c) ---- */

enum sc_cmd_kind { SC_ADOPT, SC_STOP, SC_WAKE };

struct sc_cmd {
	enum sc_cmd_kind kind;
	struct fe *f;
	struct sc_cmd *next;
};

/* A job shared with the workers (workers.c). */
struct wjob {
	void (*fn)(void *arg, unsigned part);
	void *arg;
	unsigned nparts;
	unsigned next; /* atomic: the next part to take */
	unsigned done; /* atomic: parts finished */
	bool listed;   /* under the workers' lock */
	struct wjob *prev, *nextj;
};

struct sidecore {
	unsigned idx;
	int cpu;
	pthread_t th;
	struct io_uring ring;
	bool ring_ok;
	int ring_efd;
	unsigned sq_pending; /* prepared, not yet submitted */
	unsigned uring_inflight;
	int ep;        /* where it sleeps */
	int inbox_efd; /* commands wake it */
	pthread_mutex_t inbox_lock;
	struct sc_cmd *inbox;
	struct fe **fes; /* the front-end endpoints it serves */
	unsigned nq, capq;
	struct ioreq *done_head, *done_tail;
	struct sc_job *jobs_head, *jobs_tail; /* running on the workers, in order */
	struct ioreq *wait_head, *wait_tail;  /* held back by QoS, in order */
	uint32_t idle_ns;
	/* seen by the control thread (atomic) */
	uint64_t busy_ns, total_ns;
	uint64_t reqs;
	uint32_t nqueues;
	uint32_t sleeping;
	uint64_t sleeps, wakeups;
	/* rounds that took over SC_LONG_ROUND_NS from start to next start
	 * without sleeping (the VM stopped, the thread was preempted, or its
	 * own work), their time, and when the last one ended */
	uint64_t long_rounds, long_round_ns, long_round_end;
	uint64_t round_start; /* this round's start; 0 while it sleeps */
};

#define SC_LONG_ROUND_NS 1000000u

int sc_start(struct sidecore *sc, unsigned idx, int cpu, uint32_t idle_us);
void sc_stop(struct sidecore *sc);
/* Hand a front-end endpoint to a sidecore, or wake it (any thread). */
void sc_post(struct sidecore *sc, enum sc_cmd_kind kind, struct fe *f);
/* A request finished on sc (sidecore thread). */
void sc_complete(struct sidecore *sc, struct ioreq *r);
/* A request's work left running on the workers (a module's submit that
 * returned MOD_ASYNC, a large copy of a synchronous device): the sidecore
 * takes parts of it too, between its other duties, and when every part
 * is done calls fin, which sets r->status and may free the job, then
 * completes r. */
struct sc_job {
	struct wjob w;
	struct ioreq *r;
	void (*fin)(struct sc_job *j);
	struct sc_job *next;
	int err; /* atomic: the first failure of a part, -errno; 0 none */
};
void sc_job_start(struct sidecore *sc, struct sc_job *j);
/* A part of j failed with e (any thread; the first failure is kept). */
void sc_job_fail(struct sc_job *j, int e);
/* An io_uring entry for the sidecore's ring, submitting if it is full. */
struct io_uring_sqe *sc_sqe(struct sidecore *sc);

/* ---- front-end endpoints ----
 * One client's connection to a device, whatever delivered it: a zerolink
 * block queue (queue.c), an NBD connection (nbd.c), later virtio queues.
 * A sidecore owns it and calls its ops; the registry lists it. */

struct fe_ops {
	const char *kind; /* "zerolink", "nbd" */
	/* Serve once: take requests, start them, send replies. Returns the
	 * work done, or -1 when the endpoint is finished and may be freed. */
	int (*poll)(struct fe *f);
	/* Before the sidecore sleeps: 1 work is pending (do not sleep), 0
	 * armed (its descriptor will poll readable when there is work). */
	int (*arm)(struct fe *f);
	int (*fd)(const struct fe *f);
	/* Nothing in flight: it may move to another sidecore. */
	bool (*idle)(const struct fe *f);
	void (*free)(struct fe *f);
};

struct fe {
	const struct fe_ops *ops;
	struct device *dev;
	struct sidecore *sc;
	uint64_t id;
	uint32_t pid, uid, gid; /* the client's, where known */
	char peer[64];          /* who, for ls */
	uint32_t depth;
	bool dead;
	struct sidecore *move_to; /* the balancer asked for a move */
	/* seen by the control thread (atomic) */
	uint64_t reqs_done, bytes;
	uint64_t load_mark, load_delta; /* the balancer's */
	struct fe *next_all;            /* registry (main.c), under its lock */
};

/* Count a reply sent (front-ends, sidecore thread). */
void fe_count(struct fe *f, const struct ioreq *r);

/* ---- block queues (queue.c) ---- */

struct fe *bq_new(struct zl_chan *ch, struct device *d);

/* ---- NBD (nbd.c) ---- */

/* Listen on addr ("unix:PATH", "HOST:PORT"); the descriptor or -errno. */
int nbd_listen(const char *addr, char *err, size_t errlen);
/* A connection on a listener: negotiated on a thread of its own, then
 * handed to a sidecore (control thread). */
void nbd_accept(int lfd, bool is_unix);

/* ---- the registry and the control thread (main.c, ctl.c) ---- */

struct iohost {
	struct hostconf conf;
	struct zl_ctx *ctx;
	struct sidecore sc[IOH_MAX_SIDECORES];
	unsigned nsc;
	pthread_mutex_t lock; /* devices and endpoints lists */
	struct device *devs;
	struct fe *fes;
	uint64_t next_id;
	int ctl_fd;
	int ep;
	uint64_t started_ns;
};

extern struct iohost *ioh;

int ioh_add_device(const struct devconf *c, char *err, size_t errlen);
int ioh_remove_device(const char *name, char *err, size_t errlen);
/* Add or change a named tenant of its device. */
int ioh_tenant_set(const struct tenantconf *t, char *err, size_t errlen);
/* A new endpoint: listed, given an id and a sidecore (any thread). */
void ioh_fe_add(struct fe *f);
/* A finished endpoint: unlisted and freed (its sidecore's thread). */
void ioh_fe_gone(struct fe *f);
/* The device called name, with a reference, or NULL. */
struct device *ioh_dev_get(const char *name);
/* Whether a local user, member of gids, may open d (root, the I/O host's
 * user, the device's ACL). */
bool dev_admits(const struct device *d, uint32_t uid, const uint32_t *gids, unsigned ngids);
/* Handle one control connection (ctl.c). */
void ctl_serve(int fd);

uint64_t ioh_now_ns(void);

/* ---- workers (workers.c) ---- */

/* The running thread's slot: a sidecore's index, IOH_MAX_SIDECORES + a
 * worker's; IOH_SLOTS on other threads. */
extern _Thread_local unsigned ioh_slot;
/* Armed (non-NULL) around accesses to a file's mapping (d->mem of a
 * mem_file device): a SIGBUS on this thread jumps there, value 1, and
 * disarms it. Unarmed, SIGBUS kills the I/O host as usual. */
extern _Thread_local sigjmp_buf *ioh_bus_env;
void ioh_bus_guard_install(void);
int workers_start(const int *cpus, unsigned n);
void workers_stop(void);
unsigned workers_count(void);
void workers_stats(uint64_t *jobs, uint64_t *parts);
/* fn(arg, 0..nparts-1), parts shared between the caller and idle
 * workers; returns when all are done. */
void workers_run(void (*fn)(void *arg, unsigned part), void *arg, unsigned nparts);

/* The same, without waiting: a job (struct wjob, above) the caller fills
 * in (fn, arg, nparts) and posts; its parts are run by workers and by
 * whoever calls workers_help(). With no workers, or one part,
 * workers_post() runs them all itself. The job must stay put until
 * workers_done() says true. */
void workers_post(struct wjob *j);
/* Run parts of posted jobs (anyone's) on this thread while there are
 * parts left to take; how many it ran. */
unsigned workers_help(void);
/* Every part of j finished, and their writes are seen by the caller. */
bool workers_done(struct wjob *j);

#endif
