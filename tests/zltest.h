/* SPDX-License-Identifier: MIT */
/* Helpers shared by zerolink's tests: exit 0 pass, 1 fail, 77 skip. */
#ifndef ZL_TEST_H
#define ZL_TEST_H

#include <dirent.h>
#include <stdbool.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <zerolink/zerolink.h>

#include "../src/lib/proc_cpu.h"

#define CHECK(c)                                                                                   \
	do {                                                                                       \
		if (!(c)) {                                                                        \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c);      \
			exit(1);                                                                   \
		}                                                                                  \
	} while (0)

#define CHECK_EQ(a, b)                                                                             \
	do {                                                                                       \
		long long _a = (long long)(a), _b = (long long)(b);                                \
		if (_a != _b) {                                                                    \
			fprintf(stderr, "%s:%d: %s == %lld, expected %s == %lld\n", __FILE__,      \
				__LINE__, #a, _a, #b, _b);                                         \
			exit(1);                                                                   \
		}                                                                                  \
	} while (0)

#define SKIP(why)                                                                                  \
	do {                                                                                       \
		fprintf(stderr, "skipped: %s\n", why);                                             \
		exit(77);                                                                          \
	} while (0)

static inline struct zl_ctx *test_ctx(const char *name)
{
	struct zl_ctx *ctx;
	struct zl_ctx_opts o = {.name = name};
	int err = zl_ctx_open(&ctx, &o);
	if (err) {
		fprintf(stderr, "zl_ctx_open: %s\n", zl_strerror(err));
		exit(1);
	}
	return ctx;
}

/* A service name no other test running at the same time uses. */
static inline const char *test_service(const char *base)
{
	static char buf[8][64];
	static int k;
	char *b = buf[k++ & 7];
	snprintf(b, 64, "%s.%d.%d", base, (int)getpid(), k);
	return b;
}

static inline int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		n++;
	closedir(d);
	return n - 3; /* ., .., and the DIR's own fd */
}

/* Mappings of zerolink regions in a process (0 = self). */
static inline int count_maps(pid_t pid, const char *what)
{
	char path[64], line[512];
	if (pid)
		snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	else
		snprintf(path, sizeof(path), "/proc/self/maps");
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	int n = 0;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, what))
			n++;
	fclose(f);
	return n;
}

static inline uint64_t test_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Path of the peer program, built beside the tests. */
static inline const char *peer_path(void)
{
	const char *p = getenv("ZL_TEST_PEER");
	return p ? p : "./zl-test-peer";
}

/* fork + exec the peer program with arguments; returns its pid. */
static inline pid_t spawn_peer(char *const argv[])
{
	pid_t pid = fork();
	if (pid == 0) {
		execv(peer_path(), argv);
		perror("execv peer");
		_exit(127);
	}
	return pid;
}

static inline int wait_status(pid_t pid)
{
	int st;
	if (waitpid(pid, &st, 0) < 0)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Deterministic content: byte i of message seq. */
static inline uint8_t pattern(uint64_t seq, size_t i)
{
	return (uint8_t)(seq * 131 + i * 7 + (i >> 8));
}

static inline void fill(void *p, size_t n, uint64_t seq)
{
	uint8_t *b = p;
	for (size_t i = 0; i < n; i++)
		b[i] = pattern(seq, i);
}

static inline int verify(const void *p, size_t n, uint64_t seq)
{
	const uint8_t *b = p;
	for (size_t i = 0; i < n; i++)
		if (b[i] != pattern(seq, i))
			return -1;
	return 0;
}

#endif
