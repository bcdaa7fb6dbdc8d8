-- SPDX-License-Identifier: MIT
-- docs/running.md shows rill --help as it is.
local core = require "rill.core"
local test = require "rill.test"

describe("docs/running.md", function()
  it("lists every option rill --help prints", function()
    local argv = {}
    for word in test.bin:gmatch("%S+") do argv[#argv + 1] = word end
    argv[#argv + 1] = "--help"
    local proc <close> = core.spawn(argv)
    assert.same(0, proc:wait(10))
    local f = assert(io.open("docs/running.md"))
    local doc = f:read("a")
    f:close()
    for line in proc:log():gmatch("[^\n]+") do
      if line:match("^%s+%-") then
        assert.is_truthy(doc:find(line, 1, true), "missing from docs/running.md: " .. line)
      end
    end
  end)
end)
