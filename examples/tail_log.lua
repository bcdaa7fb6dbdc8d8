-- SPDX-License-Identifier: MIT
-- A live view of a log file in the browser, surviving rotation and reconnects:
--   LOG=$PWD/app.log rill examples/tail_log.lua --tail-root .
-- (a relative LOG would start in examples/, the app's directory)
-- then open http://127.0.0.1:8080/ (the last 10 lines, then every new one).
local rill = require "rill"

local log = os.getenv("LOG") or "app.log"
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local page = assert(io.open(here .. "tail_log.html")):read("a")

return rill.router {
  ["GET /"] = function()
    return { headers = { ["content-type"] = "text/html; charset=utf-8" }, body = page }
  end,
  ["GET /log"] = function(req)
    local lines, err, code = rill.tail(log, { from = 10, last_event_id = rill.sse.last_event_id(req) })
    if not lines then
      return { status = code == "forbidden" and 403 or 500, body = err .. "\n" }
    end
    return rill.sse(lines)
  end,
}
