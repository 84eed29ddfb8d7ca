/* SPDX-License-Identifier: MIT */
/*
 * AES-256-XTS (IEEE 1619) on x86-64 with VAES, VPCLMULQDQ and AVX-512: four
 * blocks per instruction, thirty-two in flight. For data units that are whole
 * blocks (a device's 512 B or 4 KiB sectors); no ciphertext stealing. The
 * output is the same as any XTS-AES-256 (OpenSSL's, dm-crypt's): the crypt
 * module checks that when it opens (vaes_agrees in mod_crypt.c).
 */
#ifndef ZL_IOHOST_AES_XTS_H
#define ZL_IOHOST_AES_XTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The expanded keys: the data key's encryption and decryption rounds and
 * the tweak key's encryption rounds, 15 round keys of 16 bytes each. */
struct aes_xts_key {
	_Alignas(64) unsigned char enc[15][16];
	unsigned char dec[15][16];
	unsigned char tweak[15][16];
};

/* Whether this CPU (and the kernel, which must save the AVX-512 state)
 * offers what aes_xts_crypt needs. */
bool aes_xts_usable(void);

/* Expand a 64-byte XTS key: the data key, then the tweak key (the order of
 * OpenSSL and dm-crypt). Only where aes_xts_usable(). */
void aes_xts_setkey(struct aes_xts_key *k, const unsigned char key[64]);

/* Encrypt or decrypt len bytes from in to out (which may be the same):
 * consecutive data units of unit_len bytes (a multiple of 16, not 0), the
 * first numbered unit_no, each unit's tweak its number as a 128-bit
 * little-endian integer (dm-crypt's plain64). False, and nothing written,
 * when unit_len is not whole blocks or len not whole units. */
bool aes_xts_crypt(const struct aes_xts_key *k, bool enc, uint64_t unit_no, size_t unit_len,
		   const void *in, void *out, size_t len);

#endif
