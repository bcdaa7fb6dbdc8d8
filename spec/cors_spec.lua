-- SPDX-License-Identifier: MIT
-- rill.cors in process: the allow-origin headers, and Vary: Origin on every
-- answer whose content depends on the Origin, refused ones included.
local rill = require "rill"
local t = require "rill.test"

local function hello() return "hello\n" end

describe("rill.cors", function()
  local app = rill.cors(hello, { origin = { "https://app.example" } })

  it("allows a listed origin and varies on Origin", function()
    local res = t.call(app, { headers = { Origin = "https://app.example" } })
    assert.same("https://app.example", res.headers["access-control-allow-origin"])
    assert.same("Origin", res.headers.vary)
  end)

  it("sends Vary: Origin to a disallowed origin too, without allow-origin", function()
    local res = t.call(app, { headers = { Origin = "https://evil.example" } })
    assert.same(200, res.status)
    assert.is_nil(res.headers["access-control-allow-origin"])
    assert.same("Origin", res.headers.vary)
  end)

  it("sends Vary: Origin to a request without Origin", function()
    local res = t.call(app, {})
    assert.is_nil(res.headers["access-control-allow-origin"])
    assert.same("Origin", res.headers.vary)
  end)

  it("sends Vary: Origin on a refused preflight", function()
    local res = t.call(app, { method = "OPTIONS",
      headers = { Origin = "https://evil.example", ["Access-Control-Request-Method"] = "GET" } })
    assert.same(204, res.status)
    assert.is_nil(res.headers["access-control-allow-methods"])
    assert.same("Origin", res.headers.vary)
  end)

  it("adds Origin to the handler's own Vary, once, whatever case it used", function()
    local own = rill.cors(function()
      return { headers = { Vary = "Accept-Encoding" }, body = "x" }
    end, { origin = "https://app.example" })
    local res = t.call(own, { headers = { Origin = "https://evil.example" } })
    assert.same("Accept-Encoding, Origin", res.headers.vary)
    local already = rill.cors(function()
      return { headers = { vary = "origin" }, body = "x" }
    end, { origin = "https://app.example" })
    assert.same("origin", t.call(already, { headers = { Origin = "https://app.example" } }).headers.vary)
  end)
end)
