/* SPDX-License-Identifier: MIT */
/*
 * zerolink iohost: start the I/O host, or talk to a running one through its
 * control socket.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "../iohost/ctlpath.h"
#include "cli.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: zerolink iohost [--control PATH] COMMAND [ARGS...]\n"
		   "  start [zerolink-iohost options]  run the I/O host in the foreground\n"
		   "  ping                             is an I/O host there?\n"
		   "  ls                               sidecores, devices, queues and counters\n"
		   "  prom                             the counters as Prometheus text\n"
		   "  add NAME key=value ...           serve a new device (keys of a\n"
		   "                                   [device] section)\n"
		   "  rm NAME                          stop serving a device\n"
		   "  move QUEUE SIDECORE              move a queue to another sidecore\n"
		   "  tenant NAME device=DEV users=U,... [reserve=OPS] [limit=OPS] [weight=W]\n"
		   "                                   add or change a QoS tenant of a device\n"
		   "  untenant DEVICE NAME             remove it\n"
		   "The control socket is $ZEROLINK_IOHOST, else iohost.sock beside the\n"
		   "broker's socket. See zerolink-iohost(8).\n");
}

/* zerolink-iohost beside this program (a build tree), else the installed one. */
void cli_iohost_path(char *buf, size_t size)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		self[n] = 0;
		char *slash = strrchr(self, '/');
		if (slash && (size_t)(slash - self) + sizeof("/zerolink-iohost") <= size) {
			memcpy(slash, "/zerolink-iohost", sizeof("/zerolink-iohost"));
			if (access(self, X_OK) == 0) {
				memcpy(buf, self, strlen(self) + 1);
				return;
			}
		}
	}
	snprintf(buf, size, "%s", ZL_IOHOST_PATH);
}

/* Send one command line, print the answer; 0 when it starts with "ok". */
int cli_iohost_call(const char *control, const char *line, FILE *out)
{
	char path[108];
	if (control)
		snprintf(path, sizeof(path), "%s", control);
	else if (ioh_control_path(path, sizeof(path)) < 0) {
		fprintf(stderr, "zerolink: control socket path too long\n");
		return 1;
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		fprintf(stderr,
			"zerolink: no I/O host at %s (%s); start one with 'zerolink iohost "
			"start'\n",
			path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return 1;
	}
	size_t len = strlen(line);
	if (write(fd, line, len) != (ssize_t)len || write(fd, "\n", 1) != 1) {
		fprintf(stderr, "zerolink: %s: %s\n", path, strerror(errno));
		close(fd);
		return 1;
	}
	char buf[65536];
	size_t got = 0;
	bool first = true, ok = false;
	ssize_t r;
	while ((r = read(fd, buf, sizeof(buf))) > 0) {
		const char *p = buf;
		size_t n = (size_t)r;
		got += n;
		if (first) {
			ok = n >= 3 && !memcmp(buf, "ok\n", 3);
			if (ok) {
				p += 3;
				n -= 3;
			}
			first = false;
		}
		fwrite(p, 1, n, ok ? out : stderr);
	}
	close(fd);
	return got && ok ? 0 : 1;
}

int cmd_iohost(int argc, char **argv)
{
	const char *control = NULL;
	int i = 1;
	for (; i < argc; i++) {
		if (!strcmp(argv[i], "--control") && i + 1 < argc) {
			control = argv[++i];
		} else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage(stdout);
			return 0;
		} else {
			break;
		}
	}
	if (i >= argc) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[i], "start")) {
		char prog[PATH_MAX];
		cli_iohost_path(prog, sizeof(prog));
		char **args = calloc((size_t)(argc - i) + 3, sizeof(*args));
		if (!args)
			return 1;
		int k = 0;
		args[k++] = prog;
		if (control) {
			args[k++] = "--control";
			args[k++] = (char *)control;
		}
		for (int j = i + 1; j < argc; j++)
			args[k++] = argv[j];
		execv(prog, args);
		fprintf(stderr, "zerolink: cannot run %s: %s\n", prog, strerror(errno));
		free(args);
		return 1;
	}
	static const char *known[] = {"ping", "ls",   "prom",   "add",
				      "rm",   "move", "tenant", "untenant"};
	bool ok = false;
	for (size_t k = 0; k < sizeof(known) / sizeof(known[0]); k++)
		ok |= !strcmp(argv[i], known[k]);
	if (!ok) {
		fprintf(stderr, "zerolink iohost: unknown command '%s'\n", argv[i]);
		usage(stderr);
		return 2;
	}
	char line[2048];
	size_t n = 0;
	for (int j = i; j < argc; j++) {
		int w = snprintf(line + n, sizeof(line) - n, "%s%s", j > i ? " " : "", argv[j]);
		if (w < 0 || (size_t)w >= sizeof(line) - n) {
			fprintf(stderr, "zerolink iohost: command too long\n");
			return 2;
		}
		n += (size_t)w;
	}
	return cli_iohost_call(control, line, stdout);
}
