/* SPDX-License-Identifier: MIT */
#ifndef ZL_CLI_H
#define ZL_CLI_H

#include <stddef.h>
#include <stdio.h>

int cmd_daemon(int argc, char **argv);
int cmd_stop(int argc, char **argv);
int cmd_ls(int argc, char **argv);
int cmd_watch(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_iohost(int argc, char **argv);

/* Connect to the running broker (never starts one); prints why not and
 * returns 1 on failure. path receives the socket path used. */
int cli_dial(const char *path_opt, char *path, size_t size, int *fd);

/* Send one line to the I/O host's control socket (NULL: the default
 * one) and print its answer to out; 0 when it answered "ok". */
int cli_iohost_call(const char *control, const char *line, FILE *out);

/* The zerolink-iohost program: the one beside this program (a build
 * tree), else the installed one. */
void cli_iohost_path(char *buf, size_t size);

#endif
