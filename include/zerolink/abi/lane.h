/* SPDX-License-Identifier: MIT */
/*
 * zerolink shared-memory layout of one channel endpoint ("half").
 *
 * Layout only: no functions. Every field is little-endian and fixed-width;
 * offsets are relative to the start of the half region, never pointers, so
 * the same bytes are valid in any process or virtual machine that maps them.
 *
 * A channel between endpoints A and B consists of two halves. Each half is
 * one sealed region written by exactly one endpoint (its owner) and mapped
 * read-only by the other. A half holds:
 *
 *   - the slots and producer index of the owner's outgoing lane;
 *   - the consumer index of the peer's lane (how far the owner has read);
 *   - the owner's "sleeping" flags, read by the peer to decide on a kick;
 *   - the owner's return ring: lend ids of the peer's buffers that the owner
 *     has released, plus how far the owner has reaped the peer's returns;
 *   - the owner's state (open, write side shut, closed) and counters.
 *
 * Indices are free-running u32 counters. A ring of N entries (N a power of
 * two) is addressed with (idx & (N - 1)); the number of entries in flight is
 * (prod - cons), which is correct across the 2^32 wrap because unsigned
 * subtraction is modulo 2^32 and N <= 2^31.
 */
#ifndef ZEROLINK_ABI_LANE_H
#define ZEROLINK_ABI_LANE_H

#include <stddef.h>
#include <stdint.h>

#define ZL_ABI_HALF_MAGIC 0x315a4c48u /* "HLZ1" little-endian */
#define ZL_ABI_VERSION 2u
#define ZL_ABI_CACHELINE 64u
#define ZL_ABI_SLOT_SIZE 64u

/* Slot kinds. */
#define ZL_SLOT_PAD 0u    /* skip to the end of the ring (nslots says how far) */
#define ZL_SLOT_INLINE 1u /* payload in this slot and nslots-1 following ones */
#define ZL_SLOT_DESC 2u   /* a buffer in a pool region: region, offset, len */

/* Slot flags. */
#define ZL_SLOT_F_MORE 0x01u /* the message continues in the next entry */
#define ZL_SLOT_F_LAP 0x80u  /* parity of the lap: set when (index & slot_count) */

/* Bytes of payload carried by the first slot of an INLINE entry. */
#define ZL_SLOT_INLINE_HEAD 56u

/*
 * One 64-byte ring slot. An INLINE entry of len bytes occupies
 * 1 + ceil((len - 56) / 64) consecutive slots (1 when len <= 56); its payload
 * starts at byte 8 of the first slot and runs on contiguously. The producer
 * never lets an entry straddle the end of the ring: it writes a PAD entry
 * instead and starts again at slot 0.
 *
 * The first 8 bytes of an entry (kind, flags, nslots, len: the header word)
 * are written last, as one aligned 64-bit store with release ordering, after
 * the rest of the entry. Their ZL_SLOT_F_LAP bit is the parity of the lap the
 * entry was written in, (index & slot_count) != 0 for the entry's free-running
 * index. A consumer therefore learns that the entry at its position has
 * arrived in two ways: from the producer index (tx_prod), or, when the same
 * slot held an entry header in the previous lap, from that slot's lap bit
 * alone (the slot holds either last lap's header or this lap's). Watching the
 * slot costs one cache-line transfer per message instead of two.
 */
struct zl_abi_slot {
	union {
		struct {
			uint8_t kind;
			uint8_t flags;
			uint16_t nslots; /* slots this entry occupies, >= 1 */
			uint32_t len;    /* payload bytes of this entry */
		};
		uint64_t hdr; /* the four fields above as one word */
	};
	union {
		uint8_t data[ZL_SLOT_INLINE_HEAD];
		struct {
			uint32_t lend;   /* sender's lend id, returned on release */
			uint32_t rsvd;   /* zero */
			uint64_t region; /* global region id */
			uint64_t offset; /* byte offset of the payload in the region */
			uint8_t pad[32];
		} desc;
	} u;
};
_Static_assert(sizeof(struct zl_abi_slot) == ZL_ABI_SLOT_SIZE, "slot size");
_Static_assert(offsetof(struct zl_abi_slot, u) == 8, "inline payload offset");
_Static_assert(offsetof(struct zl_abi_slot, len) == 4, "header word layout");
_Static_assert(offsetof(struct zl_abi_slot, u.desc.region) == 16, "desc region");

/* Header flags (zl_abi_half.flags), fixed at creation. */
/* ZL_HALF_F_MB: after announcing sleep (zl_abi_half.sleep) and before its
 * last look at the rings, the owner calls
 * membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED). A peer whose process is
 * registered for it (MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) may then read
 * the sleep word after publishing without a full fence of its own. Valid
 * only between processes of one kernel: an endpoint in another kernel (a
 * virtual machine) neither sets nor honours it. */
#define ZL_HALF_F_MB 0x1u

/* Owner states (zl_abi_half.state). */
#define ZL_HALF_OPEN 0u
#define ZL_HALF_SHUT_WR 1u /* owner sends no more; peer sees EOF once drained */
#define ZL_HALF_CLOSED 2u  /* owner closed the channel */

/* Sleep flags (zl_abi_half.sleep): set by the owner before it blocks. */
#define ZL_SLEEP_RX 0x1u /* owner waits for the peer's lane to fill */
#define ZL_SLEEP_TX 0x2u /* owner waits for space or for returned buffers */

struct zl_abi_counters {
	uint64_t tx_msgs, tx_bytes;
	uint64_t rx_msgs, rx_bytes;
	uint64_t kicks;  /* eventfd writes to wake the peer */
	uint64_t spins;  /* waits satisfied while spinning */
	uint64_t sleeps; /* waits that blocked */
	uint64_t drops;  /* messages refused: full ring with ZL_DONTWAIT, bad input */
};

struct zl_abi_half {
	/* cache line 0: read-mostly header, fixed at creation */
	uint32_t magic;
	uint16_t version;
	uint16_t hdr_size;   /* sizeof(struct zl_abi_half) */
	uint32_t slot_count; /* power of two */
	uint32_t ret_count;  /* power of two; also the sender's lend capacity */
	uint32_t slots_off;  /* offset of struct zl_abi_slot[slot_count] */
	uint32_t ret_off;    /* offset of uint32_t[ret_count] */
	uint64_t total_size; /* bytes of the region */
	uint32_t domain;     /* owner's domain id */
	uint32_t flags;
	uint8_t pad0[24];

	/* cache line 1: producer of the owner's lane */
	uint32_t tx_prod;
	uint8_t pad1[60];

	/* cache line 2: consumer of the peer's lane */
	uint32_t rx_cons;
	uint8_t pad2[60];

	/* cache line 3: owner's sleep announcement */
	uint32_t sleep;
	uint8_t pad3[60];

	/* cache line 4: owner's return ring (peer's buffers given back) */
	uint32_t ret_prod;
	uint8_t pad4[60];

	/* cache line 5: how far the owner has reaped the peer's return ring */
	uint32_t ret_cons;
	uint8_t pad5[60];

	/* cache line 6: owner's state; and how many records of ancillary
	 * data (descriptors passed over a Unix connection the preload shim
	 * carries) the owner sent on the doorbell socket, each before the
	 * bytes it goes with */
	uint32_t state;
	uint32_t anc;
	uint8_t pad6[56];

	/* cache lines 7-9: counters, written by the owner only (relaxed); the
	 * padding makes the header 640 bytes, so that the slots that follow
	 * it start on a 128-byte boundary (a two-slot entry then lies in one
	 * pair of lines, which CPUs fetch together) */
	struct zl_abi_counters cnt;
	uint8_t pad7[128];
};
_Static_assert(sizeof(struct zl_abi_half) == 10 * ZL_ABI_CACHELINE, "half header size");
_Static_assert(offsetof(struct zl_abi_half, tx_prod) == 1 * ZL_ABI_CACHELINE, "tx_prod line");
_Static_assert(offsetof(struct zl_abi_half, rx_cons) == 2 * ZL_ABI_CACHELINE, "rx_cons line");
_Static_assert(offsetof(struct zl_abi_half, sleep) == 3 * ZL_ABI_CACHELINE, "sleep line");
_Static_assert(offsetof(struct zl_abi_half, ret_prod) == 4 * ZL_ABI_CACHELINE, "ret_prod line");
_Static_assert(offsetof(struct zl_abi_half, ret_cons) == 5 * ZL_ABI_CACHELINE, "ret_cons line");
_Static_assert(offsetof(struct zl_abi_half, state) == 6 * ZL_ABI_CACHELINE, "state line");
_Static_assert(offsetof(struct zl_abi_half, cnt) == 7 * ZL_ABI_CACHELINE, "counters line");

#endif
