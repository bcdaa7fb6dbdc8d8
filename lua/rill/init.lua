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
local static = require "rill.static"

-- rill.env(name [, default]): the environment variable, or default when unset; with a
-- number or boolean default, the value read as one (an unreadable value raises, naming it).
local TRUE, FALSE = { ["1"] = true, ["true"] = true, yes = true, on = true },
  { ["0"] = true, ["false"] = true, no = true, off = true, [""] = true }
local function env(name, default)
  if type(name) ~= "string" or name == "" then
    error(("bad argument #1 to 'env' (a variable name expected, got %s)"):format(type(name)), 2)
  end
  local value = os.getenv(name)
  if value == nil then
    return default
  end
  local kind = type(default)
  if kind == "number" then
    local n = tonumber(value)
    if n == nil then
      error(("environment variable %s=%q is not a number"):format(name, value), 2)
    end
    return n
  elseif kind == "boolean" then
    local word = value:lower()
    if TRUE[word] then return true end
    if FALSE[word] then return false end
    error(("environment variable %s=%q is not a boolean (1/0, true/false, yes/no, on/off)"):format(name, value), 2)
  end
  return value
end

-- "app.lua:12", where fn was defined: background tasks are named by it in the log
local function defined_at(fn)
  local info = debug.getinfo(fn, "S")
  return info and info.what == "Lua" and (info.short_src .. ":" .. info.linedefined) or "?"
end

local function check_fn(fn, fname)
  if type(fn) ~= "function" then
    error(("bad argument #%d to '%s' (function expected, got %s)"):format(fname == "every" and 2 or 1, fname,
      type(fn)), 3)
  end
end

-- A task's handle: t:cancel() (true if it had not ended), t:running() (a run of it is in this
-- process: a once task in a worker without the lead is not running, though not ended).
local Task = {}
Task.__index = Task
function Task:cancel() return core.cancel_background(self.id) end
function Task:running() return core.background_running(self.id) end

-- opts of spawn and every: { once = true } or nothing; the once flag.
local function check_opts(opts, argn, fname)
  if opts == nil then
    return false
  end
  if type(opts) ~= "table" then
    error(("bad argument #%d to '%s' (table expected, got %s)"):format(argn, fname, type(opts)), 3)
  end
  for k, v in pairs(opts) do
    if k ~= "once" then
      error(("bad argument #%d to '%s' (unknown option '%s': once is the one known)"):format(argn, fname, tostring(k)), 3)
    elseif type(v) ~= "boolean" then
      error(("bad argument #%d to '%s' (once must be a boolean)"):format(argn, fname), 3)
    end
  end
  return opts.once == true
end

-- rill.spawn(fn [, {once = true}]): fn runs in a task of its own, from the next turn of the
-- loop (at the top level of an app: once the server runs). An error is logged and ends it;
-- shutdown and reload cancel it (its <close> variables run). once: with --workers, in one
-- worker only, which the master picks (and picks again when that one dies).
local function spawn(fn, opts)
  check_fn(fn, "spawn")
  local once = check_opts(opts, 2, "spawn")
  return setmetatable({ id = core.spawn_task(fn, "rill.spawn task at " .. defined_at(fn), once) }, Task)
end

local BACKOFF_MAX = 60

-- rill.every(seconds, fn): fn every `seconds` (from the start of one run to the next; a run
-- longer than that is followed by the next at once, never two at a time). A run that
-- raises is logged with its traceback, and the next waits 1 s, 2 s, 4 s... up to 60 s (or
-- the period, if longer), until one succeeds.
local function every(seconds, fn, opts)
  if type(seconds) ~= "number" or seconds ~= seconds or seconds <= 0 or seconds > 1e9 then
    error(("bad argument #1 to 'every' (a number of seconds above 0 expected, got %s)"):format(tostring(seconds)), 2)
  end
  check_fn(fn, "every")
  local once = check_opts(opts, 3, "every")
  local name = ("rill.every(%g) task at %s"):format(seconds, defined_at(fn))
  local sleep, now, traceback = core.sleep, core.now, debug.traceback
  return setmetatable({ id = core.spawn_task(function()
    local backoff = 0
    while true do
      local started = now()
      local ok, err = xpcall(fn, traceback)
      if ok then
        backoff = 0
        local left = started + seconds - now()
        sleep(left > 0 and left or 0)
      else
        backoff = math.min(math.max(backoff * 2, 1), BACKOFF_MAX)
        local wait = math.max(backoff, seconds)
        core.log("error", ("%s: error: %s (next run in %g s)"):format(name, tostring(err), wait))
        sleep(wait)
      end
    end
  end, name, once) }, Task)
end

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
  spawn = spawn, -- rill.spawn(fn) → task: fn in a task of its own, outside any request
  every = every, -- rill.every(seconds, fn) → task: fn every `seconds`, restarted with backoff after an error
  args = core.args or {}, -- rill.args: the words after `--` on rill's command line
  env = env, -- rill.env(name [, default]) → the environment variable (a number or boolean like default)
  json = body.api, -- rill.json.encode(value), .decode(text), .null (lua-cjson)
  cookie = cookie.cookie, -- rill.cookie(name, value, {path=, max_age=, secure=, http_only=, same_site=...}) → Set-Cookie text
  redirect = redirect, -- rill.redirect(url [, status]) → a 302 (or 301, 303, 307, 308) response
  streamed_body = body.streamed_body, -- ["POST /up"] = rill.streamed_body(fn): req:body_reader() as it arrives
  static = static.static, -- ["GET /assets/*"] = rill.static("public", {max_age=}): files, with 304s and ranges
  stats = metrics.stats, -- rill.stats() → the server's figures, summed over its workers
  metrics = metrics.handler, -- ["GET /metrics"] = rill.metrics(): Prometheus text
}
