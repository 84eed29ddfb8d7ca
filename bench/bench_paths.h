/* SPDX-License-Identifier: MIT */
/* Endpoints of the paths compared by zerolink bench. */
#ifndef ZL_BENCH_PATHS_H
#define ZL_BENCH_PATHS_H

#include "bench.h"

enum kind { K_ZL, K_TCP, K_UNIX, K_PIPE };

/* What the parent prepares before fork so the child can reach it. */
struct rendezvous {
	enum kind kind;
	int lfd;
	int port;
	char upath[108];
	int p1[2], p2[2];
	char svc[64];
	struct zl_ctx *ctx;
	struct zl_listener *lis;
	struct zl_chan_opts copts;
};

struct endpoint {
	enum kind kind;
	int rfd, wfd;
	struct zl_ctx *ctx;
	struct zl_chan *ch;
};

int rv_prepare(struct rendezvous *rv, enum kind kind, const struct zl_chan_opts *copts);
int rv_listen(struct rendezvous *rv);                      /* accepting side, before rv_parent */
int rv_child(struct rendezvous *rv, struct endpoint *ep);  /* connect side */
int rv_parent(struct rendezvous *rv, struct endpoint *ep); /* accept side */
void rv_done(struct rendezvous *rv);
void ep_close(struct endpoint *ep);
int ep_send(struct endpoint *ep, const void *buf, size_t n);
int ep_recv(struct endpoint *ep, void *buf, size_t n);

#endif
