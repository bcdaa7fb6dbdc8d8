-- SPDX-License-Identifier: MIT
-- gzip'd responses end to end, against spec/apps/gzip.lua, read by clients
-- rill did not write: Python's zlib (spec/support/gzip_client.py), curl
-- --compressed, and gzip(1). Whole replies (negotiation, Vary, the size
-- floor, types, HEAD/204, the app's own encoding, --compress), streams
-- flushed per event (each event decompresses before the next is published),
-- hub fan-out to several gzip'd subscribers (each decompresses to exactly a
-- plain subscriber's stream), the trailer at a clean end and at shutdown.
local core = require "rill.core"
local test = require "rill.test"
local procs = require "spec.support.procs"

local PYTHON = "/usr/bin/python3" -- Debian's
local T = tonumber(os.getenv("RILL_TEST_TIMEOUT")) or 10
local APP = "spec/apps/gzip.lua"
local TEXT = string.rep("the quick brown fox jumps over the lazy dog\n", 40)

local sh, must = procs.sh, procs.must

local function client(srv, check, ...)
  local cmd = ("RILL_PID=%d %s spec/support/gzip_client.py %s %d"):format(srv:pid(), PYTHON, check, srv.port)
  for _, a in ipairs({ ... }) do cmd = cmd .. " '" .. a .. "'" end
  local out, code = sh(cmd)
  assert(code == 0, check .. ": " .. out .. "\n" .. srv:log())
  return (out:gsub("\n$", ""))
end

-- gunzip(1) of bytes: what it decompresses to, and whether it took them as whole gzip data.
local function gunzip(bytes)
  local path = os.tmpname()
  local f = assert(io.open(path, "wb"))
  f:write(bytes)
  f:close()
  local out, code = sh("gzip -dc < " .. path)
  os.remove(path)
  return out, code == 0
end

local GZ = { ["accept-encoding"] = "gzip" }

describe("gzip'd whole replies", function()
  local srv
  setup(function() srv = test.server(APP) end)
  teardown(function() assert.equal(0, srv:stop("TERM"), srv:log()) end)

  it("gzips a text body the app marked, for a client that takes gzip: Content-Encoding, Vary, the compressed length", function()
    local r = srv:get("/text", GZ)
    assert.equal(200, r.status)
    assert.equal("gzip", r.headers["content-encoding"])
    assert.equal("Accept-Encoding", r.headers["vary"])
    assert.equal(tostring(#r.body), r.headers["content-length"])
    assert(#r.body < #TEXT / 4, #r.body)
    local text, whole = gunzip(r.body)
    assert.is_true(whole)
    assert.equal(TEXT, text)
    assert.equal(TEXT, must(("curl -sS --compressed http://127.0.0.1:%d/text"):format(srv.port)))
  end)

  it("sends it plain, with Vary, to a client that does not take gzip or refuses it with q=0", function()
    for _, ae in ipairs({ false, "identity", "gzip;q=0", "br, deflate" }) do
      local r = srv:get("/text", ae and { ["accept-encoding"] = ae } or nil)
      assert.is_nil(r.headers["content-encoding"], tostring(ae))
      assert.equal("Accept-Encoding", r.headers["vary"], tostring(ae))
      assert.equal(TEXT, r.body)
    end
    assert.equal("gzip", srv:get("/text", { ["accept-encoding"] = "br;q=1, GZIP;q=0.5" }).headers["content-encoding"])
    assert.equal("gzip", srv:get("/text", { ["accept-encoding"] = "x-gzip" }).headers["content-encoding"])
  end)

  it("does not gzip a body below 256 bytes, a type that is no text, a body with its own encoding, HEAD, a 204, or an app that did not ask", function()
    assert.is_nil(srv:get("/small", GZ).headers["content-encoding"])
    assert.is_nil(srv:get("/png", GZ).headers["content-encoding"])
    assert.is_nil(srv:get("/png", GZ).headers["vary"])
    assert.equal("identity", srv:get("/encoded", GZ).headers["content-encoding"])
    local head = srv:request({ method = "HEAD", path = "/text", headers = GZ })
    assert.is_nil(head.headers["content-encoding"])
    assert.equal(tostring(#TEXT), head.headers["content-length"])
    assert.equal(204, srv:get("/empty", GZ).status)
    assert.is_nil(srv:get("/empty", GZ).headers["content-encoding"])
    assert.is_nil(srv:get("/default", GZ).headers["content-encoding"])
    assert.is_nil(srv:get("/never", GZ).headers["content-encoding"])
  end)

  it("answers a compress that is no boolean with a 500 naming the handler's line", function()
    local r = srv:get("/bad-compress", GZ)
    assert.equal(500, r.status)
    assert(srv:wait_log("response compress must be a boolean, got string", T), srv:log())
    assert.matches("spec/apps/gzip.lua:%d+: route 'GET /bad%-compress'", srv:log())
    local ok, err = pcall(require("rill").sse, function() end, { compress = 1 })
    assert.is_false(ok)
    assert.matches("bad argument #2 to 'sse' %(compress must be a boolean, got number%)", err)
  end)

  it("weakens a strong ETag it gzips, and leaves alone a no-transform, a 206, and a HEAD (which says Vary as GET does)", function()
    local r = srv:get("/etag", GZ)
    assert.equal("gzip", r.headers["content-encoding"])
    assert.equal('W/"v1"', r.headers["etag"])
    assert.equal('"v1"', srv:get("/etag").headers["etag"]) -- not gzip'd: the strong one
    assert.is_nil(srv:get("/no-transform", GZ).headers["content-encoding"])
    assert.is_nil(srv:get("/partial", GZ).headers["content-encoding"])
    local head = srv:request({ method = "HEAD", path = "/text", headers = GZ })
    assert.equal("Accept-Encoding", head.headers["vary"])
  end)

  it("reads q wherever it is among a coding's parameters, and takes gzip by either name", function()
    assert.is_nil(srv:get("/text", { ["accept-encoding"] = "gzip;foo=1;q=0" }).headers["content-encoding"])
    assert.equal("gzip", srv:get("/text", { ["accept-encoding"] = "x-gzip;q=0, gzip" }).headers["content-encoding"])
    assert.equal("gzip", srv:get("/text", { ["accept-encoding"] = "gzip;q=0.001" }).headers["content-encoding"])
  end)

  it("gzips a { json = } reply", function()
    local r = srv:get("/json", GZ)
    assert.equal("gzip", r.headers["content-encoding"])
    assert.equal("application/json", r.headers["content-type"])
    local text = gunzip(r.body)
    assert.matches('^{"list":%["the quick', text)
  end)
end)

describe("rill --compress", function()
  it("gzips what the app did not mark, but not what says compress = false", function()
    local srv <close> = test.server(APP, { args = { "--compress" } })
    assert.equal("gzip", srv:get("/default", GZ).headers["content-encoding"])
    assert.is_nil(srv:get("/never", GZ).headers["content-encoding"])
    assert.equal(0, srv:stop("TERM"), srv:log())
  end)
end)

describe("gzip'd streams", function()
  local srv
  setup(function() srv = test.server(APP) end)
  teardown(function() assert.equal(0, srv:stop("TERM"), srv:log()) end)

  it("flush every event: each decompresses before the next is published, for curl --compressed -N too", function()
    assert.equal("30 events to 1 gzip subscribers, each whole when it arrived, each stream the plain one",
      client(srv, "events", "solo", "30", "1"))
    local cmd = ("curl -sS -N --compressed --max-time %d http://127.0.0.1:%d/events/curl"):format(T, srv.port)
    local proc = core.spawn({ "/bin/sh", "-c", cmd .. " 1>&2" })
    local ok, err = pcall(function()
      assert(proc:wait_for("retry:", T), "curl did not get the stream's head: " .. proc:log())
      for i = 1, 3 do
        assert.equal(204, srv:request({ method = "POST", path = "/publish/curl", body = "curl " .. i }).status)
        assert(proc:wait_for("data: curl " .. i, T), "curl did not see event " .. i .. ": " .. proc:log())
      end
    end)
    proc:kill("TERM")
    proc:close()
    assert(ok, err)
  end)

  it("fan out from the hub: every gzip'd subscriber's stream decompresses to exactly a plain subscriber's", function()
    local before = { srv:get("/hub-stats").body:match("(%d+) (%d+) (%d+)") }
    assert.equal("40 events to 5 gzip subscribers, each whole when it arrived, each stream the plain one",
      client(srv, "events", "fan", "40", "5"))
    local after = { srv:get("/hub-stats").body:match("(%d+) (%d+) (%d+)") }
    -- compressed once per event for the five, not once per subscriber: 40 compressions, 200 sends
    assert.equal(40, after[1] - before[1])
    assert.equal(0, after[2] - before[2])
    assert.equal(200, after[3] - before[3])
  end)

  it("fan out to subscribers that join mid-window, resume from history or from an unknown id (a gap), or get heartbeats: each decompresses to its plain twin", function()
    local before = { srv:get("/hub-stats").body:match("(%d+) (%d+) (%d+)") }
    assert.equal("5 groups, every gzip'd stream its plain twin's", client(srv, "staggered", "stag", "150"))
    local after = { srv:get("/hub-stats").body:match("(%d+) (%d+) (%d+)") }
    assert.equal(150, after[1] - before[1]) -- each event once in its window
    -- alone: what the late joiners got before the next window (events 10..63 and 70..127), and the
    -- resumed ones' history; each made once, however many needed it
    local alone = after[2] - before[2]
    assert(alone > 0 and alone < 150, "events compressed alone: " .. alone)
  end)

  it("end with the gzip trailer: the whole body, heartbeats and all, decompresses to the plain events", function()
    local out = client(srv, "stream", "/ticks?n=4")
    local status, enc, eof, unused, text = out:match("^(%d+) %['(%w+)'%] eof=(%w+) unused=(%d+) text='(.*)'$")
    assert.equal("200", status, out)
    assert.equal("gzip", enc)
    assert.equal("True", eof)
    assert.equal("0", unused)
    text = text:gsub("\\n", "\n")
    local events, beats = {}, 0
    for block in text:gmatch("(.-\n)\n") do
      while block:sub(1, 2) == ":\n" do block, beats = block:sub(3), beats + 1 end -- heartbeats between events
      if block ~= "" then events[#events + 1] = block end
    end
    assert(beats > 0, "no heartbeat went through the compressor")
    assert.equal("retry: 3000\n", events[1])
    for i = 1, 4 do
      assert.equal(('event: tick\nid: %d\ndata: {"i":%d,"pad":"%s"}\n'):format(i, i, ("x"):rep(i)), events[i + 1])
    end
  end)
end)

describe("a shared gzip'd hub stream's end", function()
  it("comes with the trailer when its topic closes, and at shutdown after its retry hint: each decompresses whole to its plain twin", function()
    local srv <close> = test.server(APP, { args = { "--grace", "1" } })
    local out = client(srv, "ends", "ending", "70")
    assert.equal("closed: 3 whole, each its plain twin's; shutdown: 2 whole, each its plain twin's", out)
    assert.equal(0, srv:stop("TERM"), srv:log())
  end)
end)

describe("a gzip'd stream at shutdown", function()
  it("gets its retry hint and the trailer: what came decompresses whole", function()
    local srv <close> = test.server(APP, { args = { "--grace", "1" } })
    local cmd = ("%s spec/support/gzip_client.py cut %d /forever"):format(PYTHON, srv.port)
    local proc = core.spawn({ "/bin/sh", "-c", cmd .. " 1>&2" })
    local ok, err = pcall(function()
      assert(proc:wait_for("ready", T), proc:log())
      srv.proc:kill("TERM")
      assert(proc:wait_for("eof=", T), proc:log())
      local line = proc:log():match("eof=[^\n]*")
      assert.matches("^eof=True text='retry: 3000\\n\\ndata: first\\n\\nretry: %d+\\n\\n'$", line)
    end)
    proc:kill("TERM")
    proc:close()
    assert(ok, err)
    assert.equal(0, srv:stop("TERM"), srv:log())
  end)
end)
