/* SPDX-License-Identifier: MIT */
/*
 * The I/O host's AES-256-XTS (src/iohost/aes_xts.c) against OpenSSL's:
 * the same ciphertext for random keys, unit numbers (the tweak's high
 * bytes too) and every length from one block to a 4 KiB unit and past it,
 * in place and not, at unaligned addresses; decryption inverts it; a
 * length that is not whole blocks is refused with nothing written.
 */
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "../../src/iohost/aes_xts.h"
#include "../zltest.h"

static unsigned char key[64];
static EVP_CIPHER_CTX *ossl_enc, *ossl_dec;

static void ossl(bool enc, uint64_t unit_no, const unsigned char *in, unsigned char *out,
		 size_t len)
{
	unsigned char iv[16] = {0};
	for (int i = 0; i < 8; i++)
		iv[i] = (unsigned char)(unit_no >> (8 * i));
	EVP_CIPHER_CTX *c = enc ? ossl_enc : ossl_dec;
	int n = 0;
	CHECK(EVP_CipherInit_ex(c, NULL, NULL, NULL, iv, enc ? 1 : 0) == 1);
	CHECK(EVP_CipherUpdate(c, out, &n, in, (int)len) == 1);
	CHECK_EQ(n, len);
}

static void new_key(struct aes_xts_key *k)
{
	do
		CHECK(RAND_bytes(key, sizeof(key)) == 1);
	while (!memcmp(key, key + 32, 32));
	aes_xts_setkey(k, key);
	CHECK(EVP_CipherInit_ex(ossl_enc, EVP_aes_256_xts(), NULL, key, NULL, 1) == 1);
	CHECK(EVP_CipherInit_ex(ossl_dec, EVP_aes_256_xts(), NULL, key, NULL, 0) == 1);
}

enum { MAX = 8192 + 64 };
static unsigned char plain[MAX + 1], ours[MAX + 1], theirs[MAX + 1], back[MAX + 1];
static unsigned checked;

/* One length, for each of a few unit numbers: ours as OpenSSL's, both ways,
 * in place too; at an odd address on odd rounds. */
static void check_len(const struct aes_xts_key *k, size_t len, int round)
{
	const uint64_t units[] = {0, 1, 0xff, 0x100, 0x0123456789abcdefull, 1ull << 63, UINT64_MAX};
	size_t a = (size_t)(round & 1);
	for (size_t u = 0; u < sizeof(units) / sizeof(units[0]); u++) {
		uint64_t no = units[u] ^ (uint64_t)round;
		CHECK(RAND_bytes(plain + a, (int)len) == 1);
		CHECK(aes_xts_crypt(k, true, no, len, plain + a, ours + a, len));
		ossl(true, no, plain + a, theirs, len);
		if (memcmp(ours + a, theirs, len)) {
			fprintf(stderr, "encryption differs: len %zu unit %#llx\n", len,
				(unsigned long long)no);
			exit(1);
		}
		CHECK(aes_xts_crypt(k, false, no, len, ours + a, back + a, len));
		CHECK(!memcmp(back + a, plain + a, len));
		/* decryption of data that was not ours */
		ossl(false, no, plain + a, theirs, len);
		CHECK(aes_xts_crypt(k, false, no, len, plain + a, back + a, len));
		CHECK(!memcmp(back + a, theirs, len));
		/* in place */
		memcpy(back + a, plain + a, len);
		CHECK(aes_xts_crypt(k, true, no, len, back + a, back + a, len));
		CHECK(!memcmp(back + a, ours + a, len));
		checked++;
	}
}

/* Runs of 1 to 9 consecutive units in one call (tweaks are made four
 * units at a time), each unit as OpenSSL's, across the unit number's wrap. */
static void check_units(const struct aes_xts_key *k)
{
	const size_t unit_lens[] = {16, 48, 512, 4096};
	const uint64_t starts[] = {0, 5, UINT64_MAX - 3};
	for (size_t i = 0; i < sizeof(unit_lens) / sizeof(unit_lens[0]); i++)
		for (size_t s = 0; s < sizeof(starts) / sizeof(starts[0]); s++)
			for (size_t n = 1; n <= 9 && n * unit_lens[i] <= MAX; n++) {
				size_t ul = unit_lens[i], len = n * ul;
				CHECK(RAND_bytes(plain, (int)len) == 1);
				for (int enc = 0; enc < 2; enc++) {
					CHECK(aes_xts_crypt(k, enc, starts[s], ul, plain, ours,
							    len));
					for (size_t u = 0; u < n; u++)
						ossl(enc, starts[s] + u, plain + u * ul,
						     theirs + u * ul, ul);
					if (memcmp(ours, theirs, len)) {
						fprintf(stderr,
							"%s differs: %zu units of %zu from %#llx\n",
							enc ? "encryption" : "decryption", n, ul,
							(unsigned long long)starts[s]);
						exit(1);
					}
					checked++;
				}
			}
}

int main(void)
{
	if (!aes_xts_usable())
		SKIP("this CPU lacks VAES, VPCLMULQDQ or AVX-512 (the crypt module uses OpenSSL)");
	ossl_enc = EVP_CIPHER_CTX_new();
	ossl_dec = EVP_CIPHER_CTX_new();
	CHECK(ossl_enc && ossl_dec);
	struct aes_xts_key k;
	for (int round = 0; round < 4; round++) {
		new_key(&k);
		for (size_t len = 16; len <= 1024; len += 16)
			check_len(&k, len, round);
		const size_t big[] = {2032, 2048, 4080, 4096, 4112, 8192, MAX};
		for (size_t i = 0; i < sizeof(big) / sizeof(big[0]); i++)
			check_len(&k, big[i], round);
		check_units(&k);
	}
	/* units differ by their number alone */
	memset(plain, 0, 4096);
	CHECK(aes_xts_crypt(&k, true, 7, 4096, plain, ours, 4096));
	CHECK(aes_xts_crypt(&k, true, 8, 4096, plain, theirs, 4096));
	CHECK(memcmp(ours, theirs, 4096) != 0);
	/* not whole blocks, or not whole units: refused, nothing written */
	const size_t bad[][2] = {{0, 16},      {16, 0},      {1, 1},     {15, 15},    {17, 17},
				 {4095, 4095}, {4097, 4097}, {512, 768}, {4096, 512}, {32, 48}};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(ours, 0xa5, 4200);
		CHECK(!aes_xts_crypt(&k, true, 1, bad[i][0], plain, ours, bad[i][1]));
		CHECK(!aes_xts_crypt(&k, false, 1, bad[i][0], plain, ours, bad[i][1]));
		for (size_t j = 0; j < 4200; j++)
			CHECK_EQ(ours[j], 0xa5);
	}
	EVP_CIPHER_CTX_free(ossl_enc);
	EVP_CIPHER_CTX_free(ossl_dec);
	printf("aes_xts: %u cases the same as OpenSSL's\n", checked);
	return 0;
}
