-- SPDX-License-Identifier: MIT
-- rill.tail end to end: spec/apps/tail.lua follows files the spec writes.
local rill = require "rill"
local test = require "rill.test"
local url = require "socket.url"

describe("rill.tail", function()
  local dir, srv, n = nil, nil, 0

  local function new_path()
    n = n + 1
    return ("%s/log%d.txt"):format(dir, n)
  end

  local function append(path, text)
    local f = assert(io.open(path, "a"))
    f:write(text)
    f:close()
  end

  local function route(name, path, query)
    return ("/%s?path=%s%s"):format(name, url.escape(path), query or "")
  end

  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir .. "/root " .. dir .. "/outside"))
    dir = dir .. "/root"
    srv = test.server("spec/apps/tail.lua", { args = { "--tail-root", dir } })
  end)
  teardown(function()
    assert.same(0, srv:stop(), srv:log())
    os.execute("rm -rf " .. dir:gsub("/root$", ""))
  end)

  it("delivers each appended line, in order", function()
    local path = new_path()
    append(path, "before\n")
    local s = srv:open(route("lines", path))
    append(path, "one\n")
    assert.same("one\n", s:chunk(5))
    append(path, "two\nthree\n")
    assert.same("two\n", s:chunk(5))
    assert.same("three\n", s:chunk(5))
    s:close()
  end)

  it("starts with the last N lines, like tail -n", function()
    local path = new_path()
    append(path, "a\nb\nc\nd\n")
    local s = srv:open(route("lines", path, "&from=2"))
    assert.same("c\n", s:chunk(5))
    assert.same("d\n", s:chunk(5))
    s:close()
  end)

  it("gives each line its byte offset, and starts at a given offset", function()
    local path = new_path()
    append(path, "ab\ncd\nef\n")
    local s = srv:open(route("offsets", path, "&from=start"))
    assert.same("0:ab\n", s:chunk(5))
    assert.same("3:cd\n", s:chunk(5))
    s:close()
    local t = srv:open(route("offsets", path, "&from=offset=6"))
    assert.same("6:ef\n", t:chunk(5))
    t:close()
  end)

  it("holds a partial line until its newline arrives", function()
    local path = new_path()
    append(path, "")
    local s = srv:open(route("lines", path))
    append(path, "hal")
    assert.is_nil(s:chunk(0.2)) -- nothing yet: the line is not complete
    append(path, "f\n")
    assert.same("half\n", s:chunk(5))
    s:close()
  end)

  it("cuts a line longer than max_line into pieces", function()
    local path = new_path()
    append(path, "")
    local s = srv:open(route("lines", path, "&max_line=4"))
    append(path, "abcdefghij\n")
    assert.same("abcd", s:chunk(5))
    assert.same("efgh", s:chunk(5))
    assert.same("ij\n", s:chunk(5))
    s:close()
  end)

  it("strips terminators when asked", function()
    local path = new_path()
    append(path, "")
    local s = srv:open(route("lines", path, "&strip=1"))
    append(path, "dos\r\nunix\n")
    assert.same("dos", s:chunk(5))
    assert.same("unix", s:chunk(5))
    s:close()
  end)

  it("continues from the new start after a truncation in place", function()
    local path = new_path()
    append(path, "")
    local s = srv:open(route("lines", path))
    append(path, "first line, fairly long\n")
    assert.same("first line, fairly long\n", s:chunk(5))
    local f = assert(io.open(path, "w")) -- copytruncate
    f:write("short\n")
    f:close()
    assert.same("short\n", s:chunk(5))
    s:close()
  end)

  it("follows a rename rotation: the old file to its end, then the new one", function()
    local path = new_path()
    append(path, "")
    local s = srv:open(route("lines", path))
    append(path, "before rotation\n")
    assert.same("before rotation\n", s:chunk(5))
    assert(os.rename(path, path .. ".1"))
    append(path .. ".1", "late, to the old file\n") -- the writer has not reopened yet
    assert.same("late, to the old file\n", s:chunk(5))
    append(path, "in the new file\n")
    assert.same("in the new file\n", s:chunk(5))
    s:close()
  end)

  it("waits for a file that does not exist yet, and for one deleted to come back", function()
    local path = new_path()
    local s = srv:open(route("lines", path))
    append(path, "born\n")
    assert.same("born\n", s:chunk(5))
    os.remove(path)
    append(path, "again\n")
    assert.same("again\n", s:chunk(5))
    s:close()
  end)

  it("follows by polling when asked", function()
    local path = new_path()
    append(path, "")
    local s = srv:open(route("lines", path, "&poll=0.05"))
    append(path, "polled\n")
    assert.same("polled\n", s:chunk(5))
    s:close()
  end)

  it("refuses paths outside the roots, through .. or a symlink", function()
    local outside = dir:gsub("/root$", "/outside") .. "/secret.txt"
    append(outside, "secret\n")
    assert.same(403, srv:get(route("lines", outside)).status)
    assert.same(403, srv:get(route("lines", dir .. "/../outside/secret.txt")).status)
    assert.same(403, srv:get(route("lines", "/etc/passwd")).status)
    assert(os.execute(("ln -s %s %s/link.txt"):format(outside, dir)))
    local res = srv:get(route("lines", dir .. "/link.txt"))
    assert.same(403, res.status)
    assert.matches("outside the tail roots", res.body)
  end)

  -- The root is checked on every open by name, by where the opened file
  -- really is, not only when the tail starts.
  it("refuses a symlink out of the root that a rotation puts at the path", function()
    local outside = dir:gsub("/root$", "/outside") .. "/rotated-secret.txt"
    append(outside, "")
    local path = new_path()
    append(path, "")
    local s = srv:open(route("lines", path))
    append(path, "before rotation\n")
    assert.same("before rotation\n", s:chunk(5))
    assert(os.rename(path, path .. ".1"))
    assert(os.execute(("ln -s %s %s"):format(outside, path)))
    append(outside, "secret\n")
    local chunk, err = s:chunk(5)
    assert.is_nil(chunk) -- the stream is cut, the secret never sent
    assert.same("closed", err)
    assert.truthy(srv:wait_log("now leads to " .. path .. " (a symlink), outside the tail roots"))
    s:close()
  end)

  it("refuses a file that appears later as a symlink out of the root", function()
    local outside = dir:gsub("/root$", "/outside") .. "/later-secret.txt"
    append(outside, "secret\n")
    local path = new_path()
    local s = srv:open(route("lines", path, "&from=start")) -- not there yet: it waits
    assert(os.execute(("ln -s %s %s"):format(outside, path)))
    local chunk, err = s:chunk(5)
    assert.is_nil(chunk)
    assert.same("closed", err)
    assert.truthy(srv:wait_log("outside the tail roots"))
    s:close()
  end)

  it("refuses a directory swapped for a symlink out of the root", function()
    local outside_dir = dir:gsub("/root$", "/outside") .. "/swapped"
    assert(os.execute("mkdir -p " .. outside_dir .. " " .. dir .. "/sub"))
    append(outside_dir .. "/app.log", "secret\n")
    local s = srv:open(route("lines", dir .. "/sub/app.log", "&from=start"))
    assert(os.execute(("rmdir %s/sub && ln -s %s %s/sub"):format(dir, outside_dir, dir)))
    append(outside_dir .. "/app.log", "more secret\n") -- the poll or inotify wakes the tail
    local chunk = s:chunk(5)
    assert.is_nil(chunk)
    assert.truthy(srv:wait_log("now leads to " .. outside_dir .. "/app.log, outside the tail roots"))
    s:close()
  end)

  it("names the resolved path when it refuses one", function()
    local res = srv:get(route("lines", dir .. "/../outside/secret.txt"))
    assert.same(403, res.status)
    assert.same(("tail %s/../outside/secret.txt: %s is outside the tail roots (--tail-root)\n")
      :format(dir, dir:gsub("/root$", "/outside") .. "/secret.txt"), res.body)
  end)

  it("checks every number of its options, naming the option", function()
    local path = new_path()
    append(path, "x\n")
    local function refused(query)
      local res = srv:get(route("lines", path, query))
      assert.same(500, res.status, query)
      return srv:log()
    end
    assert.matches("max_line: integer from 1", refused("&max_line=-1"))
    assert.matches("max_line: integer from 1", refused("&max_line=0.5"))
    assert.matches("poll: number from 0 to 3600 expected, got 1e%+300", refused("&poll=1e300"))
    assert.matches("poll must be 0 %(inotify%) or at least 0.01", refused("&poll=1e-9"))
    assert.matches("from: integer from 0 to 1000000", refused("&from=9223372036854775807"))
    assert.matches("from%.offset must be an integer from 0", refused("&from=offset=-1"))
  end)

  it("resumes exactly after the last event a client got, by Last-Event-ID", function()
    local path = new_path()
    append(path, "")
    local s = srv:open(route("sse", path))
    append(path, "e1\ne2\ne3\n")
    local e1, e2 = s:event(5), s:event(5)
    assert.same("e1", e1.data)
    assert.same("e2", e2.data)
    s:close() -- drops after e2
    append(path, "e4\n")
    local again = srv:open(route("sse", path), { headers = { ["Last-Event-ID"] = e2.id } })
    assert.same("e3", again:event(5).data)
    assert.same("e4", again:event(5).data)
    again:close()
  end)

  it("tells a resuming client, in band, that the file was rotated or truncated", function()
    local path = new_path()
    append(path, "x1\nx2\n")
    local s = srv:open(route("sse", path, "&from=start"))
    local x1 = s:event(5)
    s:close()
    local f = assert(io.open(path, "w"))
    f:write("")
    f:close() -- truncated below the client's offset
    append(path, "y\n")
    local again = srv:open(route("sse", path), { headers = { ["Last-Event-ID"] = x1.id:gsub("%-%d+$", "-9999") } })
    assert.same({ event = "rill-gap", data = "truncated", id = "" }, again:event(5))
    assert.same("y", again:event(5).data) -- the restart point: the file's start
    again:close()
    assert(os.rename(path, path .. ".old"))
    append(path, "z\n")
    local rotated = srv:open(route("sse", path), { headers = { ["Last-Event-ID"] = x1.id } })
    assert.same({ event = "rill-gap", data = "rotated", id = "" }, rotated:event(5))
    assert.same("z", rotated:event(5).data)
    rotated:close()
  end)

  it("serves 100 tails of one file, each seeing every appended line", function()
    local path = new_path()
    append(path, "")
    local streams = {}
    for i = 1, 100 do streams[i] = srv:open(route("lines", path)) end
    append(path, "to all\n")
    append(path, "again to all\n")
    for i = 1, 100 do
      assert.same("to all\n", streams[i]:chunk(5))
      assert.same("again to all\n", streams[i]:chunk(5))
      streams[i]:close()
    end
  end)

  it("closes the file when the client leaves: no descriptor leaks after 1,000 cycles", function()
    local path = new_path()
    append(path, "line\n")
    local before = srv:settle(function(st) return st.active == 0 end)
    for _ = 1, 1000 do
      local s = srv:open(route("lines", path, "&from=1"))
      assert.same("line\n", s:chunk(5))
      s:close()
    end
    local after = srv:settle(function(st) return st.active == 0 and st.fds == before.fds end)
    assert.same(before.fds, after.fds)
  end)
end)

describe("rill.tail in process", function()
  local dir -- under the working directory: the tail root under rill.run
  setup(function()
    dir = ("build/tail-spec-%d"):format(math.random(1, 1e9))
    assert(os.execute("mkdir -p " .. dir))
  end)
  teardown(function() os.execute("rm -rf " .. dir) end)

  local function tail_error(opts)
    local ok, err = pcall(rill.run, function() return rill.tail(dir .. "/none.log", opts) end)
    assert.is_false(ok)
    return err
  end

  it("refuses NaN, infinities and out-of-range numbers in its options", function()
    assert.matches("max_line: integer from 1 to %d+ expected, got %-?nan", tail_error({ max_line = 0 / 0 }))
    assert.matches("max_line: integer", tail_error({ max_line = math.huge }))
    assert.matches("poll: number from 0 to 3600 expected, got %-?nan", tail_error({ poll = 0 / 0 }))
    assert.matches("poll: number from 0 to 3600 expected, got %-inf", tail_error({ poll = -math.huge }))
    assert.matches("from: integer from 0 to 1000000 expected, got 9223372036854775807",
      tail_error({ from = math.maxinteger }))
    assert.matches("from: integer", tail_error({ from = 0 / 0 }))
    assert.matches("from%.offset must be an integer from 0", tail_error({ from = { offset = 1e300 } }))
    assert.matches("from must be", tail_error({ from = true }))
  end)

  it("looks back at most 1 MiB for the last N lines, however large N is", function()
    local path = dir .. "/big.log"
    local f = assert(io.open(path, "w"))
    local line = ("x"):rep(99) .. "\n"
    for _ = 1, 30000 do f:write(line) end -- 3,000,000 bytes
    f:close()
    local offset = rill.run(function()
      local t <close> = assert(rill.tail(path, { from = 1000000 }))
      local _, at = t()
      return at
    end)
    assert.same(3000000 - 1024 * 1024 + 76, offset) -- the first whole line inside the window
    assert.same(0, offset % 100)
  end)
end)

-- An app of its own in a temporary directory: the default root and the
-- directory relative paths start from, wherever rill runs.
describe("rill.tail's default root", function()
  local APP = [[
local rill = require "rill"
return function(req)
  local lines, err = rill.tail(req.query.path, { from = "start" })
  if not lines then return { status = 403, body = err .. "\n" } end
  return { body = lines }
end
]]
  local function write(path, text)
    local f = assert(io.open(path, "w"))
    f:write(text)
    f:close()
  end

  it("is the app's directory, and relative paths start there, not in the working directory", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir))
    finally(function() os.execute("rm -rf " .. dir) end)
    write(dir .. "/app.lua", APP)
    write(dir .. "/rel.log", "next to the app\n")
    local srv = test.server(dir .. "/app.lua")
    finally(function() srv:stop() end) -- stop() is idempotent
    local s = srv:open("/?path=rel.log")
    assert.same(200, s.status)
    assert.same("next to the app\n", s:chunk(5))
    s:close()
    local res = srv:get("/?path=../elsewhere.log")
    assert.same(403, res.status)
    local parent = dir:match("^(.*)/[^/]+$")
    assert.same(("tail ../elsewhere.log: %s/elsewhere.log is outside the tail roots (--tail-root)\n")
      :format(parent), res.body)
    assert.same(0, srv:stop())
  end)

  -- An app at the top of the filesystem must not open all of it to tails.
  it("is not / for an app in /: that takes an explicit --tail-root /", function()
    local app = ("/rill-tail-spec-%d.lua"):format(math.random(1, 1e9))
    local f = io.open(app, "w")
    if not f then
      pending("needs a writable / to place an app there")
      return
    end
    finally(function() os.remove(app) end) -- also when an assertion fails
    f:write(APP)
    f:close()
    local srv = test.server(app)
    finally(function() srv:stop() end)
    local res = srv:get("/?path=/etc/hostname")
    assert.same(403, res.status)
    assert.matches("no tail root %(the app is in /: give %-%-tail%-root%)", res.body)
    assert.same(0, srv:stop())
    local explicit = test.server(app, { args = { "--tail-root", "/" } })
    finally(function() explicit:stop() end)
    assert.same(200, explicit:open("/?path=" .. app).status)
    assert.same(0, explicit:stop())
  end)
end)
