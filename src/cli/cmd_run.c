/* SPDX-License-Identifier: MIT */
/*
 * zerolink run [--spin=US] [--off] [--no-unix] [--debug] -- PROGRAM [ARGS...]
 *
 * Runs an unmodified program with libzerolink-preload.so, so that its TCP
 * connections to other programs under zerolink on this host travel over
 * channels; everything else stays on the kernel path.
 */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#ifndef ZL_PRELOAD_PATH
#define ZL_PRELOAD_PATH "/usr/local/lib/x86_64-linux-gnu/libzerolink-preload.so"
#endif

static void usage(FILE *f)
{
	fprintf(f, "usage: zerolink run [--spin=US] [--off] [--no-unix] [--debug] -- PROGRAM "
		   "[ARGS...]\n"
		   "\n"
		   "Run PROGRAM so that its TCP and Unix stream connections to programs on\n"
		   "this host that also run under zerolink are carried over shared memory.\n"
		   "Connections to anything else use the kernel, unchanged.\n"
		   "\n"
		   "  --spin=US  how long a blocked call busy-polls before it sleeps, in\n"
		   "             microseconds at most (0: sleep at once; default:\n"
		   "             adaptive, up to $ZEROLINK_SPIN_US or 50)\n"
		   "  --off      load the shim but keep every connection on the kernel path\n"
		   "  --no-unix  keep Unix sockets on the kernel path\n"
		   "  --debug    say on stderr which connections are carried\n");
}

/* The shim: $ZEROLINK_PRELOAD, else next to this program (a build tree),
 * else where it is installed. */
static int preload_path(char *buf, size_t size)
{
	const char *e = getenv("ZEROLINK_PRELOAD");
	if (e && *e) {
		snprintf(buf, size, "%s", e);
		return access(buf, R_OK) == 0 ? 0 : -errno;
	}
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		self[n] = '\0';
		snprintf(buf, size, "%s/libzerolink-preload.so", dirname(self));
		if (access(buf, R_OK) == 0)
			return 0;
	}
	snprintf(buf, size, "%s", ZL_PRELOAD_PATH);
	return access(buf, R_OK) == 0 ? 0 : -errno;
}

int cmd_run(int argc, char **argv)
{
	static const struct option opts[] = {
		{"spin", required_argument, NULL, 's'}, {"off", no_argument, NULL, 'o'},
		{"no-unix", no_argument, NULL, 'u'},    {"debug", no_argument, NULL, 'd'},
		{"help", no_argument, NULL, 'h'},       {0},
	};
	int c;
	while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		switch (c) {
		case 's': {
			char *end;
			double us = strtod(optarg, &end);
			if (*end || us < 0) {
				fprintf(stderr,
					"zerolink run: --spin takes microseconds, not '%s'\n",
					optarg);
				return 2;
			}
			setenv("ZEROLINK_SPIN_US", optarg, 1);
			break;
		}
		case 'o':
			setenv("ZEROLINK_SOCKETS", "0", 1);
			break;
		case 'u':
			setenv("ZEROLINK_UNIX", "0", 1);
			break;
		case 'd':
			setenv("ZEROLINK_DEBUG", "1", 1);
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	char lib[PATH_MAX];
	int err = preload_path(lib, sizeof(lib));
	if (err) {
		fprintf(stderr, "zerolink run: cannot find libzerolink-preload.so (%s): %s\n", lib,
			strerror(-err));
		return 1;
	}
	/* the broker the programs start when none runs: the one beside this
	 * program (a build tree) unless $ZEROLINKD names one */
	const char *zd = getenv("ZEROLINKD");
	if (!zd || !*zd) {
		char self[PATH_MAX], path[PATH_MAX + 16];
		ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
		if (n > 0) {
			self[n] = '\0';
			snprintf(path, sizeof(path), "%s/zerolinkd", dirname(self));
			if (access(path, X_OK) == 0)
				setenv("ZEROLINKD", path, 1);
		}
	}
	const char *old = getenv("LD_PRELOAD");
	if (old && *old) {
		size_t n = strlen(lib) + strlen(old) + 2;
		char *v = malloc(n);
		if (!v)
			return 1;
		snprintf(v, n, "%s:%s", lib, old);
		setenv("LD_PRELOAD", v, 1);
		free(v);
	} else {
		setenv("LD_PRELOAD", lib, 1);
	}
	execvp(argv[optind], argv + optind);
	fprintf(stderr, "zerolink run: %s: %s\n", argv[optind], strerror(errno));
	return 127;
}
