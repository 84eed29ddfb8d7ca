/* SPDX-License-Identifier: MIT */
/*
 * crypt: encryption at rest, AES-XTS-256 as dm-crypt's aes-xts-plain64:
 * each block of the device (its block_size) is one XTS data unit, its tweak
 * the block's number, little-endian. The key is 64 bytes read from a file
 * (crypt_key = FILE; two AES-256 keys, which must differ), as dm-crypt
 * takes a key file.
 *
 * Two engines give the same bytes (crypt_engine = auto | vaes | openssl):
 * the I/O host's own XTS on 512-bit VAES registers (aes_xts.c), as fast as
 * memory where the CPU has it, and OpenSSL's libcrypto, everywhere. auto
 * takes the first where the CPU allows, once it has checked, on the device's
 * own key, that it gives OpenSSL's ciphertext both ways.
 *
 * A write is encrypted from the client's buffer (mapped read-only here)
 * into a buffer of the I/O host's, which the backend writes: the one copy
 * encryption needs. A read is decrypted in place, in the I/O host's buffer,
 * before it is lent to the client. Discard and write-zeroes are not
 * offered: the zeroes they leave would not decrypt to zeroes (dm-crypt, too,
 * does not pass discards by default).
 *
 * Large requests are cut into 128 KiB parts that the sidecore shares with
 * the I/O host's workers (workers.c), so that one stream is encrypted on
 * several cores. When crypt is the last module and the device's data is
 * in memory (RAM, a file on tmpfs: the device has rw), each part also does
 * its own I/O: a read decrypts the part from the device's bytes straight
 * into the client's buffer; a write encrypts it from the client's buffer
 * into the device's bytes (or, where the file is not mapped yet, into a
 * small buffer of the thread's, which it writes). The data then crosses
 * memory once each way instead of twice, and the copies, too, are spread
 * over the workers. Such a request is not waited for: it is left to the
 * workers (sc_job_start) and the sidecore goes on to the next one, taking
 * parts itself between its other duties, so that no core idles at the end
 * of each request.
 */
#include <errno.h>
#include <fcntl.h>
#include <openssl/core_dispatch.h>
#include <openssl/evp.h>
#include <openssl/provider.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/uio.h>
#include <unistd.h>

#include "aes_xts.h"
#include "iohost.h"

/* bytes of a request one thread takes at a time */
#define CRYPT_PART (128u << 10)

/*
 * The cipher's implementation, called through the provider interface
 * (provider-cipher(7)) of the provider OpenSSL fetches AES-256-XTS from.
 * Each data unit needs its own tweak: set through EVP_CipherInit_ex2,
 * which looks parameters up by name on every call, that costs a tenth of
 * the cipher's time at 4 KiB units; the provider's own init only sets it.
 */
struct xts_impl {
	EVP_CIPHER *cipher; /* keeps the provider's implementation alive */
	void *provctx;
	OSSL_FUNC_cipher_newctx_fn *newctx;
	OSSL_FUNC_cipher_freectx_fn *freectx;
	OSSL_FUNC_cipher_encrypt_init_fn *einit;
	OSSL_FUNC_cipher_decrypt_init_fn *dinit;
	OSSL_FUNC_cipher_update_fn *update;
};

/* A thread's context for one direction: OpenSSL's, or our keys. */
struct xctx {
	void *alg; /* the provider's */
	const struct xts_impl *impl;
	const struct aes_xts_key *vk; /* the VAES engine's, or NULL */
	bool enc;
};

struct crypt {
	unsigned char key[64];
	struct xts_impl impl;
	struct aes_xts_key vk; /* the VAES engine's expanded keys */
	bool vaes;             /* the VAES engine serves this device */
	uint32_t unit;         /* bytes per data unit: the device's block size */
	bool fused;            /* the parts do the device's I/O themselves */
	/* per thread slot (sidecores, workers): a context for each
	 * direction, and a part's buffer for fused writes, made when first
	 * used; a slot is only ever used by its own thread */
	struct xctx *enc[IOH_SLOTS], *dec[IOH_SLOTS];
	unsigned char *part_buf[IOH_SLOTS];
	uint64_t bytes_enc, bytes_dec, failures; /* atomic */
};

/* Fill in x from the provider that serves AES-256-XTS; false if none
 * does (x is then cleared). */
static bool impl_find(struct xts_impl *x)
{
	memset(x, 0, sizeof(*x));
	x->cipher = EVP_CIPHER_fetch(NULL, "AES-256-XTS", NULL);
	const OSSL_PROVIDER *p = x->cipher ? EVP_CIPHER_get0_provider(x->cipher) : NULL;
	int no_cache;
	const OSSL_ALGORITHM *all =
		p ? OSSL_PROVIDER_query_operation(p, OSSL_OP_CIPHER, &no_cache) : NULL;
	for (const OSSL_ALGORITHM *a = all; a && a->algorithm_names; a++) {
		/* names are colon-separated; the first is the cipher's name */
		const char *n = a->algorithm_names;
		if (strncasecmp(n, "AES-256-XTS", 11) || (n[11] && n[11] != ':'))
			continue;
		for (const OSSL_DISPATCH *f = a->implementation; f->function_id; f++) {
			switch (f->function_id) {
			case OSSL_FUNC_CIPHER_NEWCTX:
				x->newctx = OSSL_FUNC_cipher_newctx(f);
				break;
			case OSSL_FUNC_CIPHER_FREECTX:
				x->freectx = OSSL_FUNC_cipher_freectx(f);
				break;
			case OSSL_FUNC_CIPHER_ENCRYPT_INIT:
				x->einit = OSSL_FUNC_cipher_encrypt_init(f);
				break;
			case OSSL_FUNC_CIPHER_DECRYPT_INIT:
				x->dinit = OSSL_FUNC_cipher_decrypt_init(f);
				break;
			case OSSL_FUNC_CIPHER_UPDATE:
				x->update = OSSL_FUNC_cipher_update(f);
				break;
			}
		}
		break;
	}
	if (all)
		OSSL_PROVIDER_unquery_operation(p, OSSL_OP_CIPHER, all);
	x->provctx = p ? OSSL_PROVIDER_get0_provider_ctx(p) : NULL;
	if (x->newctx && x->freectx && x->einit && x->dinit && x->update)
		return true;
	EVP_CIPHER_free(x->cipher);
	memset(x, 0, sizeof(*x));
	return false;
}

static void xctx_free(struct xctx *x)
{
	if (!x)
		return;
	if (x->alg)
		x->impl->freectx(x->alg);
	free(x);
}

static int engine_choose(struct crypt *c, const struct device *d, char *err, size_t errlen);

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
	if (!impl_find(&c->impl)) {
		snprintf(err, errlen,
			 "device %s: module crypt: OpenSSL's providers offer no AES-256-XTS",
			 d->conf.name);
		OPENSSL_cleanse(c->key, sizeof(c->key));
		free(c);
		return -ENOSYS;
	}
	c->unit = d->conf.block_size;
	int e = engine_choose(c, d, err, errlen);
	if (e) {
		EVP_CIPHER_free(c->impl.cipher);
		OPENSSL_cleanse(c->key, sizeof(c->key));
		OPENSSL_cleanse(&c->vk, sizeof(c->vk));
		free(c);
		return e;
	}
	c->fused = d->rw && d->conf.nmods && !strcmp(d->conf.mods[d->conf.nmods - 1], "crypt");
	d->flags &= ~(uint32_t)(ZL_BLK_INFO_DISCARD | ZL_BLK_INFO_WRITE_ZEROES);
	*state = c;
	return 0;
}

static void crypt_close(void *state)
{
	struct crypt *c = state;
	for (unsigned i = 0; i < IOH_SLOTS; i++) {
		xctx_free(c->enc[i]);
		xctx_free(c->dec[i]);
		free(c->part_buf[i]);
	}
	EVP_CIPHER_free(c->impl.cipher);
	OPENSSL_cleanse(c->key, sizeof(c->key));
	OPENSSL_cleanse(&c->vk, sizeof(c->vk));
	free(c);
}

/* A context of the VAES engine or of OpenSSL's, for one direction. */
static struct xctx *xctx_new(struct crypt *c, bool enc, bool vaes)
{
	struct xctx *x = calloc(1, sizeof(*x));
	if (!x)
		return NULL;
	x->impl = &c->impl;
	x->enc = enc;
	if (vaes) {
		x->vk = &c->vk;
		return x;
	}
	x->alg = c->impl.newctx(c->impl.provctx);
	if (!x->alg ||
	    !(enc ? c->impl.einit : c->impl.dinit)(x->alg, c->key, sizeof(c->key), NULL, 0, NULL)) {
		xctx_free(x);
		return NULL;
	}
	return x;
}

static struct xctx *ctx_of(struct crypt *c, unsigned slot, bool enc)
{
	if (slot >= IOH_SLOTS)
		return NULL;
	struct xctx **p = enc ? &c->enc[slot] : &c->dec[slot];
	if (!*p)
		*p = xctx_new(c, enc, c->vaes);
	return *p;
}

/* n consecutive data units from unit_no, in to out (which may be the
 * same). */
static bool units_crypt(struct xctx *x, uint64_t unit_no, const unsigned char *in,
			unsigned char *out, uint32_t unit, size_t n)
{
	if (x->vk)
		return aes_xts_crypt(x->vk, x->enc, unit_no, unit, in, out, unit * n);
	const struct xts_impl *m = x->impl;
	for (size_t i = 0; i < n; i++, in += unit, out += unit) {
		unsigned char iv[16] = {0};
		for (int b = 0; b < 8; b++)
			iv[b] = (unsigned char)((unit_no + i) >> (8 * b));
		/* the init without a key sets the tweak alone */
		size_t len;
		if (!(x->enc ? m->einit : m->dinit)(x->alg, NULL, 0, iv, sizeof(iv), NULL) ||
		    !m->update(x->alg, out, &len, unit, in, unit) || len != unit)
			return false;
	}
	return true;
}

/* Whether the VAES engine gives OpenSSL's bytes under c's key, one unit
 * each way. */
static bool vaes_agrees(struct crypt *c)
{
	const uint64_t no = 0x0123456789abcdefull;
	unsigned char *b = malloc(4 * (size_t)c->unit);
	struct xctx *x[4] = {xctx_new(c, true, true), xctx_new(c, true, false),
			     xctx_new(c, false, true), xctx_new(c, false, false)};
	bool ok = b && x[0] && x[1] && x[2] && x[3];
	if (ok) {
		unsigned char *in = b, *ours = b + c->unit, *theirs = b + 2 * c->unit,
			      *back = b + 3 * c->unit;
		for (uint32_t i = 0; i < c->unit; i++)
			in[i] = (unsigned char)(i * 131 + (i >> 8) + 7);
		/* the same ciphertext; decrypted back; and the same
		 * decryption of bytes that are no one's ciphertext */
		ok = units_crypt(x[0], no, in, ours, c->unit, 1) &&
		     units_crypt(x[1], no, in, theirs, c->unit, 1) &&
		     !memcmp(ours, theirs, c->unit) &&
		     units_crypt(x[2], no, ours, back, c->unit, 1) && !memcmp(back, in, c->unit) &&
		     units_crypt(x[2], no, in, ours, c->unit, 1) &&
		     units_crypt(x[3], no, in, theirs, c->unit, 1) &&
		     !memcmp(ours, theirs, c->unit);
	}
	for (int i = 0; i < 4; i++)
		xctx_free(x[i]);
	free(b);
	return ok;
}

static const char *engine_name(const struct crypt *c)
{
	return c->vaes ? "vaes-avx512" : "openssl";
}

/* The engine the device asks for (crypt_engine), or the fastest that
 * gives OpenSSL's bytes; 0 or an error, with its reason in err. */
static int engine_choose(struct crypt *c, const struct device *d, char *err, size_t errlen)
{
	enum crypt_engine want = d->conf.crypt_engine;
	if (want == CRYPT_OPENSSL)
		return 0;
	if (!aes_xts_usable()) {
		if (want == CRYPT_AUTO)
			return 0;
		snprintf(err, errlen,
			 "device %s: crypt_engine vaes: this CPU lacks VAES, VPCLMULQDQ or "
			 "AVX-512 (crypt_engine = auto or openssl)",
			 d->conf.name);
		return -ENOTSUP;
	}
	aes_xts_setkey(&c->vk, c->key);
	if (vaes_agrees(c)) {
		c->vaes = true;
		return 0;
	}
	OPENSSL_cleanse(&c->vk, sizeof(c->vk));
	if (want == CRYPT_AUTO) {
		fprintf(stderr,
			"zerolink-iohost: device %s: crypt: the VAES engine's ciphertext differs "
			"from OpenSSL's; OpenSSL's serves the device\n",
			d->conf.name);
		return 0;
	}
	snprintf(err, errlen,
		 "device %s: crypt_engine vaes: its ciphertext differs from OpenSSL's "
		 "(crypt_engine = openssl)",
		 d->conf.name);
	return -EIO;
}

/* A position in a list of segments. */
struct cur {
	const struct iovec *iov;
	unsigned seg;
	size_t at;
};

/* Copy n bytes between the segments at k and flat (to the segments when
 * in is false), moving k on. */
static void cur_copy(struct cur *k, unsigned char *flat, uint32_t n, bool in)
{
	while (n) {
		size_t t = k->iov[k->seg].iov_len - k->at;
		if (t > n)
			t = n;
		char *p = (char *)k->iov[k->seg].iov_base + k->at;
		if (in)
			memcpy(flat, p, t);
		else
			memcpy(p, flat, t);
		flat += t;
		n -= (uint32_t)t;
		k->at += t;
		if (k->at == k->iov[k->seg].iov_len) {
			k->seg++;
			k->at = 0;
		}
	}
}

enum { IN_PLACE, IOV_TO_FLAT, FLAT_TO_IOV };

/* len bytes from unit_no: the segments iov in place, or from them into
 * flat, or from flat into them. The units that lie whole in a segment go
 * in one call; a unit split across segments goes through tmp. */
static bool crypt_range(struct crypt *c, struct xctx *x, const struct iovec *iov, int mode,
			unsigned char *flat, uint64_t unit_no, uint32_t len)
{
	unsigned char tmp[4096];
	struct cur k = {iov, 0, 0};
	for (uint32_t done = 0; done < len;) {
		size_t whole = (k.iov[k.seg].iov_len - k.at) / c->unit;
		bool ok;
		size_t n = 1;
		if (whole) {
			/* whole units in this segment: in one call */
			n = whole < (len - done) / c->unit ? whole : (len - done) / c->unit;
			unsigned char *p = (unsigned char *)k.iov[k.seg].iov_base + k.at;
			if (mode == FLAT_TO_IOV)
				ok = units_crypt(x, unit_no, flat + done, p, c->unit, n);
			else
				ok = units_crypt(x, unit_no, p, mode == IN_PLACE ? p : flat + done,
						 c->unit, n);
			k.at += n * c->unit;
			if (k.at == k.iov[k.seg].iov_len) {
				k.seg++;
				k.at = 0;
			}
		} else if (mode == FLAT_TO_IOV) {
			ok = units_crypt(x, unit_no, flat + done, tmp, c->unit, 1);
			if (ok)
				cur_copy(&k, tmp, c->unit, false);
		} else {
			struct cur k0 = k;
			cur_copy(&k, tmp, c->unit, true);
			ok = units_crypt(x, unit_no, tmp, mode == IN_PLACE ? tmp : flat + done,
					 c->unit, 1);
			if (ok && mode == IN_PLACE)
				cur_copy(&k0, tmp, c->unit, false);
		}
		if (!ok)
			return false;
		done += (uint32_t)(n * c->unit);
		unit_no += n;
	}
	return true;
}

struct part_mem {
	struct crypt *c;
	struct xctx *x;
	const struct iovec *v;
	int mode;
	unsigned char *m;
	uint64_t unit_no;
	uint32_t len;
};

static int part_mem_run(void *arg)
{
	struct part_mem *p = arg;
	return crypt_range(p->c, p->x, p->v, p->mode, p->m, p->unit_no, p->len) ? 0 : -EBADMSG;
}

/* A part's transform straight between the client's buffer and the
 * device's mapped bytes (a file in memory has no durability to ask for:
 * FUA needs nothing more). */
static int part_mem(struct crypt *c, struct xctx *x, struct ioreq *r, const struct iovec *v,
		    uint64_t unit_no, uint64_t off, uint32_t len)
{
	bool write = r->op == ZL_BLK_OP_WRITE;
	struct part_mem p = {.c = c,
			     .x = x,
			     .v = v,
			     .mode = write ? IOV_TO_FLAT : FLAT_TO_IOV,
			     .m = (unsigned char *)r->dev->mem + off,
			     .unit_no = unit_no,
			     .len = len};
	return dev_mem_call(r->dev, write, off, len, part_mem_run, &p);
}

/* One request's work, cut into parts of CRYPT_PART bytes. */
struct crypt_job {
	struct sc_job sj; /* when it runs on the workers while the sidecore goes on */
	struct crypt *c;
	struct ioreq *r;
	bool enc;           /* encrypt (writes) or decrypt (reads) */
	bool io;            /* each part does its own I/O through the device's rw */
	unsigned char *dst; /* a write's ciphertext (not io), or NULL: in place */
};

static void crypt_part(void *arg, unsigned part)
{
	struct crypt_job *j = arg;
	struct crypt *c = j->c;
	struct ioreq *r = j->r;
	size_t from = (size_t)part * CRYPT_PART;
	uint32_t len = r->len - from < CRYPT_PART ? (uint32_t)(r->len - from) : CRYPT_PART;
	struct iovec v[IOH_MAX_SEGS];
	unsigned n = iov_slice(r->iov, r->niov, from, len, v);
	uint64_t unit_no = (r->off + from) / c->unit;
	unsigned slot = ioh_slot;
	struct xctx *x = ctx_of(c, slot, j->enc);
	int e = 0;
	if (!x) {
		e = -ENOMEM;
	} else if (!j->io) {
		if (!crypt_range(c, x, v, j->dst ? IOV_TO_FLAT : IN_PLACE,
				 j->dst ? j->dst + from : NULL, unit_no, len))
			e = -EBADMSG;
	} else if (dev_mem_ok(r->dev, r->off + from, len)) {
		e = part_mem(c, x, r, v, unit_no, r->off + from, len);
	} else if (r->op == ZL_BLK_OP_READ) {
		/* copy the part in, and decrypt it while it is in the cache */
		e = r->dev->rw(r->dev, ZL_BLK_OP_READ, r->off + from, v, n, len, 0);
		if (!e && !crypt_range(c, x, v, IN_PLACE, NULL, unit_no, len))
			e = -EBADMSG;
	} else {
		unsigned char **b = &c->part_buf[slot];
		if (!*b && posix_memalign((void **)b, 4096, CRYPT_PART))
			*b = NULL;
		if (!*b) {
			e = -ENOMEM;
		} else if (!crypt_range(c, x, v, IOV_TO_FLAT, *b, unit_no, len)) {
			e = -EBADMSG;
		} else {
			struct iovec bv = {*b, len};
			e = r->dev->rw(r->dev, ZL_BLK_OP_WRITE, r->off + from, &bv, 1, len,
				       dev_rw_flags(r));
		}
	}
	if (e)
		sc_job_fail(&j->sj, e); /* (its err also serves the fork-join path) */
}

static unsigned nparts(const struct ioreq *r)
{
	return (r->len + CRYPT_PART - 1) / CRYPT_PART;
}

/* The status of j, every part done. */
static int32_t crypt_status(struct crypt_job *j)
{
	struct ioreq *r = j->r;
	int e = __atomic_load_n(&j->sj.err, __ATOMIC_RELAXED);
	if (!e) {
		__atomic_fetch_add(j->enc ? &j->c->bytes_enc : &j->c->bytes_dec, r->len,
				   __ATOMIC_RELAXED);
		return 0;
	}
	if (e == -EBADMSG || e == -ENOMEM)
		__atomic_fetch_add(&j->c->failures, 1, __ATOMIC_RELAXED);
	if (r->op == ZL_BLK_OP_READ) /* never hand out what could not be decrypted */
		for (unsigned i = 0; i < r->niov; i++)
			memset(r->iov[i].iov_base, 0, r->iov[i].iov_len);
	return e == -EBADMSG ? ZL_BLK_S_EIO : dev_status(e);
}

/* Run j over r's parts (shared with the workers); 0 or a status. */
static int32_t crypt_run(struct crypt_job *j)
{
	workers_run(crypt_part, j, nparts(j->r));
	return crypt_status(j);
}

static void crypt_fin(struct sc_job *sj)
{
	struct crypt_job *j = (struct crypt_job *)sj;
	j->r->status = crypt_status(j);
	free(j);
}

static int32_t crypt_submit(void *state, struct ioreq *r, void **priv)
{
	struct crypt *c = state;
	if (r->op == ZL_BLK_OP_DISCARD || r->op == ZL_BLK_OP_WRITE_ZEROES)
		return ZL_BLK_S_EOPNOTSUPP;
	if (r->op != ZL_BLK_OP_WRITE && r->op != ZL_BLK_OP_READ)
		return 0;
	struct crypt_job j = {.c = c, .r = r, .enc = r->op == ZL_BLK_OP_WRITE, .io = c->fused};
	if (j.io) {
		/* the parts do the I/O: the backend is skipped */
		*priv = c;
		struct crypt_job *a = nparts(r) > 1 && workers_count() ? malloc(sizeof(*a)) : NULL;
		if (!a) {
			r->status = crypt_run(&j);
			return MOD_DONE;
		}
		/* the sidecore goes on to its next requests while the workers
		 * (and the sidecore, between them) run the parts */
		*a = j;
		a->sj.w = (struct wjob){.fn = crypt_part, .arg = a, .nparts = nparts(r)};
		a->sj.r = r;
		a->sj.fin = crypt_fin;
		sc_job_start(r->sc, &a->sj);
		return MOD_ASYNC;
	}
	if (r->op == ZL_BLK_OP_READ)
		return 0; /* decrypted on completion */
	if (posix_memalign((void **)&j.dst, 4096, r->len))
		return ZL_BLK_S_ENOMEM;
	int32_t st = crypt_run(&j);
	if (st) {
		free(j.dst);
		return st;
	}
	/* the backend writes the ciphertext; the client's buffer is left as
	 * it is (it is not ours to write) */
	*priv = j.dst;
	r->iov[0].iov_base = j.dst;
	r->iov[0].iov_len = r->len;
	r->niov = 1;
	return 0;
}

static void crypt_complete(void *state, struct ioreq *r, void **priv)
{
	struct crypt *c = state;
	if (*priv == c) { /* done by the parts */
		*priv = NULL;
		return;
	}
	if (r->op == ZL_BLK_OP_WRITE) {
		free(*priv);
		*priv = NULL;
		return;
	}
	if (r->op != ZL_BLK_OP_READ || r->status)
		return;
	struct crypt_job j = {.c = c, .r = r, .enc = false};
	r->status = crypt_run(&j);
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
		outf(o, "zerolink_iohost_crypt_engine_info{device=\"%s\",engine=\"%s\"} 1\n",
		     d->conf.name, engine_name(c));
	} else {
		outf(o,
		     "    crypt: aes-xts-plain64 (%s), %u-byte units; %llu bytes encrypted, "
		     "%llu decrypted, %llu failures\n",
		     engine_name(c), c->unit, e, dd, f);
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
