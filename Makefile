# zerolink: the two commands of README, and the quality gates CI runs.
#
#   make demo    install what is missing (as root), build, run the benchmark (quick)
#   make check   install what is missing (as root), build, run every test
#
BUILD      ?= build
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60

# Debian 12 packages the build, the tests and the charts need.
DEB_PKGS = gcc make meson ninja-build pkg-config gnuplot-nox clang clang-format libclang-rt-14-dev
# the real programs the sockets tests (tests/apps) and benchmarks run
DEB_PKGS += python3 curl socat iperf3 sockperf redis-server redis-tools memcached iproute2 procps \
	    libmemcached-tools nginx-light wrk
# the I/O host: io_uring, libcrypto, ISA-L (CRC32C), and the NBD tools its tests and
# benchmarks drive
DEB_PKGS += liburing-dev libssl-dev libisal-dev nbdkit qemu-utils libnbd-bin fio

.PHONY: all deps build demo check check-asan check-tsan fuzz format format-check install clean

all: build

deps:
	@missing=""; for p in $(DEB_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "missing Debian packages; run as root:"; \
	    echo "  apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi

$(BUILD)/build.ninja:
	meson setup $(BUILD)

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

demo: build
	$(BUILD)/zerolink bench --quick --json $(BUILD)/bench.json --png $(BUILD)/bench.png

check: build
	meson test -C $(BUILD) --print-errorlogs --num-processes 2

# Unit and integration tests under AddressSanitizer + UndefinedBehaviorSanitizer.
check-asan: deps
	[ -f $(ASAN_BUILD)/build.ninja ] || meson setup $(ASAN_BUILD) -Db_sanitize=address,undefined -Db_lundef=false
	ninja -C $(ASAN_BUILD)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  meson test -C $(ASAN_BUILD) --print-errorlogs --num-processes 2 --suite unit --suite integration

# The concurrency tests under ThreadSanitizer.
check-tsan: deps
	[ -f $(TSAN_BUILD)/build.ninja ] || CC=clang meson setup $(TSAN_BUILD) -Db_sanitize=thread -Db_lundef=false
	ninja -C $(TSAN_BUILD)
	TSAN_OPTIONS=halt_on_error=1 meson test -C $(TSAN_BUILD) --print-errorlogs --suite concurrency

# libFuzzer harnesses, each for FUZZ_SECONDS.
fuzz: deps
	[ -f $(FUZZ_BUILD)/build.ninja ] || CC=clang meson setup $(FUZZ_BUILD) -Dfuzz=true -Db_lundef=false
	ninja -C $(FUZZ_BUILD)
	for f in $(FUZZ_BUILD)/tests/fuzz_proto $(FUZZ_BUILD)/tests/fuzz_lane; do \
	  echo "== $$f for $(FUZZ_SECONDS) s"; mkdir -p $(FUZZ_BUILD)/corpus-$$(basename $$f); \
	  ZEROLINKD=$(CURDIR)/$(FUZZ_BUILD)/zerolinkd $$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -artifact_prefix=$(FUZZ_BUILD)/ $(FUZZ_BUILD)/corpus-$$(basename $$f) || exit 1; \
	done

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h')

install: build
	meson install -C $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD) $(FUZZ_BUILD)
