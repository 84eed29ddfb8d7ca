/* SPDX-License-Identifier: MIT */
#ifndef ZL_CLI_H
#define ZL_CLI_H

int cmd_daemon(int argc, char **argv);
int cmd_stop(int argc, char **argv);
int cmd_ls(int argc, char **argv);
int cmd_watch(int argc, char **argv);
int cmd_bench(int argc, char **argv);

#endif
