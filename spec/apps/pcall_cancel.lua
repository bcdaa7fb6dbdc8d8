-- SPDX-License-Identifier: MIT
-- A stream whose body waits inside xpcall, and a handler that fails: for
-- spec/e2e_apps_spec.lua (a coroutine cancelled inside xpcall must not be reused).
local rill = require "rill"
return rill.router {
  ["GET /waits"] = function()
    return { body = function()
      xpcall(rill.sleep, debug.traceback, 30) -- the client leaves while this waits
      return nil
    end }
  end,
  ["GET /boom"] = function() error("boom at last") end,
}
