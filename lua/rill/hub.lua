-- SPDX-License-Identifier: MIT
-- The hub's Lua face: publish encodes an event once; the C hub (src/hub.c)
-- keeps the history and hands the same bytes to every subscriber.
local core = require "rill.core"
local sse = require "rill.sse"

local hub = core.hub
local type, tostring, error = type, tostring, error

local M = {}

local function check_topic(topic, fname)
  if type(topic) ~= "string" or topic == "" then
    error(("bad argument #1 to '%s' (a topic name expected, got %s)"):format(fname, type(topic)), 3)
  end
end

-- The fields publish reads itself (it makes the id a string) must be strings
-- or numbers, as for rill.sse.encode: a table would go out as "table: 0x...".
local function check_field(ev, name)
  local t = type(ev[name])
  if t ~= "nil" and t ~= "string" and t ~= "number" then
    error(("bad argument #2 to 'publish' (%s: string expected, got %s)"):format(name, t), 3)
  end
end

-- rill.publish(topic, event) → the event's id, or nil, err for a closed topic
-- (nil, err, "limit" for a new topic past max_topics).
-- event: a table {event=, data=, id=, retry=} or a string (the data). The id
-- is generated (short, CORS-safe, increasing) unless given.
function M.publish(topic, ev)
  check_topic(topic, "publish")
  if type(ev) == "string" then
    ev = { data = ev }
  elseif type(ev) ~= "table" then
    error(("bad argument #2 to 'publish' (table or string expected, got %s)"):format(type(ev)), 2)
  end
  check_field(ev, "event")
  check_field(ev, "data")
  check_field(ev, "id")
  local fields = { event = ev.event, data = ev.data, id = ev.id ~= nil and tostring(ev.id) or nil, retry = ev.retry }
  -- encoded once, around the id line the backplane fills in (and checked here,
  -- in the publisher's own call, before anything is sent)
  local prefix, suffix = sse.encode_parts(fields)
  return hub.publish(topic, fields.id, prefix, suffix, fields)
end

-- rill.subscribe(topic, {last_event_id=, queue=, overflow=}) → iterator of events,
-- or nil, err, "limit" for a new topic past max_topics.
function M.subscribe(topic, opts)
  check_topic(topic, "subscribe")
  return hub.subscribe(topic, opts)
end

-- rill.close_topic(topic) → true (or nil, err, "limit" past max_topics):
-- subscribers get what was published, then their streams end.
function M.close_topic(topic)
  check_topic(topic, "close_topic")
  return hub.close(topic)
end

M.configure = hub.configure
M.stats = hub.stats
M.disconnect = hub.disconnect

return M
