-- SPDX-License-Identifier: MIT
-- rill.static in process (rill.test's t.call): its own checks, which the
-- server's gate would otherwise answer first (".." and NUL are refused there
-- too: e2e_static_spec), the symlink confinement of src/static.c, its
-- ranges and dates, and its arguments.
local t = require "rill.test"
local rill = require "rill"
local static = require "rill.static"
local procs = require "spec.support.procs"

local dir, outside, serve

local function write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

setup(function()
  dir, outside = procs.tmpdir(), procs.tmpdir()
  os.execute(("mkdir -p %s/sub %s/.hidden"):format(dir, dir))
  write(dir .. "/ten.txt", "0123456789")
  write(dir .. "/sub/page.HTML", "<p>x</p>")
  write(dir .. "/.hidden/x", "hidden")
  write(dir .. "/data.weird", "?")
  write(outside .. "/secret", "secret")
  os.execute(("ln -s %s/secret %s/out && ln -s %s %s/outdir && ln -s sub %s/insub"):format(outside, dir, outside, dir, dir))
  serve = rill.static(dir, { mime = { weird = "application/x-weird" } })
end)

teardown(function()
  os.execute("rm -rf " .. dir .. " " .. outside)
end)

local function get(path, headers)
  return t.call(serve, { path = path, headers = headers })
end

describe("rill.static's own checks", function()
  it("refuses '..' and '.' segments, an encoded slash or backslash, and a NUL with a 403", function()
    for _, path in ipairs({ "/../x", "/sub/../../x", "/./ten.txt", "/sub%2f..%2fx", "/sub%2F..", "/a%5cb", "/a\\b", "/ten.txt%00" }) do
      local r = get(path)
      assert.equal(403, r.status, path)
      assert.equal("forbidden\n", r.body, path)
    end
  end)

  it("does not follow a symlink out of the root, to a file or through a directory; follows one that stays in", function()
    assert.equal(403, get("/out").status)
    assert.equal(403, get("/outdir/secret").status)
    assert.equal("<p>x</p>", get("/insub/page.HTML").body)
  end)

  it("serves a directory put in the root's place (a deploy's rename) within a second or so", function()
    local base = procs.tmpdir()
    os.execute(("mkdir %s/www && printf old > %s/www/v.txt"):format(base, base))
    local h = rill.static(base .. "/www")
    assert.equal("old", t.call(h, { path = "/v.txt" }).body)
    os.execute(("mkdir %s/www.new && printf new > %s/www.new/v.txt && mv %s/www %s/www.old && mv %s/www.new %s/www")
      :format(base, base, base, base, base, base))
    -- this process's descriptors (the shell's parent is us): the old directory's is let go
    local function roots_held()
      local old, new = false, false
      for link in io.popen("ls -l /proc/$PPID/fd/ 2>/dev/null"):lines() do
        old = old or link:find(base .. "/www.old", 1, true) ~= nil
        new = new or link:match("-> " .. base:gsub("%p", "%%%0") .. "/www$") ~= nil
      end
      return old, new
    end
    local socket = require "socket"
    local deadline, body, held_old, holds_new = socket.gettime() + 10, nil, true, false
    repeat -- polls the handler: the root is compared with its path once a second
      body = t.call(h, { path = "/v.txt" }).body
      held_old, holds_new = roots_held()
    until (body == "new" and not held_old and holds_new) or socket.gettime() > deadline
    os.execute("rm -rf " .. base)
    assert.equal("new", body)
    assert.is_false(held_old)
    assert.is_true(holds_new)
  end)

  it("serves the release a symlink root points to after a deploy swaps it (ln -sfn)", function()
    local base = procs.tmpdir()
    os.execute(("mkdir %s/r1 %s/r2 && printf one > %s/r1/v.txt && printf two > %s/r2/v.txt && ln -s r1 %s/current")
      :format(base, base, base, base, base))
    local h = rill.static(base .. "/current")
    assert.equal("one", t.call(h, { path = "/v.txt" }).body)
    os.execute(("ln -sfn r2 %s/current.new && mv -T %s/current.new %s/current"):format(base, base, base))
    local socket = require "socket"
    local deadline, body = socket.gettime() + 10, nil
    repeat -- polls the handler: the root is compared with its path once a second
      body = t.call(h, { path = "/v.txt" }).body
    until body == "two" or socket.gettime() > deadline
    os.execute("rm -rf " .. base)
    assert.equal("two", body)
  end)

  it("answers 404 for hidden files unless dotfiles = true", function()
    assert.equal(404, get("/.hidden/x").status)
    assert.equal("hidden", t.call(rill.static(dir, { dotfiles = true }), { path = "/.hidden/x" }).body)
  end)

  it("names types by extension, case-insensitively, with the app's own first, then /etc/mime.types", function()
    assert.equal("text/html; charset=utf-8", get("/sub/page.HTML").headers["content-type"])
    assert.equal("application/x-weird", get("/data.weird").headers["content-type"])
    assert.equal("application/octet-stream", static.mime_of("noext"))
    local f = io.open("/etc/mime.types")
    if f then
      f:close()
      assert.equal("application/vnd.oasis.opendocument.text", static.mime_of("a.odt"))
    end
  end)

  it("takes the path from the router's splat when mounted under a prefix", function()
    local app = rill.router({ ["GET /files/*"] = serve })
    assert.equal("0123456789", t.call(app, { path = "/files/ten.txt" }).body)
  end)

  it("sends a handler's own rill.file whole when it gives no offset or length, in rill.test as on the server", function()
    local core = require "rill.core"
    local root = core.static_root(dir)
    local handler = function() return { body = (core.static_open(root, "ten.txt")) } end
    local r = t.call(handler)
    assert.equal("0123456789", r.body)
    assert.equal("10", r.headers["content-length"])
  end)

  it("sends the file's bytes, length and a HEAD's empty body through rill.test as the server does", function()
    local r = get("/ten.txt")
    assert.equal("0123456789", r.body)
    assert.equal("10", r.headers["content-length"])
    local h = t.call(serve, { method = "HEAD", path = "/ten.txt" })
    assert.equal("", h.body)
    assert.equal("10", h.headers["content-length"])
  end)
end)

describe("rill.static's ranges and dates", function()
  it("parses one range, and ignores what it cannot take", function()
    local pr = static.parse_range
    assert.same({ 0, 9 }, { pr("bytes=0-", 10) })
    assert.same({ 9, 9 }, { pr("bytes=-1", 10) })
    assert.same({ 5, 9 }, { pr("bytes=5-99", 10) }) -- past the end: up to the end
    assert.equal("unsatisfiable", pr("bytes=10-11", 10))
    assert.equal("unsatisfiable", pr("bytes=-0", 10))
    assert.is_nil(pr("bytes=1-2,3-4", 10))
    assert.is_nil(pr("bytes=3-1", 10))
    assert.is_nil(pr("bytes=-", 10))
    assert.is_nil(pr("bytes=1234567890123456-", 10)) -- more digits than a file may have
  end)

  it("reads the three HTTP date forms, and formats IMF-fixdate", function()
    local want = 784111777 -- Sun, 06 Nov 1994 08:49:37 GMT (RFC 9110's example)
    assert.equal(want, static.parse_date("Sun, 06 Nov 1994 08:49:37 GMT"))
    assert.equal(want, static.parse_date("Sunday, 06-Nov-94 08:49:37 GMT"))
    assert.equal(want, static.parse_date("Sun Nov  6 08:49:37 1994"))
    assert.equal("Sun, 06 Nov 1994 08:49:37 GMT", static.http_date(want))
    assert.is_nil(static.parse_date("06 Nov 1994"))
    assert.is_nil(static.parse_date("Sun, 32 Nov 1994 08:49:37 GMT"))
  end)

  it("reads Accept-Encoding's gzip and its q", function()
    assert.is_true(static.accepts_gzip("gzip"))
    assert.is_true(static.accepts_gzip("br, GZIP;q=0.5"))
    assert.is_false(static.accepts_gzip("gzip;q=0"))
    assert.is_true(static.accepts_gzip("gzip;q=0, x-gzip")) -- either name, as the server reads it
    assert.is_true(static.accepts_gzip("gzip;seq=0")) -- no q: 1
    assert.is_false(static.accepts_gzip("gzip;q=0.0001")) -- three decimals: 0.000
    assert.is_false(static.accepts_gzip("gzip;q=.5")) -- not a qvalue
    assert.is_false(static.accepts_gzip("identity"))
    assert.is_false(static.accepts_gzip(nil))
  end)
end)

describe("rill.static's arguments", function()
  local function raises(fn, pattern)
    local ok, err = pcall(fn)
    assert.is_false(ok)
    assert.matches(pattern, err)
  end

  it("raises at the caller's line for a root that is missing or no directory, and for bad options", function()
    raises(function() rill.static(nil) end, "^spec/static_spec.lua:%d+: bad argument #1 to 'static' %(string expected, got nil%)")
    raises(function() rill.static(dir .. "/none") end, "^spec/static_spec.lua:%d+: bad argument #1 to 'static' %(.*No such file")
    raises(function() rill.static(dir .. "/ten.txt") end, "not a directory")
    raises(function() rill.static(dir, 5) end, "^spec/static_spec.lua:%d+: bad argument #2 to 'static' %(table expected, got number%)")
    raises(function() rill.static(dir, { max_age = "1h" }) end, "^spec/static_spec.lua:%d+: .*max_age must be number, got string")
    raises(function() rill.static(dir, { max_age = -1 }) end, "max_age must be a whole number")
    raises(function() rill.static(dir, { max_age = math.huge }) end, "max_age must be a whole number")
    raises(function() rill.static(dir, { index = "a/b" }) end, "index must be a file name")
    raises(function() rill.static(dir, { cache_control = "x\r\ny" }) end, "control character")
    raises(function() rill.static(dir, { mime = { txt = 1 } }) end, "mime maps extensions to types")
  end)
end)
