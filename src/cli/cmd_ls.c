/* SPDX-License-Identifier: MIT */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../lib/internal.h"
#include "cli.h"

static const char *human(uint64_t v, char *buf, size_t n)
{
	const char *u[] = {"", "K", "M", "G", "T"};
	int i = 0;
	double d = (double)v;
	while (d >= 1000 && i < 4) {
		d /= 1000;
		i++;
	}
	if (i == 0)
		snprintf(buf, n, "%llu", (unsigned long long)v);
	else
		snprintf(buf, n, "%.1f%s", d, u[i]);
	return buf;
}

static int ls_usage(int code)
{
	FILE *f = code ? stderr : stdout;
	fprintf(f, "usage: zerolink ls [--socket PATH]\n"
		   "  Lists domains, services, channels with their counters (messages, bytes,\n"
		   "  kicks, spins, sleeps, drops, per side) and shared regions.\n");
	return code;
}

int cmd_ls(int argc, char **argv)
{
	const char *sock = NULL;
	static const struct option lo[] = {
		{"socket", required_argument, 0, 's'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
	int o;
	while ((o = getopt_long(argc, argv, "s:h", lo, NULL)) != -1) {
		if (o == 's')
			sock = optarg;
		else
			return ls_usage(o == 'h' ? 0 : 2);
	}
	char path[108];
	int fd;
	if (cli_dial(sock, path, sizeof(path), &fd))
		return 1;
	if (zl__msg_send(fd, ZL_MSG_LS, 7, NULL, 0, NULL, 0) < 0) {
		fprintf(stderr, "zerolink: broker went away\n");
		return 1;
	}
	int last = 0;
	for (;;) {
		char buf[ZL_PROTO_MAX], a[16], b[16], c[16], d[16];
		int fds[4];
		int nfds = 4;
		ssize_t n = zl__msg_recv(fd, buf, sizeof(buf), fds, &nfds, false);
		if (n <= 0) {
			fprintf(stderr, "zerolink: broker went away\n");
			return 1;
		}
		int type = zl__proto_check(buf, (size_t)n, nfds);
		zl__close_fds(fds, nfds);
		const char *body = buf + sizeof(struct zl_proto_hdr);
		if (type == ZL_MSG_LS_END)
			break;
		if (type != last) {
			last = type;
			if (type == ZL_MSG_LS_DOMAIN)
				printf("DOMAINS\n  %-6s %-8s %-6s %-20s %s\n", "ID", "PID", "UID",
				       "NAME", "SINCE");
			else if (type == ZL_MSG_LS_SERVICE)
				printf("SERVICES\n  %-24s %-6s %-9s %s\n", "NAME", "DOMAIN", "MODE",
				       "ACCESS");
			else if (type == ZL_MSG_LS_CHAN)
				printf("CHANNELS\n  %-18s %-16s %-13s %-8s %-5s %8s %8s %8s %8s "
				       "%8s %6s\n",
				       "ID", "SERVICE", "CLIENT>SERVER", "MODE", "SIDE", "TX-MSGS",
				       "TX-BYTES", "RX-MSGS", "KICKS", "SLEEPS", "DROPS");
			else if (type == ZL_MSG_LS_REGION)
				printf("REGIONS\n  %-18s %-6s %-10s %s\n", "ID", "DOMAIN", "SIZE",
				       "FLAGS");
		}
		if (type == ZL_MSG_LS_DOMAIN) {
			struct zl_proto_ls_domain x;
			memcpy(&x, body, sizeof(x));
			time_t t = (time_t)(x.since_ns / 1000000000u);
			struct tm tm;
			char ts[32];
			strftime(ts, sizeof(ts), "%F %T", localtime_r(&t, &tm));
			printf("  %-6u %-8u %-6u %-20s %s\n", x.domain, x.pid, x.uid, x.name, ts);
		} else if (type == ZL_MSG_LS_SERVICE) {
			struct zl_proto_ls_service x;
			memcpy(&x, body, sizeof(x));
			printf("  %-24s %-6u %-9s %s\n", x.service, x.domain,
			       x.mode ? "isolated" : "shared",
			       (x.flags & ZL_LISTEN_F_ANY) ? "anyone" : "owner+listed");
		} else if (type == ZL_MSG_LS_CHAN) {
			struct zl_proto_ls_chan x;
			memcpy(&x, body, sizeof(x));
			char cs[32];
			snprintf(cs, sizeof(cs), "%u>%u", x.client, x.server);
			for (int i = 0; i < 2; i++) {
				printf("  %-18llu %-16s %-13s %-8s %-5s %8s %8s %8s %8s %8llu "
				       "%6llu%s\n",
				       (unsigned long long)x.chan, x.service, cs,
				       x.mode ? "isolated" : "shared", i ? "srv" : "cli",
				       human(x.cnt[i].tx_msgs, a, sizeof(a)),
				       human(x.cnt[i].tx_bytes, b, sizeof(b)),
				       human(x.cnt[i].rx_msgs, c, sizeof(c)),
				       human(x.cnt[i].kicks, d, sizeof(d)),
				       (unsigned long long)x.cnt[i].sleeps,
				       (unsigned long long)x.cnt[i].drops,
				       (x.state & (1u << i)) ? "" : " (gone)");
			}
		} else if (type == ZL_MSG_LS_REGION) {
			struct zl_proto_region x;
			memcpy(&x, body, sizeof(x));
			printf("  %-18llx %-6u %-10s %s\n", (unsigned long long)x.id, x.domain,
			       human(x.size, a, sizeof(a)),
			       (x.flags & ZL_REGION_F_FORWARD) ? "forward" : "-");
		} else {
			fprintf(stderr, "zerolink: unexpected reply from the broker\n");
			return 1;
		}
	}
	if (!last)
		printf("no domains (broker at %s is idle)\n", path);
	close(fd);
	return 0;
}

int cmd_watch(int argc, char **argv)
{
	const char *sock = NULL;
	int count = -1;
	static const struct option lo[] = {{"socket", required_argument, 0, 's'},
					   {"count", required_argument, 0, 'n'},
					   {"help", no_argument, 0, 'h'},
					   {0, 0, 0, 0}};
	int o;
	while ((o = getopt_long(argc, argv, "s:n:h", lo, NULL)) != -1) {
		if (o == 's') {
			sock = optarg;
		} else if (o == 'n') {
			count = atoi(optarg);
		} else {
			printf("usage: zerolink watch [--socket PATH] [--count N]\n"
			       "  Prints domain, service and channel events until N were seen.\n");
			return o == 'h' ? 0 : 2;
		}
	}
	char path[108];
	int fd;
	if (cli_dial(sock, path, sizeof(path), &fd))
		return 1;
	zl__msg_send(fd, ZL_MSG_WATCH, 1, NULL, 0, NULL, 0);
	static const char *kinds[] = {"?",           "domain-up",    "domain-down",
				      "service-up",  "service-down", "channel-up",
				      "channel-down"};
	while (count != 0) {
		char buf[ZL_PROTO_MAX];
		int nfds = 0;
		ssize_t n = zl__msg_recv(fd, buf, sizeof(buf), NULL, &nfds, false);
		if (n <= 0)
			break;
		int type = zl__proto_check(buf, (size_t)n, nfds);
		if (type != ZL_MSG_EVENT)
			continue;
		struct zl_proto_event ev;
		memcpy(&ev, buf + sizeof(struct zl_proto_hdr), sizeof(ev));
		printf("%-13s domain=%u chan=%llu name=%s\n", ev.kind < 7 ? kinds[ev.kind] : "?",
		       ev.domain, (unsigned long long)ev.chan, ev.name);
		fflush(stdout);
		if (count > 0)
			count--;
	}
	close(fd);
	return 0;
}
