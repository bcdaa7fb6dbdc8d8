-- SPDX-License-Identifier: MIT
-- The public API: local rill = require "rill"
local core = require "rill.core"
local coroutine_ext = require "rill.coroutine"
local router = require "rill.router"
local sse = require "rill.sse"

coroutine_ext.install() -- effects then work inside the user's coroutine.wrap generators

return {
  version = core.version,
  sleep = core.sleep, -- rill.sleep(seconds): an effect
  fetch = core.fetch, -- rill.fetch(url, opts): an upstream response, after its head
  now = core.now, -- monotonic seconds
  run = core.run, -- rill.run(fn, ...): drive the loop until fn returns (tests, scripts)
  router = router.new, -- rill.router { ["GET /x/:id"] = handler, ... }
  sse = sse, -- rill.sse.encode(event), rill.sse.follow(url, opts)
}
