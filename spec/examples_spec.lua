-- SPDX-License-Identifier: MIT
-- Every example in examples/ runs here, as a user would run it.
local test = require "rill.test"

describe("examples/hello.lua", function()
  local srv
  setup(function() srv = test.server("examples/hello.lua") end)
  teardown(function() assert.same(0, srv:stop(), srv:log()) end)

  it("answers hello world", function()
    local res = srv:get("/")
    assert.same(200, res.status)
    assert.same("hello world\n", res.body)
  end)
end)

describe("examples/clock.lua", function()
  local srv
  setup(function() srv = test.server("examples/clock.lua") end)
  teardown(function() assert.same(0, srv:stop(), srv:log()) end)

  it("streams one timestamp line per chunk", function()
    local s = srv:open("/?n=2")
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ\n$", s:chunk(5))
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ\n$", s:chunk(5))
    assert.same("end", select(2, s:chunk(5)))
    s:close()
  end)

  it("keeps streaming until the client leaves", function()
    local s = srv:open("/")
    assert.is_truthy(s:chunk(5))
    s:close()
    assert.same(0, srv:settle(function(st) return st.streams == 0 end).streams)
  end)
end)

describe("examples/router.lua", function()
  local srv
  setup(function() srv = test.server("examples/router.lua") end)
  teardown(function() assert.same(0, srv:stop(), srv:log()) end)

  it("routes params, optional segments and splats", function()
    assert.same("ada\n", srv:get("/users/1").body)
    assert.same(404, srv:get("/users/9").status)
    assert.same(404, srv:get("/users/x").status)
    assert.same("posts, page 1\n", srv:get("/posts").body)
    assert.same("posts, page 2\n", srv:get("/posts/2").body)
    assert.same("file a/b.txt\n", srv:get("/files/a/b.txt").body)
  end)

  it("answers 405 with Allow for a known path and another method", function()
    local res = srv:request({ method = "PUT", path = "/users" })
    assert.same(405, res.status)
    assert.same("POST", res.headers.allow)
  end)
end)

describe("examples/sse_proxy.lua", function()
  local upstream, srv
  setup(function()
    upstream = test.server("spec/apps/upstream.lua")
    srv = test.server("examples/sse_proxy.lua",
      { env = { UPSTREAM = ("http://127.0.0.1:%d/resumable"):format(upstream.port) } })
  end)
  teardown(function()
    assert.same(0, srv:stop(), srv:log())
    assert.same(0, upstream:stop(), upstream:log())
  end)

  it("relays every upstream event once, across upstream drops", function()
    local res = srv:get("/events")
    assert.same("text/event-stream", res.headers["content-type"])
    local seen = {}
    for data in res.body:gmatch("data: ([^\n]*)") do seen[#seen + 1] = data end
    assert.same(10, #seen)
    for i = 1, 10 do assert.same("event " .. i, seen[i]) end
  end)

  it("resumes after the browser's Last-Event-ID", function()
    local res = srv:get("/events", { ["Last-Event-ID"] = "8" })
    local seen = {}
    for data in res.body:gmatch("data: ([^\n]*)") do seen[#seen + 1] = data end
    assert.same({ "event 9", "event 10" }, seen)
  end)
end)

describe("examples/fetch_json.lua", function()
  local upstream, srv
  setup(function()
    upstream = test.server("spec/apps/upstream.lua")
    srv = test.server("examples/fetch_json.lua", { env = { API = ("http://127.0.0.1:%d"):format(upstream.port) } })
  end)
  teardown(function()
    assert.same(0, srv:stop(), srv:log())
    assert.same(0, upstream:stop(), upstream:log())
  end)

  it("passes the API's answer through", function()
    local res = srv:get("/api/json")
    assert.same(200, res.status)
    assert.same("application/json", res.headers["content-type"])
    assert.same('{"ok":true}', res.body)
  end)

  it("maps an unreachable API to 502 with a JSON error", function()
    local down = test.server("examples/fetch_json.lua", { env = { API = "http://127.0.0.1:9" } })
    local res = down:get("/api/json")
    assert.same(0, down:stop())
    assert.same(502, res.status)
    assert.same('{"error":"refused"}\n', res.body)
  end)
end)

describe("examples/hub.lua", function()
  local srv
  setup(function() srv = test.server("examples/hub.lua") end)
  teardown(function() assert.same(0, srv:stop(), srv:log()) end)

  it("serves the page that subscribes with EventSource", function()
    local res = srv:get("/")
    assert.same("text/html; charset=utf-8", res.headers["content-type"])
    assert.matches("new EventSource", res.body, 1, true)
    -- through rill.static: a validator, and a 304 for a page the browser has
    assert.truthy(res.headers["etag"])
    assert.same(304, srv:get("/", { ["if-none-match"] = res.headers["etag"] }).status)
    assert.same(404, srv:get("/hub.lua").status) -- only the page is served from the directory
  end)

  it("publishes to subscribers, and a dropped one resumes with Last-Event-ID", function()
    local s = srv:open("/events/demo")
    assert.same("retry: 500\n\n", s:chunk(5))
    assert.same(202, srv:request({ method = "POST", path = "/publish/demo", body = "hi" }).status)
    local ev = s:event(5)
    assert.same({ event = "msg", data = "hi", id = ev.id }, ev)
    assert.same("dropped 1\n", srv:request({ method = "POST", path = "/drop/demo" }).body)
    assert.same("closed", select(3, s:rest(5)))
    s:close()
    srv:request({ method = "POST", path = "/publish/demo", body = "while away" })
    local back = srv:open("/events/demo", { headers = { ["Last-Event-ID"] = ev.id } })
    back:chunk(5) -- the retry hint
    assert.same("while away", back:event(5).data)
    back:close()
  end)
end)

describe("examples/tail_log.lua", function()
  local dir, path, srv
  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir))
    path = dir .. "/app.log"
    local f = assert(io.open(path, "w"))
    for i = 1, 12 do f:write("line " .. i .. "\n") end
    f:close()
    srv = test.server("examples/tail_log.lua", { env = { LOG = path }, args = { "--tail-root", dir } })
  end)
  teardown(function()
    assert.same(0, srv:stop(), srv:log())
    os.execute("rm -rf " .. dir)
  end)

  it("serves the page", function()
    assert.matches("new EventSource", srv:get("/").body, 1, true)
  end)

  it("streams the last 10 lines, then each new line, as resumable events", function()
    local s = srv:open("/log")
    local first = s:event(5)
    assert.same("line 3", first.data)
    for i = 4, 12 do assert.same("line " .. i, s:event(5).data) end
    local f = assert(io.open(path, "a"))
    f:write("line 13\n")
    f:close()
    local ev = s:event(5)
    assert.same("line 13", ev.data)
    s:close()
    local again = srv:open("/log", { headers = { ["Last-Event-ID"] = first.id } })
    assert.same("line 4", again:event(5).data) -- exactly after the event named
    again:close()
  end)
end)

describe("examples/dashboard.lua", function()
  local srv
  setup(function() srv = test.server("examples/dashboard.lua", { app_args = { "--every", "0.05" } }) end)
  teardown(function() assert.same(0, srv:stop(), srv:log()) end)

  it("serves its page, and the figures on an event stream", function()
    local page = srv:get("/")
    assert.same("text/html; charset=utf-8", page.headers["content-type"])
    assert.matches('new EventSource%("/events"%)', page.body)
    local s = srv:open("/events")
    local ev = assert(s:event(5))
    assert.same("figures", ev.event)
    assert.matches('"streams":', ev.data)
    s:close()
  end)

  it("posts a note to the screens", function()
    local s = srv:open("/events")
    local res = srv:request({ method = "POST", path = "/notes", headers = { ["content-type"] = "application/json" },
                              body = '{"text":"hi"}' })
    assert.same(201, res.status)
    local ev
    repeat ev = assert(s:event(5)) until ev.event == "note"
    assert.same('{"text":"hi"}', ev.data)
    s:close()
  end)
end)
