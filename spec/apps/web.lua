-- SPDX-License-Identifier: MIT
-- JSON, forms, cookies and redirects, for spec/e2e_web_spec.lua.
local rill = require "rill"

local VALUES = { plain = "plain", spaced = "two words", tricky = 'a;b,c"d\\e', unicode = "café ☕", empty = "" }

return rill.router {
  ["POST /echo"] = function(req) return { status = 201, json = { got = req:json() } } end,
  ["POST /form"] = function(req) return { json = req:form() } end,
  ["GET /set"] = function()
    local list = {}
    for name, value in pairs(VALUES) do
      list[#list + 1] = rill.cookie(name, value, { path = "/", max_age = 3600, http_only = true, same_site = "Lax" })
    end
    return { headers = { ["set-cookie"] = list }, json = VALUES }
  end,
  ["GET /show"] = function(req) return { json = req.cookies } end,
  ["GET /go"] = function() return rill.redirect("/landing", 303) end,
  ["GET /landing"] = function() return "landed\n" end,
}
