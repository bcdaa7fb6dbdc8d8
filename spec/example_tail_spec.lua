-- spec/example_tail_spec.lua: examples/tail_log.lua following a log the spec writes
local t = require "rill.test"

describe("the log tail", function()
  local dir, log, srv
  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir " .. dir))
    log = dir .. "/app.log"
    local f = assert(io.open(log, "w"))
    for i = 1, 12 do f:write("old line " .. i .. "\n") end
    f:close()
    srv = t.server("examples/tail_log.lua", { env = { LOG = log }, args = { "--tail-root", dir } })
  end)
  teardown(function()
    srv:stop()
    os.execute("rm -rf " .. dir)
  end)

  local function append(text)
    local f = assert(io.open(log, "a"))
    f:write(text .. "\n")
    f:close()
  end

  it("sends the last 10 lines, then each new one as it is written", function()
    local s = srv:open("/log")
    local first = assert(s:event(5))
    assert.same("old line 3", first.data) -- 12 lines, the last 10
    for i = 4, 12 do assert.same("old line " .. i, assert(s:event(5)).data) end
    append("new line")
    assert.same("new line", assert(s:event(5)).data)
    s:close()
  end)

  it("resumes a reconnecting browser after the last line it saw, by its Last-Event-ID", function()
    local s = srv:open("/log")
    local last
    repeat last = assert(s:event(5)) until last.data == "new line"
    s:close()
    append("written while away")
    local back = srv:open("/log", { headers = { ["last-event-id"] = last.id } })
    assert.same("written while away", assert(back:event(5)).data)
    back:close()
  end)
end)
