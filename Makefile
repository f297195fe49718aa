# Thin wrapper: the build is CMake, the tests are CTest. See README.md.
BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc)
FUZZ_SECONDS ?= 60
CMAKE_FLAGS ?=

.PHONY: all deps build build-asan check check-vm fuzz demo bench clean format

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
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		ctest --test-dir $(ASAN_BUILD) --output-on-failure -j $(JOBS) -L 'unit|fuzz'

# Only the real BlueZ tier (tests/vm: QEMU guest, real kernel + bluetoothd; needs root, no
# KVM). `make check` runs it too. docs/vm-tier.md.
check-vm: deps build
	ctest --test-dir $(BUILD) --output-on-failure -L vm

# Runs every fuzz target for FUZZ_SECONDS each, keeping what it finds in build-asan/.
fuzz: deps build-asan
	cd $(ASAN_BUILD) && for f in $$(find . -maxdepth 3 -type f -name 'fuzz-*' -perm -u+x); do \
		name=$$(basename $$f); mkdir -p fuzz-work/$$name; \
		echo "== $$name ($(FUZZ_SECONDS)s)"; \
		$$f -max_total_time=$(FUZZ_SECONDS) -max_len=65536 fuzz-work/$$name \
			$(CURDIR)/tests/fuzz/corpus/$${name#fuzz-} || exit 1; \
	done

demo:
	@echo "make demo: not built yet. It will install deps, build, sign a dual-core release,"
	@echo "start a simulated fleet of nRF5340 devices and watch fotagwd update it (issue 9)."
	@exit 1

bench:
	@echo "make bench: no benchmarks exist yet (issues 3 and 11 add them)."
	@exit 1

format:
	find daemon lib tools tests -name '*.[ch]' | xargs clang-format -i

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
