/* SPDX-License-Identifier: MIT */
#ifndef ZL_BROKER_H
#define ZL_BROKER_H

/* Run the broker with zerolinkd's command line; returns the exit status. */
int zl_broker_main(int argc, char **argv);

#endif
