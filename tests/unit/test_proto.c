/* SPDX-License-Identifier: MIT */
/* The control-message checker: every malformed shape is refused. */
#include "../../src/lib/internal.h"
#include "../zltest.h"

static size_t build(char *buf, uint8_t type, const void *body, size_t blen, uint16_t nfds)
{
	struct zl_proto_hdr h = {.magic = ZL_PROTO_MAGIC,
				 .version = ZL_PROTO_VERSION,
				 .type = type,
				 .len = (uint16_t)(sizeof(h) + blen),
				 .nfds = nfds};
	memcpy(buf, &h, sizeof(h));
	memcpy(buf + sizeof(h), body, blen);
	return sizeof(h) + blen;
}

int main(void)
{
	char buf[ZL_PROTO_MAX];
	struct zl_proto_connect c = {.mode = 0};
	snprintf(c.service, sizeof(c.service), "svc");
	size_t n = build(buf, ZL_MSG_CONNECT, &c, sizeof(c), 0);
	CHECK_EQ(zl__proto_check(buf, n, 0), ZL_MSG_CONNECT);
	CHECK_EQ(zl__proto_check(buf, n - 1, 0), -EPROTO); /* short */
	CHECK_EQ(zl__proto_check(buf, n, 1), -EPROTO);     /* fd not announced */
	CHECK_EQ(zl__proto_check(buf, 3, 0), -EPROTO);
	buf[0] ^= 1;
	CHECK_EQ(zl__proto_check(buf, n, 0), -EPROTO); /* magic */
	buf[0] ^= 1;
	buf[2] = 99;
	CHECK_EQ(zl__proto_check(buf, n, 0), -EPROTO); /* version */
	buf[2] = ZL_PROTO_VERSION;
	memset(c.service, 'a', sizeof(c.service)); /* no terminating NUL */
	n = build(buf, ZL_MSG_CONNECT, &c, sizeof(c), 0);
	CHECK_EQ(zl__proto_check(buf, n, 0), -EPROTO);
	snprintf(c.service, sizeof(c.service), "svc");
	c.mode = 7;
	n = build(buf, ZL_MSG_CONNECT, &c, sizeof(c), 0);
	CHECK_EQ(zl__proto_check(buf, n, 0), -EPROTO);
	n = build(buf, 200, &c, sizeof(c), 0); /* unknown type */
	CHECK_EQ(zl__proto_check(buf, n, 0), -EPROTO);
	struct zl_proto_listen l = {.nuid = 9};
	snprintf(l.service, sizeof(l.service), "x");
	n = build(buf, ZL_MSG_LISTEN, &l, sizeof(l), 0);
	CHECK_EQ(zl__proto_check(buf, n, 0), -EPROTO); /* too many uids */
	struct zl_proto_peer_hello ph = {0};
	n = build(buf, ZL_MSG_PEER_HELLO, &ph, sizeof(ph), 2);
	CHECK_EQ(zl__proto_check(buf, n, 2), ZL_MSG_PEER_HELLO);
	CHECK_EQ(zl__proto_check(buf, n, 1), -EPROTO);
	struct zl_proto_err e = {.err = 0};
	n = build(buf, ZL_MSG_ERR, &e, sizeof(e), 0);
	CHECK_EQ(zl__proto_check(buf, n, 0), -EPROTO); /* errno 0 */

	/* names */
	CHECK(zl__name_ok("db.primary", ZL_NAME_MAX));
	CHECK(!zl__name_ok("", ZL_NAME_MAX));
	CHECK(!zl__name_ok("a/b", ZL_NAME_MAX));
	CHECK(!zl__name_ok("sp ace", ZL_NAME_MAX));

	/* lane header checker */
	struct zl_abi_half h = {.magic = ZL_ABI_HALF_MAGIC,
				.version = ZL_ABI_VERSION,
				.hdr_size = sizeof(struct zl_abi_half),
				.slot_count = 64,
				.ret_count = 16,
				.slots_off = sizeof(struct zl_abi_half)};
	h.ret_off = h.slots_off + 64 * 64;
	h.total_size = 8192;
	struct zl_half_geom g;
	CHECK_EQ(zl__half_check(&h, 8192, &g), 0);
	CHECK_EQ(zl__half_check(&h, 4096, &g), -EPROTO); /* size mismatch */
	h.slot_count = 100;
	CHECK_EQ(zl__half_check(&h, 8192, &g), -EPROTO);
	h.slot_count = 64;
	h.ret_off = h.slots_off; /* overlapping rings */
	CHECK_EQ(zl__half_check(&h, 8192, &g), -EPROTO);
	h.ret_off = 8190;
	CHECK_EQ(zl__half_check(&h, 8192, &g), -EPROTO);

	/* error texts */
	CHECK(strstr(zl_strerror(-EACCES), "access"));
	CHECK(strstr(zl_strerror(-ENOBUFS), "pool"));
	return 0;
}
