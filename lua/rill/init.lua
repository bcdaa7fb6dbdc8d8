-- SPDX-License-Identifier: MIT
-- The public API: local rill = require "rill"
local core = require "rill.core"
local coroutine_ext = require "rill.coroutine"
local router = require "rill.router"
local sse = require "rill.sse"
local hub = require "rill.hub"
local cors = require "rill.cors"
local metrics = require "rill.metrics"

coroutine_ext.install() -- effects then work inside the user's coroutine.wrap generators

return {
  version = core.version,
  sleep = core.sleep, -- rill.sleep(seconds): an effect
  fetch = core.fetch, -- rill.fetch(url, opts): an upstream response, after its head
  tail = core.tail, -- rill.tail(path, opts): the lines of a growing file, like tail -F
  now = core.now, -- monotonic seconds
  run = core.run, -- rill.run(fn, ...): drive the loop until fn returns (tests, scripts)
  router = router.new, -- rill.router({ ["GET /x/:id"] = handler, ... } [, {not_found=, method_not_allowed=}])
  sse = sse, -- rill.sse(source, opts), .encode(event), .follow(url, opts), .last_event_id(req)
  publish = hub.publish, -- rill.publish(topic, event) → id
  subscribe = hub.subscribe, -- rill.subscribe(topic, {last_event_id=}) → iterator of events
  close_topic = hub.close_topic,
  hub = hub, -- hub.configure{...}, hub.stats([topic]), hub.disconnect(topic)
  cors = cors, -- rill.cors(handler, {origin=, credentials=})
  stats = metrics.stats, -- rill.stats() → the server's figures, summed over its workers
  metrics = metrics.handler, -- ["GET /metrics"] = rill.metrics(): Prometheus text
}
