/* SPDX-License-Identifier: MIT */
/*
 * Access control: a service admits its own user and root by default; other
 * users only when listed by uid or group. Needs root (to become another
 * user); runs its own broker with a socket every user can reach.
 */
#include <grp.h>
#include <sys/stat.h>

#include "../zltest.h"

static char sock[128];

/* Child: become `uid`/`gid` and try to connect; exit with -errno. */
static int try_as(uid_t uid, gid_t gid, const char *svc)
{
	pid_t pid = fork();
	if (pid == 0) {
		if (setgroups(0, NULL) || setgid(gid) || setuid(uid))
			_exit(100);
		struct zl_ctx *ctx;
		struct zl_ctx_opts o = {
			.name = "acl-child", .broker_path = sock, .flags = ZL_CTX_NO_SPAWN};
		int err = zl_ctx_open(&ctx, &o);
		if (err)
			_exit(101);
		struct zl_chan *ch;
		err = zl_connect(ctx, svc, NULL, &ch);
		if (err == 0)
			zl_chan_close(ch);
		_exit(-err);
	}
	return wait_status(pid);
}

int main(void)
{
	if (geteuid() != 0)
		SKIP("needs root to switch users");
	const char *brokerd = getenv("ZEROLINKD");
	if (!brokerd)
		SKIP("ZEROLINKD not set");
	char dir[64];
	snprintf(dir, sizeof(dir), "/tmp/zl-acl-%d", (int)getpid());
	snprintf(sock, sizeof(sock), "%s/broker.sock", dir);
	pid_t bpid = fork();
	if (bpid == 0) {
		execl(brokerd, "zerolinkd", "--socket", sock, "--public", "--idle-exit", "0",
		      (char *)NULL);
		_exit(127);
	}
	struct zl_ctx *ctx;
	struct zl_ctx_opts o = {.name = "acl", .broker_path = sock, .flags = ZL_CTX_NO_SPAWN};
	int err = -1;
	for (int i = 0; i < 200 && err; i++) {
		err = zl_ctx_open(&ctx, &o);
		if (err)
			usleep(10000);
	}
	CHECK_EQ(err, 0);

	const uid_t nobody = 65534;
	const gid_t nogroup = 65534;
	struct zl_listener *a, *b, *c;
	const char *sa = test_service("acl-default"), *sb = test_service("acl-uid"),
		   *sc = test_service("acl-gid");
	CHECK_EQ(zl_listen(ctx, sa, NULL, &a), 0);
	struct zl_listen_opts ob = {.uids = {nobody}, .nuids = 1};
	CHECK_EQ(zl_listen(ctx, sb, &ob, &b), 0);
	struct zl_listen_opts oc = {.gids = {nogroup}, .ngids = 1};
	CHECK_EQ(zl_listen(ctx, sc, &oc, &c), 0);

	/* another user is refused by default, with EACCES */
	CHECK_EQ(try_as(nobody, nogroup, sa), EACCES);
	CHECK_EQ(try_as(1234, 1234, sb), EACCES); /* not listed */
	/* listed by uid, or by group: admitted (nobody accepts: the handshake
	 * then times out, which proves the broker let it through) */
	zl_listener_close(a);
	pid_t p1 = fork();
	if (p1 == 0)
		_exit(try_as(nobody, 4321, sb));
	struct zl_chan *ch;
	CHECK_EQ(zl_accept(b, NULL, &ch, 10000), 0);
	zl_chan_close(ch);
	CHECK_EQ(wait_status(p1), 0);
	pid_t p2 = fork();
	if (p2 == 0)
		_exit(try_as(4321, nogroup, sc));
	CHECK_EQ(zl_accept(c, NULL, &ch, 10000), 0);
	zl_chan_close(ch);
	CHECK_EQ(wait_status(p2), 0);

	zl_listener_close(b);
	zl_listener_close(c);
	zl_ctx_close(ctx);
	kill(bpid, SIGTERM);
	CHECK_EQ(wait_status(bpid), 0);
	return 0;
}
