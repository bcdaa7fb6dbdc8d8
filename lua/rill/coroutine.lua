-- SPDX-License-Identifier: MIT
-- Effect-aware coroutine.resume and coroutine.wrap.
--
-- An effect (rill.sleep, ...) yields a tag to the event loop. Inside a
-- coroutine the user made, Lua's own resume would take that yield as the
-- user's. These versions pass it outward to the loop and hand the loop's
-- answer back down, so effects work at any depth of nesting. require "rill"
-- installs them in the global coroutine table.
local core = require "rill.core"

local EFFECT = core.EFFECT
local raw_resume, raw_yield = core.resume, coroutine.yield -- core's tells the budget who runs
local raw_close, create, status = coroutine.close, coroutine.create, coroutine.status
local error, type, getmetatable, setmetatable = error, type, getmetatable, setmetatable

local M = {}

-- While a nested coroutine waits on an effect we are suspended in raw_yield.
-- If our own coroutine is closed there (the client left), the guard closes
-- the nested one too, so its <close> variables run.
local Guard = {
  __close = function(g)
    local co = g.co
    if co then
      g.co = nil
      raw_close(co)
    end
  end,
}

local function disarm(guard, ...)
  guard.co = nil
  return ...
end

local function relay(co)
  local guard <close> = setmetatable({ co = co }, Guard)
  return disarm(guard, raw_yield(EFFECT))
end

-- Tail calls only, so a stream waiting on a million effects uses no stack.
local function settle(co, ok, first, ...)
  if ok and first == EFFECT then
    return settle(co, raw_resume(co, relay(co)))
  end
  return ok, first, ...
end

function M.resume(co, ...)
  return settle(co, raw_resume(co, ...))
end

-- wrap(f) functions → their coroutine, so a body iterator can be closed
-- (and stands_for functions → what they read).
local wrapped = setmetatable({}, { __mode = "k" })

function M.wrap(f)
  local co = create(f)
  local function unwrap(ok, ...)
    if ok then
      return ...
    end
    raw_close(co) -- as Lua's own wrap does on error
    local err = ...
    error(err, type(err) == "string" and 2 or 0)
  end
  local function step(...)
    return unwrap(settle(co, raw_resume(co, ...)))
  end
  wrapped[step] = co
  return step
end

-- Marks a plain iterator function as standing for source: closing the
-- function closes source (a wrap() generator, an object with __close).
function M.stands_for(fn, source)
  wrapped[fn] = source
  return fn
end

-- The coroutine of a wrap() generator that C may resume in the caller's
-- place: not yet started, or suspended at one of its own yields (not dead,
-- not running, not waiting inside a resume of its own). nil for anything else.
function M.thread_of(fn)
  local co = wrapped[fn]
  if type(co) == "thread" and status(co) == "suspended" then
    return co
  end
  return nil
end

-- Closes what stands behind a body iterator: the coroutine of a wrap()
-- generator, or an object's __close. Safe to call on anything, any time.
function M.close(body)
  local co = wrapped[body]
  if type(co) == "thread" then
    raw_close(co)
    return
  elseif co ~= nil then
    return M.close(co)
  end
  local mt = getmetatable(body)
  local close = type(mt) == "table" and mt.__close
  if close then
    close(body)
  end
end

function M.install()
  coroutine.resume = M.resume
  coroutine.wrap = M.wrap
end

return M
