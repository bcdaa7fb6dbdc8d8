-- SPDX-License-Identifier: MIT
-- rill.stats() and rill.metrics(): the server's figures (src/metrics.c,
-- summed over every worker) as a Lua table, and a handler that serves them
-- in Prometheus's text exposition format 0.0.4.
local core = require "rill.core"

local concat, format, sort, pairs, ipairs, type = table.concat, string.format, table.sort, pairs, ipairs, type

local M = {}

local CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

-- rill.stats() → { requests = {GET = {["2xx"] = n, ...}, ...}, request_duration = {...}, ... }
function M.stats()
  return core.stats()
end

-- A number as the format writes it: integers without a fraction, +Inf for the last bucket.
local function num(v)
  if v == math.huge then return "+Inf" end
  if math.type(v) == "integer" then return tostring(v) end
  return format("%.15g", v)
end

local function label_value(s)
  return (s:gsub("\\", "\\\\"):gsub("\n", "\\n"):gsub('"', '\\"'))
end

local function labels(t)
  if not t then return "" end
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  sort(keys)
  local out = {}
  for _, k in ipairs(keys) do out[#out + 1] = format('%s="%s"', k, label_value(t[k])) end
  return "{" .. concat(out, ",") .. "}"
end

local Writer = {}
Writer.__index = Writer

function Writer:family(name, kind, help)
  self[#self + 1] = format("# HELP %s %s\n# TYPE %s %s\n", name, help, name, kind)
  self.name = name
end

function Writer:sample(value, l, suffix)
  self[#self + 1] = format("%s%s%s %s\n", self.name, suffix or "", labels(l), num(value))
end

function Writer:one(name, kind, help, value)
  self:family(name, kind, help)
  self:sample(value)
end

function Writer:histogram(name, help, h)
  self:family(name, "histogram", help)
  for _, b in ipairs(h.buckets) do self:sample(b[2], { le = num(b[1]) }, "_bucket") end
  self:sample(h.count, { le = "+Inf" }, "_bucket")
  self:sample(h.sum, nil, "_sum")
  self:sample(h.count, nil, "_count")
end

-- Each key of t as a label value, in order.
function Writer:by(label, t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  sort(keys)
  for _, k in ipairs(keys) do self:sample(t[k], { [label] = k }) end
end

-- The exposition text of a stats table.
function M.render(s)
  local w = setmetatable({}, Writer)
  w:one("rill_workers", "gauge", "Processes whose figures are summed here (workers, or the one process).", s.workers)
  w:family("rill_http_requests_total", "counter", "HTTP requests that ended, by method and status class.")
  local methods = {}
  for m in pairs(s.requests) do methods[#methods + 1] = m end
  sort(methods)
  for _, m in ipairs(methods) do
    local classes = {}
    for c in pairs(s.requests[m]) do classes[#classes + 1] = c end
    sort(classes)
    for _, c in ipairs(classes) do w:sample(s.requests[m][c], { method = m, code = c }) end
  end
  w:histogram("rill_http_request_duration_seconds", "Time from a request's head to its reply's end (streams apart).", s.request_duration)
  w:histogram("rill_http_stream_duration_seconds", "The whole life of streamed replies.", s.stream_duration)
  w:family("rill_http_streams_ended_total", "counter", "Streamed replies that ended, by how.")
  w:by("end", s.streams_ended)
  w:one("rill_http_response_bytes_total", "counter", "Body bytes handed to client connections.", s.bytes_out)
  w:one("rill_http_connections", "gauge", "Open client connections.", s.connections)
  w:one("rill_http_streams", "gauge", "Streamed replies open now.", s.streams)
  w:one("rill_handler_errors_total", "counter", "Handlers that raised an error.", s.handler_errors)
  w:one("rill_handler_budget_stops_total", "counter", "Handlers stopped by --max-instructions.", s.budget_stops)
  w:one("rill_lua_memory_stops_total", "counter", "Handlers stopped by running out of Lua memory (--max-lua-memory).", s.memory_stops)
  w:family("rill_fetch_requests_total", "counter", "rill.fetch calls, by outcome (ok: a response head came).")
  w:by("outcome", s.fetches)
  w:histogram("rill_fetch_duration_seconds", "rill.fetch: time to the response head, or to the failure.", s.fetch_duration)
  w:one("rill_tails", "gauge", "rill.tail followers open now.", s.tails)
  w:one("rill_tails_opened_total", "counter", "rill.tail followers opened.", s.tails_opened)
  local hub = s.hub
  w:one("rill_hub_topics", "gauge", "Hub topics held (summed over workers: with --workers each holds every topic).", hub.topics)
  w:one("rill_hub_subscribers", "gauge", "Hub subscriptions open now.", hub.subscribers)
  w:one("rill_hub_events_published_total", "counter", "Events published by this server's handlers.", hub.published)
  w:one("rill_hub_events_delivered_total", "counter", "Events written to subscribers (one per subscriber).", hub.delivered)
  w:one("rill_hub_subscribers_dropped_total", "counter", "Subscribers cut or skipped ahead for falling behind.", hub.dropped)
  w:one("rill_hub_gaps_total", "counter", "rill-gap events sent to subscribers.", hub.gaps)
  w:one("rill_hub_events_evicted_total", "counter", "Events dropped from history for the global byte budget.", hub.evicted)
  w:one("rill_hub_backplane_connected", "gauge", "Workers whose hub backplane is connected (Redis; always so in memory).", hub.backplane_connected)
  w:one("rill_hub_backplane_reconnects_total", "counter", "Reconnections to Redis.", hub.backplane_reconnects)
  w:one("rill_hub_backplane_lag_seconds", "gauge", "How late the last live event from Redis arrived (the worst worker).", hub.backplane_lag)
  w:one("rill_lua_memory_bytes", "gauge", "Bytes the Lua states hold.", s.lua_bytes)
  w:one("rill_open_fds", "gauge", "Open file descriptors of the workers.", s.fds)
  w:one("rill_access_log_dropped_total", "counter", "Access log lines dropped (a reader that does not read, a failed write).", s.access_log_dropped)
  w.name = nil
  return concat(w)
end

-- rill.metrics() → a handler serving the figures as Prometheus text; mount it
-- where you want, behind your own auth: ["GET /metrics"] = rill.metrics().
function M.handler(opts)
  if opts ~= nil and type(opts) ~= "table" then
    error(("bad argument #1 to 'metrics' (table expected, got %s)"):format(type(opts)), 2)
  end
  return function()
    return { status = 200, headers = { ["content-type"] = CONTENT_TYPE }, body = M.render(core.stats()) }
  end
end

return M
