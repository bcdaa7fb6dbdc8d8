-- SPDX-License-Identifier: MIT
-- A request-smuggling mutation generator of the project's own, after the
-- classes public scanners try (Transfer-Encoding obfuscations, CL/TE
-- permutations, whitespace and case in names, duplicate and folded headers,
-- bare LF/CR line ends, chunk-size tricks, methods that may carry a body).
--
-- Each case is one mutated request that carries a complete
--   GET /smuggled HTTP/1.1
-- where only a misreading of its framing would take it for a request, then
-- a last request (GET /string, Connection: close). The server must either
-- refuse (exactly one 4xx/5xx, not a 408, and close) or frame it exactly one
-- way (a 2xx, then the last request's "hello", or a 2xx and a close), and
-- /smuggled must never run (spec/apps/framing.lua counts its hits). A
-- mutation that RFC 9110/9112 (or rill's contract: DESIGN.md "Limits and
-- defence") makes invalid is marked MUST_REFUSE: reading it any way at all
-- is a second way, since a proxy in front may read it another. One that is
-- plainly valid (case, optional whitespace, leading zeros) is MUST_ACCEPT
-- where it carries the only framing header: refusing it is a bug too.
local test = require "rill.test"

local SMUG = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
local LAST = "GET /string HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
local TIMEOUT = tonumber(os.getenv("RILL_TEST_TIMEOUT")) or 10
local MUST_REFUSE, MUST_ACCEPT = "refuse", "accept"

local function cl(n) return ("Content-Length: %d\r\n"):format(n) end

-- A chunked body whose one chunk is the smuggled request.
local function chunk_of(data, size_line)
  return (size_line or ("%x"):format(#data)) .. "\r\n" .. data .. "\r\n0\r\n\r\n"
end

local function request(method, lines, body)
  return method .. " /echo HTTP/1.1\r\nHost: x\r\n" .. table.concat(lines) .. "\r\n" .. body
end

---------------------------------------------------------------------------
-- Mutations of the Transfer-Encoding header: each is the raw header lines
-- (terminators included) standing for "Transfer-Encoding: chunked".

local te_mutations = {}
local function te(name, lines, want) te_mutations[#te_mutations + 1] = { name = name, lines = lines, want = want } end
local function te_value(name, value, want) te(name, { "Transfer-Encoding: " .. value .. "\r\n" }, want) end
local function te_name(name, field, want) te(name, { field .. ": chunked\r\n" }, want) end

te_value("plain chunked", "chunked", MUST_ACCEPT)
te_value("Chunked", "Chunked", MUST_ACCEPT)
te_value("CHUNKED", "CHUNKED", MUST_ACCEPT)
te_value("cHuNkEd", "cHuNkEd", MUST_ACCEPT)
te_value("a leading space", " chunked", MUST_ACCEPT)
-- A tab before the value is optional whitespace to RFC 9110, but evhttp skips
-- only spaces there, so it would not read "\tchunked" as chunked while a proxy
-- in front would: rill refuses it (docs/running.md, "Malformed requests").
te_value("a leading tab", "\tchunked", MUST_REFUSE)
te_value("a trailing space", "chunked ", MUST_ACCEPT)
te_value("a trailing tab", "chunked\t", MUST_ACCEPT)
te_value("six trailing spaces", "chunked      ", MUST_ACCEPT)
te_value("ten trailing spaces", "chunked          ", MUST_ACCEPT)
te_value("trailing tabs", "chunked\t\t\t\t\t\t", MUST_ACCEPT)
te_value("spaces and tabs mixed around", " \t chunked \t ", MUST_REFUSE)
te_value("chunked, identity", "chunked, identity", MUST_REFUSE)
te_value("identity, chunked", "identity, chunked", MUST_REFUSE)
te_value("gzip, chunked", "gzip, chunked", MUST_REFUSE)
te_value("chunked, chunked", "chunked, chunked", MUST_REFUSE)
te_value("a trailing comma", "chunked,")
te_value("a leading comma", ",chunked")
te_value("a parameter", "chunked;q=1", MUST_REFUSE)
te_value("xchunked", "xchunked", MUST_REFUSE)
te_value("chunkedx", "chunkedx", MUST_REFUSE)
te_value("chunk", "chunk", MUST_REFUSE)
te_value("double-quoted", '"chunked"', MUST_REFUSE)
te_value("single-quoted", "'chunked'", MUST_REFUSE)
te_value("a space inside", "chun ked", MUST_REFUSE)
te_value("a tab inside", "chun\tked", MUST_REFUSE)
te_value("a NUL after", "chunked\0", MUST_REFUSE)
te_value("a NUL before", "\0chunked", MUST_REFUSE)
te_value("a control character after", "chunked\1", MUST_REFUSE)
te_value("a vertical tab before", "\vchunked", MUST_REFUSE)
te_value("a vertical tab after", "chunked\v", MUST_REFUSE)
te_value("a form feed before", "\fchunked", MUST_REFUSE)
te_value("a backslash", "chunked\\", MUST_REFUSE)
te_value("a byte past ASCII", "chunked\xff", MUST_REFUSE)
te_value("identity", "identity", MUST_REFUSE)
te_value("empty", "", MUST_REFUSE)
te_name("a lower-case name", "transfer-encoding", MUST_ACCEPT)
te_name("an upper-case name", "TRANSFER-ENCODING", MUST_ACCEPT)
te_name("a space before the colon", "Transfer-Encoding ", MUST_REFUSE)
te_name("a tab before the colon", "Transfer-Encoding\t", MUST_REFUSE)
te_name("a leading space on the name", " Transfer-Encoding", MUST_REFUSE)
te_name("a leading tab on the name", "\tTransfer-Encoding", MUST_REFUSE)
te_name("a vertical tab in the name", "Transfer-Encoding\v", MUST_REFUSE)
te_name("a NUL in the name", "Transfer\0-Encoding", MUST_REFUSE)
te("no space after the colon", { "Transfer-Encoding:chunked\r\n" }, MUST_ACCEPT)
te("a tab right after the colon", { "Transfer-Encoding:\tchunked\r\n" }, MUST_REFUSE)
te("a folded value", { "Transfer-Encoding:\r\n chunked\r\n" }, MUST_REFUSE)
te("a folded second value", { "Transfer-Encoding: identity\r\n chunked\r\n" }, MUST_REFUSE)
te("a fold after the value", { "Transfer-Encoding: chunked\r\n x\r\n" }, MUST_REFUSE)
te("a fold with a tab", { "Transfer-Encoding:\r\n\tchunked\r\n" }, MUST_REFUSE)
te("two chunked headers", { "Transfer-Encoding: chunked\r\n", "Transfer-Encoding: chunked\r\n" }, MUST_REFUSE)
te("identity, then chunked", { "Transfer-Encoding: identity\r\n", "Transfer-Encoding: chunked\r\n" }, MUST_REFUSE)
te("chunked, then identity", { "Transfer-Encoding: chunked\r\n", "Transfer-Encoding: identity\r\n" }, MUST_REFUSE)
te("chunked, then an empty one", { "Transfer-Encoding: chunked\r\n", "Transfer-Encoding: \r\n" })
te("a bare LF ending it", { "Transfer-Encoding: chunked\n" })
te("a bare CR ending it", { "Transfer-Encoding: chunked\rX-Pad: 1\r\n" }, MUST_REFUSE)
te("a bare CR inside", { "Transfer-Encoding: chunked\r x\r\n" }, MUST_REFUSE)

-- Where the smuggled request sits, for a TE mutation. Each puts it where a
-- correct reading of the framing sees body bytes.
local te_positions = {
  { name = "CL.TE (Content-Length covers it, a zero chunk before it)", build = function(method, lines)
    local body = "0\r\n\r\n" .. SMUG
    local all = { cl(#body) }
    for _, l in ipairs(lines) do all[#all + 1] = l end
    return request(method, all, body)
  end },
  { name = "TE.CL (a chunk covers it, Content-Length stops before it)", build = function(method, lines)
    local size = ("%x"):format(#SMUG)
    local all = {}
    for _, l in ipairs(lines) do all[#all + 1] = l end
    all[#all + 1] = cl(#size + 2)
    return request(method, all, chunk_of(SMUG))
  end },
  { name = "TE only, inside a chunk", only = true, build = function(method, lines)
    return request(method, lines, chunk_of(SMUG))
  end },
  { name = "TE only, as the raw body", build = function(method, lines)
    return request(method, lines, SMUG)
  end },
}

---------------------------------------------------------------------------
-- Mutations of Content-Length, the smuggled request being the whole body:
-- a server that ignores or misreads the length runs it.

local cl_mutations = {}
local function clm(name, lines_of, want) cl_mutations[#cl_mutations + 1] = { name = name, lines = lines_of, want = want } end
local function cl_value(name, fmt, want)
  clm(name, function(n) return { "Content-Length: " .. fmt:format(n, n) .. "\r\n" } end, want)
end
local function cl_name(name, field, want) clm(name, function(n) return { ("%s: %d\r\n"):format(field, n) } end, want) end

cl_value("plain", "%d", MUST_ACCEPT)
cl_value("a plus sign", "+%d", MUST_REFUSE)
cl_value("a minus sign", "-%d", MUST_REFUSE)
cl_value("a leading space", " %d", MUST_ACCEPT)
cl_value("a trailing space", "%d ", MUST_ACCEPT)
cl_value("a leading tab", "\t%d", MUST_ACCEPT)
cl_value("a trailing tab", "%d\t", MUST_ACCEPT)
cl_value("a leading zero", "0%d", MUST_ACCEPT)
cl_value("leading zeros", "0000000%d", MUST_ACCEPT)
cl_value("a decimal point", "%d.0", MUST_REFUSE)
cl_value("an exponent", "%de0", MUST_REFUSE)
cl_value("a list of the same value", "%d, %d")
cl_value("a list with 0", "0, %d", MUST_REFUSE)
cl_value("a list with 0 last", "%d, 0", MUST_REFUSE)
cl_value("a trailing comma", "%d,")
cl_value("hex", "0x%x", MUST_REFUSE)
cl_value("a space inside the digits", "%d 0", MUST_REFUSE)
cl_value("trailing junk", "%d abc", MUST_REFUSE)
cl_value("a NUL after", "%d\0", MUST_REFUSE)
cl_value("a control character after", "%d\1", MUST_REFUSE)
cl_value("a vertical tab before", "\v%d", MUST_REFUSE)
cl_value("quoted", '"%d"', MUST_REFUSE)
clm("not a number", function() return { "Content-Length: abc\r\n" } end, MUST_REFUSE)
clm("empty", function() return { "Content-Length: \r\n" } end, MUST_REFUSE)
clm("2^64, which wraps to 0", function() return { "Content-Length: 18446744073709551616\r\n" } end, MUST_REFUSE)
clm("2^64 plus the length", function(n) return { ("Content-Length: 184467440737095516%02d\r\n"):format(16 + n) } end, MUST_REFUSE)
clm("huge", function() return { "Content-Length: 99999999999999999999999999\r\n" } end, MUST_REFUSE)
cl_name("a lower-case name", "content-length", MUST_ACCEPT)
cl_name("an upper-case name", "CONTENT-LENGTH", MUST_ACCEPT)
cl_name("a space before the colon", "Content-Length ", MUST_REFUSE)
cl_name("a tab before the colon", "Content-Length\t", MUST_REFUSE)
cl_name("a leading space on the name", " Content-Length", MUST_REFUSE)
cl_name("a leading tab on the name", "\tContent-Length", MUST_REFUSE)
cl_name("a vertical tab in the name", "Content\v-Length", MUST_REFUSE)
clm("no space after the colon", function(n) return { ("Content-Length:%d\r\n"):format(n) } end, MUST_ACCEPT)
clm("a tab right after the colon", function(n) return { ("Content-Length:\t%d\r\n"):format(n) } end, MUST_ACCEPT)
clm("twice, equal", function(n) return { cl(n), cl(n) } end)
clm("0, then the length", function(n) return { cl(0), cl(n) } end, MUST_REFUSE)
clm("the length, then 0", function(n) return { cl(n), cl(0) } end, MUST_REFUSE)
clm("twice, one lower-case", function(n) return { cl(0), ("content-length: %d\r\n"):format(n) } end, MUST_REFUSE)
clm("a folded value", function(n) return { ("Content-Length:\r\n %d\r\n"):format(n) } end, MUST_REFUSE)
clm("0 with the length folded after", function(n) return { ("Content-Length: 0\r\n %d\r\n"):format(n) } end, MUST_REFUSE)
clm("as the fold of another header", function(n) return { "X-Pad: a\r\n", (" Content-Length: %d\r\n"):format(n) } end, MUST_REFUSE)
clm("a bare LF ending it", function(n) return { ("Content-Length: %d\n"):format(n) } end)
clm("a bare CR ending it", function(n) return { ("Content-Length: %d\rX-Pad: 1\r\n"):format(n) } end, MUST_REFUSE)
clm("a bare CR before it", function(n) return { "X-Pad: 1\r" .. cl(n) } end, MUST_REFUSE)
clm("with an obfuscated TE after it", function(n) return { cl(n), "Transfer-Encoding : chunked\r\n" } end, MUST_REFUSE)

---------------------------------------------------------------------------
-- Whole-request line-end mutations, with a Content-Length body.

local line_mutations = {
  { "every line ending in a bare LF", function(body)
    return "POST /echo HTTP/1.1\nHost: x\nContent-Length: " .. #body .. "\n\n" .. body
  end },
  { "the request line ending in a bare LF", function(body)
    return "POST /echo HTTP/1.1\nHost: x\r\nContent-Length: " .. #body .. "\r\n\r\n" .. body
  end },
  { "the blank line a bare LF", function(body)
    return "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: " .. #body .. "\r\n\n" .. body
  end },
  { "the blank line LF CR LF", function(body)
    return "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: " .. #body .. "\n\r\n" .. body
  end },
  { "the blank line CR CR LF", want = MUST_REFUSE, function(body)
    return "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: " .. #body .. "\r\n\r\r\n" .. body
  end },
  { "every line ending in a bare CR", want = MUST_REFUSE, function(body)
    return "POST /echo HTTP/1.1\rHost: x\rContent-Length: " .. #body .. "\r\r" .. body
  end },
  { "a header line ending in CR CR LF", want = MUST_REFUSE, function(body)
    return "POST /echo HTTP/1.1\r\nHost: x\r\r\nContent-Length: " .. #body .. "\r\n\r\n" .. body
  end },
  { "a space before the request line's CRLF", want = MUST_REFUSE, function(body)
    return "POST /echo HTTP/1.1 \r\nHost: x\r\nContent-Length: " .. #body .. "\r\n\r\n" .. body
  end },
}

---------------------------------------------------------------------------
-- Chunk-size mutations: the smuggled request is the data of one chunk
-- whose size line is mutated (under a plain and a space-padded TE).

local size = ("%x"):format(#SMUG)
local R, A = MUST_REFUSE, MUST_ACCEPT
local chunk_sizes = {
  { "upper-case hex", size:upper(), A }, { "a leading zero", "0" .. size, A }, { "leading zeros", "000000" .. size, A },
  { "a trailing space", size .. " ", R }, { "a trailing tab", size .. "\t", R }, { "a leading space", " " .. size, R },
  { "0x", "0x" .. size, R }, { "a plus sign", "+" .. size, R }, { "a minus sign", "-" .. size, R },
  { "an extension (valid, which rill may refuse)", size .. ";x=y" }, { "an empty extension", size .. ";", R },
  { "junk after", size .. " junk", R },
  { "2^64, which wraps to 0", "1" .. ("0"):rep(16), R }, { "2^64 plus the size", "1" .. ("0"):rep(16 - #size) .. size, R },
  { "a NUL after", size .. "\0", R },
  { "a bare LF after", size .. "\n" .. SMUG .. "\r\n0\r\n\r\n", raw = true },
  { "no CRLF after the data", size .. "\r\n" .. SMUG .. "0\r\n\r\n", R, raw = true },
  { "data longer than the size", ("%x"):format(#SMUG - 10) .. "\r\n" .. SMUG .. "\r\n0\r\n\r\n", R, raw = true },
  { "a last chunk with a bare LF", size .. "\r\n" .. SMUG .. "\r\n0\n\n", raw = true },
}

---------------------------------------------------------------------------
-- Methods whose body evhttp may not read, with a body by length and by chunks.

local methods = { "HEAD", "GET", "OPTIONS", "DELETE", "TRACE", "PUT", "PATCH" }
local method_framings = {
  { "a Content-Length body", function(m) return request(m, { cl(#SMUG) }, SMUG) end },
  { "a chunked body", function(m) return request(m, { "Transfer-Encoding: chunked\r\n" }, chunk_of(SMUG)) end },
}

---------------------------------------------------------------------------
-- The generated cases: { class, name, bytes }.

local cases = {}
local function add(class, name, bytes, want)
  cases[#cases + 1] = { class = class, name = name, bytes = bytes, want = want }
end

for _, m in ipairs(te_mutations) do
  for _, pos in ipairs(te_positions) do
    -- beside a Content-Length, a valid TE may be refused (rill does)
    local want = m.want
    if want == MUST_ACCEPT and not pos.only then want = nil end
    add("Transfer-Encoding", m.name .. " — " .. pos.name, pos.build("POST", m.lines), want)
  end
end
for _, m in ipairs(cl_mutations) do
  add("Content-Length", m.name .. " — the body is the smuggled request", request("POST", m.lines(#SMUG), SMUG), m.want)
end
for _, m in ipairs(line_mutations) do
  add("line ends", m[1] .. " — the body is the smuggled request", m[2](SMUG), m.want)
end
for _, s in ipairs(chunk_sizes) do
  local body = s.raw and s[2] or chunk_of(SMUG, s[2])
  add("chunk size", s[1] .. " — under Transfer-Encoding: chunked",
    request("POST", { "Transfer-Encoding: chunked\r\n" }, body), s[3])
  add("chunk size", s[1] .. " — under Transfer-Encoding: chunked and six spaces",
    request("POST", { "Transfer-Encoding: chunked      \r\n" }, body), s[3])
end
for _, m in ipairs(methods) do
  for _, f in ipairs(method_framings) do
    add("method with a body", m .. " with " .. f[1], f[2](m))
  end
  add("method with a body", m .. " with Content-Length and Transfer-Encoding",
    request(m, { cl(5 + #SMUG), "Transfer-Encoding: chunked\r\n" }, "0\r\n\r\n" .. SMUG), MUST_REFUSE)
end

---------------------------------------------------------------------------

-- What the server did with a case's bytes: nil when it refused or framed
-- them exactly one way, else what went wrong.
local function verdict(data, statuses, closed, ran, want)
  local problems = {}
  if ran then problems[#problems + 1] = "/smuggled RAN" end
  if not closed then problems[#problems + 1] = "the connection stayed open" end
  local first = statuses[1]
  local refused = #statuses == 1 and first >= 400 and first ~= 408
  local ok2xx = first ~= nil and first >= 200 and first < 300
  local framed = ok2xx and ((#statuses == 2 and statuses[2] == 200 and data:sub(-6) == "hello\n")
    or (#statuses == 1 and closed))
  local got = #statuses == 0 and "none" or table.concat(statuses, ", ")
  if want == MUST_REFUSE and not refused then
    problems[#problems + 1] = ("responses %s (want one refusal: the request is invalid)"):format(got)
  elseif want == MUST_ACCEPT and not framed then
    problems[#problems + 1] = ("responses %s (want a 2xx then the last request's 200: the request is valid)"):format(got)
  elseif not (refused or framed) then
    problems[#problems + 1] = ("responses %s (want one refusal, or a 2xx then the last request's 200)"):format(got)
  end
  if first == 408 then problems[#problems + 1] = "408: the server waited for bytes its framing should not need" end
  if #problems == 0 then return nil end
  return table.concat(problems, "; ")
end

describe("smuggling mutations", function()
  local srv, count
  setup(function()
    -- a short request timeout: a mutation the server misreads as "more to
    -- come" ends in a 408 (a failure) instead of a hang
    srv = test.server("spec/apps/framing.lua", { args = { "--request-timeout", "2" } })
    count = 0
  end)
  teardown(function() assert.same(0, srv:stop(), srv:log()) end)

  local function smuggled_count()
    return tonumber(srv:get("/smuggled-count").body)
  end

  it("generates a few hundred cases", function()
    assert.is_true(#cases >= 250 and #cases <= 600, #cases .. " cases")
  end)

  -- the harness itself: a request that is plainly pipelined does run, and
  -- the verdict sees it; a plainly framed body passes
  it("sees a smuggled request that runs, and passes one framed as a body", function()
    local data, statuses, closed = srv:exchange(request("POST", { cl(3) }, "abc") .. SMUG .. LAST, TIMEOUT)
    local now = smuggled_count()
    assert.same(count + 1, now)
    count = now
    assert.matches("/smuggled RAN", verdict(data, statuses, closed, true))
    data, statuses, closed = srv:exchange(request("POST", { cl(#SMUG) }, SMUG) .. LAST, TIMEOUT)
    assert.same(count, smuggled_count())
    assert.is_nil(verdict(data, statuses, closed, false, MUST_ACCEPT))
    assert.matches("got " .. #SMUG .. "\n", data)
  end)

  -- every case twice: on a route whose body evhttp reads, and on one whose body the gate reads
  -- itself (rill.streamed_body): both must frame each request the same one way
  for _, target in ipairs({ "/echo", "/stream-echo" }) do
  for i, case in ipairs(cases) do
    local title = case.name:gsub("%c", "?")
    local want = case.want == MUST_REFUSE and "refused" or case.want == MUST_ACCEPT and "served" or "refused or framed once"
    local bytes = case.bytes:gsub(" /echo HTTP", " " .. target .. " HTTP")
    it(("[%s%s] %s: %s, /smuggled never runs (#%d)"):format(case.class, target == "/echo" and "" or ", streamed",
      title, want, i), function()
      local data, statuses, closed = srv:exchange(bytes .. LAST, TIMEOUT)
      local now = smuggled_count()
      local ran = now ~= count
      count = now
      local problem = verdict(data, statuses, closed, ran, case.want)
      assert(problem == nil, ("[%s] %s %s: %s"):format(case.class, target, title, problem))
    end)
  end
  end

  it("keeps serving after every mutation", function()
    assert.same("hello\n", srv:get("/string").body)
  end)
end)
