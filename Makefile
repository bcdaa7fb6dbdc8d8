# SPDX-License-Identifier: MIT
# The two commands of the README:
#   make run    installs what is missing, builds, serves examples/hello.lua on 127.0.0.1:8080
#   make test   installs what is missing, builds, runs every test (ctest, then busted)
# and for development: make test-asan, make test-valgrind, make format.

BUILD ?= build
WERROR ?= OFF
JOBS ?= $(shell nproc)
DEBS = cmake gcc make pkg-config liblua5.4-dev lua5.4 libevent-dev libssl-dev zlib1g-dev lua-busted lua-socket lua-sec lua-zlib openssl valgrind python3-h11 luarocks nginx curl redis-server libhiredis-dev python3-prometheus-client lua-cjson

.PHONY: all deps build build-asan run test test-asan test-valgrind test-browser test-rockspec fuzz format clean

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
	$(MAKE) --no-print-directory test-asan test-valgrind test-browser test-rockspec

E2E_SPECS = spec/e2e_apps_spec.lua spec/e2e_web_spec.lua spec/e2e_access_log_spec.lua spec/e2e_framing_spec.lua spec/e2e_core_spec.lua spec/e2e_fetch_spec.lua spec/e2e_hub_spec.lua spec/e2e_tail_spec.lua spec/e2e_limits_spec.lua spec/e2e_smuggling_spec.lua spec/e2e_strict_client_spec.lua spec/e2e_smuggling_mutations_spec.lua spec/e2e_deploy_spec.lua spec/e2e_workers_spec.lua spec/e2e_reload_spec.lua spec/e2e_workers_lifecycle_spec.lua spec/misuse_spec.lua spec/examples_spec.lua spec/e2e_redis_spec.lua spec/e2e_metrics_spec.lua spec/e2e_trace_spec.lua spec/e2e_tls_spec.lua spec/e2e_static_spec.lua spec/e2e_gzip_spec.lua spec/e2e_body_stream_spec.lua spec/e2e_lean_spec.lua spec/e2e_sse_generator_spec.lua

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

# The documented luarocks install (docs/getting-started.md), into a temporary
# tree: Debian's luarocks defaults to Lua 5.3, hence --lua-version=5.4. Its one
# dependency past Lua, lua-cjson, is Debian's (apt): --deps-mode=none, so
# nothing is downloaded. The installed rill must run, its modules load from
# the tree, and its JSON work with Debian's cjson.
test-rockspec: deps
	@tree=$$(mktemp -d) && trap 'rm -rf "$$tree" build.luarocks' EXIT && \
	  luarocks --lua-version=5.4 --tree "$$tree" make --deps-mode=none rockspec/rill-scm-1.rockspec >"$$tree/log" 2>&1 \
	    || { cat "$$tree/log"; exit 1; } && \
	  "$$tree/bin/rill" --version && \
	  TREE="$$tree" LUA_PATH="$$tree/share/lua/5.4/?.lua;$$tree/share/lua/5.4/?/init.lua" LUA_CPATH="$$tree/lib/lua/5.4/?.so;;" \
	    lua5.4 -e 'local rill = require "rill"; assert(package.searchpath("rill.core", package.cpath):find(os.getenv("TREE"), 1, true)); assert(rill.json.encode({ 1 }) == "[1]"); print("luarocks tree: rill " .. rill.version)' && \
	  echo "test-rockspec: ok"

# libFuzzer on each parser for FUZZ_SECONDS (default 60) each; new inputs go
# to build-fuzz/, crashes stop the run. The seed corpora in fuzz/corpus are
# replayed by ctest on every make test.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS = headscan httpcheck httpresp sse_parse
fuzz:
	@./scripts/deps.sh clang libclang-rt-14-dev
	@mkdir -p build-fuzz
	@for t in $(FUZZ_TARGETS); do \
	  clang -g -O1 -fsanitize=fuzzer,address,undefined -iquote src -o build-fuzz/fuzz_$$t \
	    fuzz/fuzz_$$t.c src/headscan.c src/httpcheck.c src/httpresp.c src/sse_parse.c src/urlcode.c || exit 1; \
	  mkdir -p build-fuzz/corpus_$$t; \
	  echo "fuzzing $$t for $(FUZZ_SECONDS) s"; \
	  build-fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -artifact_prefix=build-fuzz/$$t- \
	    build-fuzz/corpus_$$t fuzz/corpus/$$t 2>&1 | tail -n 2 || exit 1; \
	done

format:
	@./scripts/deps.sh clang-format
	clang-format -i src/*.c src/*.h tests/*.c fuzz/*.c

clean:
	rm -rf $(BUILD) build-asan build-fuzz
