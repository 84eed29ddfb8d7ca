/* SPDX-License-Identifier: MIT */
/* zerolink bench: the real programs the benchmarks start (servers, clients),
 * their ports and their output. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

static int next_port;

const char *bench_self_exe(void)
{
	static char self[PATH_MAX];
	if (!self[0]) {
		ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
		self[n > 0 ? n : 0] = '\0';
	}
	return self;
}

bool prog_have(const char *prog)
{
	const char *path = getenv("PATH");
	if (!path)
		path = "/usr/bin:/bin:/usr/sbin:/sbin";
	char buf[PATH_MAX];
	const char *p = path;
	while (*p) {
		const char *e = strchr(p, ':');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		snprintf(buf, sizeof(buf), "%.*s/%s", (int)n, p, prog);
		if (access(buf, X_OK) == 0)
			return true;
		if (!e)
			break;
		p = e + 1;
	}
	/* /usr/sbin is not always in PATH (nginx) */
	snprintf(buf, sizeof(buf), "/usr/sbin/%s", prog);
	return access(buf, X_OK) == 0;
}

/* Whether bind (connect false) or connect (true) to 127.0.0.1:port works. */
static bool loopback_try(int port, bool connect_to)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	bool ok = (connect_to ? connect(fd, (struct sockaddr *)&a, sizeof(a))
			      : bind(fd, (struct sockaddr *)&a, sizeof(a))) == 0;
	close(fd);
	return ok;
}

int port_new(void)
{
	/* below the ephemeral ports (32768 and up by default), so that no
	 * client's port or TIME_WAIT is in the way */
	if (!next_port)
		next_port = 20000 + (int)(getpid() % 1000) * 8;
	while (!loopback_try(next_port, false))
		next_port++;
	return next_port++;
}

bool port_listens(int port)
{
	return loopback_try(port, true);
}

/* Start argv on core `side`, under zerolink or not, its output in `out`. */
pid_t proc_spawn(const char *const *argv, bool zl, int side, const char *out)
{
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	pin_to(side);
	setpgid(0, 0); /* a group of its own: nginx's workers end with it */
	int fd = open(out ? out : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd >= 0) {
		dup2(fd, 1);
		dup2(fd, 2);
	}
	int nul = open("/dev/null", O_RDONLY);
	if (nul >= 0)
		dup2(nul, 0);
	const char *v[40];
	int n = 0;
	if (zl) {
		v[n++] = bench_self_exe();
		v[n++] = "run";
		v[n++] = "--";
	}
	for (int i = 0; argv[i] && n < 39; i++)
		v[n++] = argv[i];
	v[n] = NULL;
	execvp(v[0], (char *const *)v);
	if (!strchr(v[0], '/')) {
		char alt[PATH_MAX];
		snprintf(alt, sizeof(alt), "/usr/sbin/%s", v[0]);
		execv(alt, (char *const *)v);
	}
	_exit(127);
}

void proc_stop(pid_t pid)
{
	if (pid <= 0)
		return;
	kill(-pid, SIGTERM);
	for (int i = 0; i < 100; i++) {
		if (waitpid(pid, NULL, WNOHANG) == pid)
			goto done;
		usleep(20000);
	}
	kill(-pid, SIGKILL);
	waitpid(pid, NULL, 0);
done:
	kill(-pid, SIGKILL); /* what is left of its group (workers) */
}

bool port_wait(int port, pid_t pid)
{
	for (int i = 0; i < 200; i++) {
		if (port_listens(port))
			return true;
		if (waitpid(pid, NULL, WNOHANG) == pid)
			return false;
		usleep(25000);
	}
	return false;
}

char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	size_t cap = 1 << 16, n = 0;
	char *b = malloc(cap);
	size_t k;
	while (b && (k = fread(b + n, 1, cap - n - 1, f)) > 0) {
		n += k;
		if (cap - n < 4096) {
			char *nb = realloc(b, cap * 2);
			if (!nb) {
				free(b);
				b = NULL;
				break;
			}
			b = nb;
			cap *= 2;
		}
	}
	fclose(f);
	if (b)
		b[n] = '\0';
	return b;
}

/* The number after the last occurrence of key in the file, or NAN. */
double number_after(const char *file, const char *key)
{
	char *t = slurp(file);
	if (!t)
		return NAN;
	double v = NAN;
	for (char *p = t; (p = strstr(p, key)); p += strlen(key)) {
		char *e;
		double x = strtod(p + strlen(key), &e);
		if (e != p + strlen(key))
			v = x;
	}
	free(t);
	return v;
}

/* Run the client to completion (it must end by itself within limit_s). */
int proc_run(const char *const *argv, bool zl, const char *out, int limit_s)
{
	pid_t pid = proc_spawn(argv, zl, 1, out);
	for (int i = 0; i < limit_s * 50; i++) {
		int st;
		if (waitpid(pid, &st, WNOHANG) == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		usleep(20000);
	}
	proc_stop(pid);
	return -1;
}

double median_nan(double *v, int n)
{
	int k = 0;
	for (int i = 0; i < n; i++)
		if (!isnan(v[i]))
			v[k++] = v[i];
	return k ? median_d(v, (size_t)k) : NAN;
}

bool unix_answers(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

pid_t iohost_spawn(const char *const *argv, const char *control)
{
	pid_t pid = proc_spawn(argv, false, 0, NULL);
	for (int i = 0; pid > 0 && i < 500; i++) {
		if (unix_answers(control))
			return pid;
		if (waitpid(pid, NULL, WNOHANG) == pid)
			return 0;
		usleep(10000);
	}
	proc_stop(pid);
	return 0;
}
