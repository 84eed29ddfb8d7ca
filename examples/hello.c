/* SPDX-License-Identifier: MIT */
/*
 * hello: the smallest zerolink program. `hello serve` offers a service and
 * answers every message; `hello ask TEXT` connects by name, sends TEXT by
 * copy, then a pool buffer without copying, and prints the replies.
 *
 *   ./hello serve &   ./hello ask "hi there"
 */
#include <stdio.h>
#include <string.h>

#include <zerolink/zerolink.h>

static int die(const char *what, int err)
{
	fprintf(stderr, "hello: %s: %s\n", what, zl_strerror(err));
	return 1;
}

static int serve(struct zl_ctx *ctx)
{
	struct zl_listener *lis;
	int err = zl_listen(ctx, "example.hello", NULL, &lis);
	if (err)
		return die("listen", err);
	for (;;) {
		struct zl_chan *ch;
		if ((err = zl_accept(lis, NULL, &ch, -1)))
			return die("accept", err);
		struct zl_msg m;
		while (zl_chan_recv_msg(ch, &m, 0) == 1) { /* a view, in place */
			char reply[128];
			int n = snprintf(reply, sizeof(reply), "got %u bytes: %.*s", m.len,
					 (int)m.seg[0].len, (const char *)m.seg[0].base);
			zl_msg_release(&m); /* a pool buffer goes home */
			zl_chan_send(ch, reply, (size_t)n, 0);
		}
		zl_chan_close(ch);
	}
}

static int ask(struct zl_ctx *ctx, const char *text)
{
	struct zl_chan *ch;
	int err = zl_connect(ctx, "example.hello", NULL, &ch);
	if (err)
		return die("connect", err);
	char buf[256];
	zl_chan_send(ch, text, strlen(text), 0); /* copied through the lane */
	if ((err = zl_chan_recv(ch, buf, sizeof(buf) - 1, 0)) < 0)
		return die("recv", err);
	printf("%.*s\n", err, buf);

	struct zl_pool *pool; /* zero-copy: fill a buffer, send the reference */
	struct zl_buf b;
	if ((err = zl_pool_create(ctx, NULL, &pool)) || (err = zl_buf_alloc(pool, 64, &b)))
		return die("pool", err);
	int n = snprintf(b.data, b.cap, "%s (zero-copy)", text);
	zl_chan_send_buf(ch, &b, (size_t)n, 0);
	if ((err = zl_chan_recv(ch, buf, sizeof(buf) - 1, 0)) < 0)
		return die("recv", err);
	printf("%.*s\n", err, buf);
	zl_chan_close(ch);
	zl_pool_destroy(pool);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2 || (strcmp(argv[1], "serve") && (strcmp(argv[1], "ask") || argc < 3))) {
		fprintf(stderr, "usage: hello serve | hello ask TEXT\n");
		return 2;
	}
	struct zl_ctx *ctx;
	int err = zl_ctx_open(&ctx, NULL); /* starts a broker if none runs */
	if (err)
		return die("zl_ctx_open", err);
	int rc = argv[1][0] == 's' ? serve(ctx) : ask(ctx, argv[2]);
	zl_ctx_close(ctx);
	return rc;
}
