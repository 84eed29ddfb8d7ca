/* SPDX-License-Identifier: MIT */
/*
 * zerolink block protocol (MMBlk): the messages a block queue carries.
 *
 * Layout only: no functions. Every field is little-endian and fixed-width.
 *
 * A block queue is one zerolink channel between a client and the I/O host,
 * opened to the service "blk.<device>" in shared mode. Each message starts
 * with a header copied into the lane (the message's first, inline segment);
 * data travels by reference in pool buffers (the following segments):
 *
 *   client -> host  HELLO          struct zl_blk_hello
 *   host -> client  INFO           struct zl_blk_info_msg
 *   client -> host  request        struct zl_blk_req_hdr [+ write data buffers]
 *   host -> client  reply          struct zl_blk_rep_hdr [+ one read data buffer]
 *
 * A write's data is the client's pool buffers, which the I/O host maps
 * read-only and hands to the backend without copying; they return to the
 * client when the write completes. A read's data is a buffer of the I/O
 * host's pool for this queue, which the client maps read-only and releases
 * when done with it. Neither side ever writes into the other's memory.
 *
 * Requests complete in any order; the reply echoes the request id. Statuses
 * are 0 or a negative errno with Linux's numbering (listed below).
 */
#ifndef ZEROLINK_ABI_BLK_H
#define ZEROLINK_ABI_BLK_H

#include <stddef.h>
#include <stdint.h>

#define ZL_BLK_MAGIC 0x4b4c425au /* "ZBLK" little-endian */
#define ZL_BLK_VERSION 1u
#define ZL_BLK_SERVICE_PREFIX "blk."

/* Operations (zl_blk_req_hdr.op). */
#define ZL_BLK_OP_READ 1u
#define ZL_BLK_OP_WRITE 2u
#define ZL_BLK_OP_FLUSH 3u        /* completed writes reach stable storage */
#define ZL_BLK_OP_DISCARD 4u      /* the range may read back as anything */
#define ZL_BLK_OP_WRITE_ZEROES 5u /* the range reads back as zeroes */
#define ZL_BLK_OP_HELLO 0x40u
#define ZL_BLK_OP_INFO 0x41u

/* Request flags (zl_blk_req_hdr.flags). */
#define ZL_BLK_F_FUA 0x1u     /* write: stable before the reply */
#define ZL_BLK_F_NOUNMAP 0x2u /* write-zeroes: keep the blocks allocated */
#define ZL_BLK_F_ALL (ZL_BLK_F_FUA | ZL_BLK_F_NOUNMAP)

/* Device flags (zl_blk_info_msg.flags). */
#define ZL_BLK_INFO_RO 0x1u           /* writes, discards and write-zeroes fail -EROFS */
#define ZL_BLK_INFO_FLUSH 0x2u        /* flush and FUA are meaningful */
#define ZL_BLK_INFO_DISCARD 0x4u      /* discard is offered */
#define ZL_BLK_INFO_WRITE_ZEROES 0x8u /* write-zeroes is offered */

/* Statuses (zl_blk_rep_hdr.status): negated Linux errno values. */
#define ZL_BLK_S_OK 0
#define ZL_BLK_S_EIO (-5)         /* I/O error; also a checksum that does not match */
#define ZL_BLK_S_ENOMEM (-12)     /* the I/O host could not take the request */
#define ZL_BLK_S_EINVAL (-22)     /* malformed: op, flags, length, alignment, segments */
#define ZL_BLK_S_ENOSPC (-28)     /* the backend is full */
#define ZL_BLK_S_EROFS (-30)      /* write to a read-only device */
#define ZL_BLK_S_ERANGE (-34)     /* beyond the end of the device */
#define ZL_BLK_S_EOPNOTSUPP (-95) /* an operation the device does not offer */
#define ZL_BLK_S_ESHUTDOWN (-108) /* the device is being removed */

/* Largest data length of one request; the I/O host may announce less. */
#define ZL_BLK_MAX_IO (1u << 20)

struct zl_blk_hello {
	uint32_t magic;  /* ZL_BLK_MAGIC */
	uint8_t op;      /* ZL_BLK_OP_HELLO */
	uint8_t version; /* ZL_BLK_VERSION */
	uint16_t queue;  /* the client's index of this queue */
	uint32_t depth;  /* requests the client keeps in flight at most */
	uint32_t flags;  /* zero */
	uint64_t cookie; /* client's choice, echoed in INFO */
};
_Static_assert(sizeof(struct zl_blk_hello) == 24, "hello size");

struct zl_blk_info_msg {
	uint32_t magic;      /* ZL_BLK_MAGIC */
	uint8_t op;          /* ZL_BLK_OP_INFO */
	uint8_t version;     /* ZL_BLK_VERSION */
	uint16_t queue;      /* echoed */
	int32_t status;      /* 0, or why the queue is refused */
	uint32_t flags;      /* ZL_BLK_INFO_* */
	uint64_t size;       /* device bytes, a multiple of block_size */
	uint32_t block_size; /* 512 or 4096: offsets and lengths are multiples */
	uint32_t max_io;     /* bytes per request at most */
	uint32_t depth;      /* requests in flight at most (granted) */
	uint32_t rsvd;
	uint64_t cookie; /* echoed */
};
_Static_assert(sizeof(struct zl_blk_info_msg) == 48, "info size");

struct zl_blk_req_hdr {
	uint8_t op;
	uint8_t rsvd0;
	uint16_t flags;  /* ZL_BLK_F_* */
	uint32_t len;    /* bytes; 0 for flush */
	uint64_t id;     /* client's, echoed in the reply */
	uint64_t offset; /* bytes from the start of the device */
};
_Static_assert(sizeof(struct zl_blk_req_hdr) == 24, "request header size");
_Static_assert(offsetof(struct zl_blk_req_hdr, id) == 8, "request id offset");

struct zl_blk_rep_hdr {
	uint8_t op; /* echoed */
	uint8_t rsvd0;
	uint16_t rsvd1;
	int32_t status; /* ZL_BLK_S_* */
	uint64_t id;    /* echoed */
	uint32_t len;   /* data bytes that follow (reads), else 0 */
	uint32_t rsvd2;
};
_Static_assert(sizeof(struct zl_blk_rep_hdr) == 24, "reply header size");

#endif
