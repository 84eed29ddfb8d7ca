/* SPDX-License-Identifier: MIT */
/* The zerolink command: one subcommand per file, dispatched from this table. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const struct {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *help;
} cmds[] = {
	{"daemon", cmd_daemon, "run the broker (zerolinkd) in the foreground"},
	{"stop", cmd_stop, "ask the running broker to exit"},
	{"ls", cmd_ls, "list domains, services, channels (with counters) and regions"},
	{"watch", cmd_watch, "print membership events as they happen"},
	{"bench", cmd_bench, "measure zerolink against the memory floor and kernel paths"},
	{"run", cmd_run, "run a program with its local TCP connections over zerolink"},
	{"iohost", cmd_iohost, "start the I/O host (block devices) or control a running one"},
};

static void usage(FILE *f)
{
	fprintf(f, "usage: zerolink COMMAND [ARGS...]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		fprintf(f, "  %-8s %s\n", cmds[i].name, cmds[i].help);
	fprintf(f, "\n'zerolink COMMAND --help' describes each command.\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("zerolink 0.1.0\n");
		return 0;
	}
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (!strcmp(argv[1], cmds[i].name))
			return cmds[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "zerolink: unknown command '%s' (try 'zerolink --help')\n", argv[1]);
	return 2;
}
