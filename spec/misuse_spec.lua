-- SPDX-License-Identifier: MIT
-- The API misuse sweep: every public function of rill called with wrong
-- types, NaN, infinities, huge and negative numbers and empty strings, and
-- every effect called where Lua cannot yield. Each call must end in a clean
-- Lua error (`bad argument #N to 'name'`, or a message saying the effect
-- cannot run there) or a documented `nil, err`: never a crash, a hang, or a
-- value accepted that turns a limit off.
--
-- The calls run inside a real server (spec/apps/misuse.lua runs the chunk a
-- request carries), so a crash or a hang shows as a dead or silent server,
-- bounded by the test timeout, and the ASan build checks every one. The few
-- calls that only make sense outside a server (rill.run, rill.test) run in a
-- child lua5.4, bounded and killed by pid.
local t = require "rill.test"
local core = require "rill.core"

local TIMEOUT = tonumber(os.getenv("RILL_TEST_TIMEOUT")) or 10
local APP = "spec/apps/misuse.lua"

-- Values that are not what an argument wants, as Lua source.
local NUMBERS = {
  nan = "0/0",
  inf = "1/0",
  ["-inf"] = "-1/0",
  ["1e300"] = "1e300",
  maxinteger = "math.maxinteger",
  mininteger = "math.mininteger",
  negative = "-1",
}
local NOT_NUMBERS = { string = '"x"', empty = '""', table = "{}", boolean = "true" }

---------------------------------------------------------------------------
-- The server the cases run in; restarted when a case leaves it dead or deaf,
-- so one failure does not hide the next.

local dir -- a tail root with a file in it
local srv, log_seen = nil, 0

local function start()
  srv = t.server(APP, { args = { "--tail-root", dir } })
  log_seen = 0
  return srv
end

local function kill()
  if srv then
    srv:stop("KILL", TIMEOUT)
    srv = nil
  end
end

-- A request that never raises: the response, or nil and why there is none.
local function send(method, path, body)
  local ok, res = pcall(function()
    srv.proc:log()
    local s, err = t.open(srv.host, srv.port, { method = method, path = path, body = body, timeout = TIMEOUT })
    if not s then
      return { err = err }
    end
    local text, _, ending = s:rest(TIMEOUT)
    s:close()
    return { status = s.status, body = text, ending = ending }
  end)
  if not ok then
    return nil, tostring(res)
  end
  if res.err then
    return nil, res.err
  end
  return res
end

-- New log output since the last look.
local function new_log()
  local log = srv.proc:log()
  local fresh = log:sub(log_seen + 1)
  log_seen = #log
  return fresh
end

-- The server answers /ok, and its log shows no sanitizer report.
local function healthy()
  local res, err = send("GET", "/ok")
  if not res or res.body ~= "ok" then
    return false, "the server no longer answers (" .. tostring(err or res.status) .. ")"
  end
  return true
end

local function sanitizer_report(log)
  return log:match("AddressSanitizer[^\n]*") or log:match("runtime error:[^\n]*") or log:match("LeakSanitizer[^\n]*")
end

-- Runs code in a handler under pcall. Returns "raised", message or
-- "returned", {values as strings}; raises (failing the case) when the server
-- did not answer, crashed or logged a sanitizer report, after restarting it.
local function run(code)
  if not srv then
    start()
  end
  local res, err = send("POST", "/run", code)
  local log = new_log()
  local report = sanitizer_report(log)
  local ok, why = true, nil
  if not res then
    ok, why = false, "no answer: " .. tostring(err)
  elseif report then
    ok, why = false, report
  else
    ok, why = healthy()
  end
  if not ok then
    kill()
    error(why .. "\ncode: " .. code .. "\nlog:\n" .. log, 2)
  end
  local kind, rest = res.body:match("^(%S+)[^\n]*\n?(.*)$")
  if kind == "raised" then
    return "raised", rest
  end
  local values = {}
  for line in (rest .. "\n"):gmatch("([^\n]*)\n") do
    values[#values + 1] = line
  end
  if rest == "" then
    values = {}
  end
  return "returned", values, res.body
end

local function ensure()
  if not srv then
    start()
  end
end

local function url(path)
  ensure()
  return ("http://127.0.0.1:%d%s"):format(srv.port, path)
end

-- Whether msg is `bad argument #argn to 'fname'`; Lua may qualify the name
-- with where it found the function ('rill.hub.configure').
local function names_arg(msg, fname, argn)
  return msg:find(("bad argument #%d to '[%%w_.:]-%s'"):format(argn, fname)) ~= nil
end

-- The call must raise `bad argument #argn to 'fname'`.
local function expect_bad(code, fname, argn)
  local kind, v, body = run(code)
  assert(kind == "raised", ("accepted: %s\nanswer: %s"):format(code, tostring(body)))
  local want = ("bad argument #%d to '%s'"):format(argn, fname)
  assert(names_arg(v, fname, argn), ("wrong error for %s\nwant: %s\ngot:  %s"):format(code, want, v))
end

-- The call must raise `bad argument #argn to 'fname'` or an error that
-- names the offending field (the encoder's "sse: retry must be ...").
local function expect_bad_or_field(code, fname, argn, field)
  local kind, v, body = run(code)
  assert(kind == "raised", ("accepted: %s\nanswer: %s"):format(code, tostring(body)))
  local want = ("bad argument #%d to '%s'"):format(argn, fname)
  assert(names_arg(v, fname, argn) or v:find(field, 1, true),
    ("wrong error for %s\nwant: %s, or a message naming %s\ngot:  %s"):format(code, want, field, v))
end

-- The call must raise a bad argument error, or return nil and a message.
local function expect_refused(code, fname, argn)
  local kind, v, body = run(code)
  if kind == "returned" then
    assert(v[1] == "nil" and v[2] and v[2] ~= "nil",
      ("accepted: %s\nanswer: %s"):format(code, tostring(body)))
    return
  end
  local want = ("bad argument #%d to '%s'"):format(argn, fname)
  assert(names_arg(v, fname, argn), ("wrong error for %s\nwant: %s\ngot:  %s"):format(code, want, v))
end

-- Any clean outcome will do: the case is there for crashes and hangs.
local function expect_clean(code)
  run(code)
end

local function list(...)
  return { ... }
end

-- Cases: { title, function(value_source) → code }, each over a set of values.
local function sweep(title, values, make, check)
  for name, src in pairs(values) do
    it(("%s: %s"):format(title, name), function()
      ensure()
      check(make(src))
    end)
  end
end

local function merge(...)
  local out = {}
  for _, tbl in ipairs { ... } do
    for k, v in pairs(tbl) do
      out[k] = v
    end
  end
  return out
end

local function except(tbl, ...)
  local out = merge(tbl)
  for _, k in ipairs { ... } do
    out[k] = nil
  end
  return out
end

-- Durations: none of NUMBERS is a valid one (the longest is 1e9 s).
local DURATIONS = merge(NUMBERS, NOT_NUMBERS)
-- Sizes and counts: math.maxinteger may mean "no practical bound", which is
-- checked for crashes only (see the `maxinteger` cases).
local SIZES = except(merge(NUMBERS, NOT_NUMBERS, { zero = "0" }), "maxinteger")

local function setup_dir()
  dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. dir))
  local f = assert(io.open(dir .. "/x.log", "w"))
  f:write("one\ntwo\n")
  f:close()
end

local function teardown_all()
  kill()
  if dir then
    os.remove(dir .. "/x.log")
    os.remove(dir)
  end
end

---------------------------------------------------------------------------
describe("misuse of the public API", function()
  setup(setup_dir)
  teardown(teardown_all)

  describe("rill.sleep", function()
    sweep("seconds", DURATIONS, function(v) return ("rill.sleep(%s)"):format(v) end,
      function(code) expect_bad(code, "sleep", 1) end)
    it("seconds: none", function() expect_bad("rill.sleep()", "sleep", 1) end)
  end)

  describe("rill.fetch", function()
    sweep("url", { table = "{}", boolean = "true" }, function(v) return ("return rill.fetch(%s)"):format(v) end,
      function(code) expect_bad(code, "fetch", 1) end)
    it("url: none", function() expect_bad("return rill.fetch()", "fetch", 1) end)
    for name, u in pairs {
      empty = '""',
      ["not a URL"] = '"not a url"',
      ["unknown scheme"] = '"ftp://127.0.0.1/"',
      ["port out of range"] = '"http://127.0.0.1:99999/"',
      ["unclosed IPv6"] = '"http://[::1/"',
      ["CRLF in the target"] = '"http://127.0.0.1:1/a\\r\\nX-Injected: 1"',
      ["space in the target"] = '"http://127.0.0.1:1/a b"',
    } do
      it("url: " .. name, function() expect_refused(("return rill.fetch(%s)"):format(u), "fetch", 1) end)
    end
    it("opts: a string", function()
      expect_bad(("return rill.fetch(%q, 'x')"):format(url("/ok")), "fetch", 2)
    end)
    for _, field in ipairs { "timeout", "idle_timeout" } do
      sweep("opts." .. field, DURATIONS,
        function(v) return ("return rill.fetch(%q, { %s = %s })"):format(url("/ok"), field, v) end,
        function(code) expect_bad(code, "fetch", 2) end)
    end
    sweep("opts.max_body", except(SIZES, "zero"),
      function(v) return ("return rill.fetch(%q, { max_body = %s })"):format(url("/ok"), v) end,
      function(code) expect_bad(code, "fetch", 2) end)
    it("opts.max_body: maxinteger", function()
      expect_clean(("local up = rill.fetch(%q, { max_body = math.maxinteger }) return up and up:read()"):format(url("/ok")))
    end)
    for name, m in pairs {
      empty = '""', number = "1", table = "{}", ["lower case"] = '"get"', space = '"G ET"',
      CRLF = '"GET / HTTP/1.1\\r\\nX-Injected: 1\\r\\n\\r\\nGET"',
    } do
      it("opts.method: " .. name, function()
        expect_refused(("return rill.fetch(%q, { method = %s })"):format(url("/ok"), m), "fetch", 2)
      end)
    end
    for name, h in pairs {
      ["a string"] = '"x"',
      ["a numeric key"] = '{ "x" }',
      ["a name with a space"] = '{ ["x a"] = "1" }',
      ["an empty name"] = '{ [""] = "1" }',
      ["CRLF in a value"] = '{ ["x-a"] = "1\\r\\nX-Injected: 1" }',
      ["NUL in a value"] = '{ ["x-a"] = "1\\0" }',
      ["a table value"] = '{ ["x-a"] = { {} } }',
      ["a boolean value"] = '{ ["x-a"] = true }',
    } do
      it("opts.headers: " .. name, function()
        expect_refused(("return rill.fetch(%q, { headers = %s })"):format(url("/ok"), h), "fetch", 2)
      end)
    end
    for name, b in pairs { table = "{}", boolean = "true", number = "42" } do
      it("opts.body: " .. name, function()
        expect_bad(("return rill.fetch(%q, { body = %s })"):format(url("/ok"), b), "fetch", 2)
      end)
    end
    -- a body function (a streamed body) must give strings or nil: anything else is argument #2's fault
    for name, piece in pairs { table = "{}", boolean = "true", number = "42", ["function"] = "print" } do
      it("opts.body: a function giving a " .. name, function()
        expect_bad(("local n = 0 return rill.fetch(%q, { method = 'PUT', body = function() n = n + 1 "
          .. "if n == 1 then return %s end end })"):format(url("/ok"), piece), "fetch", 2)
      end)
    end
  end)

  describe("the readers of a fetch", function()
    local function with_up(body)
      return ("local up = assert(rill.fetch(%q)) local ok, a, b = pcall(function() %s end) up:close() "
        .. "if not ok then error(a, 0) end return a, b"):format(url("/ok"), body)
    end
    before_each(function()
      if not srv then
        start()
      end
    end)
    for _, reader in ipairs { "lines", "events" } do
      -- a method call: Lua numbers the arguments after self
      sweep(reader .. "(max)", SIZES, function(v) return with_up(("return up:%s(%s)()"):format(reader, v)) end,
        function(code) expect_bad(code, reader, 1) end)
      it(reader .. "(max): maxinteger", function()
        expect_clean(with_up(("return up:%s(math.maxinteger)()"):format(reader)))
      end)
    end
    for name, self_src in pairs { ["a number"] = "1", ["a table"] = "{}", ["a string"] = '"x"' } do
      for _, method in ipairs { "read", "lines", "chunks", "events", "close" } do
        it(("%s on %s"):format(method, name), function()
          expect_bad(with_up(("return up.%s(%s)"):format(method, self_src)), method, 1)
        end)
      end
    end
    it("read after close", function()
      local kind, v = run(("local up = assert(rill.fetch(%q)) up:close() up:close() return up:read()"):format(url("/ok")))
      if kind == "returned" then
        assert.are.equal("nil", v[1])
      else
        assert.matches("closed", v)
      end
    end)
    it("events() twice", function()
      local kind, v = run(with_up("up:events() return up:events()"))
      assert.are.equal("raised", kind)
      assert.matches("events", v)
    end)
  end)

  describe("rill.tail", function()
    local function path()
      return dir .. "/x.log"
    end
    sweep("path", except(NOT_NUMBERS, "string", "empty"),
      function(v) return ("return rill.tail(%s)"):format(v) end, function(code) expect_bad(code, "tail", 1) end)
    it("path: none", function() expect_bad("return rill.tail()", "tail", 1) end)
    it("path: empty", function() expect_refused('return rill.tail("")', "tail", 1) end)
    it("opts: a string", function() expect_bad(("return rill.tail(%q, 'x')"):format(path()), "tail", 2) end)
    local function tail_with(opt)
      return ("local tl = rill.tail(%q, { %s }) if tl then tl:close() end return tl and 'made'"):format(path(), opt)
    end
    sweep("opts.from", except(merge(NUMBERS, { table = "{}", boolean = "true", word = '"middle"' }), "maxinteger"),
      function(v) return tail_with("from = " .. v) end, function(code) expect_bad(code, "tail", 2) end)
    it("opts.from: maxinteger", function() expect_clean(tail_with("from = math.maxinteger")) end)
    sweep("opts.from.offset", except(merge(NUMBERS, NOT_NUMBERS), "maxinteger"),
      function(v) return tail_with("from = { offset = " .. v .. " }") end,
      function(code) expect_bad(code, "tail", 2) end)
    it("opts.from.offset: maxinteger", function() expect_clean(tail_with("from = { offset = math.maxinteger }")) end)
    sweep("opts.max_line", SIZES, function(v) return tail_with("max_line = " .. v) end,
      function(code) expect_bad(code, "tail", 2) end)
    it("opts.max_line: maxinteger", function() expect_clean(tail_with("max_line = math.maxinteger")) end)
    sweep("opts.poll", DURATIONS, function(v) return tail_with("poll = " .. v) end,
      function(code) expect_bad(code, "tail", 2) end)
    it("opts.last_event_id: a table", function() expect_bad(tail_with("last_event_id = {}"), "tail", 2) end)
  end)

  describe("background tasks, configuration, JSON, cookies, redirects", function()
    -- a period: every value of DURATIONS but a valid one (1e300 is past 1e9 s, negative is not above 0)
    sweep("rill.every seconds", merge(DURATIONS, { zero = "0" }),
      function(v) return ("return rill.every(%s, function() end)"):format(v) end,
      function(code) expect_bad(code, "every", 1) end)
    sweep("rill.every fn", NOT_NUMBERS, function(v) return ("return rill.every(1, %s)"):format(v) end,
      function(code) expect_bad(code, "every", 2) end)
    sweep("rill.every opts", { string = '"once"', number = "1", once = "{ once = 1 }", other = "{ ones = true }" },
      function(v) return ("return rill.every(1, function() end, %s)"):format(v) end,
      function(code) expect_bad(code, "every", 3) end)
    sweep("rill.spawn fn", merge(NOT_NUMBERS, { number = "1", none = "nil" }),
      function(v) return ("return rill.spawn(%s)"):format(v) end, function(code) expect_bad(code, "spawn", 1) end)
    sweep("rill.spawn opts", { string = '"once"', once = "{ once = 'yes' }", other = "{ x = 1 }" },
      function(v) return ("return rill.spawn(function() end, %s)"):format(v) end,
      function(code) expect_bad(code, "spawn", 2) end)
    it("rill.spawn: a task spawned and cancelled in a sort comparator and a metamethod", function()
      local kind, v = run([[
        local handles = {}
        table.sort({ 3, 1, 2 }, function(a, b)
          handles[#handles + 1] = rill.spawn(function() rill.sleep(3600) end)
          return a < b
        end)
        local mt = setmetatable({}, { __index = function() return rill.spawn(function() end) end })
        handles[#handles + 1] = mt.x
        local cancelled = 0
        for _, h in ipairs(handles) do if h:cancel() then cancelled = cancelled + 1 end end
        return cancelled == #handles
      ]])
      assert.same({ "returned", { "true" } }, { kind, v })
    end)
    sweep("rill.env name", merge(except(NOT_NUMBERS, "string"), { number = "1", none = "nil" }),
      function(v) return ("return rill.env(%s)"):format(v) end,
      function(code) expect_bad(code, "env", 1) end)
    sweep("rill.json.decode text", merge(except(NOT_NUMBERS, "string", "empty"), { number = "1", none = "nil" }),
      function(v) return ("return rill.json.decode(%s)"):format(v) end,
      function(code) expect_bad(code, "decode", 1) end)
    it("rill.json.decode: text that is not JSON raises naming itself", function()
      for _, v in ipairs({ '""', '"x"', '"[1,"', '"nan"', '"\\0"' }) do
        local kind, msg = run(("return rill.json.decode(%s)"):format(v))
        assert.same("raised", kind, v)
        assert.matches("rill.json.decode: ", msg, 1, true)
      end
    end)
    it("rill.json.encode: a cycle, a function, NaN, a userdata, nesting past 128", function()
      for _, v in ipairs({ "(function() local t = {} t.t = t return t end)()", "print", "{ 0/0 }", "io.stdout",
                           "(function() local t = {} for _ = 1, 200 do t = { t } end return t end)()" }) do
        local kind, msg = run(("return rill.json.encode(%s)"):format(v))
        assert.same("raised", kind, v)
        assert.matches("rill.json.encode: ", msg, 1, true)
      end
    end)
    sweep("rill.cookie name", merge(except(NOT_NUMBERS, "string"), { number = "1", space = '"a b"', semicolon = '"a;b"', cr = '"a\\rb"' }),
      function(v) return ("return rill.cookie(%s, 'v')"):format(v) end,
      function(code) expect_bad(code, "cookie", 1) end)
    sweep("rill.cookie value", { table = "{}", boolean = "true", none = "nil", fn = "print" },
      function(v) return ("return rill.cookie('a', %s)"):format(v) end,
      function(code) expect_bad(code, "cookie", 2) end)
    sweep("rill.cookie max_age", merge(except(NUMBERS, "maxinteger", "mininteger", "negative"), NOT_NUMBERS),
      function(v) return ("return rill.cookie('a', 'v', { max_age = %s })"):format(v) end,
      function(code) expect_bad(code, "cookie", 3) end)
    sweep("rill.cookie expires", merge(NUMBERS, except(NOT_NUMBERS, "table")),
      function(v) return ("return rill.cookie('a', 'v', { expires = %s })"):format(v) end,
      function(code) expect_bad(code, "cookie", 3) end)
    sweep("rill.cookie path, domain, same_site", { path = "{ path = {} }", domain = "{ domain = 'a\\nb' }",
      same_site = "{ same_site = 1 }", none_insecure = "{ same_site = 'None' }", opts = "'x'" },
      function(v) return ("return rill.cookie('a', 'v', %s)"):format(v) end,
      function(code) expect_bad(code, "cookie", 3) end)
    sweep("rill.redirect url", merge(NOT_NUMBERS, { number = "1", none = "nil", crlf = '"/a\\r\\nb"' }),
      function(v) return ("return rill.redirect(%s)"):format(v) end,
      function(code) if code:find('"x"', 1, true) then expect_clean(code) else expect_bad(code, "redirect", 1) end end)
    sweep("rill.redirect status", merge(NUMBERS, except(NOT_NUMBERS, "table"), { ok = "200", table = "{}" }),
      function(v) return ("return rill.redirect('/', %s)"):format(v) end,
      function(code) expect_bad(code, "redirect", 2) end)
    it("req:json() and req:form() on a GET with no body: a 400, never a 500", function()
      local kind, msg = run("return req:json()")
      assert.same("raised", kind)
      assert.matches("expected a JSON body", msg, 1, true)
      kind, msg = run("return req:form()")
      assert.same("raised", kind)
      assert.matches("expected a form body", msg, 1, true)
    end)
  end)

  describe("the hub", function()
    local RESET = "rill.hub.configure { history = 1000, history_bytes = 4 * 1024 * 1024, history_age = 3600, "
      .. "queue = 1000, overflow = 'disconnect' }"
    local function configure(opt)
      return ("local ok, e = pcall(rill.hub.configure, { %s }) %s if not ok then error(e, 0) end"):format(opt, RESET)
    end

    sweep("publish topic", except(NOT_NUMBERS, "string", "empty"),
      function(v) return ("return rill.publish(%s, 'x')"):format(v) end,
      function(code) expect_bad(code, "publish", 1) end)
    it("publish topic: none", function() expect_bad("return rill.publish()", "publish", 1) end)
    for name, ev in pairs {
      none = "nil", boolean = "true", ["function"] = "print",
      ["table data"] = "{ data = {} }",
      ["newline in event"] = '{ data = "x", event = "a\\nb" }',
      ["newline in id"] = '{ data = "x", id = "a\\nb" }',
      ["table id"] = '{ data = "x", id = {} }',
    } do
      it("publish event: " .. name, function()
        local field = name:match("(%a+)$")
        expect_bad_or_field(("return rill.publish('misuse', %s)"):format(ev), "publish", 2, field)
      end)
    end
    sweep("publish event.retry", except(NUMBERS, "maxinteger"),
      function(v) return ("return rill.publish('misuse', { data = 'x', retry = %s })"):format(v) end,
      function(code) expect_bad_or_field(code, "publish", 2, "retry") end)

    sweep("subscribe topic", except(NOT_NUMBERS, "string", "empty"),
      function(v) return ("return rill.subscribe(%s) and 'made'"):format(v) end,
      function(code) expect_bad(code, "subscribe", 1) end)
    it("subscribe opts: a string", function() expect_bad("return rill.subscribe('t', 'x')", "subscribe", 2) end)
    sweep("subscribe opts.queue", SIZES,
      function(v) return ("return rill.subscribe('t', { queue = %s }) and 'made'"):format(v) end,
      function(code) expect_bad(code, "subscribe", 2) end)
    it("subscribe opts.queue: maxinteger", function()
      expect_clean("return rill.subscribe('t', { queue = math.maxinteger }) and 'made'")
    end)
    it("subscribe opts.overflow: unknown", function()
      expect_bad("return rill.subscribe('t', { overflow = 'x' })", "subscribe", 2)
    end)
    it("subscribe opts.last_event_id: a table", function()
      expect_bad("return rill.subscribe('t', { last_event_id = {} })", "subscribe", 2)
    end)

    sweep("close_topic topic", except(NOT_NUMBERS, "string", "empty"),
      function(v) return ("return rill.close_topic(%s)"):format(v) end,
      function(code) expect_bad(code, "close_topic", 1) end)

    it("configure: not a table", function() expect_bad("rill.hub.configure('x')", "configure", 1) end)
    for _, field in ipairs { "history", "history_bytes", "queue" } do
      sweep("configure " .. field, SIZES, function(v) return configure(field .. " = " .. v) end,
        function(code) expect_bad(code, "configure", 1) end)
    end
    sweep("configure history_age", merge(DURATIONS, { zero = "0" }),
      function(v) return configure("history_age = " .. v) end,
      function(code) expect_bad(code, "configure", 1) end)
    it("configure overflow: unknown", function() expect_bad(configure("overflow = 'x'"), "configure", 1) end)

    it("stats: a table", function() expect_bad("return rill.hub.stats({})", "stats", 1) end)
    it("disconnect: a table", function() expect_bad("return rill.hub.disconnect({})", "disconnect", 1) end)
    it("disconnect: none", function() expect_bad("return rill.hub.disconnect()", "disconnect", 1) end)
  end)

  describe("rill.sse", function()
    local function sse(opt)
      return ("local r = rill.sse(function() end, %s) return r and 'made'"):format(opt)
    end
    sweep("source", { number = "1", boolean = "true", string = '"x"', table = "{}" },
      function(v) return ("return rill.sse(%s) and 'made'"):format(v) end,
      function(code) expect_bad(code, "sse", 1) end)
    it("opts: a string", function() expect_bad(sse("'x'"), "sse", 2) end)
    sweep("opts.heartbeat", DURATIONS, function(v) return sse("{ heartbeat = " .. v .. " }") end,
      function(code) expect_bad(code, "sse", 2) end)
    sweep("opts.retry", except(merge(NUMBERS, NOT_NUMBERS), "maxinteger"),
      function(v) return sse("{ retry = " .. v .. " }") end, function(code) expect_refused(code, "sse", 2) end)
    it("opts.headers: a string", function() expect_bad(sse("{ headers = 'x' }"), "sse", 2) end)

    sweep("encode event", { none = "nil", number = "1", boolean = "true" },
      function(v) return ("return rill.sse.encode(%s)"):format(v) end,
      function(code) expect_bad(code, "encode", 1) end)
    sweep("encode retry", except(merge(NUMBERS, NOT_NUMBERS), "maxinteger"),
      function(v) return ("return rill.sse.encode({ retry = %s })"):format(v) end,
      function(code) expect_bad_or_field(code, "encode", 1, "retry") end)
    for name, ev in pairs {
      ["newline in id"] = '{ id = "a\\nb" }',
      ["NUL in id"] = '{ id = "a\\0b" }',
      ["newline in event"] = '{ data = "x", event = "a\\rb" }',
      ["table data"] = "{ data = {} }",
      ["table id"] = "{ id = {} }",
    } do
      it("encode: " .. name, function()
        expect_bad_or_field(("return rill.sse.encode(%s)"):format(ev), "encode", 1, name:match("(%a+)$"))
      end)
    end

    sweep("follow url", { none = "nil", number = "1", table = "{}" },
      function(v) return ("return rill.sse.follow(%s) and 'made'"):format(v) end,
      function(code) expect_bad(code, "follow", 1) end)
    it("follow opts: a string", function()
      expect_bad(("return rill.sse.follow(%q, 'x') and 'made'"):format(url("/ok")), "follow", 2)
    end)
    for _, field in ipairs { "min_delay", "max_delay" } do
      sweep("follow opts." .. field, DURATIONS,
        function(v) return ("return rill.sse.follow(%q, { %s = %s }) and 'made'"):format(url("/ok"), field, v) end,
        function(code) expect_bad(code, "follow", 2) end)
    end
    -- options passed on to fetch are checked when the first event is pulled
    for _, field in ipairs { "timeout", "idle_timeout" } do
      sweep("follow opts." .. field, DURATIONS,
        function(v) return ("return rill.sse.follow(%q, { %s = %s })()"):format(url("/ok"), field, v) end,
        function(code)
          local kind, v = run(code)
          assert.are.equal("raised", kind)
          assert.matches("bad argument #2 to '%a+'", v)
        end)
    end
    sweep("follow opts.max_event_bytes", SIZES,
      function(v)
        return ("return rill.sse.follow(%q, { max_event_bytes = %s })()"):format(url("/events"), v)
      end,
      function(code)
        local kind, v = run(code)
        assert.are.equal("raised", kind)
        assert.matches("bad argument", v)
      end)

    sweep("last_event_id req", { none = "nil", number = "1", string = '"x"' },
      function(v) return ("return rill.sse.last_event_id(%s)"):format(v) end,
      function(code) expect_bad(code, "last_event_id", 1) end)
  end)

  describe("rill.router and rill.cors", function()
    it("router: a number", function() expect_bad("return rill.router(1)", "new", 1) end)
    it("router options: a number", function() expect_bad("return rill.router({}, 1)", "new", 2) end)
    it("a router called with a number", function() expect_bad("return rill.router({})(1)", "router", 1) end)
    it("a route pattern with a NUL byte", function()
      expect_clean('return rill.router({ ["GET /\\0"] = print }) and "made"')
    end)

    local function cors(handler, opts)
      return ("return rill.cors(%s, %s) and 'made'"):format(handler, opts)
    end
    sweep("cors handler", { none = "nil", number = "1", string = '"x"', table = "{}" },
      function(v) return cors(v, "{ origin = '*' }") end, function(code) expect_bad(code, "cors", 1) end)
    sweep("cors opts", { none = "nil", string = '"x"', empty = "{}" },
      function(v) return cors("print", v) end, function(code) expect_bad(code, "cors", 2) end)
    sweep("cors opts.origin", { number = "1", boolean = "true", empty = '""', ["list of numbers"] = "{ 1 }" },
      function(v) return cors("print", "{ origin = " .. v .. " }") end,
      function(code) expect_bad(code, "cors", 2) end)
    sweep("cors opts.max_age", except(merge(NUMBERS, NOT_NUMBERS), "maxinteger"),
      function(v) return cors("print", "{ origin = '*', max_age = " .. v .. " }") end,
      function(code) expect_bad(code, "cors", 2) end)
    for _, field in ipairs { "methods", "headers" } do
      sweep("cors opts." .. field, { number = "1", table = "{}", CRLF = '"a\\r\\nX-Injected: 1"' },
        function(v) return cors("print", ("{ origin = '*', %s = %s }"):format(field, v)) end,
        function(code) expect_bad(code, "cors", 2) end)
    end
  end)

  describe("in a handler", function()
    it("rill.run cannot be called", function()
      local kind, v = run("return rill.run(print)")
      assert.are.equal("raised", kind)
      assert.matches("rill.run", v)
    end)
    it("rill.run without a function", function()
      local kind = run("return rill.run()")
      assert.are.equal("raised", kind)
    end)
    for name, expr in pairs {
      ["req field 1"] = "return req[1]",
      ["req field table"] = "return req[{}]",
      ["req.headers[1]"] = "return req.headers[1]",
      ["req.headers[table]"] = "return req.headers[{}]",
      ["req.query[true]"] = "return req.query[true]",
      ["tostring(req)"] = "return tostring(req) ~= nil",
      ["setting req.method"] = "req.method = 'X' return req.method",
      ["setting req[1]"] = "req[1] = 'x' return req[1]",
      ["setting req.headers.x"] = "req.headers.x = 1 return req.headers.x",
    } do
      it(name, function() expect_clean(expr) end)
    end
  end)
end)

---------------------------------------------------------------------------
-- Effects where Lua cannot yield. Each effect is called from each context,
-- inside pcall (POST /run) and not (POST /raw, the error reaches rill); each
-- must raise an error saying it cannot run there, and leave nothing armed:
-- the next rill.sleep works, the server answers, SIGTERM exits 0.

-- The effects, as code run after `prep` (outside the context): `go()` does it.
local EFFECTS = {
  { name = "sleep", prep = "local function go() rill.sleep(0.01) end" },
  { name = "fetch", prep = "local function go() return rill.fetch(URL_OK) end" },
  { name = "read", prep = "local up = assert(rill.fetch(URL_HELD)) local function go() return up:read() end" },
  { name = "lines", prep = "local up = assert(rill.fetch(URL_HELD)) local it = up:lines() local function go() return it() end" },
  { name = "chunks", prep = "local up = assert(rill.fetch(URL_HELD)) local it = up:chunks() local function go() return it() end" },
  { name = "events", prep = "local up = assert(rill.fetch(URL_HELD)) local it = up:events() local function go() return it() end" },
  { name = "tail", prep = "local it = assert(rill.tail(TAIL_PATH)) local function go() return it() end" },
  { name = "subscribe", prep = "local it = rill.subscribe('misuse-silent') local function go() return it() end" },
}

-- The contexts: code that calls go() where Lua cannot yield.
local CONTEXTS = {
  ["a table.sort comparator"] = "table.sort({ 3, 1, 2 }, function(a, b) go() return a < b end)",
  ["a string.gsub callback"] = 'string.gsub("ab", ".", function(c) go() return c end)',
  ["a __tostring metamethod"] = 'tostring(setmetatable({}, { __tostring = function() go() return "x" end }))',
  ["an __index metamethod called from C"] =
    'table.concat(setmetatable({}, { __index = function() go() return "x" end }), ",", 1, 1)',
  ["require of a module that calls it"] =
    "package.preload[MOD] = function() go() return true end require(MOD)",
  -- a finalizer's error never propagates: it is caught inside and raised after
  ["a __gc metamethod"] = "local caught setmetatable({}, { __gc = function() "
    .. "local ok, e = pcall(go) if not ok then caught = caught or e end end }) "
    .. "collectgarbage() collectgarbage() if caught then error(caught, 0) end",
}

local module_n = 0

-- The server a group of cases started with: SIGTERM is sent to that one, so
-- a group whose cases left it wedged (and had it restarted) fails there.
local group_srv

local function remember_server()
  ensure()
  group_srv = srv
end

local function sigterm_exits_0()
  assert(srv and srv == group_srv, "the server was restarted during this group: see the failures above")
  local status = srv:stop("TERM", TIMEOUT)
  srv = nil
  assert.are.equal(0, status)
end

local function context_code(effect, context, port)
  module_n = module_n + 1
  local header = ("local URL_OK, URL_HELD = %q, %q local TAIL_PATH = %q local MOD = %q\n"):format(
    ("http://127.0.0.1:%d/ok"):format(port), ("http://127.0.0.1:%d/held"):format(port),
    dir .. "/x.log", "misuse_module_" .. module_n)
  return header .. effect.prep .. "\n" .. context
end

describe("effects where Lua cannot yield", function()
  setup(setup_dir)
  teardown(teardown_all)

  -- loose on purpose: "cannot" and the effect's name (a subscription's
  -- iterator may call itself a subscription)
  local function wants_cannot(msg, effect)
    local name = effect.name == "subscribe" and "subscri" or effect.name
    local lower = msg:lower()
    assert(lower:find("cannot", 1, true) and lower:find(name, 1, true),
      ("%s: want an error saying it cannot run here, got: %s"):format(effect.name, msg))
  end

  -- After a case: the next sleep works, and the server still serves.
  local function still_works()
    local kind, v = run("rill.sleep(0.01) return 'slept'")
    assert.are.same({ "returned", { "slept" } }, { kind, v })
  end

  for _, effect in ipairs(EFFECTS) do
    describe(effect.name, function()
      setup(remember_server)
      for cname, context in pairs(CONTEXTS) do
        it(("raises in %s inside pcall, and leaves nothing armed"):format(cname), function()
          if not srv then
            start()
          end
          local code = context_code(effect, context, srv.port)
            .. "\nerror('no error', 0)"
          local kind, v = run("local ok, e = pcall(function()\n" .. code .. "\nend) rill.sleep(0.01) error(e, 0)")
          assert.are.equal("raised", kind)
          wants_cannot(v, effect)
          still_works()
        end)

        it(("raises in %s outside pcall: a 500 and a log line"):format(cname), function()
          if not srv then
            start()
          end
          local res, err = send("POST", "/raw", context_code(effect, context, srv.port) .. "\nreturn 'no error'")
          local log = new_log()
          assert(res, "no answer: " .. tostring(err) .. "\nlog:\n" .. log)
          if sanitizer_report(log) then
            kill()
            error(sanitizer_report(log))
          end
          assert.are.equal(500, res.status)
          local line = srv:wait_log("handler error", TIMEOUT)
          assert(line, "no handler error logged:\n" .. log)
          wants_cannot(line, effect)
          still_works()
        end)
      end

      it("leaves a server that exits 0 on SIGTERM", function()
        still_works()
        sigterm_exits_0()
      end)
    end)
  end

  describe("a body write", function()
    -- out.write is the driver's alone: rill.core.out is taken out of reach of
    -- apps (it could write a second head or wait where Lua cannot yield), and
    -- the driver pulls a body and writes it where it can always yield.
    setup(remember_server)
    it("cannot be reached by an app: rill.core.out is nil in a handler", function()
      if not srv then
        start()
      end
      local res, err = send("POST", "/raw", "return tostring(require('rill.core').out)")
      assert(res, "no answer: " .. tostring(err))
      assert.matches("nil", res.body)
      still_works()
    end)
    it("leaves a server that exits 0 on SIGTERM", function()
      still_works()
      sigterm_exits_0()
    end)
  end)

  describe("publish", function()
    setup(remember_server)
    -- publishing does not wait, so it may run anywhere
    for cname, context in pairs(CONTEXTS) do
      it(("works in %s"):format(cname), function()
        if not srv then
          start()
        end
        local code = context_code({ prep = "local function go() rill.publish('misuse-pub', 'x') end" }, context, srv.port)
        local kind, v = run(code .. "\nreturn 'published'")
        assert.are.same({ "returned", { "published" } }, { kind, v })
        still_works()
      end)
    end
    it("leaves a server that exits 0 on SIGTERM", function()
      still_works()
      sigterm_exits_0()
    end)
  end)

  describe("an __index metamethod reached from Lua code", function()
    -- the VM can yield across such a metamethod: the effect just works there
    it("lets rill.sleep run", function()
      if not srv then
        start()
      end
      local kind, v = run("local p = setmetatable({}, { __index = function() rill.sleep(0.01) return 'v' end }) return p.x")
      assert.are.same({ "returned", { "v" } }, { kind, v })
    end)
  end)
end)

---------------------------------------------------------------------------
-- Outside a server: rill.run and rill.test, in a child lua5.4 (a crash or a
-- hang there is that child's, bounded and killed by pid).

local function child(code)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(([[
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
package.cpath = "./build/lua/?.so;" .. package.cpath
local rill = require "rill"
local t = require "rill.test"
t.bin = %q
local server = t.server -- the parent kills these by pid if this child hangs
t.server = function(...) local s = server(...) io.stderr:write("PID=", s:pid(), "\n") return s end
local function report(ok, ...)
  if not ok then return "raised\n" .. tostring((...)) end
  local out = { "returned " .. select("#", ...) }
  for i = 1, math.min(select("#", ...), 3) do out[#out + 1] = tostring((select(i, ...))) end
  return table.concat(out, "\n")
end
io.stderr:write("<<", report(pcall(function() %s end)), ">>\n")
]]):format(t.bin, code))
  f:close()
  local proc = core.spawn({ "lua5.4", path })
  local status = proc:wait(TIMEOUT)
  local log = proc:log()
  if not status then
    proc:kill("KILL")
    proc:wait()
    for pid in log:gmatch("PID=(%d+)") do
      os.execute("kill -9 " .. pid .. " 2>/dev/null")
    end
  end
  proc:close()
  os.remove(path)
  assert(status, "no end within " .. TIMEOUT .. " s (a hang):\n" .. code .. "\n" .. log)
  assert(status == 0, ("exit status %s (a crash):\n%s\n%s"):format(status, code, log))
  local body = assert(log:match("<<(.-)>>"), log)
  local kind, rest = body:match("^(%S+)[^\n]*\n?(.*)$")
  return kind, rest, body
end

local function child_bad(code, fname, argn)
  local kind, v, body = child(code)
  assert(kind == "raised", "accepted: " .. code .. "\n" .. body)
  local want = ("bad argument #%d to '%s'"):format(argn, fname)
  assert(names_arg(v, fname, argn), ("wrong error for %s\nwant: %s\ngot:  %s"):format(code, want, v))
end

describe("misuse outside a server", function()
  it("rill.run without a function", function() child_bad("return rill.run()", "run", 1) end)
  it("rill.run with a number", function() child_bad("return rill.run(1)", "run", 1) end)
  it("rill.run returning 2000 values", function()
    local kind, _, body = child("return select('#', rill.run(function() return table.unpack({}, 1, 2000) end))")
    assert.are.same({ "returned", "returned 1\n2000" }, { kind, body })
  end)
  it("rill.run returning 200000 values", function()
    local kind, _, body = child("return select('#', rill.run(function() return table.unpack({}, 1, 200000) end))")
    assert.are.same({ "returned", "returned 1\n200000" }, { kind, body })
  end)
  for name, v in pairs(DURATIONS) do
    it("rill.sleep in rill.run: " .. name, function()
      child_bad(("rill.run(function() rill.sleep(%s) end)"):format(v), "sleep", 1)
    end)
  end
  it("rill.sleep outside rill.run", function()
    local kind, v = child("rill.sleep(0)")
    assert.are.equal("raised", kind)
    assert.matches("only be used inside", v)
  end)

  it("rill.test.call without a handler", function() child_bad("return t.call(nil, {})", "call", 1) end)
  it("rill.test.call with a number for fields", function() child_bad("return t.call(print, 1)", "call", 2) end)
  it("rill.test.request with a number for path", function() child_bad("return t.request({ path = 1 })", "request", 1) end)
  it("rill.test.request with a table for headers", function()
    child_bad("return t.request({ headers = 'x' })", "request", 1)
  end)
  it("rill.test.server without an app", function() child_bad("return t.server()", "server", 1) end)
  for name, v in pairs { nan = "0/0", inf = "1/0", negative = "-1" } do
    it("rill.test.server with timeout " .. name, function()
      child_bad(("return t.server(%q, { timeout = %s })"):format(APP, v), "server", 2)
    end)
    it("srv:wait_log with timeout " .. name, function()
      child_bad(("local s <close> = t.server(%q) return s:wait_log('never logged', %s)"):format(APP, v), "wait_log", 2)
    end)
    it("srv:wait with timeout " .. name, function()
      child_bad(("local s <close> = t.server(%q) return s:wait(%s)"):format(APP, v), "wait", 1)
    end)
    it("rill.test.open with timeout " .. name, function()
      child_bad(("local s <close> = t.server(%q) return t.open(s.host, s.port, { timeout = %s })"):format(APP, v),
        "open", 3)
    end)
  end
  it("srv:stop with an unknown signal", function()
    child_bad(("local s <close> = t.server(%q) return s:stop('NOPE')"):format(APP), "stop", 1)
  end)
  for name, v in pairs { nan = "0/0", ["1e300"] = "1e300", negative = "-1", zero = "0", maxinteger = "math.maxinteger" } do
    it("rill.test.open with port " .. name, function()
      local kind, rest = child(("return t.open('127.0.0.1', %s, {})"):format(v))
      assert(kind == "raised" or rest:match("^nil\n"), "accepted port " .. name .. ": " .. rest)
    end)
  end
end)
