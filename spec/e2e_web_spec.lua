-- SPDX-License-Identifier: MIT
-- JSON, forms, cookies and redirects against a real server, checked by a
-- client rill did not write: Python's json, urllib and http.cookiejar
-- (spec/support/web_client.py) against spec/apps/web.lua.
local test = require "rill.test"

local PYTHON = "/usr/bin/python3" -- Debian's

describe("JSON, forms, cookies and redirects, to Python's client", function()
  it("round-trips JSON and forms, refuses a bad body with a 400, keeps cookies in a jar, follows a redirect", function()
    local srv <close> = test.server("spec/apps/web.lua")
    local p = assert(io.popen(("%s spec/support/web_client.py %d 2>&1"):format(PYTHON, srv.port)))
    local out = p:read("a")
    local ok = p:close()
    assert(ok, out)
    assert.same("ok\n", out)
    assert.same(0, srv:stop("TERM"))
    assert.is_nil(srv:log():find("handler error", 1, true), srv:log()) -- a client's fault is no error of the app's
  end)
end)
