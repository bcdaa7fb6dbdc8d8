-- SPDX-License-Identifier: MIT
-- https listeners end to end, against clients rill did not write (Python's
-- ssl module through spec/support/tls_client.py, and curl), with
-- certificates this spec makes with `openssl req`: verification by host
-- name, ALPN, the oldest protocol refused, a chain file, SSE event by
-- event, the head gate and its timeouts over TLS, a stalled handshake cut
-- off by --request-timeout, renewed certificates at SIGHUP, workers, and the
-- start-up errors of bad files.
local core = require "rill.core"
local test = require "rill.test"
local procs = require "spec.support.procs"
local socket = require "socket"

local PYTHON = "/usr/bin/python3" -- Debian's
local T = tonumber(os.getenv("RILL_TEST_TIMEOUT")) or 10
local APP = "spec/apps/tls.lua"
-- --request-timeout and --header-timeout of the timeout specs: longer under valgrind (a
-- handshake there takes a good part of a second), so a slow machine does not cut it short
local LIMIT = T >= 60 and 5 or 1

local sh, must = procs.sh, procs.must

-- A CA, and leaves it signed for localhost and 127.0.0.1; each leaf's
-- chain file (leaf, then CA) and key. A self-signed certificate for other.example too.
local dir
local function make_certs()
  dir = procs.tmpdir()
  local d = dir
  must(("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 "
    .. "-subj /CN=rill-spec-ca -keyout %s/ca.key -out %s/ca.pem"):format(d, d))
  for _, name in ipairs({ "a", "b" }) do
    must(("openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=localhost "
      .. "-keyout %s/%s.key -out %s/%s.csr"):format(d, name, d, name))
    local ext = assert(io.open(("%s/%s.ext"):format(d, name), "w"))
    ext:write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    ext:close()
    must(("openssl x509 -req -in %s/%s.csr -CA %s/ca.pem -CAkey %s/ca.key -CAcreateserial -days 2 "
      .. "-extfile %s/%s.ext -out %s/%s.crt"):format(d, name, d, d, d, name, d, name))
    must(("cat %s/%s.crt %s/ca.pem > %s/%s.pem"):format(d, name, d, d, name))
  end
  must(("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 "
    .. "-subj /CN=other.example -keyout %s/other.key -out %s/other.pem"):format(d, d))
end

local function tls_args(cert, key, extra)
  local args = { "--listen", "https://127.0.0.1:0", "--tls-cert", cert or dir .. "/a.pem",
    "--tls-key", key or dir .. "/a.key" }
  for _, a in ipairs(extra or {}) do args[#args + 1] = a end
  return args
end

local function tls_port(srv)
  return assert(tonumber(srv.urls[2]:match("^https://127%.0%.0%.1:(%d+)$")), srv.urls[2])
end

-- What tls_client.py prints for check against srv's https listener.
local function client(srv, check, ...)
  local cmd = ("%s spec/support/tls_client.py %s %d %s/ca.pem"):format(PYTHON, check, tls_port(srv), dir)
  for _, a in ipairs({ ... }) do cmd = cmd .. " " .. a end
  local out, code = sh(cmd)
  assert(code == 0, check .. ": " .. out .. "\n" .. srv:log())
  return (out:gsub("\n$", ""))
end

-- A clean exit (ASan and valgrind runs fail on a leak or an invalid access).
local function stopped(srv)
  assert.equal(0, srv:stop("TERM"), srv:log())
end

setup(make_certs)
teardown(function()
  if dir then os.execute("rm -rf " .. dir) end
end)

describe("rill --listen https://", function()
  local srv
  setup(function()
    srv = test.server(APP, { args = tls_args(nil, nil, { "--request-timeout", tostring(LIMIT),
      "--header-timeout", tostring(LIMIT) }) })
  end)
  teardown(function()
    if srv then stopped(srv) end
  end)

  it("names each listener in its ready line, in the order given", function()
    assert.equal(2, #srv.urls)
    assert.matches("^http://127%.0%.0%.1:%d+$", srv.urls[1])
    assert.matches("^https://127%.0%.0%.1:%d+$", srv.urls[2])
  end)

  it("serves Python's verifying client over TLS 1.3 with ALPN http/1.1; req.scheme is https, and http on the plain listener", function()
    assert.equal("200 TLSv1.3 http/1.1 hello https", client(srv, "hello"))
    assert.equal("hello http\n", srv:get("/").body)
  end)

  it("presents a chain that verifies up to the CA for the right name, and fails verification for a wrong one", function()
    assert.equal("200 TLSv1.3 http/1.1 hello https", client(srv, "hello", "127.0.0.1"))
    assert.matches("^verify failed: Hostname mismatch", client(srv, "hello", "wrong.example"))
  end)

  it("answers ALPN with http/1.1, and refuses a client that offers only h2", function()
    assert.equal("selected http/1.1", client(srv, "alpn", "h2", "http/1.1"))
    assert.matches("^refused: ", client(srv, "alpn", "h2"))
    assert.equal("selected None", client(srv, "alpn")) -- no ALPN offered: served all the same
  end)

  it("refuses a client that speaks TLS 1.1 at most, and serves one that speaks TLS 1.2 with an ECDHE AEAD suite", function()
    assert.equal("refused", client(srv, "old"))
    assert.matches("^200 TLSv1%.2 ECDHE%-[%w%-]+%-GCM%-SHA%d+$", client(srv, "tls12"))
  end)

  it("times the handshake only until it is done: a request sent later than --request-timeout is served", function()
    assert.equal("200 hello https", client(srv, "late", tostring(LIMIT * 1.5)))
  end)

  it("serves a request pipelined behind one that waits, with a body larger than the input limit (OpenSSL keeps what the limit left)", function()
    assert.equal("200 waited 200 20000", client(srv, "pipelined-big"))
  end)

  it("ends a close-delimited HTTP/1.0 body with close_notify: the client can tell it was whole", function()
    assert.equal("whole: b'one\\ntwo\\nthree\\n'", client(srv, "http10"))
  end)

  it("streams SSE over TLS event by event: each is read before the next is published", function()
    assert.equal("20 events, each before the next", client(srv, "sse", "20"))
  end)

  it("serves pipelined requests in one record and a chunked body sent a byte per record, in order", function()
    assert.equal("200:hello https 200:hello 404:not found 200:abcde", client(srv, "pipeline"))
  end)

  it("refuses a smuggling head over TLS as on plain: a 400 over TLS, then the close", function()
    assert.equal("400 close closed=True", client(srv, "refused"))
  end)

  it("answers a head that stops coming with a 408 the client can read, then closes", function()
    assert.equal("408 closed=True", client(srv, "slow-head"))
  end)

  it("sends a body larger than the socket buffers whole", function()
    assert.matches("^200 1048576 %x+$", client(srv, "big"))
  end)

  it("serves curl with --cacert, and curl refuses the server for a name the certificate does not carry", function()
    local port = tls_port(srv)
    local out = must(("curl -sS --cacert %s/ca.pem https://localhost:%d/"):format(dir, port))
    assert.equal("hello https\n", out)
    local bad, code = sh(("curl -sS --cacert %s/ca.pem --resolve wrong.example:%d:127.0.0.1 https://wrong.example:%d/")
      :format(dir, port, port))
    assert.equal(60, code, bad) -- CURLE_PEER_FAILED_VERIFICATION
  end)

  it("cuts off a stalled handshake at --request-timeout: the connection closes, nothing is sent", function()
    local c = assert(socket.tcp())
    c:settimeout(T)
    assert(c:connect("127.0.0.1", tls_port(srv)))
    assert(c:send("\22\3\1\0\200")) -- a ClientHello's record header, and no more
    local got, err, partial = c:receive("*a")
    c:close()
    assert.equal("", got or partial)
    assert.is_true(got ~= nil or err == "closed", err)
  end)
end)

describe("rill --listen https:// with --max-connections 1", function()
  it("sheds a connection too many with a 503 the client reads over TLS", function()
    local srv <close> = test.server(APP, { args = tls_args(nil, nil, { "--max-connections", "1" }) })
    assert.equal("200 503 1 closed=True", client(srv, "shed"))
    stopped(srv)
  end)
end)

describe("rill --listen https:// with curl -N", function()
  it("gives curl each event as it is published", function()
    local srv <close> = test.server(APP, { args = tls_args() })
    local port = tls_port(srv)
    local cmd = ("curl -sS -N --max-time %d --cacert %s/ca.pem https://localhost:%d/events"):format(T, dir, port)
    local proc = core.spawn({ "/bin/sh", "-c", cmd .. " 1>&2" })
    local ok, err = pcall(function()
      assert(proc:wait_for("retry:", T), "curl did not get the stream's head: " .. proc:log()) -- subscribed
      for i = 1, 3 do
        local r = srv:request({ method = "POST", path = "/publish", body = "curl " .. i })
        assert.equal(204, r.status)
        assert(proc:wait_for("data: curl " .. i, T), "curl did not see event " .. i .. ": " .. proc:log())
      end
    end)
    proc:kill("TERM")
    proc:close()
    assert(ok, err)
    stopped(srv)
  end)
end)

describe("rill's TLS certificate", function()
  it("is read again at SIGHUP: new connections get the renewed one, an open connection goes on", function()
    local cert, key = dir .. "/live.pem", dir .. "/live.key"
    must(("cp %s/a.pem %s && cp %s/a.key %s"):format(dir, cert, dir, key))
    local srv <close> = test.server(APP, { args = tls_args(cert, key) })
    local before = client(srv, "fingerprint")
    must(("cp %s/b.pem %s && cp %s/b.key %s"):format(dir, cert, dir, key))
    srv.proc:kill("HUP")
    assert(srv.proc:wait_for("TLS certificate and key read again", T), srv:log())
    local after = client(srv, "fingerprint")
    assert.are_not.equal(before, after)
    assert.equal("200 TLSv1.3 http/1.1 hello https", client(srv, "hello"))
    stopped(srv)
  end)

  it("leaves a connection opened before the SIGHUP with its certificate, serving on", function()
    local cert, key = dir .. "/held.pem", dir .. "/held.key"
    must(("cp %s/a.pem %s && cp %s/a.key %s"):format(dir, cert, dir, key))
    local srv <close> = test.server(APP, { args = tls_args(cert, key) })
    local py = core.spawn({ "/bin/sh", "-c", ("exec %s spec/support/tls_client.py held %d %s/ca.pem 1>&2")
      :format(PYTHON, tls_port(srv), dir) })
    local ok, err = pcall(function()
      local before = assert(py:wait_for("", T), py:log()) -- its first line: the certificate's hash
      assert.matches("^%x+$", before)
      must(("cp %s/b.pem %s && cp %s/b.key %s"):format(dir, cert, dir, key))
      srv.proc:kill("HUP")
      assert(srv.proc:wait_for("TLS certificate and key read again", T), srv:log())
      assert.are_not.equal(before, client(srv, "fingerprint")) -- a new connection: the new one
      py:kill("USR1")
      assert(py:wait_for("after: 200 hello https", T), py:log())
    end)
    py:kill("TERM")
    py:close()
    assert(ok, err)
    stopped(srv)
  end)

  it("keeps the old certificate when the renewed files do not load, and says why", function()
    local cert, key = dir .. "/keep.pem", dir .. "/keep.key"
    must(("cp %s/a.pem %s && cp %s/a.key %s"):format(dir, cert, dir, key))
    local srv <close> = test.server(APP, { args = tls_args(cert, key) })
    local before = client(srv, "fingerprint")
    must(("cp %s/b.key %s"):format(dir, key)) -- a key that is not the certificate's
    srv.proc:kill("HUP")
    assert(srv.proc:wait_for("the old certificate stays", T), srv:log())
    assert.matches("is not the key of the certificate", srv:log())
    assert.equal(before, client(srv, "fingerprint"))
    stopped(srv)
  end)

  it("is loaded by every worker: --workers 2 serves TLS on the master's socket", function()
    local srv <close> = test.server(APP, { args = tls_args(nil, nil, { "--workers", "2" }) })
    for _ = 1, 6 do
      assert.equal("200 TLSv1.3 http/1.1 hello https", client(srv, "hello"))
    end
    stopped(srv)
  end)
end)

describe("rill's TLS options at start-up", function()
  -- rill's exit status and stderr for args (it must not start)
  local function fails(args)
    local argv = {}
    for word in test.bin:gmatch("%S+") do argv[#argv + 1] = word end
    argv[#argv + 1] = APP
    for _, a in ipairs(args) do argv[#argv + 1] = a end
    local p = core.spawn(argv)
    local status = p:wait(T)
    local log = p:log()
    p:close()
    assert.is_nil(log:find("listening", 1, true), log)
    return status, log
  end

  it("exits 2 with one line naming a certificate file that is missing", function()
    local status, log = fails(tls_args(dir .. "/none.pem"))
    assert.equal(2, status)
    assert.equal("rill: cannot read the TLS certificate " .. dir .. "/none.pem: No such file or directory\n", log)
  end)

  it("exits 2 with one line naming a key that is not the certificate's", function()
    local status, log = fails(tls_args(dir .. "/a.pem", dir .. "/b.key"))
    assert.equal(2, status)
    assert.equal(("rill: the TLS key %s/b.key is not the key of the certificate %s/a.pem\n"):format(dir, dir), log)
  end)

  it("exits 2 naming a file that is no certificate", function()
    local status, log = fails(tls_args(dir .. "/a.ext"))
    assert.equal(2, status)
    assert.matches("^rill: cannot use the TLS certificate " .. dir:gsub("%p", "%%%0") .. "/a%.ext: [^\n]+\n$", log)
  end)

  it("exits 2 when an https listener has no certificate, or a certificate has no https listener", function()
    local status, log = fails({ "--listen", "https://127.0.0.1:0" })
    assert.equal(2, status)
    assert.equal("rill: an https:// listener needs --tls-cert and --tls-key\n", log)
    status, log = fails({ "--tls-cert", dir .. "/a.pem", "--tls-key", dir .. "/a.key" })
    assert.equal(2, status)
    assert.matches("are for an https:// %-%-listen", log)
  end)

  it("exits 2 on a --listen that is no address, and past 8 listeners", function()
    local status, log = fails({ "--listen", "ftp://127.0.0.1:1" })
    assert.equal(2, status)
    assert.matches("%-%-listen wants HOST:PORT", log)
    local many = {}
    for _ = 1, 9 do many[#many + 1] = "--listen"; many[#many + 1] = "127.0.0.1:0" end
    status, log = fails(many)
    assert.equal(2, status)
    assert.matches("at most 8 addresses", log)
  end)
end)
