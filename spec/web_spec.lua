-- SPDX-License-Identifier: MIT
-- JSON, forms, cookies and redirects in process (rill.test.call): req:json()
-- and req:form() answer a body the client got wrong with a 400 and a short
-- reason, never a traceback; { json = value } replies application/json;
-- rill.cookie's headers make the round trip through req.cookies; the
-- arguments of rill.cookie and rill.redirect are checked, naming the app's line.
local rill = require "rill"
local t = require "rill.test"

local function post(handler, ctype, body)
  return t.call(handler, { method = "POST", path = "/", headers = { ["content-type"] = ctype }, body = body })
end

describe("req:json()", function()
  local echo = function(req) return { json = { got = req:json() } } end

  it("decodes a JSON body, for application/json and the +json types, parameters allowed", function()
    for _, ctype in ipairs({ "application/json", "Application/JSON; charset=utf-8", "application/vnd.api+json" }) do
      local res = post(echo, ctype, '{"a":[1,2.5,"x"],"b":null}')
      assert.same(200, res.status, ctype)
      assert.same("application/json", res.headers["content-type"])
      local back = rill.json.decode(res.body).got
      assert.same({ 1, 2.5, "x" }, back.a)
      assert.equal(rill.json.null, back.b)
    end
  end)

  it("answers 400 with a short reason for a malformed body, never a traceback", function()
    for _, body in ipairs({ '{"a":', "{'a':1}", "[1,]", "nan", "NaN", "Infinity", "[" .. ("["):rep(200) }) do
      local res = post(echo, "application/json", body)
      assert.same(400, res.status, body)
      assert.matches("^malformed JSON: [^\n]+ %(request test%)\n$", res.body)
      assert.is_nil(res.body:find("traceback", 1, true))
    end
  end)

  it("answers 400 for an empty body, another type, no type or two types", function()
    local cases = {
      { "application/json", "", "^expected a JSON body, got an empty one" },
      { "text/plain", "{}", "^expected a JSON body %(Content%-Type: application/json%)" },
      { nil, "{}", "^expected a JSON body %(Content%-Type: application/json%)" },
      { { "application/json", "text/plain" }, "{}", "^expected a JSON body %(Content%-Type" },
      { "application/jsonx", "{}", "^expected a JSON body %(Content%-Type" },
    }
    for i, c in ipairs(cases) do
      local res = post(echo, c[1], c[2])
      assert.same(400, res.status, i)
      assert.matches(c[3], res.body)
    end
  end)

  it("lets the handler catch it with pcall, as any error", function()
    local res = post(function(req)
      local ok, err = pcall(req.json, req)
      return { status = ok and 200 or 422, body = ok and "" or tostring(err) }
    end, "application/json", "{")
    assert.same(422, res.status)
    assert.matches("^400 malformed JSON", res.body)
  end)
end)

describe("{ json = value }", function()
  it("replies the value as JSON with its status, keeping the handler's own headers and type", function()
    local headers = { ["x-a"] = "1" }
    local res = t.call(function() return { status = 201, json = { ok = true }, headers = headers } end)
    assert.same(201, res.status)
    assert.same("application/json", res.headers["content-type"])
    assert.same("1", res.headers["x-a"])
    assert.same({ ["x-a"] = "1" }, headers) -- not changed
    assert.same({ ok = true }, rill.json.decode(res.body))
    res = t.call(function() return { json = { 1 }, headers = { ["Content-Type"] = "application/vnd.x+json" } } end)
    assert.same("application/vnd.x+json", res.headers["content-type"])
    assert.same("[1]", res.body)
  end)

  it("fails naming the handler for a value JSON cannot hold, or json and body both", function()
    for _, res in ipairs({ { json = { f = print } }, { json = { 0 / 0 } }, { json = {}, body = "x" } }) do
      local ok, err = pcall(t.call, function() return res end)
      assert.is_false(ok)
      assert.matches("web_spec.lua:%d+: GET /: response ", err)
    end
  end)
end)

describe("req:form()", function()
  it("decodes a urlencoded body as req.query is: + and %XX, repeated names as lists", function()
    local res = post(function(req) return { json = req:form() } end, "application/x-www-form-urlencoded",
      "a=1&b=x+y%21&a=2&empty=&flag")
    assert.same({ a = { "1", "2" }, b = "x y!", empty = "", flag = "" }, rill.json.decode(res.body))
  end)

  it("answers 400 for another type (multipart included)", function()
    local res = post(function(req) return { json = req:form() } end, "multipart/form-data; boundary=x", "--x--")
    assert.same(400, res.status)
    assert.matches("^expected a form body", res.body)
  end)
end)

describe("req.cookies and rill.cookie", function()
  it("parses the Cookie header: trimmed, quoted values unquoted, %XX decoded, the first of a name kept", function()
    local res = t.call(function(req) return { json = req.cookies } end,
      { headers = { cookie = ' a=1 ; b="two" ;c=x%20y%3B; a=dup; =nameless; novalue' } })
    assert.same({ a = "1", b = "two", c = "x y;" }, rill.json.decode(res.body))
  end)

  it("gives an empty table when there is no Cookie header, and joins several", function()
    assert.same("{}", t.call(function(req) return { json = req.cookies } end).body)
    local res = t.call(function(req) return { json = req.cookies } end, { headers = { cookie = { "a=1", "b=2" } } })
    assert.same({ a = "1", b = "2" }, rill.json.decode(res.body))
  end)

  it("makes a Set-Cookie text whose every value comes back through req.cookies", function()
    for _, value in ipairs({ "plain", "with space", "semi;colon", 'quote"', "comma,", "back\\slash", "%41", "é", "" }) do
      local text = rill.cookie("k", value)
      assert.is_nil(text:find("[ ;,\"\\]", #"k=" + 1), text)
      local pair = text:match("^([^;]*)")
      local res = t.call(function(req) return req.cookies.k end, { headers = { cookie = pair } })
      assert.same(value, res.body, value)
    end
  end)

  it("writes the attributes in order", function()
    assert.same("s=v; Path=/; Domain=example.com; Max-Age=60; Expires=Thu, 01 Jan 1970 00:01:40 GMT; Secure; HttpOnly; SameSite=Strict",
      rill.cookie("s", "v", { path = "/", domain = "example.com", max_age = 60, expires = 100, secure = true,
                              http_only = true, same_site = "strict" }))
    assert.same("n=5; Max-Age=0", rill.cookie("n", 5, { max_age = 0 }))
  end)

  it("raises bad argument naming the caller's line for what a header cannot hold", function()
    local cases = {
      { "", "v" }, { "a b", "v" }, { "a;b", "v" }, { 1, "v" }, { "a", {} }, { "a", "v", "opts" },
      { "a", "v", { path = "/x;y" } }, { "a", "v", { domain = "a\r\nb" } }, { "a", "v", { max_age = 1.5 } },
      { "a", "v", { expires = "tomorrow" } }, { "a", "v", { same_site = "sometimes" } },
      { "a", "v", { same_site = "None" } }, { "a", "v", { maxage = 1 } },
    }
    for i, args in ipairs(cases) do
      local ok, err = pcall(function()
        local text = rill.cookie(table.unpack(args, 1, 3)) -- not a tail call: the line is named
        return text
      end)
      assert.is_false(ok, i)
      assert.matches("^spec/web_spec.lua:%d+: bad argument #%d to 'cookie' %(", err)
    end
  end)
end)

describe("rill.redirect", function()
  it("gives a 302 with a Location, or the status asked for", function()
    local res = t.call(function() return rill.redirect("/next?a=1") end)
    assert.same(302, res.status)
    assert.same("/next?a=1", res.headers.location)
    assert.same(308, t.call(function() return rill.redirect("https://x.example/", 308) end).status)
  end)

  it("raises bad argument for a status that is not a redirect, or a URL with a line break", function()
    for _, args in ipairs({ { "/x", 200 }, { "/x", "302" }, { "/x\r\nSet-Cookie: a=1" }, { "" }, { nil } }) do
      local ok, err = pcall(function()
        local res = rill.redirect(args[1], args[2])
        return res
      end)
      assert.is_false(ok)
      assert.matches("^spec/web_spec.lua:%d+: bad argument #%d to 'redirect'", err)
    end
  end)
end)

describe("rill.json", function()
  it("encodes and decodes, raising naming itself for what is not JSON", function()
    assert.same('{"a":[1,2]}', rill.json.encode({ a = { 1, 2 } }))
    assert.same({ a = { 1, 2 } }, rill.json.decode('{"a":[1,2]}'))
    assert.has_error(function() rill.json.decode("{") end)
    assert.has_error(function() rill.json.decode(nil) end)
    assert.has_error(function() rill.json.encode({ f = print }) end)
    local ok, err = pcall(rill.json.decode, "[1,")
    assert.is_false(ok)
    assert.matches("rill.json.decode: ", err)
  end)
end)
