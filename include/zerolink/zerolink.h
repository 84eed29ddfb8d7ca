/* SPDX-License-Identifier: MIT */
/* zerolink: zero-copy shared-memory channels between co-located domains. */
#ifndef ZEROLINK_ZEROLINK_H
#define ZEROLINK_ZEROLINK_H

#define ZEROLINK_VERSION_MAJOR 0
#define ZEROLINK_VERSION_MINOR 1
#define ZEROLINK_VERSION_PATCH 0

#include <zerolink/blk.h>
#include <zerolink/chan.h>
#include <zerolink/ctx.h>
#include <zerolink/pool.h>
#include <zerolink/sock.h>

#endif
