# Thin wrapper: the build is CMake, the tests are CTest. See README.md.
BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc)
# CTest slots for `make check`: twice the cores. Most tests wait on simulated links, reboots
# and timers rather than compute, so two per core keep the CPU busy; the QEMU guests
# (RESOURCE_LOCK fgw_vm) and the rollout tests (fgw_rollout) still run one of each at a time.
CHECK_JOBS ?= $(shell echo $$(( $$(nproc) * 2 )))
FUZZ_SECONDS ?= 60
CMAKE_FLAGS ?=
# Under ASan+UBSan `make check` runs these labels; `make soak` runs everything but vm
# (docs/reliability.md has the split and its timings).
ASAN_CHECK_LABELS ?= unit|fuzz|integration|sim
SAN_ENV = ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

.PHONY: all deps build build-asan check check-vm fuzz demo bench clean format soak deb

all: build

deps:
	./tools/deps.sh

# Release-like build, warnings are errors.
build:
	cmake -S . -B $(BUILD) -DFGW_WERROR=ON $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j $(JOBS)

# Second configuration: clang with ASan+UBSan, also builds the libFuzzer targets.
build-asan:
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug \
		-DFGW_WERROR=ON -DFGW_SANITIZE=address,undefined -DFGW_FUZZ=ON $(CMAKE_FLAGS)
	cmake --build $(ASAN_BUILD) -j $(JOBS)

check: deps build build-asan
	ctest --test-dir $(BUILD) --output-on-failure -j $(CHECK_JOBS)
	$(SAN_ENV) ctest --test-dir $(ASAN_BUILD) --output-on-failure -j $(CHECK_JOBS) -L '$(ASAN_CHECK_LABELS)'

# The Debian package (debian/): fotagw_<version>_<arch>.deb and its dbgsym package in
# build-deb/, then lintian (fails on errors). Incremental after the first run. `make check`
# builds and checks it too (CTest label "package").
DEB_OUT ?= build-deb
deb:
	JOBS=$(JOBS) ./tools/mkdeb.sh $(DEB_OUT)

# Only the real BlueZ tier (tests/vm: QEMU guest, real kernel + bluetoothd; needs root, no
# KVM). `make check` runs it too. docs/vm-tier.md.
check-vm: deps build
	ctest --test-dir $(BUILD) --output-on-failure -L vm

# Runs every fuzz target for FUZZ_SECONDS each, keeping what it finds in build-asan/fuzz-work/.
# A crash, leak or timeout is copied into the target's seed corpus as regress-<kind>-<sha1>,
# so `make check` (which replays every corpus) fails on it until it is fixed; then commit it.
fuzz: deps build-asan
	cd $(ASAN_BUILD) && for f in $$(find . -maxdepth 3 -type f -name 'fuzz-*' -perm -u+x); do \
		name=$$(basename $$f); corpus=$(CURDIR)/tests/fuzz/corpus/$${name#fuzz-}; \
		mkdir -p fuzz-work/$$name fuzz-work/$$name-artifacts; \
		echo "== $$name ($(FUZZ_SECONDS)s)"; \
		$$f -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -timeout=10 \
			-artifact_prefix=fuzz-work/$$name-artifacts/ fuzz-work/$$name $$corpus && continue; \
		for a in fuzz-work/$$name-artifacts/*; do \
			[ -f "$$a" ] && cp "$$a" "$$corpus/regress-$$(basename $$a)" && \
			echo "saved $$corpus/regress-$$(basename $$a)"; \
		done; exit 1; \
	done

# Long runs: the reliability cases with larger counts (FGW_SOAK=1), fotagwd SIGKILLed through
# five more rollouts, the whole suite but vm under ASan+UBSan, and every fuzzer for
# FUZZ_SECONDS. docs/reliability.md.
soak: deps build build-asan
	FGW_SOAK=1 ctest --test-dir $(BUILD) --output-on-failure -L reliability
	ctest --test-dir $(BUILD) --output-on-failure -R '^fleet/restart$$' --repeat until-fail:5
	$(SAN_ENV) ctest --test-dir $(ASAN_BUILD) --output-on-failure -j $(JOBS) -LE vm
	$(MAKE) fuzz

# A complete dual-core rollout to a simulated fleet (fotagw-sim as bluetoothd on a private
# bus), watched live; DEMO_DEVICES=N (default 24), CI=true for plain progress lines.
# tools/demo/demo.py says what else it takes.
demo: deps build
	FGW_BUILD=$(BUILD) python3 tools/demo/demo.py

# Link utilisation, pipelining, fleet makespan, CPU (callgrind), memory, REST under load and
# start-up on the release-like build; one JSON line per metric, exit 1 when a goal is missed.
# Not part of `make check`. docs/performance.md. BENCH_ONLY=link,fleet,cpu,daemon picks phases.
BENCH_ONLY ?= link,fleet,cpu,daemon
bench: build
	python3 bench/run.py --build $(BUILD) --out $(BUILD)/bench --only $(BENCH_ONLY)

format:
	find daemon lib tools tests -name '*.[ch]' | xargs clang-format -i

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(DEB_OUT)
