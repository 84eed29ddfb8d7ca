/* SPDX-License-Identifier: MIT */
/*
 * zerolink contexts: a process's membership in zerolink (its domain).
 *
 * Every call returns 0 (or a count) on success and a negative errno on
 * failure; none of them touches errno.
 */
#ifndef ZEROLINK_CTX_H
#define ZEROLINK_CTX_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** A process's handle on zerolink: its broker connection and its domain id. */
struct zl_ctx;

/** A domain id, wrapped so that it cannot be mixed up with other integers. */
struct zl_domain {
	uint32_t id;
};

/** Options of zl_ctx_open(). Zero-fill, then set what you need. */
struct zl_ctx_opts {
	/** Name shown by `zerolink ls`; NULL: the program's name. */
	const char *name;
	/** Broker socket; NULL: $ZEROLINK_BROKER, else the default path. */
	const char *broker_path;
	/** ZL_CTX_NO_SPAWN: fail with -ECONNREFUSED instead of starting a broker. */
	unsigned flags;
	/** Pseudo-global address space: reserve the shared address range
	 *  (ZL_PGAS_BASE, ZL_PGAS_SIZE) and map this domain's pools, and the
	 *  pools of peers that use it too, at the same virtual address in every
	 *  such domain, so pointers inside buffers are valid as they are. */
	int pseudo_global;
};

#define ZL_CTX_NO_SPAWN 0x1u

/** The range every pseudo-global domain reserves: 1 TiB, in 256 windows of
 *  4 GiB; domain d places its pools in window d % 256. */
#define ZL_PGAS_BASE 0x500000000000ull
#define ZL_PGAS_SIZE (1ull << 40)
#define ZL_PGAS_WINDOW (4ull << 30)

/**
 * zl_ctx_open() - join zerolink.
 * @out:  receives the context.
 * @opts: options, or NULL for defaults.
 *
 * Connects to the broker at opts->broker_path, $ZEROLINK_BROKER, or the
 * default path (zl_broker_default_path()). When no broker answers and
 * ZL_CTX_NO_SPAWN is not set, starts one (the program in $ZEROLINKD, else the
 * installed zerolinkd) and waits up to two seconds for it.
 *
 * Return: 0; -ECONNREFUSED no broker and none could be started; -EPROTO the
 * broker speaks another protocol version; -ENOMEM; -ENAMETOOLONG the path is
 * too long for a Unix socket; other negative errnos from socket(2)/connect(2).
 * Thread safety: the context may be used from several threads.
 */
int zl_ctx_open(struct zl_ctx **out, const struct zl_ctx_opts *opts);

/**
 * zl_ctx_close() - leave zerolink. Channels, listeners and pools created from
 * the context keep it alive and keep working: it is released (its broker
 * connection closed, its pseudo-global range returned) when the last of them
 * is closed, or at once when none is open. Call it once per context. NULL is
 * accepted.
 */
void zl_ctx_close(struct zl_ctx *ctx);

/**
 * zl_ctx_open() with opts->pseudo_global fails with -EADDRINUSE when the
 * range is already taken in this process (another context uses it, or
 * something else is mapped there).
 */

/** zl_ctx_domain() - the domain id the broker gave this context. */
struct zl_domain zl_ctx_domain(const struct zl_ctx *ctx);

/**
 * zl_broker_default_path() - write the default broker socket path into buf.
 * Return: length written (without NUL), or -ENAMETOOLONG.
 */
int zl_broker_default_path(char *buf, size_t size);

/** zl_strerror() - a short text for a negative errno returned by zerolink. */
const char *zl_strerror(int err);

#ifdef __cplusplus
}
#endif
#endif
