-- SPDX-License-Identifier: MIT
-- A strict HTTP/1.1 client the project did not write (Debian's python3-h11,
-- spec/support/h11_client.py) against spec/apps/framing.lua: every body kind,
-- status and handler-set framing header, the router's 404/405, the 500s and
-- the refusals, × GET/HEAD/POST × HTTP/1.0, 1.0 keep-alive and 1.1, each with
-- a request pipelined behind it. h11 must accept every response, and each
-- case checks Date, duplicate framing headers, HEAD/304 lengths against GET's
-- and that the pipelined request is answered (or the connection closed as
-- announced). The client prints one JSON line per case; one `it` per case.
local test = require "rill.test"
local core = require "rill.core"
local json = require "support.json"

local PYTHON = "/usr/bin/python3" -- Debian's, where python3-h11 is installed
local CLIENT = "spec/support/h11_client.py"
local TIMEOUT = 150 -- the client bounds itself at 120 s

local function case_names()
  local p = assert(io.popen(PYTHON .. " " .. CLIENT .. " --list 2>&1"))
  local names = {}
  for line in p:lines() do names[#names + 1] = line end
  local ok = p:close()
  assert(ok and #names > 0, "h11_client.py --list failed (is python3-h11 installed?):\n" .. table.concat(names, "\n"))
  return names
end

describe("a strict HTTP/1.1 client (h11)", function()
  local names = case_names()
  local srv, client, results, raw

  setup(function()
    srv = test.server("spec/apps/framing.lua", { args = { "--max-body-bytes", "1024" } })
    client = core.spawn({ PYTHON, CLIENT, "--port", tostring(srv.port) })
    -- read as it comes (a full pipe would stall the client), until it is done
    local done = client:wait_for("h11 client: done", TIMEOUT)
    raw = client:log()
    if not done then
      client:kill("KILL")
    end
    client:wait(10)
    results = {}
    for line in raw:gmatch("[^\n]+") do
      if line:sub(1, 1) == "{" then
        local r = json.decode(line)
        if r and r.case then results[r.case] = r end
      end
    end
  end)

  teardown(function()
    if client then client:close() end -- kills it if still running
    if srv then assert.same(0, srv:stop(), srv:log()) end
  end)

  it("runs to the end", function()
    assert.is_truthy(raw:find("h11 client: done", 1, true), raw:sub(-2000))
  end)

  for _, name in ipairs(names) do
    it("frames " .. name .. " so that h11 accepts it", function()
      local r = results[name]
      assert(r, "no result for this case; the client said:\n" .. raw:sub(-1500))
      assert(r.ok, name .. ":\n  " .. table.concat(r.problems, "\n  "))
    end)
  end

  it("never ran /smuggled, and kept serving", function()
    assert.same("0\n", srv:get("/smuggled-count").body)
  end)
end)
