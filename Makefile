# Stampede: `make` builds, `make test` runs every test, `make demo` runs a real scenario.
BUILD_DIR ?= build
JOBS ?= 2

.PHONY: all build deps configure test demo bench package test-package clean fuzz check-sanitize \
	check-asan check-tsan

all: build

deps:
	@bash deploy/install-deps.sh

$(BUILD_DIR)/build.ninja:
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo

configure: deps $(BUILD_DIR)/build.ninja

build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j 1

demo: build
	bash deploy/demo.sh $(BUILD_DIR)

bench: build
	bash tests/bench/throughput.sh $(BUILD_DIR)

# The Debian package (README "Installing"): build/stampede_VERSION_ARCH.deb. Needs help2man.
package: build
	cmake --build $(BUILD_DIR) --target package

# Package, image and Kubernetes tests (tests/package/, not part of `make test`): as root,
# they install and remove the .deb on this machine and chroot into the image's root.
test-package: build
	bash tests/package/run.sh $(BUILD_DIR)

# Sanitizer runs (README "Sanitizers and fuzzing"): two more build directories, each building
# only what it runs. ASan+UBSan: the unit tests and the fuzz targets' replay of their corpus.
# TSan: the HTTP engines' unit tests, and the e2e tests that run the worker daemon and its
# load engine across threads (cluster, halt, global halt). `make -k check-sanitize` runs both
# halves even when the first fails.
ASAN_DIR ?= build-asan
TSAN_DIR ?= build-tsan
ASAN_ENV = ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
TSAN_ENV = TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$(CURDIR)/tests/tsan.supp"
TSAN_E2E = e2e_test_(cluster|halt|global_halt)

$(ASAN_DIR)/build.ninja:
	cmake -S . -B $(ASAN_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTAMPEDE_SANITIZE=address

$(TSAN_DIR)/build.ninja:
	cmake -S . -B $(TSAN_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTAMPEDE_SANITIZE=thread

check-sanitize: check-asan check-tsan

check-asan: configure $(ASAN_DIR)/build.ninja
	cmake --build $(ASAN_DIR) -j $(JOBS) --target unit_tests fuzz_targets
	cd $(ASAN_DIR) && $(ASAN_ENV) ctest --output-on-failure -R '^(unit|fuzz_replay_.*)$$'

check-tsan: configure $(TSAN_DIR)/build.ninja
	cmake --build $(TSAN_DIR) -j $(JOBS) --target unit_tests master worker fault_target
	cd $(TSAN_DIR) && $(TSAN_ENV) tests/unit_tests '[http_client]'
	cd $(TSAN_DIR) && $(TSAN_ENV) ctest --output-on-failure -R '^$(TSAN_E2E)$$'

# libFuzzer targets (tests/fuzz/run.sh): a clang build of its own, then FUZZ_SECONDS per target.
FUZZ_DIR ?= build-fuzz
FUZZ_SECONDS ?= 20

$(FUZZ_DIR)/build.ninja:
	CXX=clang++-14 cmake -S . -B $(FUZZ_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTAMPEDE_FUZZ=ON

fuzz:
	@bash deploy/install-deps.sh --fuzz
	$(MAKE) $(FUZZ_DIR)/build.ninja
	cmake --build $(FUZZ_DIR) -j $(JOBS) --target fuzz_targets
	bash tests/fuzz/run.sh $(FUZZ_DIR)/fuzz $(FUZZ_SECONDS)

clean:
	rm -rf $(BUILD_DIR) $(FUZZ_DIR) $(ASAN_DIR) $(TSAN_DIR)
