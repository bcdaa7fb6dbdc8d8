-- spec/dashboard_spec.lua: examples/dashboard.lua, in process, on a fake clock
local rill = require "rill"
local core = require "rill.core"
local t = require "rill.test"

describe("the dashboard", function()
  local clock, app
  before_each(function()
    clock = t.clock() -- rill.sleep, rill.every and rill.now on virtual time from here
    app = dofile("examples/dashboard.lua")
  end)
  after_each(function()
    core.stop_background() -- the ticker ends with the spec
    clock:stop()
  end)

  it("sends the figures every 5 s of virtual time, and the spec never waits", function()
    local s <close> = t.stream(app, { path = "/events" })
    local first = s:event(10)
    assert.same("figures", first.event)
    local times = { rill.json.decode(first.data).at }
    for _ = 1, 2 do
      times[#times + 1] = rill.json.decode(s:event(10).data).at
    end
    assert.near(5, times[2] - times[1], 1e-9)
    assert.near(5, times[3] - times[2], 1e-9)
  end)

  it("gives a screen that reconnects what it missed, by its Last-Event-ID", function()
    local s = t.stream(app, { path = "/events" })
    local seen = s:event(10)
    s:close() -- the screen goes away
    clock:advance(12) -- two ticks meanwhile
    local back <close> = t.stream(app, { path = "/events", headers = { ["last-event-id"] = seen.id } })
    local missed = { back:event(1), back:event(1) }
    assert.same({ "figures", "figures" }, { missed[1].event, missed[2].event })
    assert.is_true(missed[1].id ~= seen.id)
  end)

  it("posts a note to every screen, and refuses one that is not JSON", function()
    local a <close> = t.stream(app, { path = "/events" })
    local posted = t.call(app, { method = "POST", path = "/notes", headers = { ["content-type"] = "application/json" },
                                 body = '{"text":"lunch at noon"}' })
    assert.same(201, posted.status)
    local ev
    repeat ev = a:event(10) until ev.event == "note"
    assert.same({ text = "lunch at noon" }, rill.json.decode(ev.data))
    assert.same(400, t.call(app, { method = "POST", path = "/notes", body = "lunch" }).status)
  end)
end)
