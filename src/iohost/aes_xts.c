/* SPDX-License-Identifier: MIT */
/*
 * AES-256-XTS with VAES and AVX-512 (aes_xts.h).
 *
 * Why by hand: Debian 12's libraries run XTS one or two blocks wide
 * (OpenSSL 3.0 with AES-NI: 4.7 GB/s a core from memory, 7 from the cache;
 * libgcrypt 1.10 with VAES on 256-bit registers: 8.8 / 11.7), below what a
 * core copies (13-30 GB/s), so encryption at rest would cost half of a
 * device's throughput. With 512-bit VAES the cipher keeps pace with
 * memory. OpenSSL stays the reference: mod_crypt checks this code against
 * it whenever a device opens, and uses it instead where the CPU lacks
 * these instructions.
 *
 * XTS, for a data unit of blocks P_0 .. P_n-1 under keys K1 (data) and
 * K2 (tweak): T = AES-enc(K2, unit number), C_j = AES(K1, P_j ^ T x^j) ^
 * T x^j, with x^j multiplication in GF(2^128) modulo x^128 + x^7 + x^2 +
 * x + 1, the 128-bit value little-endian. A 512-bit register holds four
 * consecutive tweaks; the next four are the same times x^4: a shift of
 * each 128-bit lane by 4 bits, the bits shifted out folded back in by a
 * carry-less multiplication with 0x87.
 */
#include "aes_xts.h"

#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>

/* how far ahead of the cipher the input is fetched (bytes) */
#define XTS_AHEAD 4096

#define XTS_TARGET __attribute__((target("aes,avx2,avx512f,avx512bw,vaes,vpclmulqdq")))

bool aes_xts_usable(void)
{
	unsigned a, b, c, d;
	/* leaf 1: AES-NI, and XGETBV offered (OSXSAVE) */
	if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_AES) || !(c & bit_OSXSAVE))
		return false;
	/* leaf 7: AVX-512 F and BW, VAES, VPCLMULQDQ */
	if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(b & bit_AVX512F) || !(b & bit_AVX512BW) ||
	    !(c & bit_VAES) || !(c & bit_VPCLMULQDQ))
		return false;
	/* and the kernel saves what they use: SSE, AVX, opmask and the
	 * upper halves and upper sixteen of the ZMM registers (XCR0) */
	uint32_t lo, hi;
	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	return (lo & 0xe6) == 0xe6;
}

/* One step of the AES-256 key schedule: the next round key from the one
 * two before (k) and the key generation assist of the one before, whose
 * dword sel (0xff: RotWord(SubWord) ^ rcon; 0xaa: SubWord) applies. */
#define KEY_STEP(k, assist, sel)                                                                   \
	__extension__({                                                                            \
		__m128i k_ = (k);                                                                  \
		k_ = _mm_xor_si128(k_, _mm_slli_si128(k_, 4));                                     \
		k_ = _mm_xor_si128(k_, _mm_slli_si128(k_, 4));                                     \
		k_ = _mm_xor_si128(k_, _mm_slli_si128(k_, 4));                                     \
		_mm_xor_si128(k_, _mm_shuffle_epi32((assist), (sel)));                             \
	})

XTS_TARGET static void expand(const unsigned char *key, __m128i rk[15])
{
	__m128i a = _mm_loadu_si128((const __m128i *)key);
	__m128i b = _mm_loadu_si128((const __m128i *)(key + 16));
	rk[0] = a;
	rk[1] = b;
	/* the round constant must be an immediate: seven steps written out */
#define ROUND_PAIR(i, rcon)                                                                        \
	a = KEY_STEP(a, _mm_aeskeygenassist_si128(b, rcon), 0xff);                                 \
	rk[i] = a;                                                                                 \
	if (i < 14) {                                                                              \
		b = KEY_STEP(b, _mm_aeskeygenassist_si128(a, 0), 0xaa);                            \
		rk[i + 1] = b;                                                                     \
	}
	ROUND_PAIR(2, 0x01)
	ROUND_PAIR(4, 0x02)
	ROUND_PAIR(6, 0x04)
	ROUND_PAIR(8, 0x08)
	ROUND_PAIR(10, 0x10)
	ROUND_PAIR(12, 0x20)
	ROUND_PAIR(14, 0x40)
#undef ROUND_PAIR
}

XTS_TARGET void aes_xts_setkey(struct aes_xts_key *k, const unsigned char key[64])
{
	__m128i e[15], t[15];
	expand(key, e);
	expand(key + 32, t);
	/* the equivalent inverse cipher's keys, for AESDEC */
	__m128i d[15];
	d[0] = e[14];
	for (int i = 1; i < 14; i++)
		d[i] = _mm_aesimc_si128(e[14 - i]);
	d[14] = e[0];
	for (int i = 0; i < 15; i++) {
		_mm_storeu_si128((__m128i *)k->enc[i], e[i]);
		_mm_storeu_si128((__m128i *)k->dec[i], d[i]);
		_mm_storeu_si128((__m128i *)k->tweak[i], t[i]);
	}
	explicit_bzero(e, sizeof(e));
	explicit_bzero(d, sizeof(d));
	explicit_bzero(t, sizeof(t));
}

/* Each 128-bit lane of v times x^n (1 <= n <= 56). hi: ones in each
 * lane's upper 64 bits; poly: 0x87 in each 64-bit half. */
XTS_TARGET static inline __m512i mul_xn(__m512i v, int n, __m512i poly, __m512i hi)
{
	/* the bits each 64-bit half loses, swapped to the other half */
	__m512i out = _mm512_shuffle_epi32(_mm512_srli_epi64(v, 64 - n), _MM_PERM_BADC);
	__m512i r = _mm512_slli_epi64(v, n);
	/* the low half's lost bits carry into the high half; the high
	 * half's wrap around reduced: times 0x87 into the low half */
	r = _mm512_xor_si512(r, _mm512_clmulepi64_epi128(out, poly, 0x00));
	return _mm512_ternarylogic_epi64(r, out, hi, 0x78); /* r ^ (out & hi) */
}

/* The AES rounds on eight registers of four blocks each: two VAES a cycle
 * of four cycles' latency want eight in flight (four ran at 16 GB/s, eight
 * at 20, from the cache). Named, not an array, so that they stay in
 * registers. */
#define ROUNDS8(op, oplast)                                                                        \
	do {                                                                                       \
		ALL8(x, = _mm512_xor_si512, K[0]);                                                 \
		for (int r_ = 1; r_ < 14; r_++)                                                    \
			ALL8(x, = op, K[r_]);                                                      \
		ALL8(x, = oplast, K[14]);                                                          \
	} while (0)
#define ALL8(x, f, k)                                                                              \
	do {                                                                                       \
		x##0 f(x##0, k);                                                                   \
		x##1 f(x##1, k);                                                                   \
		x##2 f(x##2, k);                                                                   \
		x##3 f(x##3, k);                                                                   \
		x##4 f(x##4, k);                                                                   \
		x##5 f(x##5, k);                                                                   \
		x##6 f(x##6, k);                                                                   \
		x##7 f(x##7, k);                                                                   \
	} while (0)

/* One data unit of len bytes (whole blocks) from src to dst. (Kept out of
 * line: a loop over units around it measured slower on data streaming
 * from memory.) */
XTS_TARGET __attribute__((noinline)) static void unit_one(const struct aes_xts_key *k, bool enc,
							  uint64_t unit_no,
							  const unsigned char *src,
							  unsigned char *dst, size_t len)
{
	const __m512i poly = _mm512_set1_epi64(0x87);
	const __m512i hi = _mm512_set_epi64(-1, 0, -1, 0, -1, 0, -1, 0);
	/* the first tweak: the unit's number encrypted with the tweak key */
	__m128i t = _mm_xor_si128(_mm_set_epi64x(0, (long long)unit_no),
				  _mm_loadu_si128((const __m128i *)k->tweak[0]));
	for (int i = 1; i < 14; i++)
		t = _mm_aesenc_si128(t, _mm_loadu_si128((const __m128i *)k->tweak[i]));
	t = _mm_aesenclast_si128(t, _mm_loadu_si128((const __m128i *)k->tweak[14]));
	/* lanes T, T x, T x^2, T x^3 */
	__m512i t4 = _mm512_broadcast_i32x4(t);
	__m512i tw = _mm512_mask_blend_epi64(0x0c, t4, mul_xn(t4, 1, poly, hi));
	tw = _mm512_mask_blend_epi64(0x30, tw, mul_xn(t4, 2, poly, hi));
	tw = _mm512_mask_blend_epi64(0xc0, tw, mul_xn(t4, 3, poly, hi));
	const unsigned char(*rk)[16] = enc ? k->enc : k->dec;
	__m512i K[15];
	for (int i = 0; i < 15; i++)
		K[i] = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)rk[i]));
	size_t o = 0;
	for (; len - o >= 512; o += 512) {
		__m512i w[8];
		w[0] = tw;
		w[1] = mul_xn(tw, 4, poly, hi);
		w[2] = mul_xn(tw, 8, poly, hi);
		w[3] = mul_xn(w[1], 8, poly, hi);
		for (int i = 4; i < 8; i++)
			w[i] = mul_xn(w[i - 4], 16, poly, hi);
		tw = mul_xn(tw, 32, poly, hi);
		/* asked for early, the data is there when the rounds are
		 * done: a page ahead, so that the next page's walk, which the
		 * hardware's prefetchers do not cross into, starts early */
		for (int i = 0; i < 8; i++)
			_mm_prefetch((const char *)src + o + XTS_AHEAD + 64 * i, _MM_HINT_T0);
		__m512i x0 = _mm512_xor_si512(_mm512_loadu_si512(src + o), w[0]);
		__m512i x1 = _mm512_xor_si512(_mm512_loadu_si512(src + o + 64), w[1]);
		__m512i x2 = _mm512_xor_si512(_mm512_loadu_si512(src + o + 128), w[2]);
		__m512i x3 = _mm512_xor_si512(_mm512_loadu_si512(src + o + 192), w[3]);
		__m512i x4 = _mm512_xor_si512(_mm512_loadu_si512(src + o + 256), w[4]);
		__m512i x5 = _mm512_xor_si512(_mm512_loadu_si512(src + o + 320), w[5]);
		__m512i x6 = _mm512_xor_si512(_mm512_loadu_si512(src + o + 384), w[6]);
		__m512i x7 = _mm512_xor_si512(_mm512_loadu_si512(src + o + 448), w[7]);
		if (enc)
			ROUNDS8(_mm512_aesenc_epi128, _mm512_aesenclast_epi128);
		else
			ROUNDS8(_mm512_aesdec_epi128, _mm512_aesdeclast_epi128);
		_mm512_storeu_si512(dst + o, _mm512_xor_si512(x0, w[0]));
		_mm512_storeu_si512(dst + o + 64, _mm512_xor_si512(x1, w[1]));
		_mm512_storeu_si512(dst + o + 128, _mm512_xor_si512(x2, w[2]));
		_mm512_storeu_si512(dst + o + 192, _mm512_xor_si512(x3, w[3]));
		_mm512_storeu_si512(dst + o + 256, _mm512_xor_si512(x4, w[4]));
		_mm512_storeu_si512(dst + o + 320, _mm512_xor_si512(x5, w[5]));
		_mm512_storeu_si512(dst + o + 384, _mm512_xor_si512(x6, w[6]));
		_mm512_storeu_si512(dst + o + 448, _mm512_xor_si512(x7, w[7]));
	}
	/* the rest, up to four blocks at a time (masked) */
	for (; o < len; o += 64) {
		size_t n = len - o < 64 ? len - o : 64;
		__mmask64 m = n == 64 ? ~(__mmask64)0 : (((__mmask64)1 << n) - 1);
		__m512i x = _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, src + o), tw);
		x = _mm512_xor_si512(x, K[0]);
		for (int r = 1; r < 14; r++)
			x = enc ? _mm512_aesenc_epi128(x, K[r]) : _mm512_aesdec_epi128(x, K[r]);
		x = enc ? _mm512_aesenclast_epi128(x, K[14]) : _mm512_aesdeclast_epi128(x, K[14]);
		_mm512_mask_storeu_epi8(dst + o, m, _mm512_xor_si512(x, tw));
		tw = mul_xn(tw, 4, poly, hi);
	}
}

bool aes_xts_crypt(const struct aes_xts_key *k, bool enc, uint64_t unit_no, size_t unit_len,
		   const void *in, void *out, size_t len)
{
	if (!unit_len || unit_len % 16 || !len || len % unit_len)
		return false;
	for (size_t o = 0; o < len; o += unit_len, unit_no++)
		unit_one(k, enc, unit_no, (const unsigned char *)in + o, (unsigned char *)out + o,
			 unit_len);
	return true;
}

#else /* not x86-64: mod_crypt uses OpenSSL alone */

bool aes_xts_usable(void)
{
	return false;
}

void aes_xts_setkey(struct aes_xts_key *k, const unsigned char key[64])
{
	(void)key;
	memset(k, 0, sizeof(*k));
}

bool aes_xts_crypt(const struct aes_xts_key *k, bool enc, uint64_t unit_no, size_t unit_len,
		   const void *in, void *out, size_t len)
{
	(void)k, (void)enc, (void)unit_no, (void)unit_len, (void)in, (void)out, (void)len;
	return false;
}

#endif
