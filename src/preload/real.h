/* SPDX-License-Identifier: MIT */
/*
 * Force-included (-include) into the library's sources when they are built
 * into libzerolink-preload.so: the library's own descriptor calls (its
 * control sockets, eventfds, epoll sets, doorbell kicks) go straight to the
 * C library, never through the shim's interposed versions, which would take
 * the shim's locks again or read the descriptors as the program's.
 * preload.c defines the zl__real_* functions.
 */
#ifndef ZL_PRELOAD_REAL_H
#define ZL_PRELOAD_REAL_H

/* the library's API stays inside the shim: a program that links
 * libzerolink.so itself keeps its own copy */
#define ZL_EXPORT __attribute__((visibility("hidden")))

#define socket zl__real_socket
#define connect zl__real_connect
#define close zl__real_close
#define read zl__real_read
#define write zl__real_write
#define recv zl__real_recv
#define send zl__real_send
#define recvmsg zl__real_recvmsg
#define sendmsg zl__real_sendmsg
#define shutdown zl__real_shutdown
#define fcntl zl__real_fcntl
#define dup3 zl__real_dup3
#define poll zl__real_poll
#define epoll_ctl zl__real_epoll_ctl
#define epoll_wait zl__real_epoll_wait

#endif
