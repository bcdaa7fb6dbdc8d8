-- SPDX-License-Identifier: MIT
-- The public API: local rill = require "rill"
local core = require "rill.core"
local coroutine_ext = require "rill.coroutine"
local router = require "rill.router"
local sse = require "rill.sse"
local hub = require "rill.hub"
local cors = require "rill.cors"
local metrics = require "rill.metrics"
local body = require "rill.body"
local cookie = require "rill.cookie"

local REDIRECTS = { [301] = true, [302] = true, [303] = true, [307] = true, [308] = true }

-- rill.redirect(url [, status]): the response that sends the client to url (302 by default).
local function redirect(url, status)
  if type(url) ~= "string" or url == "" or url:find("%c") then
    error("bad argument #1 to 'redirect' (a URL: a non-empty string without control bytes)", 2)
  end
  status = status or 302
  if not REDIRECTS[status] then
    error("bad argument #2 to 'redirect' (301, 302, 303, 307 or 308 expected, got " .. tostring(status) .. ")", 2)
  end
  return { status = status, headers = { location = url } }
end

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
  json = body.api, -- rill.json.encode(value), .decode(text), .null (lua-cjson)
  cookie = cookie.cookie, -- rill.cookie(name, value, {path=, max_age=, secure=, http_only=, same_site=...}) → Set-Cookie text
  redirect = redirect, -- rill.redirect(url [, status]) → a 302 (or 301, 303, 307, 308) response
  stats = metrics.stats, -- rill.stats() → the server's figures, summed over its workers
  metrics = metrics.handler, -- ["GET /metrics"] = rill.metrics(): Prometheus text
}
