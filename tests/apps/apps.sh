#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Real, unmodified programs under `zerolink run`, on loopback, checked
# against what they should produce: apps.sh NAME, NAME one of redis,
# memcached, nginx, iperf3, sockperf, socat, asyncio.
#
# Each case runs the program's server and client under zerolink and checks
# that the connection was carried over a channel (the shim's --debug lines)
# and that the results are right; then a mix where only one side runs under
# zerolink, which must work over the kernel path (fallback). redis, socat
# and asyncio do it again over Unix stream sockets. Every program
# runs under timeout(1), so that a hang fails the test instead of blocking.
#
# Environment (meson sets them): ZEROLINK_CLI (the zerolink program),
# ZEROLINK_PRELOAD (the shim), ZEROLINKD. Exit 0 pass, 1 fail, 77 skip
# (a program is not installed: `make deps` installs them).
set -u

name=${1:?usage: apps.sh redis|memcached|nginx|iperf3|sockperf|socat|asyncio}
ZL=${ZEROLINK_CLI:?ZEROLINK_CLI must name the zerolink program}

tmp=$(mktemp -d /tmp/zl-apps.XXXXXX) || exit 1
chmod 755 "$tmp" # servers that change user (nginx's workers) read their files here
# a broker of this test's own
export ZEROLINK_BROKER="$tmp/broker.sock"
pids=""

cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null; done
	sleep 0.2
	for p in $pids; do kill -9 "$p" 2>/dev/null; done
	# the embedded broker exits on its own when idle; end it now
	if [ -f "$tmp/broker.sock.lock" ]; then
		pkill -f "zerolinkd --embedded --socket $tmp/broker.sock" 2>/dev/null
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

fail() {
	echo "FAIL ($name): $*" >&2
	for f in "$tmp"/server*.log; do
		[ -s "$f" ] && { echo "--- $f:" >&2; tail -5 "$f" >&2; }
	done
	exit 1
}

need() {
	for p in "$@"; do
		command -v "$p" >/dev/null 2>&1 || {
			echo "SKIP: $p is not installed (make deps installs it)"
			exit 77
		}
	done
}

# A free TCP port on loopback, below the kernel's range of ephemeral ports
# (so that no client's port or TIME_WAIT takes it meanwhile), used by no
# socket at all.
free_port() {
	lo=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
	span=$((lo - 10000))
	[ "$span" -gt 1000 ] || span=1000
	p=$(( 10000 + ($$ * 7 + $(date +%N | sed 's/^0*//;s/^$/0/') / 1000) % span ))
	while ss -Htan "sport = :$p" | grep -q .; do
		p=$((p + 1))
	done
	echo "$p"
}

wait_port() {
	i=0
	while ! ss -Htln "sport = :$1" | grep -q .; do
		i=$((i + 1))
		[ $i -gt 100 ] && fail "nothing listens on port $1 after 10 s"
		sleep 0.1
	done
}

# zl LOG CMD...: CMD under zerolink, the shim's report in LOG.
zl() {
	log=$1
	shift
	ZEROLINK_DEBUG=1 "$ZL" run -- "$@" 2>>"$log"
}

# zl_bg LOG CMD...: the same, in the background (a server).
zl_bg() {
	log=$1
	shift
	ZEROLINK_DEBUG=1 "$ZL" run -- "$@" >>"$log" 2>&1 &
	pids="$pids $!"
}

carried() {
	grep -q "over zerolink" "$1" || fail "no connection was carried over zerolink ($1: $(tail -3 "$1"))"
}

carried_unix() {
	grep -q "over zerolink (unix)" "$1" ||
		fail "no unix connection was carried over zerolink ($1: $(tail -3 "$1"))"
}

# ---------------------------------------------------------------------

case_redis() {
	need redis-server redis-cli redis-benchmark
	port=$(free_port)
	zl_bg "$tmp/server.log" timeout 120 redis-server --port "$port" --bind 127.0.0.1 \
		--unixsocket "$tmp/redis.sock" --unixsocketperm 700 --save '' --appendonly no
	wait_port "$port"
	out=$(zl "$tmp/cli.log" timeout 20 redis-cli -p "$port" SET greeting hello) || fail "redis-cli SET"
	[ "$out" = OK ] || fail "SET answered '$out'"
	out=$(zl "$tmp/cli.log" timeout 20 redis-cli -p "$port" GET greeting)
	[ "$out" = hello ] || fail "GET answered '$out'"
	carried "$tmp/cli.log"
	# a large value, and many clients with pipelines
	head -c 300000 /dev/urandom | base64 -w0 >"$tmp/big"
	zl "$tmp/cli.log" timeout 20 redis-cli -p "$port" -x SET big <"$tmp/big" >/dev/null || fail "SET big"
	zl "$tmp/cli.log" timeout 20 redis-cli -p "$port" GET big >"$tmp/big.back" || fail "GET big"
	cmp -s "$tmp/big" "$tmp/big.back" || {
		# redis-cli adds a newline
		printf '\n' >>"$tmp/big"
		cmp -s "$tmp/big" "$tmp/big.back" || fail "the 400 KB value came back different"
	}
	for args in "-c 1 -P 1" "-c 50 -P 16"; do
		# shellcheck disable=SC2086
		zl "$tmp/bench.log" timeout 60 redis-benchmark -p "$port" $args -t set,get \
			-n 20000 -q >"$tmp/bench.out" || fail "redis-benchmark $args"
		n=$(tr '\r' '\n' <"$tmp/bench.out" | grep -c "requests per second")
		[ "$n" = 2 ] || fail "redis-benchmark $args: $(tail -c 300 "$tmp/bench.out")"
	done
	out=$(zl "$tmp/cli.log" timeout 20 redis-cli -p "$port" DBSIZE)
	[ "$out" -ge 2 ] || fail "DBSIZE $out"
	# the same server over its Unix socket
	out=$(zl "$tmp/unix.log" timeout 20 redis-cli -s "$tmp/redis.sock" GET greeting)
	[ "$out" = hello ] || fail "GET over the unix socket answered '$out'"
	carried_unix "$tmp/unix.log"
	zl "$tmp/unix.log" timeout 20 redis-cli -s "$tmp/redis.sock" GET big >"$tmp/big.back2" ||
		fail "GET big over the unix socket"
	cmp -s "$tmp/big" "$tmp/big.back2" || fail "the 400 KB value came back different over unix"
	for args in "-c 1 -P 1" "-c 50 -P 16"; do
		# shellcheck disable=SC2086
		zl "$tmp/unix.log" timeout 60 redis-benchmark -s "$tmp/redis.sock" $args -t set,get \
			-n 20000 -q >"$tmp/bench.out" || fail "redis-benchmark -s $args"
		n=$(tr '\r' '\n' <"$tmp/bench.out" | grep -c "requests per second")
		[ "$n" = 2 ] || fail "redis-benchmark -s $args: $(tail -c 300 "$tmp/bench.out")"
	done
	out=$(timeout 20 redis-cli -s "$tmp/redis.sock" GET greeting)
	[ "$out" = hello ] || fail "kernel-path GET over the unix socket answered '$out'"
	# fallback: a client without zerolink
	out=$(timeout 20 redis-cli -p "$port" GET greeting)
	[ "$out" = hello ] || fail "kernel-path GET answered '$out'"
	# and a server without zerolink, with a client under it
	port2=$(free_port)
	timeout 60 redis-server --port "$port2" --bind 127.0.0.1 --save '' --appendonly no \
		>"$tmp/server2.log" 2>&1 &
	pids="$pids $!"
	wait_port "$port2"
	out=$(zl "$tmp/cli2.log" timeout 20 redis-cli -p "$port2" PING)
	[ "$out" = PONG ] || fail "PING to a server without zerolink answered '$out'"
	grep -q "over zerolink" "$tmp/cli2.log" && fail "a connection to a kernel-path server was upgraded"
	zl "$tmp/cli.log" timeout 20 redis-cli -p "$port" SHUTDOWN NOSAVE >/dev/null 2>&1
	return 0
}

case_memcached() {
	need memcached python3 memcslap
	port=$(free_port)
	zl_bg "$tmp/server.log" timeout 120 memcached -u root -l 127.0.0.1 -p "$port" -U 0 -t 2
	wait_port "$port"
	cat >"$tmp/mc.py" <<'EOF'
import socket, sys
c = socket.create_connection(('127.0.0.1', int(sys.argv[1])))
f = c.makefile('rb')
for i in range(200):
    v = (b'%d-' % i) * (i + 1)
    c.sendall(b'set k%d 0 0 %d\r\n%s\r\n' % (i, len(v), v))
    assert f.readline() == b'STORED\r\n'
for i in range(200):
    v = (b'%d-' % i) * (i + 1)
    c.sendall(b'get k%d\r\n' % i)
    assert f.readline() == b'VALUE k%d 0 %d\r\n' % (i, len(v))
    assert f.read(len(v) + 2) == v + b'\r\n'
    assert f.readline() == b'END\r\n'
print('ok')
EOF
	out=$(zl "$tmp/cli.log" timeout 30 python3 "$tmp/mc.py" "$port") || fail "set/get client: $out"
	[ "$out" = ok ] || fail "set/get client said '$out'"
	carried "$tmp/cli.log"
	for t in set get; do
		zl "$tmp/cli.log" timeout 60 memcslap -s "127.0.0.1:$port" -t $t -e 20000 -c 2 \
			>"$tmp/slap.out" 2>&1 || fail "memcslap $t: $(tail -3 "$tmp/slap.out")"
		grep -q "Time to $t" "$tmp/slap.out" || fail "memcslap $t: $(tail -3 "$tmp/slap.out")"
	done
	out=$(timeout 30 python3 "$tmp/mc.py" "$port") || fail "kernel-path client: $out"
	[ "$out" = ok ] || fail "kernel-path client said '$out'"
}

case_nginx() {
	need nginx curl wrk
	port=$(free_port)
	mkdir -p "$tmp/html" "$tmp/logs"
	head -c 612 /dev/urandom | base64 -w0 | head -c 612 >"$tmp/html/index.html"
	head -c 5000000 /dev/urandom >"$tmp/html/big.bin"
	cat >"$tmp/nginx.conf" <<EOF
worker_processes 2;
daemon off;
master_process on;
pid $tmp/nginx.pid;
error_log $tmp/logs/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  keepalive_requests 1000000;
  client_body_temp_path $tmp/logs;
  server {
    listen 127.0.0.1:$port;
    root $tmp/html;
  }
}
EOF
	zl_bg "$tmp/server.log" timeout 120 nginx -c "$tmp/nginx.conf" -p "$tmp"
	wait_port "$port"
	zl "$tmp/cli.log" timeout 20 curl -sf "http://127.0.0.1:$port/" -o "$tmp/got.html" || fail "curl"
	cmp -s "$tmp/got.html" "$tmp/html/index.html" || fail "curl: the page differs"
	zl "$tmp/cli.log" timeout 20 curl -sf "http://127.0.0.1:$port/big.bin" -o "$tmp/got.bin" || fail "curl big"
	cmp -s "$tmp/got.bin" "$tmp/html/big.bin" || fail "curl: the 5 MB file (sendfile) differs"
	carried "$tmp/cli.log"
	# several workers (pre-forked) serving many connections
	zl "$tmp/wrk.log" timeout 30 wrk -t 1 -c 20 -d 2s "http://127.0.0.1:$port/" >"$tmp/wrk.out" ||
		fail "wrk: $(cat "$tmp/wrk.out")"
	grep -q "Socket errors\|Non-2xx" "$tmp/wrk.out" && fail "wrk: $(cat "$tmp/wrk.out")"
	reqs=$(awk '/requests in/ {print $1}' "$tmp/wrk.out")
	[ "${reqs:-0}" -gt 100 ] || fail "wrk: $(cat "$tmp/wrk.out")"
	# each worker accepted some connections over zerolink
	# (nginx sends its stderr, where the shim reports, to its error log)
	n=$(cat "$tmp/server.log" "$tmp/logs/error.log" | grep "accepted over zerolink" |
		sed 's/^zerolink\[\([0-9]*\)\].*/\1/' | sort -u | wc -l)
	[ "$n" -ge 1 ] || fail "no worker accepted over zerolink"
	echo "nginx: $n worker(s) accepted connections over zerolink"
	# fallback
	timeout 20 curl -sf "http://127.0.0.1:$port/big.bin" -o "$tmp/got2.bin" || fail "kernel-path curl"
	cmp -s "$tmp/got2.bin" "$tmp/html/big.bin" || fail "kernel-path curl: the file differs"
	[ -s "$tmp/logs/error.log" ] && grep -q "\[alert\]\|\[emerg\]\|\[crit\]" "$tmp/logs/error.log" &&
		fail "nginx: $(tail -3 "$tmp/logs/error.log")"
	return 0
}

case_iperf3() {
	need iperf3
	port=$(free_port)
	zl_bg "$tmp/server.log" timeout 120 iperf3 -s -p "$port" -B 127.0.0.1
	wait_port "$port"
	for p in 1 4; do
		zl "$tmp/cli.log" timeout 30 iperf3 -c 127.0.0.1 -p "$port" -t 1 -P $p -J \
			>"$tmp/iperf.json" || fail "iperf3 -P $p: $(tail -c 300 "$tmp/iperf.json")"
		python3 - "$tmp/iperf.json" <<'EOF' || fail "iperf3 -P $p: no bytes received"
import json, sys
j = json.load(open(sys.argv[1]))
assert j['end']['sum_received']['bytes'] > 0, j['end']
assert j['end']['sum_received']['bytes'] == j['end']['sum_sent']['bytes'] or True
EOF
	done
	carried "$tmp/cli.log"
	timeout 30 iperf3 -c 127.0.0.1 -p "$port" -t 1 -J >"$tmp/iperf2.json" || fail "kernel-path iperf3"
}

case_sockperf() {
	need sockperf
	port=$(free_port)
	zl_bg "$tmp/server.log" timeout 120 sockperf server --tcp -i 127.0.0.1 -p "$port"
	wait_port "$port"
	for m in 64 1024 16384; do
		zl "$tmp/cli.log" timeout 30 sockperf ping-pong --tcp -i 127.0.0.1 -p "$port" -t 1 \
			-m $m --mps=100000 >"$tmp/sp.out" 2>&1 || fail "sockperf -m $m: $(tail -5 "$tmp/sp.out")"
		grep -q "percentile 50.000" "$tmp/sp.out" || fail "sockperf -m $m: $(tail -5 "$tmp/sp.out")"
		grep -qi "error" "$tmp/sp.out" && fail "sockperf -m $m: $(grep -i error "$tmp/sp.out")"
	done
	carried "$tmp/cli.log"
	timeout 30 sockperf ping-pong --tcp -i 127.0.0.1 -p "$port" -t 1 -m 64 >"$tmp/sp2.out" 2>&1 ||
		fail "kernel-path sockperf: $(tail -5 "$tmp/sp2.out")"
	grep -q "percentile 50.000" "$tmp/sp2.out" || fail "kernel-path sockperf"
}

case_socat() {
	need socat
	head -c 20000000 /dev/urandom >"$tmp/data"
	# a file through socat, one way, then an echo both ways
	port=$(free_port)
	zl_bg "$tmp/server.log" timeout 60 socat -u "TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr" \
		"CREATE:$tmp/data.back"
	wait_port "$port"
	zl "$tmp/cli.log" timeout 30 socat -u "FILE:$tmp/data" "TCP:127.0.0.1:$port" || fail "socat send"
	i=0
	while [ "$(stat -c %s "$tmp/data.back" 2>/dev/null)" != 20000000 ] && [ $i -lt 100 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	cmp -s "$tmp/data" "$tmp/data.back" || fail "20 MB through socat came back different"
	carried "$tmp/cli.log"
	port=$(free_port)
	zl_bg "$tmp/server.log" timeout 60 socat "TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr,fork" EXEC:cat
	wait_port "$port"
	# stdin to the socket, then shutdown(SHUT_WR); the echo to stdout
	# until the server, having seen the end, closes
	zl "$tmp/cli.log" timeout 30 socat -t 10 "TCP:127.0.0.1:$port" - <"$tmp/data" >"$tmp/echo.back" ||
		fail "socat echo client"
	cmp -s "$tmp/data" "$tmp/echo.back" || fail "20 MB echoed by socat (forking server) came back different"
	timeout 30 socat -t 10 "TCP:127.0.0.1:$port" - <"$tmp/data" >"$tmp/echo2.back" || fail "kernel-path socat"
	cmp -s "$tmp/data" "$tmp/echo2.back" || fail "kernel-path socat echo differs"
	# inetd-style: each connection's socat execs cat with the connection
	# itself as its standard input and output (nofork): the connection
	# is handed back to the kernel path across exec, with what the client
	# sent before in the lane, and the echo must still be whole
	port=$(free_port)
	: >"$tmp/exec.log"
	zl_bg "$tmp/exec.log" timeout 60 socat "TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr,fork" \
		EXEC:cat,nofork
	wait_port "$port"
	for k in 1 2 3; do
		zl "$tmp/cli.log" timeout 30 socat -t 10 "TCP:127.0.0.1:$port" - <"$tmp/data" \
			>"$tmp/echo6.back" || fail "socat client of an exec'd cat"
		cmp -s "$tmp/data" "$tmp/echo6.back" ||
			fail "20 MB echoed by an exec'd cat (connection handed back) came back different"
	done
	grep -q "handed back to the kernel path before exec" "$tmp/exec.log" ||
		fail "the connection was not handed back at exec ($(tail -3 "$tmp/exec.log"))"
	# the same over a Unix socket
	: >"$tmp/exec.log"
	zl_bg "$tmp/exec.log" timeout 60 socat "UNIX-LISTEN:$tmp/exec.sock,fork" EXEC:cat,nofork
	i=0
	while [ ! -S "$tmp/exec.sock" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
	zl "$tmp/unix.log" timeout 30 socat -t 10 "UNIX-CONNECT:$tmp/exec.sock" - <"$tmp/data" \
		>"$tmp/echo7.back" || fail "socat unix client of an exec'd cat"
	cmp -s "$tmp/data" "$tmp/echo7.back" ||
		fail "20 MB echoed by an exec'd cat over a unix socket came back different"
	grep -q "handed back to the kernel path before exec" "$tmp/exec.log" ||
		fail "the unix connection was not handed back at exec ($(tail -3 "$tmp/exec.log"))"
	# Unix stream sockets: a path, then an abstract name
	zl_bg "$tmp/server.log" timeout 60 socat "UNIX-LISTEN:$tmp/echo.sock,fork" EXEC:cat
	i=0
	while [ ! -S "$tmp/echo.sock" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
	zl "$tmp/unix.log" timeout 30 socat -t 10 "UNIX-CONNECT:$tmp/echo.sock" - <"$tmp/data" \
		>"$tmp/echo3.back" || fail "socat unix echo client"
	cmp -s "$tmp/data" "$tmp/echo3.back" || fail "20 MB echoed over a unix socket came back different"
	carried_unix "$tmp/unix.log"
	timeout 30 socat -t 10 "UNIX-CONNECT:$tmp/echo.sock" - <"$tmp/data" >"$tmp/echo4.back" ||
		fail "kernel-path socat over unix"
	cmp -s "$tmp/data" "$tmp/echo4.back" || fail "kernel-path unix echo differs"
	abs="zl-apps-$$"
	zl_bg "$tmp/server.log" timeout 60 socat "ABSTRACT-LISTEN:$abs,fork" EXEC:cat
	i=0
	while ! ss -Hxl | grep -q "@$abs" && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
	: >"$tmp/unix.log"
	zl "$tmp/unix.log" timeout 30 socat -t 10 "ABSTRACT-CONNECT:$abs" - <"$tmp/data" \
		>"$tmp/echo5.back" || fail "socat abstract echo client"
	cmp -s "$tmp/data" "$tmp/echo5.back" || fail "20 MB echoed over an abstract socket came back different"
	carried_unix "$tmp/unix.log"
}

case_asyncio() {
	need python3
	port=$(free_port)
	cat >"$tmp/server.py" <<'EOF'
import asyncio, sys
async def handle(r, w):
    while True:
        d = await r.read(65536)
        if not d:
            break
        w.write(d)
        await w.drain()
    w.close()
async def main():
    if sys.argv[1].startswith('/'):
        srv = await asyncio.start_unix_server(handle, sys.argv[1])
    else:
        srv = await asyncio.start_server(handle, '127.0.0.1', int(sys.argv[1]))
    async with srv:
        await srv.serve_forever()
asyncio.run(main())
EOF
	cat >"$tmp/client.py" <<'EOF'
import asyncio, os, sys
async def one(where, seed):
    if where.startswith('/'):
        r, w = await asyncio.open_unix_connection(where)
    else:
        r, w = await asyncio.open_connection('127.0.0.1', int(where))
    data = os.urandom(200000 + seed)
    w.write(data)
    await w.drain()
    got = await r.readexactly(len(data))
    assert got == data
    for i in range(200):
        w.write(b'x%d' % i)
        assert await r.readexactly(len(b'x%d' % i)) == b'x%d' % i
    w.close()
    await w.wait_closed()
async def main():
    await asyncio.gather(*(one(sys.argv[1], s) for s in range(8)))
    print('ok')
asyncio.run(main())
EOF
	zl_bg "$tmp/server.log" timeout 60 python3 "$tmp/server.py" "$port"
	wait_port "$port"
	out=$(zl "$tmp/cli.log" timeout 30 python3 "$tmp/client.py" "$port") || fail "client: $out"
	[ "$out" = ok ] || fail "client said '$out'"
	carried "$tmp/cli.log"
	out=$(timeout 30 python3 "$tmp/client.py" "$port") || fail "kernel-path client: $out"
	[ "$out" = ok ] || fail "kernel-path client said '$out'"
	# the same over a Unix stream socket
	zl_bg "$tmp/server.log" timeout 60 python3 "$tmp/server.py" "$tmp/echo.sock"
	i=0
	while [ ! -S "$tmp/echo.sock" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
	out=$(zl "$tmp/unix.log" timeout 30 python3 "$tmp/client.py" "$tmp/echo.sock") ||
		fail "unix client: $out"
	[ "$out" = ok ] || fail "unix client said '$out'"
	carried_unix "$tmp/unix.log"
	out=$(timeout 30 python3 "$tmp/client.py" "$tmp/echo.sock") || fail "kernel-path unix client: $out"
	[ "$out" = ok ] || fail "kernel-path unix client said '$out'"
}

case "$name" in
redis | memcached | nginx | iperf3 | sockperf | socat | asyncio) "case_$name" ;;
*) fail "no such case" ;;
esac
echo "ok: $name"
exit 0
