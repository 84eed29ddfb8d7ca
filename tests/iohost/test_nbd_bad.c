/* SPDX-License-Identifier: MIT */
/*
 * The NBD export against a hostile or broken client, speaking the protocol
 * by hand: bad flags and magic in the negotiation, oversized and malformed
 * options, requests out of range, misaligned, too long (with their data),
 * unknown commands and flags, a request stream out of step, a client gone
 * in the middle of a write's data. Each gets its defined answer (an option
 * error, an NBD error, or the connection closed), and another connection
 * made before it all works on unharmed, as do new ones.
 */
#include <endian.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "ioh_test.h"

static struct ioh_proc ioh;
static char nbd_sock[100];

#define IHAVEOPT 0x49484156454f5054ull
#define REP_MAGIC 0x0003e889045565a9ull

static int nbd_connect(void)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", nbd_sock);
	CHECK(fd >= 0);
	CHECK_EQ(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	struct timeval tv = {.tv_sec = 20};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

static void wr(int fd, const void *b, size_t n)
{
	CHECK_EQ(write(fd, b, n), (ssize_t)n);
}

/* Read exactly n bytes; 0, or -1 when the server closed. */
static int rd(int fd, void *b, size_t n)
{
	char *p = b;
	while (n) {
		ssize_t r = read(fd, p, n);
		if (r <= 0)
			return -1;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

static bool closed(int fd)
{
	char b[256];
	for (;;) {
		ssize_t r = read(fd, b, sizeof(b));
		if (r == 0 || (r < 0 && errno == ECONNRESET))
			return true;
		if (r < 0)
			return false; /* timed out: still open */
	}
}

/* The greeting, and our flags. */
static int hello(uint32_t cflags)
{
	int fd = nbd_connect();
	unsigned char g[18];
	CHECK_EQ(rd(fd, g, sizeof(g)), 0);
	CHECK(!memcmp(g, "NBDMAGICIHAVEOPT", 16));
	CHECK_EQ(g[17] & 3, 3); /* fixed newstyle, no zeroes */
	uint32_t f = htobe32(cflags);
	wr(fd, &f, 4);
	return fd;
}

static void opt_send(int fd, uint32_t opt, const void *data, uint32_t len)
{
	unsigned char h[16];
	uint64_t m = htobe64(IHAVEOPT);
	uint32_t o = htobe32(opt), l = htobe32(len);
	memcpy(h, &m, 8);
	memcpy(h + 8, &o, 4);
	memcpy(h + 12, &l, 4);
	wr(fd, h, sizeof(h));
	if (len)
		wr(fd, data, len);
}

/* One option reply: its type; data (up to cap) in buf, length in *len. */
static uint32_t opt_reply(int fd, uint32_t opt, void *buf, uint32_t cap, uint32_t *len)
{
	unsigned char h[20];
	CHECK_EQ(rd(fd, h, sizeof(h)), 0);
	uint64_t m;
	uint32_t o, t, l;
	memcpy(&m, h, 8);
	memcpy(&o, h + 8, 4);
	memcpy(&t, h + 12, 4);
	memcpy(&l, h + 16, 4);
	CHECK(be64toh(m) == REP_MAGIC);
	CHECK_EQ(be32toh(o), opt);
	l = be32toh(l);
	CHECK(l <= cap);
	if (l)
		CHECK_EQ(rd(fd, buf, l), 0);
	if (len)
		*len = l;
	return be32toh(t);
}

/* GO to name; the export's size, or the error reply type (negated). */
static int64_t go(int fd, const char *name)
{
	unsigned char d[128];
	uint32_t nl = (uint32_t)strlen(name), be = htobe32(nl);
	memcpy(d, &be, 4);
	memcpy(d + 4, name, nl);
	memset(d + 4 + nl, 0, 2);
	opt_send(fd, 7, d, 6 + nl);
	uint64_t size = 0;
	for (;;) {
		unsigned char b[256];
		uint32_t l;
		uint32_t t = opt_reply(fd, 7, b, sizeof(b), &l);
		if (t == 1)
			return (int64_t)size;
		if (t != 3)
			return -(int64_t)t;
		uint16_t it;
		memcpy(&it, b, 2);
		if (be16toh(it) == 0) {
			memcpy(&size, b + 2, 8);
			size = be64toh(size);
		}
	}
}

static void req(int fd, uint16_t flags, uint16_t type, uint64_t handle, uint64_t off, uint32_t len)
{
	unsigned char r[28];
	uint32_t m = htobe32(0x25609513u), l = htobe32(len);
	uint16_t f = htobe16(flags), t = htobe16(type);
	uint64_t o = htobe64(off);
	memcpy(r, &m, 4);
	memcpy(r + 4, &f, 2);
	memcpy(r + 6, &t, 2);
	memcpy(r + 8, &handle, 8); /* opaque */
	memcpy(r + 16, &o, 8);
	memcpy(r + 24, &l, 4);
	wr(fd, r, sizeof(r));
}

/* A simple reply: its error; the data (len bytes) into buf when 0. */
static int reply(int fd, uint64_t handle, void *buf, uint32_t len);

/* len bytes of byte written at off (write flags wflags, handle h), then
 * read back (handle h + 1) and checked at both ends. */
static void write_read(int fd, uint16_t wflags, uint64_t h, uint64_t off, uint32_t len,
		       unsigned char byte)
{
	static char b[1 << 16];
	CHECK(len <= sizeof(b));
	memset(b, byte, len);
	req(fd, wflags, 1, h, off, len);
	wr(fd, b, len);
	CHECK_EQ(reply(fd, h, NULL, 0), 0);
	memset(b, 0, len);
	req(fd, 0, 0, h + 1, off, len);
	CHECK_EQ(reply(fd, h + 1, b, len), 0);
	CHECK_EQ((unsigned char)b[0], byte);
	CHECK_EQ((unsigned char)b[len - 1], byte);
}

static int reply(int fd, uint64_t handle, void *buf, uint32_t len)
{
	unsigned char r[16];
	CHECK_EQ(rd(fd, r, sizeof(r)), 0);
	uint32_t m, e;
	memcpy(&m, r, 4);
	memcpy(&e, r + 4, 4);
	CHECK_EQ(be32toh(m), 0x67446698u);
	CHECK(!memcmp(r + 8, &handle, 8));
	e = be32toh(e);
	if (!e && len)
		CHECK_EQ(rd(fd, buf, len), 0);
	return (int)e;
}

static void negotiation(void)
{
	/* flags we never offered: closed */
	int fd = hello(0x80);
	CHECK(closed(fd));
	close(fd);
	/* an option without the magic: closed */
	fd = hello(3);
	wr(fd, "NOTMAGIC\0\0\0\7\0\0\0\0", 16);
	CHECK(closed(fd));
	close(fd);
	/* an option too large: refused, read away, the negotiation goes on */
	fd = hello(3);
	static char big[100000];
	opt_send(fd, 7, big, sizeof(big));
	CHECK_EQ(opt_reply(fd, 7, NULL, 0, NULL), 0x80000009u);
	/* GO with lengths that do not add up, an unknown option, a name
	 * that does not exist, STARTTLS: each refused as it should be */
	unsigned char bad[10] = {0, 0, 0, 200};
	opt_send(fd, 7, bad, sizeof(bad));
	CHECK_EQ(opt_reply(fd, 7, NULL, 0, NULL), 0x80000003u);
	opt_send(fd, 77, NULL, 0);
	CHECK_EQ(opt_reply(fd, 77, NULL, 0, NULL), 0x80000001u);
	CHECK(go(fd, "nosuch") == -(int64_t)0x80000006u);
	opt_send(fd, 5, NULL, 0);
	CHECK_EQ(opt_reply(fd, 5, NULL, 0, NULL), 0x80000002u);
	/* meta contexts before structured replies: invalid */
	opt_send(fd, 10, NULL, 0);
	CHECK_EQ(opt_reply(fd, 10, NULL, 0, NULL), 0x80000003u);
	/* and after all that, a good GO */
	CHECK_EQ(go(fd, ioh_dev("n0")), 64ll << 20);
	req(fd, 0, 2, 0, 0, 0); /* DISC */
	CHECK(closed(fd));
	close(fd);
	/* ABORT is acknowledged and closes */
	fd = hello(1);
	opt_send(fd, 2, NULL, 0);
	CHECK_EQ(opt_reply(fd, 2, NULL, 0, NULL), 1u);
	CHECK(closed(fd));
	close(fd);
}

static void transmission(int good)
{
	int fd = hello(3);
	CHECK_EQ(go(fd, ioh_dev("n0")), 64ll << 20);
	static char buf[2 << 20];
	const uint64_t size = 64ull << 20;
	/* a write (FUA) and its read */
	write_read(fd, 1, 1, 8192, 8192, 0x3c);
	/* beyond the end: EINVAL to read, ENOSPC to write */
	req(fd, 0, 0, 3, size, 4096);
	CHECK_EQ(reply(fd, 3, NULL, 0), 22);
	req(fd, 0, 1, 4, size - 512, 4096);
	wr(fd, buf, 4096);
	CHECK_EQ(reply(fd, 4, NULL, 0), 28);
	/* misaligned */
	req(fd, 0, 0, 5, 100, 512);
	CHECK_EQ(reply(fd, 5, NULL, 0), 22);
	/* longer than the export's maximum: refused, its data read away */
	req(fd, 0, 0, 6, 0, 2 << 20);
	CHECK_EQ(reply(fd, 6, NULL, 0), 22);
	req(fd, 0, 1, 7, 0, 2 << 20);
	wr(fd, buf, 2 << 20);
	CHECK_EQ(reply(fd, 7, NULL, 0), 22);
	/* unknown command, unknown flag */
	req(fd, 0, 42, 8, 0, 0);
	CHECK_EQ(reply(fd, 8, NULL, 0), 22);
	req(fd, 0x100, 0, 9, 0, 4096);
	CHECK_EQ(reply(fd, 9, NULL, 0), 22);
	/* flush, trim, write-zeroes */
	req(fd, 0, 3, 10, 0, 0);
	CHECK_EQ(reply(fd, 10, NULL, 0), 0);
	req(fd, 0, 4, 11, 8192, 4096);
	CHECK_EQ(reply(fd, 11, NULL, 0), 0);
	req(fd, 2, 6, 12, 12288, 4096);
	CHECK_EQ(reply(fd, 12, NULL, 0), 0);
	req(fd, 0, 0, 13, 8192, 8192);
	CHECK_EQ(reply(fd, 13, buf, 8192), 0);
	CHECK_EQ(buf[0], 0);
	CHECK_EQ(buf[4096], 0);
	/* many in flight at once, answered each by its handle */
	for (uint64_t h = 100; h < 200; h++)
		req(fd, 0, 0, h, (h - 100) * 4096, 4096);
	unsigned seen = 0;
	for (int i = 0; i < 100; i++) {
		unsigned char r[16];
		CHECK_EQ(rd(fd, r, sizeof(r)), 0);
		uint64_t h;
		memcpy(&h, r + 8, 8);
		CHECK(h >= 100 && h < 200);
		CHECK_EQ(rd(fd, buf, 4096), 0);
		seen++;
	}
	CHECK_EQ(seen, 100);
	/* out of step (a bad magic): the connection is closed */
	wr(fd, "garbage garbage garbage gar", 28);
	CHECK(closed(fd));
	close(fd);
	/* a client gone in the middle of a write's data */
	fd = hello(3);
	CHECK_EQ(go(fd, ioh_dev("n0")), 64ll << 20);
	req(fd, 0, 1, 1, 0, 1 << 20);
	wr(fd, buf, 4096);
	close(fd);
	/* the connection made before all this works on */
	write_read(good, 0, 50, 0, 4096, 0x77);
}

static void structured(void)
{
	int fd = hello(3);
	opt_send(fd, 8, NULL, 0);
	CHECK_EQ(opt_reply(fd, 8, NULL, 0, NULL), 1u);
	opt_send(fd, 10, NULL, 0); /* no contexts */
	CHECK_EQ(opt_reply(fd, 10, NULL, 0, NULL), 1u);
	CHECK_EQ(go(fd, ioh_dev("n0")), 64ll << 20);
	req(fd, 0, 0, 9, 8192, 4096);
	unsigned char h[20];
	CHECK_EQ(rd(fd, h, sizeof(h)), 0);
	uint32_t m, l;
	uint16_t fl, t;
	memcpy(&m, h, 4);
	memcpy(&fl, h + 4, 2);
	memcpy(&t, h + 6, 2);
	memcpy(&l, h + 16, 4);
	CHECK_EQ(be32toh(m), 0x668e33efu);
	CHECK_EQ(be16toh(fl), 1);    /* done */
	CHECK_EQ(be16toh(t), 1);     /* offset data */
	CHECK_EQ(be32toh(l), 4104u); /* offset + data */
	uint64_t off;
	CHECK_EQ(rd(fd, &off, 8), 0);
	CHECK_EQ(be64toh(off), 8192u);
	char b[4096];
	CHECK_EQ(rd(fd, b, sizeof(b)), 0);
	/* an error: one error chunk */
	req(fd, 0, 0, 10, 64ull << 20, 4096);
	CHECK_EQ(rd(fd, h, sizeof(h)), 0);
	memcpy(&t, h + 6, 2);
	CHECK_EQ(be16toh(t), 0x8001);
	unsigned char e[6];
	CHECK_EQ(rd(fd, e, 6), 0);
	uint32_t err;
	memcpy(&err, e, 4);
	CHECK_EQ(be32toh(err), 22u);
	req(fd, 0, 2, 0, 0, 0);
	CHECK(closed(fd));
	close(fd);
}

int main(void)
{
	const char *dev = ioh_dev("n0");
	char spec[128];
	snprintf(spec, sizeof(spec), "%s:backend=ram,size=64M", dev);
	static char nbd_arg[160];
	snprintf(nbd_sock, sizeof(nbd_sock), "/tmp/zl-nbdbad-%d.sock", (int)getpid());
	snprintf(nbd_arg, sizeof(nbd_arg), "unix:%s", nbd_sock);
	const char *args[] = {"--sidecores", "0", "--device", spec, "--nbd", nbd_arg, NULL};
	ioh_start(&ioh, args);
	int good = hello(3);
	CHECK_EQ(go(good, dev), 64ll << 20);
	negotiation();
	transmission(good);
	structured();
	/* new connections after all that */
	int fd = hello(3);
	CHECK_EQ(go(fd, dev), 64ll << 20);
	close(fd);
	close(good);
	ioh_stop(&ioh);
	CHECK(access(nbd_sock, F_OK) != 0);
	printf("ok\n");
	return 0;
}
