#!/bin/sh
# SPDX-License-Identifier: MIT
#
# The I/O host's NBD export, driven by the real, unmodified tools people
# use: nbdinfo, nbdcopy, qemu-img, qemu-io and fio's nbd engine, over the
# Unix socket and over TCP loopback, against RAM and file devices. Each
# result is checked (sizes, flags, data copied in and out byte for byte,
# patterns read back, fio's own verification); then what must be refused:
# an unknown export, a device whose ACL names users over TCP, a device with
# nbd = no, and that a device added at run time is exported and one removed
# is not.
#
# Environment (meson sets them): ZEROLINK_IOHOST_BIN, ZEROLINK_CLI.
# Exit 0 pass, 1 fail, 77 skip (a tool is missing: `make deps` installs
# them). Every tool runs under timeout(1).
set -u

IOH=${ZEROLINK_IOHOST_BIN:?ZEROLINK_IOHOST_BIN must name zerolink-iohost}
ZL=${ZEROLINK_CLI:?ZEROLINK_CLI must name the zerolink program}

for p in nbdinfo nbdcopy qemu-img qemu-io fio; do
	command -v "$p" >/dev/null 2>&1 || { echo "SKIP: $p is not installed (make deps)"; exit 77; }
done

tmp=$(mktemp -d /tmp/zl-nbd.XXXXXX) || exit 1
export ZEROLINK_BROKER="$tmp/broker.sock"
ioh_pid=""

cleanup() {
	[ -n "$ioh_pid" ] && kill "$ioh_pid" 2>/dev/null && sleep 0.3 && kill -9 "$ioh_pid" 2>/dev/null
	pkill -f "zerolinkd --embedded --socket $tmp/broker.sock" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

fail() {
	echo "FAIL: $*" >&2
	[ -s "$tmp/ioh.log" ] && { echo "--- zerolink-iohost:" >&2; tail -20 "$tmp/ioh.log" >&2; }
	exit 1
}

t() { timeout 60 "$@"; }

# a free TCP port on loopback, below the ephemeral range
port=$((20000 + $$ % 5000))
while ss -ltn 2>/dev/null | grep -q ":$port "; do port=$((port + 1)); done

sock="$tmp/nbd.sock"
ctl="$tmp/ctl.sock"
truncate -s 64M "$tmp/file.img"
"$IOH" --control "$ctl" --sidecores 0 --nbd "unix:$sock" --nbd "127.0.0.1:$port" \
	--device "ram0:backend=ram,size=64M,users=*" \
	--device "file0:backend=file,path=$tmp/file.img,block_size=4096,users=*" \
	--device "private:backend=ram,size=8M" \
	--device "hidden:backend=ram,size=8M,users=*,nbd=no" \
	--device "ro:backend=file,path=$tmp/file.img,readonly=yes,users=*" \
	>"$tmp/ioh.log" 2>&1 &
ioh_pid=$!
i=0
until [ -S "$sock" ] && "$ZL" iohost --control "$ctl" ping >/dev/null 2>&1; do
	i=$((i + 1))
	[ $i -gt 200 ] && fail "zerolink-iohost did not start"
	kill -0 "$ioh_pid" 2>/dev/null || fail "zerolink-iohost exited"
	sleep 0.05
done

unix_uri() { echo "nbd+unix:///$1?socket=$sock"; }
tcp_uri() { echo "nbd://127.0.0.1:$port/$1"; }

# ---- nbdinfo: what the exports say about themselves
out=$(t nbdinfo "$(tcp_uri ram0)") || fail "nbdinfo ram0 over TCP"
echo "$out" | grep -q "export-size: 67108864" || fail "ram0 size: $out"
echo "$out" | grep -q "can_flush: true" || fail "ram0 flush: $out"
echo "$out" | grep -q "can_fua: true" || fail "ram0 fua: $out"
echo "$out" | grep -q "can_trim: true" || fail "ram0 trim: $out"
echo "$out" | grep -q "can_zero: true" || fail "ram0 zero: $out"
echo "$out" | grep -q "block_size_minimum: 512" || fail "ram0 block size: $out"
out=$(t nbdinfo "$(unix_uri file0)") || fail "nbdinfo file0 over Unix"
echo "$out" | grep -q "block_size_minimum: 4096" || fail "file0 block size: $out"
out=$(t nbdinfo "$(unix_uri ro)") || fail "nbdinfo ro"
echo "$out" | grep -q "is_read_only: true" || fail "ro not read-only: $out"
# the list: what this client may open, and only that
out=$(t nbdinfo --list --json "nbd+unix:///?socket=$sock") || fail "nbdinfo --list"
for e in ram0 file0 ro private; do
	echo "$out" | grep -q "\"export-name\": \"$e\"" || fail "list over Unix lacks $e: $out"
done
echo "$out" | grep -q '"hidden"' && fail "list shows the nbd=no device"
out=$(t nbdinfo --list --json "nbd://127.0.0.1:$port") || fail "nbdinfo --list over TCP"
echo "$out" | grep -q '"private"' && fail "TCP list shows a device whose ACL names users"
echo "$out" | grep -q '"ram0"' || fail "TCP list lacks ram0"

# ---- nbdcopy: 32 MiB in and out, byte for byte, both transports
head -c 33554432 /dev/urandom >"$tmp/data"
t nbdcopy "$tmp/data" "$(tcp_uri ram0)" || fail "nbdcopy into ram0"
t nbdcopy "$(unix_uri ram0)" "$tmp/back" || fail "nbdcopy out of ram0"
head -c 33554432 "$tmp/back" | cmp -s - "$tmp/data" || fail "ram0: what came out differs"
t nbdcopy "$tmp/data" "$(unix_uri file0)" || fail "nbdcopy into file0"
head -c 33554432 "$tmp/file.img" | cmp -s - "$tmp/data" || fail "file0: the file differs from what was copied in"

# ---- qemu-img: convert into the export, compare
t qemu-img convert -n -f raw -O raw "$tmp/data" "$(tcp_uri file0)" || fail "qemu-img convert"
t qemu-img compare -f raw -F raw "$tmp/data" "$(unix_uri file0)" >/dev/null 2>&1 ||
	{ [ $? -eq 1 ] && head -c 33554432 "$tmp/file.img" | cmp -s - "$tmp/data"; } ||
	fail "qemu-img compare"
out=$(t qemu-img info "$(tcp_uri ram0)") || fail "qemu-img info"
echo "$out" | grep -q "virtual size: 64 MiB" || fail "qemu-img info: $out"

# ---- qemu-io: writes (FUA too), reads with patterns, zeroes, discard,
# flush, and an unaligned write that qemu turns into read-modify-write
out=$(t qemu-io -f raw \
	-c "write -P 0x5a 4096 8192" -c "read -P 0x5a 4096 8192" \
	-c "write -f -P 0x6b 1048576 65536" -c "read -P 0x6b 1048576 65536" \
	-c "write -z 65536 65536" -c "read -P 0 65536 65536" \
	-c "discard 131072 65536" -c "flush" \
	-c "write -P 0x11 1000 100" -c "read -P 0x11 1000 100" -c "read -P 0x5a 4096 3000" \
	"$(tcp_uri ram0)" 2>&1) || fail "qemu-io: $out"
echo "$out" | grep -qi "fail\|error\|mismatch" && fail "qemu-io: $out"
# a read-only export refuses writes; reads work
out=$(t qemu-io -f raw -r -c "read 0 4096" "$(unix_uri ro)" 2>&1) || fail "qemu-io read ro: $out"
out=$(t qemu-io -f raw -c "write 0 4096" "$(unix_uri ro)" 2>&1)
echo "$out" | grep -qi "wrote" && fail "a write to the read-only export succeeded: $out"

# ---- fio's nbd engine: random writes verified by fio, queue depth 16
for uri in "$(tcp_uri ram0)" "$(unix_uri file0)"; do
	t fio --name=v --ioengine=nbd --uri="$uri" --rw=randwrite --bs=4k --iodepth=16 \
		--size=16M --verify=crc32c --do_verify=1 --output="$tmp/fio.out" ||
		fail "fio verify on $uri: $(tail -5 "$tmp/fio.out")"
	grep -q "err= 0" "$tmp/fio.out" || fail "fio on $uri: $(grep err "$tmp/fio.out")"
	t fio --name=s --ioengine=nbd --uri="$uri" --rw=write --bs=1M --iodepth=4 \
		--size=16M --verify=md5 --output="$tmp/fio.out" ||
		fail "fio 1M verify on $uri: $(tail -5 "$tmp/fio.out")"
done

# ---- what is refused
t nbdinfo "$(tcp_uri nosuch)" >/dev/null 2>&1 && fail "an unknown export opened"
t nbdinfo "$(tcp_uri private)" >/dev/null 2>&1 && fail "a device whose ACL names users opened over TCP"
t nbdinfo "$(unix_uri hidden)" >/dev/null 2>&1 && fail "an nbd=no device opened"
# over the Unix socket the ACL admits us (root, or the I/O host's user)
t nbdinfo "$(unix_uri private)" >/dev/null || fail "private over Unix, by its own user"

# ---- devices at run time
"$ZL" iohost --control "$ctl" add late backend=ram size=4M users=* >/dev/null || fail "add late"
out=$(t nbdinfo "$(tcp_uri late)") || fail "a device added at run time is not exported"
echo "$out" | grep -q "export-size: 4194304" || fail "late: $out"
"$ZL" iohost --control "$ctl" rm late >/dev/null || fail "rm late"
t nbdinfo "$(tcp_uri late)" >/dev/null 2>&1 && fail "a removed device is still exported"

# the connections are gone from the host's list once closed
sleep 0.2
"$ZL" iohost --control "$ctl" ls | grep -q " nbd " && fail "NBD connections left over: $("$ZL" iohost --control "$ctl" ls)"

kill "$ioh_pid"
i=0
while kill -0 "$ioh_pid" 2>/dev/null; do
	i=$((i + 1))
	[ $i -gt 100 ] && fail "zerolink-iohost did not stop on SIGTERM"
	sleep 0.05
done
wait "$ioh_pid" || fail "zerolink-iohost exited with status $?"
ioh_pid=""
[ -S "$sock" ] && fail "the NBD socket was left behind"
echo ok
