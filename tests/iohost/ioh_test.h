/* SPDX-License-Identifier: MIT */
/* Helpers of the I/O host's tests: start a zerolink-iohost of the test's
 * own (its own control socket, devices named after the test's pid), talk
 * to its control socket, stop it. */
#ifndef ZL_IOH_TEST_H
#define ZL_IOH_TEST_H

#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "../zltest.h"

struct ioh_proc {
	pid_t pid;
	char dir[64];
	char control[100];
	/* if set before ioh_start: a tmpfs with these options mounted on
	 * this directory, seen by the I/O host alone (its own mount
	 * namespace); needs root */
	const char *tmpfs;
	const char *tmpfs_opts;
};

/* "name" made unique for this test process */
static inline const char *ioh_dev(const char *base)
{
	static char buf[16][48];
	static int k;
	char *b = buf[k++ & 15];
	snprintf(b, 48, "%s-%d", base, (int)getpid());
	return b;
}

/* Send a control line; the answer (malloc'd, NUL-terminated) or NULL. */
static inline char *ioh_ctl(const struct ioh_proc *p, const char *line)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", p->control);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	if (write(fd, line, strlen(line)) < 0 || write(fd, "\n", 1) < 0) {
		close(fd);
		return NULL;
	}
	size_t cap = 65536, n = 0;
	char *b = malloc(cap);
	ssize_t r;
	while (b && (r = read(fd, b + n, cap - 1 - n)) > 0) {
		n += (size_t)r;
		if (n + 1 == cap) {
			cap *= 2;
			b = realloc(b, cap);
		}
	}
	close(fd);
	if (b)
		b[n] = 0;
	return b;
}

/* The control command must answer "ok". */
static inline char *ioh_ok(const struct ioh_proc *p, const char *line)
{
	char *a = ioh_ctl(p, line);
	if (!a || strncmp(a, "ok\n", 3)) {
		fprintf(stderr, "control '%s' answered: %s\n", line, a ? a : "(nothing)");
		exit(1);
	}
	return a;
}

/* Start zerolink-iohost with the given arguments (NULL-terminated); waits
 * until it answers. It dies with the test (PR_SET_PDEATHSIG), so a test
 * that fails leaves nothing running. */
static inline void ioh_start(struct ioh_proc *p, const char *const *args)
{
	const char *bin = getenv("ZEROLINK_IOHOST_BIN");
	if (!bin)
		SKIP("ZEROLINK_IOHOST_BIN not set");
	static int seq;
	snprintf(p->dir, sizeof(p->dir), "/tmp/zl-ioh-test-%d-%d", (int)getpid(), seq++);
	mkdir(p->dir, 0700);
	snprintf(p->control, sizeof(p->control), "%s/ctl.sock", p->dir);
	const char *argv[64];
	int k = 0;
	argv[k++] = bin;
	argv[k++] = "--control";
	argv[k++] = p->control;
	for (int i = 0; args[i] && k < 62; i++)
		argv[k++] = args[i];
	argv[k] = NULL;
	p->pid = fork();
	CHECK(p->pid >= 0);
	if (p->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (p->tmpfs &&
		    (unshare(CLONE_NEWNS) || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) ||
		     mount("tmpfs", p->tmpfs, "tmpfs", 0, p->tmpfs_opts))) {
			perror("zerolink-iohost's tmpfs");
			_exit(126);
		}
		execv(bin, (char *const *)argv);
		_exit(127);
	}
	for (int i = 0; i < 500; i++) {
		char *a = ioh_ctl(p, "ping");
		if (a) {
			free(a);
			return;
		}
		int st;
		if (waitpid(p->pid, &st, WNOHANG) == p->pid) {
			fprintf(stderr, "zerolink-iohost exited at start (status %d)\n", st);
			exit(1);
		}
		usleep(10000);
	}
	fprintf(stderr, "zerolink-iohost did not answer\n");
	kill(p->pid, SIGKILL);
	exit(1);
}

/* A zero-copy write of len bytes of data at off (filled into a pool
 * buffer and sent as is); it must succeed. */
static inline void ioh_write_zc(struct zl_blk_queue *q, const void *data, uint32_t len,
				uint64_t off, uint32_t flags)
{
	struct zl_blk_req r = {
		.op = ZL_BLK_OP_WRITE, .len = len, .offset = off, .flags = flags, .user_data = off};
	CHECK_EQ(zl_blk_buf_alloc(q, len, &r.buf), 0);
	memcpy(r.buf.data, data, len);
	CHECK_EQ(zl_blk_submit(q, &r, 1, 0), 1);
	struct zl_blk_cpl c;
	CHECK_EQ(zl_blk_reap(q, &c, 1, 0), 1);
	CHECK_EQ(c.status, 0);
	CHECK(c.user_data == off);
}

/* The control command must answer an error that says why. */
static inline void ioh_refused(const struct ioh_proc *p, const char *line, const char *why)
{
	char *a = ioh_ctl(p, line);
	CHECK(a && !strncmp(a, "error: ", 7));
	if (!strstr(a, why)) {
		fprintf(stderr, "'%s' answered '%s', without '%s'\n", line, a, why);
		exit(1);
	}
	free(a);
}

/* SIGTERM, and it must exit 0 within 10 s. */
/* Prometheus text as its parsers want it: every sample right after its
 * family's TYPE (a histogram's _bucket, _sum and _count too), each
 * family's TYPE once: the lines of a family together. */
static inline void prom_check_grouped(const char *text)
{
	char cur[128] = "", seen[8192] = " ";
	unsigned samples = 0;
	for (const char *l = text; *l;) {
		const char *e = strchr(l, '\n');
		size_t len = e ? (size_t)(e - l) : strlen(l);
		if (len > 7 && !strncmp(l, "# TYPE ", 7)) {
			size_t k = strcspn(l + 7, " \n");
			CHECK(k < sizeof(cur));
			snprintf(cur, sizeof(cur), "%.*s", (int)k, l + 7);
			char key[140];
			snprintf(key, sizeof(key), " %s ", cur);
			if (strstr(seen, key))
				fprintf(stderr, "prom: TYPE %s twice\n", cur);
			CHECK(!strstr(seen, key));
			CHECK(strlen(seen) + strlen(key) < sizeof(seen));
			strcat(seen, key + 1);
		} else if (len && l[0] != '#' && strncmp(l, "ok", len)) {
			size_t k = strcspn(l, "{ ");
			size_t c = strlen(cur);
			bool ok = k >= c && !strncmp(l, cur, c) &&
				  (k == c || (k - c == 7 && !strncmp(l + c, "_bucket", 7)) ||
				   (k - c == 4 && !strncmp(l + c, "_sum", 4)) ||
				   (k - c == 6 && !strncmp(l + c, "_count", 6)));
			if (!ok)
				fprintf(stderr, "prom: '%.*s' is not in family %s\n", (int)len, l,
					cur);
			CHECK(ok);
			samples++;
		}
		l += len + (e != NULL);
	}
	CHECK(samples > 0);
}

static inline void ioh_stop(struct ioh_proc *p)
{
	kill(p->pid, SIGTERM);
	int st = 0;
	for (int i = 0; i < 1000; i++) {
		if (waitpid(p->pid, &st, WNOHANG) == p->pid) {
			CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
			rmdir(p->dir);
			return;
		}
		usleep(10000);
	}
	kill(p->pid, SIGKILL);
	fprintf(stderr, "zerolink-iohost did not stop on SIGTERM\n");
	exit(1);
}

static inline void fill_pattern(void *buf, size_t len, uint64_t seed)
{
	uint64_t *w = buf;
	uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
	for (size_t i = 0; i < len / 8; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		w[i] = x;
	}
}

#endif
