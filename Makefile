# SPDX-License-Identifier: MIT
# The two commands of the README:
#   make run    installs what is missing, builds, serves examples/hello.lua on 127.0.0.1:8080
#   make test   installs what is missing, builds, runs every test (ctest, then busted)
# and for development: make test-asan, make test-valgrind, make format.

BUILD ?= build
WERROR ?= OFF
JOBS ?= $(shell nproc)
DEBS = cmake gcc make pkg-config liblua5.4-dev lua5.4 libevent-dev libssl-dev zlib1g-dev lua-busted lua-socket lua-sec lua-zlib openssl valgrind

.PHONY: all deps build build-asan run test test-asan test-valgrind test-browser format clean

all: build

deps:
	@./scripts/deps.sh $(DEBS)

build: deps
	cmake -S . -B $(BUILD) -DRILL_WERROR=$(WERROR) >/dev/null
	cmake --build $(BUILD) -j$(JOBS)

run: build
	$(BUILD)/rill examples/hello.lua --listen 127.0.0.1:8080

# Every test: C units, all specs, then the end-to-end specs again against an
# ASan+UBSan build and under valgrind (a leak or invalid access fails them).
test: build
	cd $(BUILD) && ctest --output-on-failure
	./scripts/busted.sh
	$(MAKE) --no-print-directory test-asan test-valgrind test-browser

E2E_SPECS = spec/e2e_core_spec.lua spec/e2e_fetch_spec.lua spec/e2e_hub_spec.lua spec/e2e_tail_spec.lua spec/e2e_limits_spec.lua spec/examples_spec.lua

build-asan: deps
	cmake -S . -B build-asan -DRILL_SANITIZE=ON -DRILL_WERROR=$(WERROR) >/dev/null
	cmake --build build-asan -j$(JOBS)

test-asan: build build-asan
	RILL_BIN=build-asan/rill ./scripts/busted.sh $(E2E_SPECS)

test-valgrind: build
	@./scripts/deps.sh valgrind
	RILL_BIN="valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite $(BUILD)/rill" \
	  RILL_TEST_TIMEOUT=60 ./scripts/busted.sh $(E2E_SPECS)

# A real browser (Debian's chromium, driven by playwright-core from npm, never
# a browser download) against examples/hub.lua: EventSource resume.
test-browser: build
	@./scripts/deps.sh chromium
	@command -v node >/dev/null || ./scripts/deps.sh nodejs npm
	cd tests/browser && npm ci --no-audit --no-fund --loglevel=error
	node tests/browser/hub.mjs

format:
	@./scripts/deps.sh clang-format
	clang-format -i src/*.c src/*.h tests/*.c

clean:
	rm -rf $(BUILD) build-asan
