-- SPDX-License-Identifier: MIT
-- Malformed and smuggling-shaped requests, as raw bytes: each gets a 4xx and
-- the connection closes, so nothing after it is taken as a request.
local test = require "rill.test"

describe("requests rill refuses", function()
  local srv
  setup(function() srv = test.server("spec/apps/core.lua") end)
  teardown(function() assert.same(0, srv:stop(), srv:log()) end)

  -- Sends bytes, reads until the server closes; returns the status codes seen and all bytes.
  local function raw(bytes)
    local data, statuses, closed = srv:exchange(bytes, 5)
    assert(closed, "the connection stayed open")
    return statuses, data
  end

  local SMUGGLED = "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"

  local cases = {
    { "two different Content-Lengths", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 30\r\n\r\nabc" .. SMUGGLED, 400 },
    { "a Content-Length with a sign", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc" .. SMUGGLED, 400 },
    { "Content-Length and Transfer-Encoding", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" .. SMUGGLED, 400 },
    { "a Transfer-Encoding other than chunked", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n" .. SMUGGLED, 400 },
    { "a space before the colon", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length : 3\r\n\r\nabc" .. SMUGGLED, 400 },
    { "a space in a header name", "GET /hello HTTP/1.1\r\nHost: x\r\nBad Key: v\r\n\r\n" .. SMUGGLED, 400 },
    { "a control character in a value", "GET /hello HTTP/1.1\r\nHost: x\r\nX-A: a\1b\r\n\r\n" .. SMUGGLED, 400 },
    { "a bare CR in a value", "GET /hello HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n" .. SMUGGLED, 400 },
    { "no Host on HTTP/1.1", "GET /hello HTTP/1.1\r\n\r\n" .. SMUGGLED, 400 },
    { "two Hosts", "GET /hello HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n" .. SMUGGLED, 400 },
    { "an obs-fold continuation line", "GET /hello HTTP/1.1\r\nHost: x\r\nX-A: one\r\n two\r\n\r\n" .. SMUGGLED, 400 },
    { "a folded Content-Length", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n 3\r\n\r\nabc" .. SMUGGLED, 400 },
    { "a NUL in a header value", "GET /hello HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n" .. SMUGGLED, 400 },
    { "a NUL in a header name", "GET /hello HTTP/1.1\r\nHost: x\r\nX\0A: v\r\n\r\n" .. SMUGGLED, 400 },
    { "a control character in the request line", "GET /a\1b HTTP/1.1\r\nHost: x\r\n\r\n" .. SMUGGLED, 400 },
    { "a bare CR ending a header line", "GET /hello HTTP/1.1\r\nHost: x\rX-A: v\r\n\r\n" .. SMUGGLED, 400 },
    { "a header line without a colon", "GET /hello HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n" .. SMUGGLED, 400 },
    { "an empty request line", "\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n" .. SMUGGLED, 400 },
    { "an absurd request line", "GET /" .. ("a"):rep(40000) .. " HTTP/1.1\r\nHost: x\r\n\r\n" .. SMUGGLED, 414 },
    { "HTTP/1.12", "GET /hello HTTP/1.12\r\nHost: x\r\n\r\n" .. SMUGGLED, 400 },
    { "a target that is not a path", "GET abc HTTP/1.1\r\nHost: x\r\n\r\n" .. SMUGGLED, 400 },
    { "an absolute-form target", "GET http://evil/hello HTTP/1.1\r\nHost: x\r\n\r\n" .. SMUGGLED, 400 },
    { "a space in the target", "GET /a b HTTP/1.1\r\nHost: x\r\n\r\n" .. SMUGGLED, 400 },
    { "an encoded .. segment", "GET /a/%2e%2e/etc HTTP/1.1\r\nHost: x\r\n\r\n" .. SMUGGLED, 400 },
    { "an encoded NUL in the path", "GET /a%00b HTTP/1.1\r\nHost: x\r\n\r\n" .. SMUGGLED, 400 },
    { "an invalid chunk size", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n" .. SMUGGLED, 400 },
    { "a chunk extension", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\n\r\n" .. SMUGGLED, 400 },
    { "a chunk size with 0x", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0x3\r\nabc\r\n0\r\n\r\n" .. SMUGGLED, 400 },
    { "a chunk size with a sign", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n+3\r\nabc\r\n0\r\n\r\n" .. SMUGGLED, 400 },
    { "a space after a chunk size", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3 \r\nabc\r\n0\r\n\r\n" .. SMUGGLED, 400 },
    { "an absurd chunk size", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nabc\r\n0\r\n\r\n" .. SMUGGLED, 400 },
    { "chunk data longer than its size", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc0\r\n\r\n" .. SMUGGLED, 400 },
    { "a bad trailer field", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nBad Key: v\r\n\r\n" .. SMUGGLED, 400 },
    -- evhttp's own answer
    { "an unknown method", "BREW /hello HTTP/1.1\r\nHost: x\r\n\r\n" .. SMUGGLED, 501 },
  }

  for _, case in ipairs(cases) do
    local name, bytes, want = case[1], case[2], case[3]
    it(("answers %s with %d, closes, and runs nothing after it"):format(name, want), function()
      local statuses = raw(bytes)
      assert.same({ want }, statuses)
    end)
  end

  it("keeps answering pipelined valid requests, in order", function()
    local statuses, data = raw("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"
      .. "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
      .. "GET /users/7 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert.same({ 200, 200, 200 }, statuses)
    local hello, echo, user = data:find("hello world\n", 1, true), data:find("abc", 1, true), data:find("user 7\n", 1, true)
    assert.is_true(hello < echo and echo < user)
  end)

  it("checks a chunked body's framing as it arrives, in pieces", function()
    local sock = srv:connect()
    sock:settimeout(5)
    sock:send("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab")
    sock:send("c\r\n2")
    sock:send(";ext\r\nde\r\n0\r\n\r\n" .. SMUGGLED)
    local data = sock:receive("*a")
    sock:close()
    assert.matches("^HTTP/1.1 400 Bad Request.*bad request: chunk extensions are not supported\n$", data)
  end)

  it("passes a valid chunked body with trailers", function()
    local statuses, data = raw("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
      .. "3\r\nabc\r\n2\r\nde\r\n0\r\nX-Sum: 5\r\n\r\n"
      .. "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert.same({ 200, 200 }, statuses)
    assert.matches("\r\n\r\nabcdeHTTP/1.1 200", data)
  end)

  it("answers a bad head behind a valid pipelined request after that request's reply", function()
    local statuses, data = raw("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"
      .. "GET /hello HTTP/1.1\r\nHost: x\r\nX-A: one\r\n two\r\n\r\n" .. SMUGGLED)
    assert.same({ 200, 400 }, statuses)
    assert.matches("hello world\n.*bad request: obsolete line folding", data)
  end)

  it("never shows a client a traceback or a path", function()
    local _, data = raw("GET /error HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert.matches("HTTP/1.1 500", data)
    assert.is_nil(data:find("traceback", 1, true))
    assert.is_nil(data:find(".lua", 1, true))
    assert.is_truthy(srv:wait_log("stack traceback"))
  end)
end)
