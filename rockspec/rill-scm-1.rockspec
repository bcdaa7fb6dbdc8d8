-- SPDX-License-Identifier: MIT
rockspec_format = "3.0"
package = "rill"
version = "scm-1"
source = { url = "git+https://example.invalid/rill.git" }
description = {
  summary = "A Lua-programmable HTTP/SSE server on libevent's evhttp",
  detailed = [[
    rill runs Lua 5.4 handlers in coroutines, streams lazy bodies chunk by
    chunk with backpressure, and gives effects (rill.sleep, ...) that yield
    to the event loop. Installs the rill executable and the rill modules.
  ]],
  license = "MIT",
}
-- lua-cjson: req:json(), { json = ... } and rill.json (loaded on first use). With Debian's
-- lua-cjson installed by apt, `--deps-mode=none` skips the download (docs/getting-started.md).
dependencies = { "lua >= 5.4, < 5.5", "lua-cjson >= 2.1" }
external_dependencies = {
  LIBEVENT = { header = "event2/http.h" },
}
build = {
  type = "cmake",
  variables = {
    CMAKE_BUILD_TYPE = "RelWithDebInfo",
    LUADIR = "$(LUADIR)",
    LIBDIR = "$(LIBDIR)",
    BINDIR = "$(BINDIR)",
  },
}
