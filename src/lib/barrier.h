/* SPDX-License-Identifier: MIT */
/*
 * The only place where zerolink spells out memory ordering.
 *
 * Shared-memory fields are plain fixed-width integers in ABI structs (so the
 * layout is the same for every language and for a guest OS), therefore these
 * wrappers use the compiler's __atomic builtins, which act on plain objects
 * with the same semantics as <stdatomic.h>'s *_explicit functions and are
 * understood by ThreadSanitizer. Nothing else in the tree uses volatile or
 * __sync_*.
 */
#ifndef ZL_BARRIER_H
#define ZL_BARRIER_H

#include <stdatomic.h>

/* Load that later loads and stores cannot be reordered before. */
#define zl_load_acquire(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
/* Store that earlier loads and stores cannot be reordered after. */
#define zl_store_release(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
/* Single-copy-atomic access with no ordering (READ_ONCE / WRITE_ONCE). */
#define zl_read_once(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define zl_write_once(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
/* Full fence: orders earlier stores before later loads (Dekker's pattern). */
#define zl_fence() atomic_thread_fence(memory_order_seq_cst)
/* Orders nothing in hardware: keeps the compiler from moving accesses across
 * (the other half of an asymmetric fence, see F_sleep in chan.c). */
#define zl_compiler_barrier() atomic_signal_fence(memory_order_seq_cst)
/* Atomic read-modify-write on process-local data. */
#define zl_xchg(p, v) __atomic_exchange_n((p), (v), __ATOMIC_ACQ_REL)
#define zl_cas(p, expp, v)                                                                         \
	__atomic_compare_exchange_n((p), (expp), (v), 0, __ATOMIC_RELEASE, __ATOMIC_RELAXED)
#define zl_fetch_add(p, v) __atomic_fetch_add((p), (v), __ATOMIC_RELAXED)

static inline void zl_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#endif
}

#endif
