-- SPDX-License-Identifier: MIT
-- Every ```lua block of docs/*.md and README.md is exercised here.
--
-- A block must compile, unless the line right before its fence is
-- <!-- fragment --> (then it must not compile: the mark stays honest).
-- A block whose first line names a Lua file ("-- app.lua", "-- feed.lua: ...")
-- is an app: it is written to a temporary file, started with rill.test, and
-- must answer each request listed right before its fence as
--   <!-- spec: GET /hello/ada => hello ada -->
-- with a body containing the text after "=>". A spec example (first line
-- "-- spec/x_spec.lua", or a line starting with "describe(") only compiles.
-- A block marked <!-- example: examples/x.lua --> must be that file, byte
-- for byte (spec/examples_spec.lua runs the file); one marked
-- <!-- spec-file: spec/x_spec.lua --> must be that spec, which busted runs.
local rill = require "rill"
local t = require "rill.test"

local TIMEOUT = tonumber(os.getenv("RILL_TEST_TIMEOUT")) or 10

---------------------------------------------------------------------------
-- Extraction and checks: pure functions, so the checker is tested too.

-- One HTML comment line → a mark: { fragment = true }, { spec = {...} },
-- { bad = message } for a malformed spec line, or nil for other lines.
local function parse_mark(line)
  local body = line:match("^%s*<!%-%-%s*(.-)%s*%-%->%s*$")
  if not body then
    return nil
  end
  if body == "fragment" then
    return { fragment = true }
  end
  if body:match("^example:") then
    local path = body:match("^example:%s*(examples/[%w_%-]+%.lua)$")
    if not path then
      return { bad = "malformed mark '" .. body .. "' (want 'example: examples/name.lua')" }
    end
    return { example = path }
  end
  if body:match("^spec%-file:") then
    local path = body:match("^spec%-file:%s*(spec/[%w_%-]+_spec%.lua)$")
    if not path then
      return { bad = "malformed mark '" .. body .. "' (want 'spec-file: spec/name_spec.lua')" }
    end
    return { spec_file = path }
  end
  if body:match("^spec:") then
    local method, path, expect = body:match("^spec:%s*(%u+)%s+(/%S*)%s+=>%s*(.-)$")
    if not method or expect == "" then
      return { bad = "malformed mark '" .. body .. "' (want 'spec: GET /path => text')" }
    end
    return { spec = { method = method, path = path, expect = expect } }
  end
  return { other = true }
end

local function new_marks()
  return { fragment = false, specs = {}, line = nil, example = nil, spec_file = nil }
end

local function has_marks(marks)
  return marks.fragment or #marks.specs > 0 or marks.example ~= nil or marks.spec_file ~= nil
end

-- What a block is: "spec" (a busted example), "app" (a whole app), or "code".
local function classify(lines)
  local first = lines[1] or ""
  if first:match("^%-%-%s*[%w_/%-][%w_/%.%-]*_spec%.lua") then
    return "spec"
  end
  for _, l in ipairs(lines) do
    if l:match("^describe%(") then
      return "spec"
    end
  end
  if first:match("^%-%-%s*[%w_/%-][%w_/%.%-]*%.lua$") or first:match("^%-%-%s*[%w_/%-][%w_/%.%-]*%.lua[%s:,]") then
    return "app"
  end
  return "code"
end

-- Splits markdown text into its ```lua blocks; returns blocks, problems.
-- A block: { file, line (of the fence), code, lines, kind, marks }.
local function extract(text, file)
  local blocks, problems = {}, {}
  local marks, open, n = new_marks(), nil, 0
  local function problem(line, msg)
    problems[#problems + 1] = ("%s:%d: %s"):format(file, line, msg)
  end
  if text:sub(-1) ~= "\n" then
    text = text .. "\n"
  end
  for line in text:gmatch("(.-)\n") do
    n = n + 1
    if open then
      if line:match("^%s*```%s*$") then
        if open.lang == "lua" then
          open.code = table.concat(open.lines, "\n") .. "\n"
          open.kind = classify(open.lines)
          blocks[#blocks + 1] = open
        end
        open = nil
      else
        open.lines[#open.lines + 1] = line
      end
    else
      local lang = line:match("^%s*```%s*([%w_+%-]*)%s*$")
      local mark = not lang and parse_mark(line)
      if lang then
        if lang ~= "lua" and has_marks(marks) then
          problem(n, "a fragment or spec mark before a block that is not ```lua")
        end
        open = { file = file, line = n, lang = lang, lines = {}, marks = marks }
        marks = new_marks()
      elseif mark then
        if mark.bad then
          problem(n, mark.bad)
        elseif mark.fragment then
          marks.fragment = true
        elseif mark.spec then
          marks.specs[#marks.specs + 1] = mark.spec
        elseif mark.example then
          marks.example = mark.example
        elseif mark.spec_file then
          marks.spec_file = mark.spec_file
        end
      else
        if has_marks(marks) then
          problem(n - 1, "a fragment or spec mark not right before a ```lua fence")
        end
        marks = new_marks()
      end
    end
  end
  if open then
    problem(open.line, "a code block that never closes")
  end
  if has_marks(marks) then
    problem(n, "a fragment or spec mark at the end of the file")
  end
  for _, b in ipairs(blocks) do
    if #b.marks.specs > 0 and b.kind ~= "app" then
      problem(b.line, "spec: lines on a block that is not an app (first line '-- name.lua')")
    end
    if b.marks.fragment and b.kind == "app" then
      problem(b.line, "an app block marked as a fragment")
    end
    if b.marks.spec_file and b.kind ~= "spec" then
      problem(b.line, "a spec-file mark on a block that is not a busted spec")
    end
  end
  return blocks, problems
end

-- nil when the block is fine as far as compiling goes, else why not.
local function compile_problem(block)
  local fn, err = load(block.code, "=" .. block.file .. ":" .. block.line, "t", {})
  if block.marks.fragment then
    if fn then
      return "marked <!-- fragment --> but compiles: remove the mark"
    end
    return nil
  end
  if not fn then
    return err .. " (a block that cannot compile alone needs <!-- fragment --> right before its fence)"
  end
  return nil
end

-- nil when an app block lists requests to check, else why not.
local function app_problem(block)
  if block.kind == "app" and #block.marks.specs == 0 then
    return "an app block with no <!-- spec: METHOD /path => text --> line before its fence"
  end
  return nil
end

-- Sends spec's request; reads until the expected text arrives, the body ends
-- or the time is up (so an endless stream can be checked too).
local function fetch(srv, spec)
  local s <close> = srv:open(spec.path, { method = spec.method, timeout = TIMEOUT })
  local body, deadline = "", rill.now() + TIMEOUT
  while not body:find(spec.expect, 1, true) do
    local left = deadline - rill.now()
    if left <= 0 then
      break
    end
    local chunk = s:chunk(left)
    if not chunk then
      break
    end
    body = body .. chunk
  end
  return s.status, body
end

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local text = f:read("a")
  f:close()
  return text
end

local function markdown_files()
  local files = {}
  local p = assert(io.popen("ls docs/*.md 2>/dev/null"))
  for f in p:lines() do
    files[#files + 1] = f
  end
  p:close()
  table.sort(files)
  files[#files + 1] = "README.md"
  return files
end

---------------------------------------------------------------------------
-- The checker checks what it should.

describe("the docs checker", function()
  local function only_block(md)
    local blocks, problems = extract(md, "test.md")
    assert.same(1, #blocks)
    return blocks[1], problems
  end

  it("rejects a block that neither compiles nor is marked as a fragment", function()
    local b = only_block("text\n\n```lua\n[\"GET /x\"] = handler,\n```\n")
    assert.matches("needs <!%-%- fragment %-%->", compile_problem(b))
  end)

  it("accepts that block once marked as a fragment, and rejects the mark on a whole chunk", function()
    local b = only_block("<!-- fragment -->\n```lua\n[\"GET /x\"] = handler,\n```\n")
    assert.is_nil(compile_problem(b))
    b = only_block("<!-- fragment -->\n```lua\nreturn 1\n```\n")
    assert.matches("but compiles", compile_problem(b))
  end)

  it("takes a block named after a Lua file as an app, with its spec lines", function()
    local b, problems = only_block("<!-- spec: GET /hi/ada => hi ada -->\n"
      .. "<!-- spec: POST /x => ok -->\n```lua\n-- app.lua: rill app.lua\nreturn function() end\n```\n")
    assert.same({}, problems)
    assert.same("app", b.kind)
    assert.same({ { method = "GET", path = "/hi/ada", expect = "hi ada" },
      { method = "POST", path = "/x", expect = "ok" } }, b.marks.specs)
  end)

  it("rejects an app block that lists no request to check", function()
    local b = only_block("```lua\n-- app.lua\nreturn function() end\n```\n")
    assert.matches("no <!%-%- spec:", app_problem(b))
  end)

  it("takes busted examples as specs that only compile", function()
    assert.same("spec", only_block("```lua\n-- spec/app_spec.lua\nlocal t = 1\n```\n").kind)
    assert.same("spec", only_block("```lua\ndescribe(\"x\", function() end)\n```\n").kind)
    assert.same("code", only_block("```lua\nlocal x = 1\n```\n").kind)
  end)

  it("takes an example mark naming a file of examples/", function()
    local b, problems = only_block("<!-- example: examples/hello.lua -->\n```lua\nreturn 1\n```\n")
    assert.same({}, problems)
    assert.same("examples/hello.lua", b.marks.example)
    local _, bad = extract("<!-- example: elsewhere/x.lua -->\n```lua\nreturn 1\n```\n", "test.md")
    assert.matches("malformed mark", bad[1])
  end)

  it("takes a spec-file mark naming a spec of spec/, on a spec block only", function()
    local b, problems = only_block("<!-- spec-file: spec/x_spec.lua -->\n```lua\ndescribe(\"x\", function() end)\n```\n")
    assert.same({}, problems)
    assert.same("spec/x_spec.lua", b.marks.spec_file)
    local _, bad = extract("<!-- spec-file: x.lua -->\n```lua\nreturn 1\n```\n", "test.md")
    assert.matches("malformed mark", bad[1])
    _, bad = extract("<!-- spec-file: spec/x_spec.lua -->\n```lua\nreturn 1\n```\n", "test.md")
    assert.matches("not a busted spec", bad[1])
  end)

  it("reports marks that are malformed or not right before a lua fence", function()
    local _, problems = extract("<!-- spec: GET nopath -->\n```lua\nx = 1\n```\n"
      .. "<!-- fragment -->\n\n```lua\nx = 1\n```\n"
      .. "<!-- spec: GET / => a -->\n```sh\nls\n```\n"
      .. "<!-- spec: GET / => a -->\n```lua\nx = 1\n```\n", "test.md")
    assert.same(4, #problems)
    assert.matches("malformed mark", problems[1])
    assert.matches("not right before", problems[2])
    assert.matches("not ```lua", problems[3])
    assert.matches("not an app", problems[4])
  end)
end)

---------------------------------------------------------------------------
-- The docs themselves.

local files = markdown_files()
local all_blocks, all_problems, per_file = {}, {}, {}
for _, file in ipairs(files) do
  local blocks, problems = extract(read_file(file), file)
  per_file[file] = #blocks
  for _, b in ipairs(blocks) do
    all_blocks[#all_blocks + 1] = b
  end
  for _, p in ipairs(problems) do
    all_problems[#all_problems + 1] = p
  end
end

describe("the Lua blocks of the docs and the README", function()
  it("are found in the README and in the docs pages", function()
    assert.is_true(#files >= 2, "no docs/*.md found")
    assert.is_true(per_file["README.md"] >= 1, "no ```lua block in README.md")
    local in_docs = #all_blocks - per_file["README.md"]
    assert.is_true(in_docs >= 1, "no ```lua block in docs/*.md")
  end)

  it("carry well-formed marks, each right before a lua fence", function()
    assert.same({}, all_problems)
  end)

  for _, block in ipairs(all_blocks) do
    local where = ("%s:%d (%s)"):format(block.file, block.line, block.kind)
    describe(where, function()
      if block.marks.fragment then
        it("is marked as a fragment and does not compile on its own", function()
          assert.is_nil(compile_problem(block))
        end)
      else
        it("compiles", function()
          local problem = compile_problem(block)
          assert.is_nil(problem, problem)
        end)
      end

      if block.marks.example then
        it("is " .. block.marks.example .. " as it stands, which the examples spec runs", function()
          assert.same(read_file(block.marks.example), block.code)
          local name = block.marks.example:match("[^/]+$")
          assert.is_truthy(read_file("spec/examples_spec.lua"):find(name, 1, true))
        end)
      end

      if block.marks.spec_file then
        it("is " .. block.marks.spec_file .. " as it stands, which busted runs", function()
          assert.same(read_file(block.marks.spec_file), block.code)
        end)
      end

      if block.kind == "app" then
        it("lists at least one request to check", function()
          local problem = app_problem(block)
          assert.is_nil(problem, problem)
        end)

        if #block.marks.specs > 0 then
          describe("served by rill", function()
            local path, srv
            setup(function()
              path = os.tmpname()
              local f = assert(io.open(path, "w"))
              f:write(block.code)
              f:close()
              srv = t.server(path)
            end)
            teardown(function()
              os.remove(path)
              if srv then -- else setup failed, and said why
                local status = srv:stop()
                assert.same(0, status, srv:log())
              end
            end)

            for _, spec in ipairs(block.marks.specs) do
              it(("answers %s %s with a body containing '%s'"):format(spec.method, spec.path, spec.expect), function()
                local status, body = fetch(srv, spec)
                assert.is_truthy(body:find(spec.expect, 1, true),
                  ("%s %s: status %s, body:\n%s\nlog:\n%s"):format(spec.method, spec.path,
                    tostring(status), body, srv:log()))
              end)
            end
          end)
        end
      end
    end)
  end
end)
