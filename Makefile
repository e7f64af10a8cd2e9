# Makefile -- a thin front for scripts/deps.sh, CMake and ctest.  CMake
# (CMakeLists.txt) knows how to build; this file only names the usual runs.
#
#   make build   deps + release build in build/ (RelWithDebInfo)
#   make test    build + ASan/UBSan build in build-asan/, then every ctest
#                label in build/ and all but the Lua specs in build-asan/
#   make fuzz    libFuzzer targets in build-fuzz/ (clang-14), each run for
#                FUZZ_SECONDS on a copy of its seed corpus (FUZZ_RUNS=N: until
#                N executions instead, FUZZ_SECONDS still the bound;
#                FUZZ_TARGETS="rpc conn": only those)
#   make bench   build + scripts/bench.sh (engine) + scripts/bench_node.py (node vs Redis)
#                + scripts/bench_cluster.py (3-node cluster vs one node, pipeline 1 and 16)
#                + scripts/bench_lua.py (a trivial Lua handler vs the native get)
#                + scripts/bench_memory.py (bytes per key, 1M keys, Moor beside Redis)
#                + scripts/bench_gossip.py (failure-detection times, 5 nodes)
#                + scripts/bench_failover.py (a node killed mid-run, hint replay)
#                + scripts/bench_repair.py (anti-entropy) + scripts/bench_join.py (a join)
#                + scripts/bench_scan.py (a full key scan vs redis-cli --scan)
#   make run     build + start a node (build/moord conf/node.lua)
#   make install build + cmake --install build --prefix $(PREFIX) (default
#                /usr/local; DESTDIR is honoured): README "Install"
#   make format  clang-format -i over core/ and tests/
#   make clean   remove the build trees

SHELL := /bin/bash
MAKEFLAGS += --no-print-directory
.SHELLFLAGS := -eu -o pipefail -c

NPROC := $(shell nproc 2>/dev/null || echo 2)
JOBS ?= $(NPROC)
FUZZ_SECONDS ?= 60
FUZZ_CC ?= clang-14
CLANG_FORMAT ?= clang-format
CMAKE_TYPE := -DCMAKE_BUILD_TYPE=RelWithDebInfo
PREFIX ?= /usr/local

FUZZ_RUNS ?= -1
FUZZ_NAMES := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_TARGETS ?= $(FUZZ_NAMES)

.PHONY: all deps build build-asan test fuzz bench run install format clean

all: build

deps:
	bash scripts/deps.sh

build: deps
	cmake -S . -B build $(CMAKE_TYPE)
	cmake --build build -j $(JOBS)

build-asan: deps
	cmake -S . -B build-asan $(CMAKE_TYPE) -DMOOR_SANITIZE=ON -DMOOR_BENCH=OFF
	cmake --build build-asan -j $(JOBS)

# Both suites run even if the first fails, so one run shows every failure;
# the target fails if either did.
test: build build-asan
	@status=0; \
	ctest --test-dir build --output-on-failure --no-tests=error -j $(JOBS) || status=1; \
	UBSAN_OPTIONS=print_stacktrace=1 \
	ctest --test-dir build-asan -L 'unit|fuzz|integration|fault' --output-on-failure --no-tests=error \
	    -j $(JOBS) || status=1; \
	if [ $$status -ne 0 ]; then echo "make test: FAILED (see above)" >&2; fi; \
	exit $$status

# The corpus is copied into build-fuzz/corpus/<name> (kept between runs so
# findings accumulate) and crash files go to build-fuzz/artifacts/, so the
# repo's seed corpus is never written to.
fuzz: deps
	CC=$(FUZZ_CC) cmake -S . -B build-fuzz $(CMAKE_TYPE) -DMOOR_FUZZ=ON -DMOOR_BENCH=OFF
	cmake --build build-fuzz -j $(JOBS)
	@status=0; \
	mkdir -p build-fuzz/artifacts; \
	for name in $(FUZZ_TARGETS); do \
	    corpus=build-fuzz/corpus/$$name; \
	    mkdir -p $$corpus; \
	    if [ -d tests/fuzz/corpus/$$name ]; then cp -rn tests/fuzz/corpus/$$name/. $$corpus/; fi; \
	    echo "== fuzz_$$name for $(FUZZ_SECONDS) s on $$corpus"; \
	    if ! build-fuzz/fuzz_$$name -max_total_time=$(FUZZ_SECONDS) -runs=$(FUZZ_RUNS) \
	            -print_final_stats=1 \
	            -artifact_prefix=build-fuzz/artifacts/$$name- $$corpus; then \
	        echo "fuzz_$$name FAILED; reproducer in build-fuzz/artifacts/$$name-*" >&2; \
	        status=1; \
	    fi; \
	done; \
	exit $$status

bench: build
	bash scripts/bench.sh
	/usr/bin/python3 scripts/bench_node.py --build build | tee build/bench-node.txt
	/usr/bin/python3 scripts/bench_cluster.py --build build | tee build/bench-cluster.txt
	/usr/bin/python3 scripts/bench_lua.py --build build | tee build/bench-lua.txt
	/usr/bin/python3 scripts/bench_memory.py --build build | tee build/bench-memory.txt
	/usr/bin/python3 scripts/bench_gossip.py --build build | tee build/bench-gossip.txt
	/usr/bin/python3 scripts/bench_failover.py --build build | tee build/bench-failover.txt
	/usr/bin/python3 scripts/bench_repair.py --build build | tee build/bench-repair.txt
	/usr/bin/python3 scripts/bench_join.py --build build | tee build/bench-join.txt
	/usr/bin/python3 scripts/bench_scan.py --build build | tee build/bench-scan.txt
	@echo; echo "== make bench: the ratios (full output in build/bench-*.txt) =="
	@grep -h -E 'moor/rocksdb' build/bench-engine.txt 2>/dev/null || true
	@grep -h -i -E 'cluster/single|call/get|moor/redis|target' build/bench-node.txt \
	  build/bench-cluster.txt build/bench-lua.txt build/bench-memory.txt \
	  build/bench-scan.txt 2>/dev/null \
	  | grep -v '^{' || true

run: build
	@if [ -x build/moord ]; then \
	    exec build/moord conf/node.lua; \
	else \
	    echo "make run: build/moord does not exist yet: the node (moord) arrives with issue 3." >&2; \
	    exit 1; \
	fi

install: build
	cmake --install build --prefix $(PREFIX)

format:
	@command -v $(CLANG_FORMAT) >/dev/null || \
	    { echo "make format: $(CLANG_FORMAT) not found (Debian package clang-format)" >&2; exit 1; }
	find core tests -name '*.[ch]' -print0 | xargs -0 -r $(CLANG_FORMAT) -i

clean:
	rm -rf build build-asan build-fuzz
