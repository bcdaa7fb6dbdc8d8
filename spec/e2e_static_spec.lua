-- SPDX-License-Identifier: MIT
-- rill.static end to end, against spec/apps/static.lua on a directory this
-- spec makes: 200, 304 (If-None-Match, If-Modified-Since), 206 and 416
-- (curl -r, and raw Range headers), 404, 403 and 405; HEAD's head is GET's;
-- index.html and the redirect of a directory; a .gz sibling for a client
-- that accepts gzip (curl --compressed); traversal by "..", "%2e%2e", an
-- encoded slash, a NUL, and a symlink out of the root; a FIFO; a large file
-- sent whole, over plain and TLS, without entering the Lua heap.
local test = require "rill.test"
local procs = require "spec.support.procs"

local T = tonumber(os.getenv("RILL_TEST_TIMEOUT")) or 10

local sh, must = procs.sh, procs.must

local function write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

-- curl's response head for url (with extra options): status and headers (lower-case names).
local function curl_head(url, opts)
  local out = must(("curl -sS -D - -o /dev/null %s '%s'"):format(opts or "", url))
  local status = tonumber(out:match("^HTTP/1%.1 (%d+)"))
  local headers = {}
  for name, value in out:gmatch("\n([%w%-]+): ([^\r\n]*)") do headers[name:lower()] = value end
  return status, headers
end

local dir, outside, srv, base
local BIG = 8 * 1024 * 1024 + 13

setup(function()
  dir = procs.tmpdir()
  outside = procs.tmpdir()
  must(("mkdir -p %s/docs %s/sub %s/.git"):format(dir, dir, dir))
  write(dir .. "/index.html", "<h1>home</h1>\n")
  write(dir .. "/docs/index.html", "<h1>docs</h1>\n")
  write(dir .. "/ten.txt", "0123456789")
  write(dir .. "/app.js", "console.log('plain')\n")
  write(dir .. "/style.css", "body{}\n")
  write(dir .. "/.git/config", "secret\n")
  write(dir .. "/empty.bin", "")
  write(outside .. "/secret.txt", "outside the root\n")
  must(("printf 'console.log(\"gz\")\\n' | gzip -9n > %s/app.js.gz"):format(dir))
  must(("ln -s %s/secret.txt %s/escape.txt && ln -s %s %s/escape-dir && ln -s ten.txt %s/inside.txt")
    :format(outside, dir, outside, dir, dir))
  must(("mkfifo %s/pipe"):format(dir))
  must(("head -c %d /dev/urandom > %s/big.bin"):format(BIG, dir))
  srv = test.server("spec/apps/static.lua", { env = { STATIC_ROOT = dir } })
  base = ("http://127.0.0.1:%d"):format(srv.port)
end)

teardown(function()
  if srv then assert.equal(0, srv:stop("TERM"), srv:log()) end
  if dir then os.execute("rm -rf " .. dir .. " " .. outside) end
end)

describe("rill.static", function()
  it("serves a file with its type, length, ETag, Last-Modified, Cache-Control and Accept-Ranges", function()
    local r = srv:get("/assets/ten.txt")
    assert.equal(200, r.status)
    assert.equal("0123456789", r.body)
    assert.equal("text/plain; charset=utf-8", r.headers["content-type"])
    assert.equal("10", r.headers["content-length"])
    assert.matches('^"%x+%.%x+%-a"$', r.headers["etag"])
    assert.matches("^%a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d GMT$", r.headers["last-modified"])
    assert.equal("public, max-age=60", r.headers["cache-control"])
    assert.equal("bytes", r.headers["accept-ranges"])
    assert.equal("text/css; charset=utf-8", srv:get("/assets/style.css").headers["content-type"])
  end)

  it("answers HEAD with GET's head and no body", function()
    local get = srv:get("/assets/ten.txt")
    local head = srv:request({ method = "HEAD", path = "/assets/ten.txt" })
    assert.equal(200, head.status)
    assert.equal("", head.body)
    for _, name in ipairs({ "content-type", "content-length", "etag", "last-modified", "cache-control", "accept-ranges", "vary" }) do
      assert.equal(get.headers[name], head.headers[name], name)
    end
  end)

  it("answers 304 to a matching If-None-Match (also in a list, weak or *), and to If-Modified-Since", function()
    local r = srv:get("/assets/ten.txt")
    local etag, lm = r.headers["etag"], r.headers["last-modified"]
    for _, inm in ipairs({ etag, '"nope", ' .. etag, "W/" .. etag, "*" }) do
      local c = srv:get("/assets/ten.txt", { ["if-none-match"] = inm })
      assert.equal(304, c.status, inm)
      assert.equal("", c.body)
      assert.equal(etag, c.headers["etag"])
    end
    assert.equal(200, srv:get("/assets/ten.txt", { ["if-none-match"] = '"other"' }).status)
    assert.equal(304, srv:get("/assets/ten.txt", { ["if-modified-since"] = lm }).status)
    assert.equal(200, srv:get("/assets/ten.txt", { ["if-modified-since"] = "Thu, 01 Jan 1970 00:00:00 GMT" }).status)
    assert.equal(200, srv:get("/assets/ten.txt", { ["if-modified-since"] = "yesterday" }).status) -- invalid: ignored
    -- If-None-Match decides alone when both are given
    assert.equal(200, srv:get("/assets/ten.txt", { ["if-none-match"] = '"other"', ["if-modified-since"] = lm }).status)
  end)

  it("answers one byte range with 206 and Content-Range (curl -r too), and an unsatisfiable one with 416", function()
    local cases = { ["bytes=2-4"] = { "234", "bytes 2-4/10" }, ["bytes=7-"] = { "789", "bytes 7-9/10" },
      ["bytes=-3"] = { "789", "bytes 7-9/10" }, ["bytes=5-100"] = { "56789", "bytes 5-9/10" },
      ["bytes=-20"] = { "0123456789", "bytes 0-9/10" } }
    for range, want in pairs(cases) do
      local r = srv:get("/assets/ten.txt", { range = range })
      assert.equal(206, r.status, range)
      assert.equal(want[1], r.body, range)
      assert.equal(want[2], r.headers["content-range"], range)
    end
    for _, range in ipairs({ "bytes=10-", "bytes=99-100", "bytes=-0" }) do
      local r = srv:get("/assets/ten.txt", { range = range })
      assert.equal(416, r.status, range)
      assert.equal("bytes */10", r.headers["content-range"], range)
    end
    assert.equal(416, srv:get("/assets/empty.bin", { range = "bytes=0-" }).status)
    -- ignored: several ranges, another unit, nonsense, an If-Range that no longer holds
    for _, range in ipairs({ "bytes=0-1,4-5", "lines=1-2", "bytes=x-y", "bytes=5-2" }) do
      assert.equal(200, srv:get("/assets/ten.txt", { range = range }).status, range)
    end
    assert.equal(200, srv:get("/assets/ten.txt", { range = "bytes=0-1", ["if-range"] = '"stale"' }).status)
    local etag = srv:get("/assets/ten.txt").headers["etag"]
    assert.equal(206, srv:get("/assets/ten.txt", { range = "bytes=0-1", ["if-range"] = etag }).status)
    assert.equal("3456", must(("curl -sS -r 3-6 %s/assets/ten.txt"):format(base)))
  end)

  it("serves index.html for a directory, and redirects a directory named without its slash", function()
    assert.equal("<h1>home</h1>\n", srv:get("/assets/").body)
    assert.equal("<h1>docs</h1>\n", srv:get("/assets/docs/").body)
    local r = srv:get("/assets/docs?x=1")
    assert.equal(301, r.status)
    assert.equal("/assets/docs/?x=1", r.headers["location"])
    assert.equal(404, srv:get("/plain/docs/").status) -- index = false
  end)

  it("sends the .gz sibling to a client that accepts gzip, with Content-Encoding and Vary, and the file to one that does not", function()
    local r = srv:get("/assets/app.js", { ["accept-encoding"] = "gzip, deflate" })
    assert.equal(200, r.status)
    assert.equal("gzip", r.headers["content-encoding"])
    assert.equal("Accept-Encoding", r.headers["vary"])
    assert.equal("text/javascript; charset=utf-8", r.headers["content-type"])
    assert.matches('%-gz"$', r.headers["etag"])
    local plain = srv:get("/assets/app.js")
    assert.equal("console.log('plain')\n", plain.body)
    assert.is_nil(plain.headers["content-encoding"])
    assert.equal(plain.body, srv:get("/assets/app.js", { ["accept-encoding"] = "gzip;q=0" }).body)
    assert.equal('console.log("gz")\n', must(("curl -sS --compressed %s/assets/app.js"):format(base)))
    assert.is_nil(srv:get("/plain/app.js", { ["accept-encoding"] = "gzip" }).headers["content-encoding"])
  end)

  it("answers 404 for what is not there and for hidden files, 405 for other methods", function()
    assert.equal(404, srv:get("/assets/none.txt").status)
    assert.equal(404, srv:get("/assets/docs/none/deeper").status)
    assert.equal(404, srv:get("/assets/.git/config").status)
    local r = srv:request({ method = "POST", path = "/assets/ten.txt", body = "x" })
    assert.equal(405, r.status)
  end)

  it("refuses every way out of the root: '..', '%2e%2e', an encoded slash, a NUL, a symlink out", function()
    local attempts = { "/assets/../spec/apps/static.lua", "/assets/%2e%2e/%2e%2e/etc/passwd",
      "/assets/docs/..%2f..%2fetc%2fpasswd", "/assets/docs%2f..%2f..%2fetc%2fpasswd",
      "/assets/ten.txt%00.html", "/assets/escape.txt", "/assets/escape-dir/secret.txt",
      "/assets/..%5c..%5cetc%5cpasswd" }
    for _, path in ipairs(attempts) do
      local data, statuses = srv:exchange(("GET %s HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"):format(path))
      local status = statuses[1]
      assert(status == 400 or status == 403 or status == 404, path .. " → " .. tostring(status))
      assert.is_nil(data:find("outside the root", 1, true), path)
      assert.is_nil(data:find("root:", 1, true), path)
    end
    assert.equal(403, srv:get("/assets/escape.txt").status)
    assert.equal("0123456789", srv:get("/assets/inside.txt").body) -- a symlink that stays inside is followed
  end)

  it("refuses a FIFO without blocking on it", function()
    assert.equal(403, srv:get("/assets/pipe").status)
    assert.equal(200, srv:get("/assets/ten.txt").status) -- the worker was not stuck
  end)

  it("sends a large file whole, and its bytes never enter the Lua heap", function()
    local before = tonumber(srv:get("/lua-kb").body)
    local out = must(("curl -sS %s/assets/big.bin | sha256sum"):format(base))
    assert.equal(must(("sha256sum < %s/big.bin"):format(dir)), out)
    local status, headers = curl_head(base .. "/assets/big.bin")
    assert.equal(200, status)
    assert.equal(tostring(BIG), headers["content-length"])
    assert.equal("application/octet-stream", headers["content-type"])
    local after = tonumber(srv:get("/lua-kb").body)
    assert(after - before < 1024, ("the Lua heap grew by %d KiB for an %d-byte file"):format(after - before, BIG))
  end)
end)

describe("rill.static over TLS", function()
  it("sends a large file whole through the cipher (mapped, not sendfile)", function()
    local certs = procs.tmpdir()
    local ok, err = pcall(function()
      must(("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=localhost "
        .. "-addext subjectAltName=DNS:localhost -keyout %s/key.pem -out %s/cert.pem"):format(certs, certs))
      local tls <close> = test.server("spec/apps/static.lua", { env = { STATIC_ROOT = dir },
        args = { "--listen", "https://127.0.0.1:0", "--tls-cert", certs .. "/cert.pem", "--tls-key", certs .. "/key.pem" } })
      local port = tls.urls[2]:match(":(%d+)$")
      local out = must(("curl -sS --cacert %s/cert.pem https://localhost:%s/assets/big.bin | sha256sum"):format(certs, port))
      assert.equal(must(("sha256sum < %s/big.bin"):format(dir)), out)
      local r = must(("curl -sS --cacert %s/cert.pem -r 1-3 https://localhost:%s/assets/ten.txt"):format(certs, port))
      assert.equal("123", r)
      assert.equal(0, tls:stop("TERM"), tls:log())
    end)
    os.execute("rm -rf " .. certs)
    assert(ok, err)
  end)
end)
