/* SPDX-License-Identifier: MIT */
/*
 * CPU time of a live process, from /proc: shared by the benchmark and the
 * tests (the library does not use it).
 */
#ifndef ZL_PROC_CPU_H
#define ZL_PROC_CPU_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

/* User+system CPU time of process pid in ns, or 0 if it cannot be read. */
static inline uint64_t zl_proc_cpu_ns(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* the command may hold spaces and parentheses: fields resume after
	 * the last ')'; then state(3) ... utime(14) stime(15) */
	char *q = strrchr(buf, ')');
	unsigned long ut = 0, st = 0;
	if (!q ||
	    sscanf(q + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
		return 0;
	long hz = sysconf(_SC_CLK_TCK);
	return (uint64_t)(ut + st) * (1000000000ull / (uint64_t)hz);
}

#endif
