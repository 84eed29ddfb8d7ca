/* SPDX-License-Identifier: MIT */
/* Where the I/O host's control socket is, for the daemon and for
 * `zerolink iohost`: $ZEROLINK_IOHOST, else iohost.sock beside the
 * broker's socket. */
#ifndef ZL_IOHOST_CTLPATH_H
#define ZL_IOHOST_CTLPATH_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include <zerolink/ctx.h>

static inline int ioh_control_path(char *buf, size_t size)
{
	const char *e = getenv("ZEROLINK_IOHOST");
	int n;
	if (e && *e) {
		n = snprintf(buf, size, "%s", e);
	} else {
		char b[sizeof(((struct sockaddr_un *)0)->sun_path)];
		if (zl_broker_default_path(b, sizeof(b)) < 0)
			return -ENAMETOOLONG;
		char *slash = strrchr(b, '/');
		if (slash)
			*slash = 0;
		n = snprintf(buf, size, "%s/iohost.sock", slash ? b : ".");
	}
	if (n < 0 || (size_t)n >= size || (size_t)n >= sizeof(((struct sockaddr_un *)0)->sun_path))
		return -ENAMETOOLONG;
	return n;
}

#endif
