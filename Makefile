# Stampede: `make` builds, `make test` runs every test, `make demo` runs a real scenario.
BUILD_DIR ?= build
JOBS ?= 2

.PHONY: all build deps configure test demo bench clean fuzz check-sanitize

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
	rm -rf $(BUILD_DIR) $(FUZZ_DIR)
