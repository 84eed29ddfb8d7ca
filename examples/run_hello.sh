#!/bin/sh
# Runs the example as README shows it: a server in the background, one ask.
set -e
hello="$1"
"$hello" serve & pid=$!
trap 'kill $pid 2>/dev/null' EXIT
for i in $(seq 1 100); do
  out=$("$hello" ask "hi there" 2>/dev/null) && break
  sleep 0.05
done
echo "$out"
echo "$out" | grep -q "got 8 bytes: hi there" || exit 1
echo "$out" | grep -q "got 20 bytes: hi there (zero-copy)" || exit 1
