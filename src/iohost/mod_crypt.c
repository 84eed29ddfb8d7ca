/* SPDX-License-Identifier: MIT */
/*
 * crypt: encryption at rest, AES-XTS-256 through OpenSSL's libcrypto, as
 * dm-crypt's aes-xts-plain64: each block of the device (its block_size) is
 * one XTS data unit, its tweak the block's number, little-endian. The key is
 * 64 bytes read from a file (crypt_key = FILE; two AES-256 keys, which must
 * differ), as dm-crypt takes a key file.
 *
 * A write is encrypted from the client's buffer (mapped read-only here)
 * into a buffer of the I/O host's, which the backend writes: the one copy
 * encryption needs. A read is decrypted in place, in the I/O host's buffer,
 * before it is lent to the client. Discard and write-zeroes are not
 * offered: the zeroes they leave would not decrypt to zeroes (dm-crypt, too,
 * does not pass discards by default).
 */
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "iohost.h"

struct crypt {
	unsigned char key[64];
	uint32_t unit; /* bytes per data unit: the device's block size */
	/* per sidecore: a context for each direction, made when first used */
	EVP_CIPHER_CTX *enc[IOH_MAX_SIDECORES], *dec[IOH_MAX_SIDECORES];
	uint64_t bytes_enc, bytes_dec, failures; /* atomic */
};

static int crypt_open(struct device *d, void **state, char *err, size_t errlen)
{
	const char *path = d->conf.crypt_key;
	if (!path[0]) {
		snprintf(err, errlen, "device %s: module crypt needs crypt_key = FILE",
			 d->conf.name);
		return -EINVAL;
	}
	struct crypt *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		snprintf(err, errlen, "device %s: crypt_key %s: %s", d->conf.name, path,
			 strerror(e));
		free(c);
		return -e;
	}
	unsigned char extra;
	ssize_t n = read(fd, c->key, sizeof(c->key));
	ssize_t more = read(fd, &extra, 1);
	close(fd);
	if (n != (ssize_t)sizeof(c->key) || more != 0) {
		snprintf(err, errlen,
			 "device %s: crypt_key %s must hold exactly 64 bytes (AES-256-XTS: two "
			 "keys), e.g. head -c 64 /dev/urandom > FILE",
			 d->conf.name, path);
		OPENSSL_cleanse(c->key, sizeof(c->key));
		free(c);
		return -EINVAL;
	}
	if (!memcmp(c->key, c->key + 32, 32)) {
		snprintf(err, errlen,
			 "device %s: crypt_key %s: the two halves are equal (XTS needs "
			 "two different keys)",
			 d->conf.name, path);
		OPENSSL_cleanse(c->key, sizeof(c->key));
		free(c);
		return -EINVAL;
	}
	c->unit = d->conf.block_size;
	d->flags &= ~(uint32_t)(ZL_BLK_INFO_DISCARD | ZL_BLK_INFO_WRITE_ZEROES);
	*state = c;
	return 0;
}

static void crypt_close(void *state)
{
	struct crypt *c = state;
	for (unsigned i = 0; i < IOH_MAX_SIDECORES; i++) {
		EVP_CIPHER_CTX_free(c->enc[i]);
		EVP_CIPHER_CTX_free(c->dec[i]);
	}
	OPENSSL_cleanse(c->key, sizeof(c->key));
	free(c);
}

static EVP_CIPHER_CTX *ctx_of(struct crypt *c, unsigned sc, bool enc)
{
	EVP_CIPHER_CTX **p = enc ? &c->enc[sc] : &c->dec[sc];
	if (!*p) {
		EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
		if (!x || !EVP_CipherInit_ex(x, EVP_aes_256_xts(), NULL, c->key, NULL, enc)) {
			EVP_CIPHER_CTX_free(x);
			return NULL;
		}
		*p = x;
	}
	return *p;
}

/* One data unit, in to out (which may be the same). */
static bool unit_crypt(EVP_CIPHER_CTX *x, uint64_t unit_no, const unsigned char *in,
		       unsigned char *out, uint32_t len)
{
	unsigned char iv[16] = {0};
	for (int i = 0; i < 8; i++)
		iv[i] = (unsigned char)(unit_no >> (8 * i));
	int n;
	return EVP_CipherInit_ex(x, NULL, NULL, NULL, iv, -1) &&
	       EVP_CipherUpdate(x, out, &n, in, (int)len) && n == (int)len;
}

/* Walk r's segments unit by unit; a unit split across segments goes
 * through tmp. dst NULL: in place. */
static bool crypt_iov(struct crypt *c, EVP_CIPHER_CTX *x, const struct ioreq *r, unsigned char *dst)
{
	unsigned char tmp[4096];
	uint64_t unit_no = r->off / c->unit;
	unsigned seg = 0;
	size_t at = 0; /* in segment seg */
	for (uint32_t done = 0; done < r->len; done += c->unit, unit_no++) {
		unsigned char *in = (unsigned char *)r->iov[seg].iov_base + at;
		bool whole = r->iov[seg].iov_len - at >= c->unit;
		unsigned char *out = dst ? dst + done : whole ? in : tmp;
		if (whole) {
			if (!unit_crypt(x, unit_no, in, out, c->unit))
				return false;
			at += c->unit;
			if (at == r->iov[seg].iov_len) {
				seg++;
				at = 0;
			}
			continue;
		}
		/* gather the split unit, transform it, scatter it back if in place */
		uint32_t k = 0;
		unsigned s2 = seg;
		size_t a2 = at;
		while (k < c->unit) {
			size_t t = r->iov[s2].iov_len - a2;
			if (t > c->unit - k)
				t = c->unit - k;
			memcpy(tmp + k, (char *)r->iov[s2].iov_base + a2, t);
			k += (uint32_t)t;
			a2 += t;
			if (a2 == r->iov[s2].iov_len) {
				s2++;
				a2 = 0;
			}
		}
		if (!unit_crypt(x, unit_no, tmp, dst ? dst + done : tmp, c->unit))
			return false;
		if (!dst) {
			k = 0;
			while (k < c->unit) {
				size_t t = r->iov[seg].iov_len - at;
				if (t > c->unit - k)
					t = c->unit - k;
				memcpy((char *)r->iov[seg].iov_base + at, tmp + k, t);
				k += (uint32_t)t;
				at += t;
				if (at == r->iov[seg].iov_len) {
					seg++;
					at = 0;
				}
			}
		} else {
			seg = s2;
			at = a2;
		}
	}
	return true;
}

static int32_t crypt_submit(void *state, struct ioreq *r, void **priv)
{
	struct crypt *c = state;
	if (r->op == ZL_BLK_OP_DISCARD || r->op == ZL_BLK_OP_WRITE_ZEROES)
		return ZL_BLK_S_EOPNOTSUPP;
	if (r->op != ZL_BLK_OP_WRITE)
		return 0;
	EVP_CIPHER_CTX *x = ctx_of(c, r->sc->idx, true);
	unsigned char *buf;
	if (!x || posix_memalign((void **)&buf, 4096, r->len))
		return ZL_BLK_S_ENOMEM;
	if (!crypt_iov(c, x, r, buf)) {
		free(buf);
		__atomic_fetch_add(&c->failures, 1, __ATOMIC_RELAXED);
		return ZL_BLK_S_EIO;
	}
	/* the backend writes the ciphertext; the client's buffer is left as
	 * it is (it is not ours to write) */
	*priv = buf;
	r->iov[0].iov_base = buf;
	r->iov[0].iov_len = r->len;
	r->niov = 1;
	__atomic_fetch_add(&c->bytes_enc, r->len, __ATOMIC_RELAXED);
	return 0;
}

static void crypt_complete(void *state, struct ioreq *r, void **priv)
{
	struct crypt *c = state;
	if (r->op == ZL_BLK_OP_WRITE) {
		free(*priv);
		*priv = NULL;
		return;
	}
	if (r->op != ZL_BLK_OP_READ || r->status)
		return;
	EVP_CIPHER_CTX *x = ctx_of(c, r->sc->idx, false);
	if (!x || !crypt_iov(c, x, r, NULL)) {
		/* never hand out what could not be decrypted */
		for (unsigned i = 0; i < r->niov; i++)
			memset(r->iov[i].iov_base, 0, r->iov[i].iov_len);
		r->status = ZL_BLK_S_EIO;
		__atomic_fetch_add(&c->failures, 1, __ATOMIC_RELAXED);
		return;
	}
	__atomic_fetch_add(&c->bytes_dec, r->len, __ATOMIC_RELAXED);
}

static void crypt_report(void *state, const struct device *d, struct out *o, bool prom)
{
	struct crypt *c = state;
	unsigned long long e = __atomic_load_n(&c->bytes_enc, __ATOMIC_RELAXED),
			   dd = __atomic_load_n(&c->bytes_dec, __ATOMIC_RELAXED),
			   f = __atomic_load_n(&c->failures, __ATOMIC_RELAXED);
	if (prom) {
		outf(o, "zerolink_iohost_crypt_bytes_total{device=\"%s\",dir=\"encrypt\"} %llu\n",
		     d->conf.name, e);
		outf(o, "zerolink_iohost_crypt_bytes_total{device=\"%s\",dir=\"decrypt\"} %llu\n",
		     d->conf.name, dd);
		outf(o, "zerolink_iohost_crypt_failures_total{device=\"%s\"} %llu\n", d->conf.name,
		     f);
	} else {
		outf(o,
		     "    crypt: aes-xts-plain64, %u-byte units; %llu bytes encrypted, %llu "
		     "decrypted, %llu failures\n",
		     c->unit, e, dd, f);
	}
}

const struct mod_ops mod_crypt = {
	.name = "crypt",
	.open = crypt_open,
	.close = crypt_close,
	.submit = crypt_submit,
	.complete = crypt_complete,
	.report = crypt_report,
};
