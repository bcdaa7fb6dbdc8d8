-- SPDX-License-Identifier: MIT
-- --trust-proxy end to end: req.remote_addr behind a proxy, req.peer_addr always the peer.
local core = require "rill.core"
local test = require "rill.test"

local APP = "spec/apps/addrs.lua"

-- The addresses a request with these headers is seen from.
local function addrs(srv, headers)
  local res = srv:get("/addr", headers)
  assert.same(200, res.status, res.body)
  return res.body:match("remote_addr=(%S*)\n"), res.body:match("peer_addr=(%S*)\n")
end

describe("--trust-proxy", function()
  local servers = {}
  local function start(...)
    local srv = test.server(APP, { args = { ... } })
    servers[#servers + 1] = srv
    return srv
  end
  teardown(function()
    for _, srv in ipairs(servers) do assert.same(0, srv:stop(), srv:log()) end
  end)

  describe("from a trusted peer", function()
    local srv
    setup(function() srv = start("--trust-proxy", "127.0.0.1/32", "--trust-proxy", "10.0.0.0/8") end)

    it("takes the client from X-Forwarded-For and keeps the peer in peer_addr", function()
      local remote, peer = addrs(srv, { ["X-Forwarded-For"] = "203.0.113.7" })
      assert.same("203.0.113.7", remote)
      assert.same("127.0.0.1", peer)
    end)

    it("takes the rightmost untrusted hop of a chain", function()
      assert.same("1.2.3.4", (addrs(srv, { ["X-Forwarded-For"] = "1.2.3.4, 10.0.0.5" })))
      assert.same("1.2.3.4", (addrs(srv, { ["X-Forwarded-For"] = "6.6.6.6, 1.2.3.4, 10.0.0.5" })))
    end)

    it("takes the leftmost hop when every hop is trusted", function()
      assert.same("10.0.0.7", (addrs(srv, { ["X-Forwarded-For"] = "10.0.0.7, 10.0.0.5" })))
    end)

    it("reads several X-Forwarded-For lines as one list, in order", function()
      assert.same("1.2.3.4", (addrs(srv, { ["X-Forwarded-For"] = { "1.2.3.4", "10.0.0.5" } })))
      assert.same("5.6.7.8", (addrs(srv, { ["X-Forwarded-For"] = { "1.2.3.4", "5.6.7.8" } })))
    end)

    it("reads only X-Forwarded-For by default, never Forwarded", function()
      assert.same("1.2.3.4", (addrs(srv, { ["X-Forwarded-For"] = "1.2.3.4", Forwarded = "for=5.6.7.8" })))
      assert.same("127.0.0.1", (addrs(srv, { Forwarded = "for=5.6.7.8" })))
    end)

    it("keeps the last 32 X-Forwarded-For lines, so a client's extra lines cannot push the proxy's out", function()
      local lines = {}
      for i = 1, 40 do lines[i] = "6.6.6." .. i end
      lines[#lines + 1] = "1.2.3.4"
      assert.same("1.2.3.4", (addrs(srv, { ["X-Forwarded-For"] = lines })))
    end)

    it("keeps the peer address for garbage, and keeps serving", function()
      local garbage = {
        { ["X-Forwarded-For"] = "nonsense" },
        { ["X-Forwarded-For"] = "1.2.3.4" .. (","):rep(2000) },
        { ["X-Forwarded-For"] = (","):rep(2000) },
        { ["X-Forwarded-For"] = ("9"):rep(8192) },
        { ["X-Forwarded-For"] = ("1.2.3.4, "):rep(900) .. "x" },
        { ["X-Forwarded-For"] = "1.2.3.4, <script>" },
      }
      for _, headers in ipairs(garbage) do
        local remote, peer = addrs(srv, headers)
        assert.same("127.0.0.1", remote)
        assert.same("127.0.0.1", peer)
      end
    end)

    it("walks a long chain of trusted hops", function()
      local chain = "198.51.100.9" .. (", 10.0.0.1"):rep(1500)
      assert.same("198.51.100.9", (addrs(srv, { ["X-Forwarded-For"] = chain })))
    end)
  end)

  describe("with --trust-proxy-header forwarded", function()
    local srv
    setup(function()
      srv = start("--trust-proxy", "127.0.0.1/32", "--trust-proxy", "10.0.0.0/8", "--trust-proxy-header", "forwarded")
    end)

    it("takes a quoted IPv6 client with a port from Forwarded", function()
      assert.same("2001:db8::1", (addrs(srv, { Forwarded = 'for="[2001:db8::1]:4711";proto=https' })))
      assert.same("192.0.2.60", (addrs(srv, { Forwarded = "for=192.0.2.60, for=10.0.0.1;by=10.0.0.2" })))
    end)

    it("ignores X-Forwarded-For, which a client may have written", function()
      assert.same("1.2.3.4", (addrs(srv, { ["X-Forwarded-For"] = "6.6.6.6", Forwarded = "for=1.2.3.4" })))
      assert.same("127.0.0.1", (addrs(srv, { ["X-Forwarded-For"] = "6.6.6.6" })))
    end)

    it("never splits inside a quoted string", function()
      assert.same("1.2.3.4", (addrs(srv, { Forwarded = 'for=1.2.3.4;host="x,for=6.6.6.6;y=";proto=https' })))
      assert.same("1.2.3.4", (addrs(srv, { Forwarded = 'proto=http;host="x;for=6.6.6.6;y=";for=1.2.3.4' })))
      assert.same("1.2.3.4", (addrs(srv, { Forwarded = 'for=1.2.3.4;host="a\\",for=6.6.6.6"' })))
      assert.same("2001:db8::1", (addrs(srv, { Forwarded = 'for="\\[2001:db8::1\\]:80"' })))
    end)

    it("keeps the last 32 Forwarded lines", function()
      local lines = {}
      for i = 1, 40 do lines[i] = "for=6.6.6." .. i end
      lines[#lines + 1] = "for=1.2.3.4"
      assert.same("1.2.3.4", (addrs(srv, { Forwarded = lines })))
    end)

    it("keeps the peer address for garbage", function()
      local garbage = {
        { Forwarded = "for=unknown" },
        { Forwarded = 'for="[2001:db8::1' },
        { Forwarded = 'for="1.2.3.4' },
        { Forwarded = 'for="1.2.3.4"x' },
        { Forwarded = "for=1.2.3.4;for=5.6.7.8" },
        { Forwarded = ("for=;"):rep(1600) },
        { Forwarded = ('host="'):rep(1600) },
        { Forwarded = "proto=http" },
      }
      for _, headers in ipairs(garbage) do
        local remote, peer = addrs(srv, headers)
        assert.same("127.0.0.1", remote, headers.Forwarded:sub(1, 40))
        assert.same("127.0.0.1", peer)
      end
    end)
  end)

  it("exits 2 naming --trust-proxy-header for a value that is neither header", function()
    for _, bad in ipairs({ "x-real-ip", "", "X-Forwarded" }) do
      local argv = {}
      for word in test.bin:gmatch("%S+") do argv[#argv + 1] = word end
      for _, a in ipairs({ "--trust-proxy-header", bad, APP }) do argv[#argv + 1] = a end
      local proc <close> = core.spawn(argv)
      assert.same(2, proc:wait(10), bad)
      assert.matches("--trust-proxy-header wants x-forwarded-for or forwarded", proc:log(), 1, true)
      assert.matches("'" .. bad .. "'", proc:log(), 1, true)
    end
  end)

  it("ignores X-Forwarded-For when no proxy is trusted", function()
    local srv = start()
    local remote, peer = addrs(srv, { ["X-Forwarded-For"] = "203.0.113.7", Forwarded = "for=203.0.113.8" })
    assert.same("127.0.0.1", remote)
    assert.same("127.0.0.1", peer)
  end)

  it("ignores X-Forwarded-For from a peer outside the trusted ranges", function()
    local srv = start("--trust-proxy", "10.0.0.0/8", "--trust-proxy", "::1")
    assert.same("127.0.0.1", (addrs(srv, { ["X-Forwarded-For"] = "203.0.113.7" })))
  end)

  it("exits 2 naming the option for a value that is not an address or CIDR", function()
    for _, bad in ipairs({ "nonsense", "10.0.0.0/33", "::/129", "10.0.0.0/", "1.2.3", "" }) do
      local argv = {}
      for word in test.bin:gmatch("%S+") do argv[#argv + 1] = word end
      for _, a in ipairs({ "--trust-proxy", bad, APP }) do argv[#argv + 1] = a end
      local proc <close> = core.spawn(argv)
      assert.same(2, proc:wait(10), bad)
      assert.matches("--trust-proxy wants an IPv4 or IPv6 address or CIDR", proc:log(), 1, true)
      assert.matches("'" .. bad .. "'", proc:log(), 1, true)
    end
  end)

  it("takes an IPv6 CIDR and a bare IPv6 address", function()
    local srv = start("--trust-proxy", "2001:db8::/32", "--trust-proxy", "::1", "--trust-proxy", "127.0.0.1")
    assert.same("1.2.3.4", (addrs(srv, { ["X-Forwarded-For"] = "1.2.3.4" })))
  end)
end)

describe("rill.test's fake request", function()
  it("has peer_addr, the remote address unless given", function()
    local req = test.request({ remote_addr = "203.0.113.7" })
    assert.same("203.0.113.7", req.peer_addr)
    assert.same("10.0.0.1", test.request({ remote_addr = "1.2.3.4", peer_addr = "10.0.0.1" }).peer_addr)
    assert.same("127.0.0.1", test.request().peer_addr)
  end)
end)
