-- SPDX-License-Identifier: MIT
-- spec/testing_env_spec.lua
-- Apps configured by environment variables: examples/fetch_json.lua reads
-- its API server's URL from API, examples/tail_log.lua its log file from LOG.
local t = require "rill.test"

describe("an app configured by its environment", function()
  it("fetches from the API server named by API", function()
    local api <close> = t.server("examples/hello.lua") -- a stand-in API server
    local srv <close> = t.server("examples/fetch_json.lua", {
      env = { API = ("http://%s:%d"):format(api.host, api.port) },
    })
    local res = srv:get("/api/anything")
    assert.same(200, res.status)
    assert.same("hello world\n", res.body)
  end)

  it("tails the log file named by LOG", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir " .. dir))
    finally(function() os.execute("rm -rf " .. dir) end)
    local log = dir .. "/app.log"
    local f = assert(io.open(log, "w"))
    f:write("started\n")
    f:close()
    local srv <close> = t.server("examples/tail_log.lua", {
      env = { LOG = log },
      args = { "--tail-root", dir },
    })
    local s <close> = srv:open("/log")
    assert.same("started", s:event(5).data)
  end)
end)
