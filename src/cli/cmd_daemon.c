/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../lib/internal.h"
#include "broker.h"
#include "cli.h"

int cmd_daemon(int argc, char **argv)
{
	return zl_broker_main(argc, argv);
}

int cli_dial(const char *path_opt, char *path, size_t size, int *fd)
{
	if (path_opt)
		snprintf(path, size, "%s", path_opt);
	else if (zl_broker_default_path(path, size) < 0) {
		fprintf(stderr, "zerolink: broker socket path too long\n");
		return 1;
	}
	int err = zl__broker_dial(path, false, fd);
	if (err) {
		fprintf(stderr,
			"zerolink: no broker at %s (%s); it starts on demand with the first "
			"program, or run 'zerolink daemon'\n",
			path, zl_strerror(err));
		return 1;
	}
	return 0;
}

int cmd_stop(int argc, char **argv)
{
	const char *sock = NULL;
	static const struct option lo[] = {
		{"socket", required_argument, 0, 's'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
	int o;
	while ((o = getopt_long(argc, argv, "s:h", lo, NULL)) != -1) {
		if (o == 's') {
			sock = optarg;
		} else {
			printf("usage: zerolink stop [--socket PATH]\n"
			       "  Asks the broker to exit. Channels already set up keep "
			       "working.\n");
			return o == 'h' ? 0 : 2;
		}
	}
	char path[108];
	int fd;
	if (cli_dial(sock, path, sizeof(path), &fd))
		return 1;
	int err = zl__msg_send(fd, ZL_MSG_SHUTDOWN, 1, NULL, 0, NULL, 0);
	char buf[ZL_PROTO_MAX];
	int nfds = 0;
	ssize_t n = err ? err : zl__msg_recv(fd, buf, sizeof(buf), NULL, &nfds, false);
	close(fd);
	if (n <= 0 || zl__proto_check(buf, (size_t)n, 0) != ZL_MSG_OK) {
		fprintf(stderr,
			"zerolink: the broker refused to stop (only root or its user may)\n");
		return 1;
	}
	printf("broker at %s stopped\n", path);
	return 0;
}
