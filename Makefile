# Stampede: `make` builds, `make test` runs every test, `make demo` runs a real scenario.
BUILD_DIR ?= build
JOBS ?= 2

.PHONY: all build deps configure test demo bench clean

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

clean:
	rm -rf $(BUILD_DIR)
