-- SPDX-License-Identifier: MIT
-- Behaviour of rill.router, exercised in-process with fake requests.

local router = require "rill.router"

local function req(method, path)
  return { method = method, path = path }
end

-- A handler that reports which route ran, so tests can see the winner.
local function tag(name)
  return function() return name end
end

local function echo_params(r)
  return r.params
end

-- Every ordering of a list, to show precedence ignores insertion order.
local function permutations(list)
  local out = {}
  local function permute(arr, n)
    if n <= 1 then
      out[#out + 1] = table.move(arr, 1, #arr, 1, {})
      return
    end
    for i = 1, n do
      arr[i], arr[n] = arr[n], arr[i]
      permute(arr, n - 1)
      arr[i], arr[n] = arr[n], arr[i]
    end
  end
  permute(table.move(list, 1, #list, 1, {}), #list)
  return out
end

describe("rill.router", function()
  describe("static routes", function()
    it("calls the handler of a route whose path matches exactly", function()
      local app = router.new { ["GET /"] = tag("home"), ["GET /about"] = tag("about") }
      assert.are.equal("home", app(req("GET", "/")))
      assert.are.equal("about", app(req("GET", "/about")))
    end)

    it("does not match a longer path, a prefix or a trailing slash", function()
      local app = router.new { ["GET /about"] = tag("about") }
      assert.are.equal(404, app(req("GET", "/about/")).status)
      assert.are.equal(404, app(req("GET", "/abou")).status)
      assert.are.equal(404, app(req("GET", "/about/us")).status)
    end)

    it("sets req.params to an empty table", function()
      local app = router.new { ["GET /a"] = echo_params }
      local r = req("GET", "/a")
      assert.are.same({}, app(r))
      assert.are.same({}, r.params)
    end)
  end)

  describe(":name params", function()
    it("captures each named segment into req.params", function()
      local app = router.new { ["GET /users/:id/posts/:post"] = echo_params }
      assert.are.same({ id = "42", post = "hello-world" },
        app(req("GET", "/users/42/posts/hello-world")))
    end)

    it("does not match across a slash or an empty segment", function()
      local app = router.new { ["GET /users/:id"] = echo_params }
      assert.are.equal(404, app(req("GET", "/users/1/2")).status)
      assert.are.equal(404, app(req("GET", "/users/")).status)
    end)

    it("stops a param at the following literal text", function()
      local app = router.new { ["GET /users/:id.json"] = echo_params }
      assert.are.same({ id = "7" }, app(req("GET", "/users/7.json")))
      assert.are.same({ id = "a.b" }, app(req("GET", "/users/a.b.json")))
    end)

    it("gives every request a fresh params table", function()
      local app = router.new { ["GET /u/:id"] = echo_params }
      local first = app(req("GET", "/u/1"))
      first.injected = true
      local second = app(req("GET", "/u/2"))
      assert.are_not.equal(first, second)
      assert.are.same({ id = "2" }, second)
    end)
  end)

  describe("character class constraints", function()
    it("lets [%d] match digits only and answers 404 otherwise", function()
      local app = router.new { ["GET /users/:id[%d]"] = echo_params }
      assert.are.same({ id = "123" }, app(req("GET", "/users/123")))
      assert.are.equal(404, app(req("GET", "/users/abc")).status)
      assert.are.equal(404, app(req("GET", "/users/12a")).status)
    end)

    it("falls through to another route when the class rejects the segment", function()
      local app = router.new {
        ["GET /users/:id[%d]"] = tag("by id"),
        ["GET /users/:name"] = tag("by name"),
      }
      assert.are.equal("by id", app(req("GET", "/users/5")))
      assert.are.equal("by name", app(req("GET", "/users/bob")))
    end)

    it("never lets a negated class cross a '/'", function()
      local app = router.new { ["GET /:nope[^.]"] = echo_params }
      assert.are.same({ nope = "good" }, app(req("GET", "/good")))
      assert.are.equal(404, app(req("GET", "/one.two")).status)
      assert.are.equal(404, app(req("GET", "/a/b")).status)
    end)

    it("refuses a class that matches '/', naming the route", function()
      for _, key in ipairs { "GET /:x[%p]", "GET /:x[/a]", "GET /:x[%w/]" } do
        local ok, err = pcall(router.new, { [key] = tag("x") })
        assert.is_false(ok, key)
        assert.is_truthy(err:find("route '" .. key .. "'", 1, true), err)
        assert.is_truthy(err:find("matches '/'", 1, true), err)
      end
    end)

    it("accepts a multi-item class such as [%a%d-]", function()
      local app = router.new { ["GET /p/:slug[%a%d-]"] = echo_params }
      assert.are.same({ slug = "my-post-2" }, app(req("GET", "/p/my-post-2")))
      assert.are.equal(404, app(req("GET", "/p/my_post")).status)
    end)
  end)

  describe("splats", function()
    it("captures the rest of the path, slashes included, as params.splat", function()
      local app = router.new { ["GET /files/*"] = echo_params }
      assert.are.same({ splat = "a/b/c.txt" }, app(req("GET", "/files/a/b/c.txt")))
    end)

    it("captures an empty splat", function()
      local app = router.new { ["GET /files/*"] = echo_params }
      assert.are.same({ splat = "" }, app(req("GET", "/files/")))
      assert.are.equal(404, app(req("GET", "/files")).status)
    end)

    it("leaves params.splat absent when an optional (*) matched nothing", function()
      local app = router.new { ["GET /:one(*)"] = echo_params, ["GET /d/:game(/:user)(*)"] = echo_params }
      assert.are.same({ one = "hello_world" }, app(req("GET", "/hello_world")))
      assert.is_nil(app(req("GET", "/hello_world")).splat)
      assert.are.same({ game = "go", user = "ann" }, app(req("GET", "/d/go/ann")))
      assert.are.same({ game = "go", user = "ann", splat = "/more" }, app(req("GET", "/d/go/ann/more")))
    end)

    it("combines with params and trailing literals", function()
      local app = router.new { ["GET /:user/*.txt"] = echo_params }
      assert.are.same({ user = "ann", splat = "notes/todo" },
        app(req("GET", "/ann/notes/todo.txt")))
      assert.are.equal(404, app(req("GET", "/ann/notes/todo.md")).status)
    end)
  end)

  describe("optional groups", function()
    it("matches with the optional segment present or absent", function()
      local app = router.new { ["GET /posts(/:page)"] = echo_params }
      assert.are.same({}, app(req("GET", "/posts")))
      assert.is_nil(app(req("GET", "/posts")).page)
      assert.are.same({ page = "3" }, app(req("GET", "/posts/3")))
      assert.are.equal(404, app(req("GET", "/posts/")).status)
    end)

    it("supports nested optional groups", function()
      local app = router.new { ["GET /archive(/:year[%d](/:month[%d]))"] = echo_params }
      assert.are.same({}, app(req("GET", "/archive")))
      assert.are.same({ year = "2024" }, app(req("GET", "/archive/2024")))
      assert.are.same({ year = "2024", month = "05" }, app(req("GET", "/archive/2024/05")))
      assert.are.equal(404, app(req("GET", "/archive/2024/may")).status)
    end)

    it("supports optional literal text and several groups in one route", function()
      local app = router.new { ["GET /list(.:format)(/)"] = echo_params }
      assert.are.same({}, app(req("GET", "/list")))
      assert.are.same({}, app(req("GET", "/list/")))
      assert.are.same({ format = "json" }, app(req("GET", "/list.json")))
      assert.are.same({ format = "json" }, app(req("GET", "/list.json/")))
    end)
  end)

  describe("precedence", function()
    local routes = {
      { "/users/me", "static" },
      { "/users/:id", "param" },
      { "/users/*", "splat" },
    }

    it("prefers static over param over splat whatever order add is called in", function()
      for _, order in ipairs(permutations(routes)) do
        local app = router.new()
        for _, r in ipairs(order) do app:add("GET", r[1], tag(r[2])) end
        assert.are.equal("static", app(req("GET", "/users/me")))
        assert.are.equal("param", app(req("GET", "/users/42")))
        assert.are.equal("splat", app(req("GET", "/users/42/posts")))
      end
    end)

    it("applies the same precedence to routes given in the constructor table", function()
      local app = router.new {
        ["GET /users/*"] = tag("splat"),
        ["GET /users/:id"] = tag("param"),
        ["GET /users/me"] = tag("static"),
        ["GET /users(.:format)"] = tag("optional"),
      }
      assert.are.equal("static", app(req("GET", "/users/me")))
      assert.are.equal("param", app(req("GET", "/users/42")))
      assert.are.equal("optional", app(req("GET", "/users")))
      assert.are.equal("splat", app(req("GET", "/users/1/2")))
    end)

    it("prefers the route with more literal characters within a class", function()
      for _, order in ipairs(permutations {
        { "/a/:x/:y", "short" }, { "/a/:x/edit", "long" }, { "/a/*", "any" }, { "/a/x/*", "x any" },
      }) do
        local app = router.new()
        for _, r in ipairs(order) do app:get(r[1], tag(r[2])) end
        assert.are.equal("long", app(req("GET", "/a/1/edit")))
        assert.are.equal("short", app(req("GET", "/a/1/view")))
        assert.are.equal("x any", app(req("GET", "/a/x/1/2")))
        assert.are.equal("any", app(req("GET", "/a/y/1/2")))
      end
    end)

    it("tries a constrained parameter before an unconstrained one, declared in either order", function()
      for _, base in ipairs { "/users", "/posts" } do
        for _, order in ipairs(permutations { { ":name", "by name" }, { ":uid[%d]", "by id" } }) do
          local app = router.new()
          for _, r in ipairs(order) do app:get(base .. "/" .. r[1], tag(r[2])) end
          assert.are.equal("by id", app(req("GET", base .. "/17")))
          assert.are.equal("by name", app(req("GET", base .. "/seventeen")))
        end
      end
    end)

    it("applies the constrained-first rule to constructor tables too", function()
      local app = router.new {
        ["GET /posts/:name"] = tag("by name"),
        ["GET /posts/:uid[%d]"] = tag("by id"),
      }
      assert.are.equal("by id", app(req("GET", "/posts/3")))
      assert.are.equal("by name", app(req("GET", "/posts/three")))
    end)

    it("prefers the longer literal prefix", function()
      for _, order in ipairs(permutations { { "/:a/x", "param first" }, { "/x/:b", "literal first" } }) do
        local app = router.new()
        for _, r in ipairs(order) do app:get(r[1], tag(r[2])) end
        assert.are.equal("literal first", app(req("GET", "/x/x")))
        assert.are.equal("param first", app(req("GET", "/y/x")))
      end
    end)

    it("prefers a route with fewer captures at the same prefix", function()
      for _, order in ipairs(permutations { { "/:a/:b", "two" }, { "/:a/tail", "one" } }) do
        local app = router.new()
        for _, r in ipairs(order) do app:get(r[1], tag(r[2])) end
        assert.are.equal("one", app(req("GET", "/k/tail")))
        assert.are.equal("two", app(req("GET", "/k/head")))
      end
    end)

    it("prefers a required segment over an optional group of the same path", function()
      for _, order in ipairs(permutations { { "/test(/:game)", "optional" }, { "/test/:game", "required" } }) do
        local app = router.new()
        for _, r in ipairs(order) do app:get(r[1], tag(r[2])) end
        assert.are.equal("required", app(req("GET", "/test/chess")))
        assert.are.equal("optional", app(req("GET", "/test")))
      end
    end)

    it("prefers the route with more literal text when the rest ties", function()
      for _, order in ipairs(permutations { { "/t/:game", "plain" }, { "/t/:game-world", "suffixed" } }) do
        local app = router.new()
        for _, r in ipairs(order) do app:get(r[1], function(q) return r[2] .. " " .. q.params.game end) end
        assert.are.equal("suffixed hello", app(req("GET", "/t/hello-world")))
        assert.are.equal("plain hello", app(req("GET", "/t/hello")))
      end
    end)

    it("breaks the remaining ties by declaration order", function()
      local names = { "s1", "s2", "s3", "s4", "s5" }
      local app = router.new()
      for _, n in ipairs(names) do app:get("/:" .. n, tag(n)) end
      app:get("/*", tag("splat"))
      assert.are.equal("s1", app(req("GET", "/hey")))

      local reversed = router.new()
      for i = #names, 1, -1 do reversed:get("/:" .. names[i], tag(names[i])) end
      assert.are.equal("s5", reversed(req("GET", "/hey")))
    end)

    it("counts a constructor table as declared in the sorted order of its keys", function()
      local app = router.new { ["GET /:zeta"] = tag("zeta"), ["GET /:alpha"] = tag("alpha") }
      assert.are.equal("alpha", app(req("GET", "/x")))
    end)

    it("prefers a method-specific route over an any-method route with the same pattern", function()
      for _, order in ipairs(permutations { { "GET", "get" }, { nil, "any" } }) do
        local app = router.new()
        for _, r in ipairs(order) do app:add(r[1], "/same/:p", tag(r[2])) end
        assert.are.equal("get", app(req("GET", "/same/1")))
        assert.are.equal("any", app(req("POST", "/same/1")))
      end
    end)
  end)

  describe("literal characters", function()
    it("matches Lua pattern magic characters literally", function()
      local app = router.new {
        ["GET /file.txt"] = tag("dot"),
        ["GET /a+b"] = tag("plus"),
        ["GET /c-d/:x"] = tag("dash"),
        ["GET /100%/:x"] = tag("percent"),
        ["GET /q?/:x"] = tag("question"),
        ["GET /^x$/:y"] = tag("anchors"),
      }
      assert.are.equal("dot", app(req("GET", "/file.txt")))
      assert.are.equal(404, app(req("GET", "/fileXtxt")).status)
      assert.are.equal("plus", app(req("GET", "/a+b")))
      assert.are.equal(404, app(req("GET", "/aab")).status)
      assert.are.equal("dash", app(req("GET", "/c-d/1")))
      assert.are.equal(404, app(req("GET", "/cd/1")).status)
      assert.are.equal("percent", app(req("GET", "/100%/1")))
      assert.are.equal("question", app(req("GET", "/q?/1")))
      assert.are.equal(404, app(req("GET", "/q/1")).status)
      assert.are.equal("anchors", app(req("GET", "/^x$/1")))
      assert.are.equal(404, app(req("GET", "/x/1")).status)
    end)
  end)

  describe("methods", function()
    it("lets a route without a method match every method", function()
      local app = router.new { ["/any-method"] = tag("any") }
      for _, m in ipairs { "GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "BREW" } do
        assert.are.equal("any", app(req(m, "/any-method")))
      end
    end)

    it("lets GET|POST match either method and nothing else", function()
      local app = router.new { ["GET|POST /form"] = function(r) return r.method end }
      assert.are.equal("GET", app(req("GET", "/form")))
      assert.are.equal("POST", app(req("POST", "/form")))
      assert.are.equal(405, app(req("PUT", "/form")).status)
    end)

    it("accepts method names in any case in route keys", function()
      local app = router.new { ["get|Post /m"] = tag("ok") }
      assert.are.equal("ok", app(req("GET", "/m")))
      assert.are.equal("ok", app(req("POST", "/m")))
    end)

    it("falls back to the GET route for HEAD requests", function()
      local app = router.new { ["GET /page/:n"] = function(r) return "get " .. r.params.n end }
      assert.are.equal("get 2", app(req("HEAD", "/page/2")))
    end)

    it("uses an explicit HEAD route over the GET fallback", function()
      local app = router.new {
        ["GET /page"] = tag("get"),
        ["HEAD /page"] = tag("head"),
        ["GET /other/*"] = tag("get splat"),
        ["HEAD /other/:x"] = tag("head param"),
      }
      assert.are.equal("head", app(req("HEAD", "/page")))
      assert.are.equal("get", app(req("GET", "/page")))
      assert.are.equal("head param", app(req("HEAD", "/other/1")))
    end)

    it("does not let HEAD fall back to non-GET routes", function()
      local app = router.new { ["POST /only-post"] = tag("post") }
      local res = app(req("HEAD", "/only-post"))
      assert.are.equal(405, res.status)
      assert.are.equal("POST", res.headers.allow)
    end)
  end)

  describe("unmatched requests", function()
    it("answers 404 with a plain-text body when no route matches the path", function()
      local app = router.new { ["GET /"] = tag("home") }
      assert.are.same({
        status = 404,
        headers = { ["content-type"] = "text/plain; charset=utf-8" },
        body = "not found\n",
      }, app(req("GET", "/missing")))
    end)

    it("answers 404 from a router with no routes", function()
      assert.are.equal(404, router.new()(req("GET", "/")).status)
    end)

    it("answers 405 listing every allowed method, sorted, with HEAD alongside GET", function()
      local app = router.new {
        ["POST /r"] = tag("post"),
        ["GET /r"] = tag("get"),
        ["DELETE|PATCH /r"] = tag("delete"),
      }
      assert.are.same({
        status = 405,
        headers = {
          ["allow"] = "DELETE, GET, HEAD, PATCH, POST",
          ["content-type"] = "text/plain; charset=utf-8",
        },
        body = "method not allowed\n",
      }, app(req("PUT", "/r")))
    end)

    it("collects Allow from pattern routes that match the path", function()
      local app = router.new {
        ["GET /users/:id[%d]"] = tag("get"),
        ["PUT /users/:id"] = tag("put"),
        ["POST /users/*"] = tag("post"),
        ["DELETE /users/:id[%a]"] = tag("delete"),
      }
      assert.are.equal("GET, HEAD, POST, PUT", app(req("PATCH", "/users/1")).headers.allow)
      assert.are.equal("get", app(req("HEAD", "/users/1")))
      assert.are.equal("DELETE, POST, PUT", app(req("GET", "/users/x")).headers.allow)
    end)

    it("leaves the request untouched when nothing matches", function()
      local app = router.new { ["GET /"] = tag("home") }
      local r = req("GET", "/nope")
      app(r)
      assert.is_nil(r.params)
    end)
  end)

  describe("adding routes", function()
    it("adds routes with add, including a nil method for any method", function()
      local app = router.new()
      assert.are.equal(app, app:add("DELETE", "/users/:id", tag("delete")))
      app:add(nil, "/ping", tag("pong"))
      app:add("GET|PUT", "/both", tag("both"))
      assert.are.equal("delete", app(req("DELETE", "/users/9")))
      assert.are.equal("pong", app(req("PATCH", "/ping")))
      assert.are.equal("both", app(req("PUT", "/both")))
      assert.are.equal(405, app(req("GET", "/users/9")).status)
    end)

    it("provides chainable shorthands for the common methods", function()
      local app = router.new()
      local returned = app:get("/r", tag("get")):post("/r", tag("post")):put("/r", tag("put"))
        :delete("/r", tag("delete")):patch("/r", tag("patch")):options("/r", tag("options"))
      assert.are.equal(app, returned)
      for _, m in ipairs { "GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS" } do
        assert.are.equal(m:lower(), app(req(m, "/r")))
      end
      assert.are.equal("get", app(req("HEAD", "/r")))
    end)

    it("mixes constructor routes with routes added later", function()
      local app = router.new { ["GET /a/:x"] = tag("param") }
      assert.are.equal("param", app(req("GET", "/a/b")))
      app:get("/a/b", tag("static"))
      assert.are.equal("static", app(req("GET", "/a/b")))
      assert.are.equal("param", app(req("GET", "/a/c")))
    end)

    it("rejects a duplicate route", function()
      local app = router.new { ["GET|POST /dup"] = tag("a") }
      assert.has_error(function() app:add("POST|GET", "/dup", tag("b")) end,
        "bad argument #2 to 'add' (route 'POST|GET /dup': duplicate route)")
    end)

    it("names the argument when add or a shorthand is misused", function()
      local app = router.new()
      assert.has_error(function() app:add(1, "/x", tag("x")) end,
        "bad argument #1 to 'add' (string or nil expected, got number)")
      assert.has_error(function() app:get(nil, tag("x")) end,
        "bad argument #1 to 'get' (string expected, got nil)")
      assert.has_error(function() app:post("/x", "nope") end,
        "bad argument #2 to 'post' (route 'POST /x': handler must be a function or callable table, got string)")
      assert.has_error(function() app.get("/x", tag("x")) end,
        "calling 'get' on bad self (router expected, got string)")
    end)
  end)

  describe("construction errors", function()
    local malformed = {
      "GET /x(",
      "GET /x)",
      "GET /a(/b))",
      "GET /()",
      "GET /:",
      "GET /users/:/x",
      "GET /:id[",
      "GET /:id[]",
      "GET /:id[%]",
      "GET /a[b]",
      "GET /x]",
      "GET x",
      "no-slash",
      "G@T /x",
      "GET| /x",
      "GET /:a/:a",
      "GET /*/*",
      "GET /:splat/*",
    }

    it("raises an error naming the route for each malformed pattern", function()
      for _, key in ipairs(malformed) do
        local ok, err = pcall(router.new, { [key] = tag("x") })
        assert.is_false(ok, key)
        assert.is_truthy(err:find("route '" .. key .. "'", 1, true), err)
        assert.is_truthy(err:find("bad argument #1 to 'new'", 1, true), err)
      end
    end)

    it("raises an error naming the route when a handler is not callable", function()
      assert.has_error(function() router.new { ["GET /x"] = "hello" } end,
        "bad argument #1 to 'new' (route 'GET /x': handler must be a function or callable table, got string)")
      assert.has_error(function() router.new { ["GET /y"] = {} } end,
        "bad argument #1 to 'new' (route 'GET /y': handler must be a function or callable table, got table)")
    end)

    it("accepts callable tables as handlers", function()
      local handler = setmetatable({}, { __call = function(_, r) return "called " .. r.path end })
      local app = router.new { ["GET /c"] = handler }
      assert.are.equal("called /c", app(req("GET", "/c")))
    end)

    it("names the argument when the routes are not a table", function()
      assert.has_error(function() router.new("GET /") end,
        "bad argument #1 to 'new' (table expected, got string)")
      assert.has_error(function() router("GET /") end,
        "bad argument #1 to 'router' (table expected, got string)")
      assert.has_error(function() router.new { [1] = tag("x") } end,
        "bad argument #1 to 'new' (route keys must be strings, got number)")
    end)

    it("rejects requests without a string method and path", function()
      local app = router.new()
      assert.has_error(function() app("GET /") end,
        "bad argument #1 to 'router' (request expected, got string)")
      assert.has_error(function() app({ method = "GET" }) end,
        "bad argument #1 to 'router' (request needs string 'method' and 'path')")
    end)
  end)

  describe("calling", function()
    it("returns every value the handler returns, including nils", function()
      local app = router.new {
        ["GET /multi"] = function() return 200, nil, "body", nil end,
      }
      local n = select("#", app(req("GET", "/multi")))
      local a, b, c, d = app(req("GET", "/multi"))
      assert.are.equal(4, n)
      assert.are.equal(200, a)
      assert.is_nil(b)
      assert.are.equal("body", c)
      assert.is_nil(d)
    end)

    it("passes the same request object to the handler", function()
      local seen
      local app = router.new { ["GET /r/:x"] = function(r) seen = r end }
      local r = req("GET", "/r/1")
      app(r)
      assert.are.equal(r, seen)
      assert.are.same({ id = nil, x = "1" }, seen.params)
    end)

    it("can be built by calling the module itself", function()
      local app = router { ["GET /"] = tag("home") }
      assert.are.equal("home", app(req("GET", "/")))
      assert.are.equal("function", type(getmetatable(app).__call))
    end)
  end)
  describe("custom 404 and 405 handlers", function()
    local function json(status, text)
      return { status = status, headers = { ["content-type"] = "application/json" }, body = text }
    end

    it("calls not_found with the request when no route matches the path", function()
      local seen
      local app = router.new({ ["GET /"] = tag("home") }, {
        not_found = function(r)
          seen = r
          return json(404, '{"error":"not found"}')
        end,
      })
      local r = req("GET", "/missing")
      assert.are.same(json(404, '{"error":"not found"}'), app(r))
      assert.are.equal(r, seen)
      assert.are.equal("home", app(req("GET", "/")))
    end)

    it("calls method_not_allowed with the Allow value and keeps the Allow header", function()
      local got
      local app = router.new({ ["GET /r"] = tag("get"), ["POST /r"] = tag("post") }, {
        method_not_allowed = function(_, allow)
          got = allow
          return json(405, '{"error":"method not allowed"}')
        end,
      })
      local res = app(req("DELETE", "/r"))
      assert.are.equal("GET, HEAD, POST", got)
      assert.are.equal(405, res.status)
      assert.are.equal("GET, HEAD, POST", res.headers.allow)
      assert.are.equal("application/json", res.headers["content-type"])
      assert.are.equal('{"error":"method not allowed"}', res.body)
    end)

    it("defaults the status to 404 or 405 and takes a string as the body", function()
      local app = router.new({ ["PUT /r"] = tag("put") }, {
        not_found = function() return "nothing here\n" end,
        method_not_allowed = function() return { body = "no\n" } end,
      })
      assert.are.same({
        status = 404,
        headers = { ["content-type"] = "text/plain; charset=utf-8" },
        body = "nothing here\n",
      }, app(req("GET", "/x")))
      assert.are.same({ status = 405, headers = { allow = "PUT" }, body = "no\n" }, app(req("GET", "/r")))
    end)

    it("does not change the handler's table and lets its own Allow stand", function()
      local shared = { status = 405, headers = { Allow = "GET" }, body = "x" }
      local plain = { headers = { ["x-a"] = "1" } }
      local app = router.new({ ["POST /a"] = tag("post"), ["POST /b"] = tag("post") }, {
        method_not_allowed = function(r) return r.path == "/a" and shared or plain end,
      })
      assert.are.equal("GET", app(req("GET", "/a")).headers.Allow)
      assert.is_nil(app(req("GET", "/a")).headers.allow)
      local res = app(req("GET", "/b"))
      assert.are.same({ status = 405, headers = { ["x-a"] = "1", allow = "POST" } }, res)
      assert.are.same({ headers = { ["x-a"] = "1" } }, plain)
    end)

    it("returns a handler's nil as an empty response with the miss status", function()
      local app = router.new({ ["GET /r"] = tag("get") }, {
        not_found = function() end,
        method_not_allowed = function() end,
      })
      assert.are.same({ status = 404, headers = {} }, app(req("GET", "/x")))
      assert.are.same({ status = 405, headers = { allow = "GET, HEAD" } }, app(req("PUT", "/r")))
    end)

    it("keeps the default replies for the handler it is not given", function()
      local app = router.new({ ["GET /r"] = tag("get") }, { not_found = function() return "custom" end })
      assert.are.equal("method not allowed\n", app(req("POST", "/r")).body)
      assert.are.equal("custom", app(req("GET", "/x")).body)
    end)

    it("names the argument when the options are wrong", function()
      assert.has_error(function() router.new({}, "x") end,
        "bad argument #2 to 'new' (table or nil expected, got string)")
      assert.has_error(function() router.new({}, { notfound = tag("x") }) end,
        "bad argument #2 to 'new' (unknown option 'notfound')")
      assert.has_error(function() router({}, { not_found = "x" }) end,
        "bad argument #2 to 'router' (option 'not_found' must be a function or callable table, got string)")
    end)
  end)

  -- The cases of Lapis's router spec (spec/routes_spec.moon in leafo/lapis),
  -- restated for rill. Where rill answers differently on purpose, the case
  -- shows rill's answer and docs/handlers.md ("rill and Lapis") says why.
  describe("cases from Lapis's router spec", function()
    -- { pattern, { path, expected params or false for no match }, ... }
    local cases = {
      { "/:v", { "/okay", { v = "okay" } }, { "/okay.com", { v = "okay.com" } } },
      -- Lapis stops a param before the literal that follows it; rill's
      -- params are greedy and backtrack, which agrees on these paths
      { "/:left-:right", { "/a-b", { left = "a", right = "b" } }, { "/a-b-c", { left = "a-b", right = "c" } } },
      { "/:left(-:right)",
        { "/a-b", { left = "a", right = "b" } },
        { "/az", { left = "az" } },
        { "/i/fail", false } },
      { "/hi/*-:tail", { "/hi/a/b/c-okay", { splat = "a/b/c", tail = "okay" } } },
      { "/*/hello", { "/whoa/zone/hello", { splat = "whoa/zone" } } },
      { "/:one.*", { "/sure-thing.com", { one = "sure-thing", splat = "com" } } },
      { "/browse/*(.:format)",
        { "/browse/things", { splat = "things" } },
        { "/browse/things.zip", { splat = "things", format = "zip" } },
        -- Lapis: splat "things", format "tar.gz"
        { "/browse/things.tar.gz", { splat = "things.tar", format = "gz" } },
        -- Lapis's possessive matching finds no reading of this path
        { "/browse/v1.2/x.zip", { splat = "v1.2/x", format = "zip" } } },
      { "/:one(*)", { "/hello_world", { one = "hello_world" } } },
      { "/zone(/:game(/:user))", { "/zone/drone/leafo", { game = "drone", user = "leafo" } } },
      { "/:game(/:user)(*)", { "/drone/leafo/hi", { game = "drone", user = "leafo", splat = "/hi" } } },
      { "/zone(/:game(/:user)(*))",
        { "/zone", {} },
        { "/zone/leafo", { game = "leafo" } },
        { "/zone/leafo/beefo", { game = "leafo", user = "beefo" } },
        { "/zone/drone/leafo/here", { game = "drone", user = "leafo", splat = "/here" } } },
      { "/zone(/:game(/:user)(*))(.:format)",
        { "/zone", {} },
        { "/zone/leafo", { game = "leafo" } },
        { "/zone/leafo/beefo", { game = "leafo", user = "beefo" } },
        { "/zone/drone/leafo/here", { game = "drone", user = "leafo", splat = "/here" } },
        { "/zone.zip", { format = "zip" } },
        { "/zone/leafo.jpeg", { game = "leafo", format = "jpeg" } },
        { "/zone/leafo/beefo.moon", { game = "leafo", user = "beefo", format = "moon" } },
        { "/zone/drone/leafo/here.leaf", { game = "drone", user = "leafo", splat = "/here", format = "leaf" } } },
      { "/manifest(-:version)(.:format)",
        { "/manifest", {} },
        { "/manifest-first.json", { version = "first", format = "json" } },
        { "/manifest.json", { format = "json" } },
        { "/manifest-first", { version = "first" } },
        -- left open in Lapis's spec; rill's backtracking reads it
        { "/manifest-5.1.zip", { version = "5.1", format = "zip" } } },
      { "/manifest(-:a.:b)(.:format)",
        { "/manifest-5.1.json", { a = "5", b = "1", format = "json" } },
        { "/manifest-5.1", { a = "5", b = "1" } },
        { "/manifest.json", { format = "json" } } },
      { "/:n[%d]", { "/what", false }, { "/", false }, { "/1223", { n = "1223" } }, { "/1", { n = "1" } } },
      { "/:w[%a]", { "/what", { w = "what" } }, { "/1223", false }, { "/1", false } },
      { "/:w[%w]", { "/what", { w = "what" } }, { "/999", { w = "999" } }, { "/aj23", { w = "aj23" } },
        { "/2lll__", false }, { "/", false } },
      { "/:r[a-f]", { "/what", false }, { "/-", false }, { "/abf", { r = "abf" } } },
      { "/:s[12fg]", { "/what", false }, { "/12", { s = "12" } }, { "/f2", { s = "f2" } } },
      { "/:m[a%dd-g]", { "/what", false }, { "/a3", { m = "a3" } }, { "/9a99f", { m = "9a99f" } } },
      { "/:nope[^.]", { "/good", { nope = "good" } }, { "/", false }, { "/one.two", false } },
    }

    for _, case in ipairs(cases) do
      local pattern = case[1]
      for i = 2, #case do
        local path, want = case[i][1], case[i][2]
        it(("matches %s against %s"):format(pattern, path), function()
          local app = router.new { ["GET " .. pattern] = echo_params }
          local res = app(req("GET", path))
          if want then
            assert.are.same(want, res)
          else
            assert.are.equal(404, res.status)
          end
        end)
      end
    end

    local function winner(patterns, path)
      local app = router.new()
      for _, p in ipairs(patterns) do
        app:get(p, function(r) return { p, r.params } end)
      end
      local res = app(req("GET", path))
      if res.status == 404 then return 404 end
      return res[1], res[2]
    end

    it("resolves a set of static, constrained, param and splat routes", function()
      local set = { "/hello", "/hello/:name[%d]", "/hello/:name", "/hello/:name/world",
        "/static/*", "/x/:color/:height/*", "/please/" }
      assert.are.same({ "/hello", {} }, { winner(set, "/hello") })
      assert.are.same({ "/hello/:name[%d]", { name = "234" } }, { winner(set, "/hello/234") })
      assert.are.same({ "/hello/:name", { name = "world2323" } }, { winner(set, "/hello/world2323") })
      assert.are.same({ "/hello/:name/world", { name = "the-parameter" } },
        { winner(set, "/hello/the-parameter/world") })
      -- rill matches the decoded req.path, so a %20 arrives as a space
      assert.are.same({ "/static/*", { splat = "hello/world/343434/foo bar.png" } },
        { winner(set, "/static/hello/world/343434/foo bar.png") })
      assert.are.same({ "/x/:color/:height/*", { color = "greenthing", height = "123px", splat = "a.txt" } },
        { winner(set, "/x/greenthing/123px/a.txt") })
      assert.are.equal(404, winner(set, "/what-the-heck"))
      assert.are.equal(404, winner(set, "/hello//world"))
      assert.are.same({ "/please/", {} }, { winner(set, "/please/") })
      assert.are.equal(404, winner(set, "/please"))
    end)

    it("matches everything with a catch-all splat", function()
      assert.are.same({ "/*", { splat = "hello_world" } }, { winner({ "/*" }, "/hello_world") })
    end)

    it("matches the routes Lapis names (rill has no route names)", function()
      local set = { "/home", "/profile/:name", "/profile/:name/settings", "/game/:user_slug/:game_slug",
        "/page/:slug/*", "/page(.:format)" }
      assert.are.same({ "/home", {} }, { winner(set, "/home") })
      assert.are.same({ "/profile/:name/settings", { name = "adam" } }, { winner(set, "/profile/adam/settings") })
      assert.are.same({ "/game/:user_slug/:game_slug", { user_slug = "leafo", game_slug = "x-moon" } },
        { winner(set, "/game/leafo/x-moon") })
      assert.are.same({ "/page/:slug/*", { slug = "cool", splat = "hello" } }, { winner(set, "/page/cool/hello") })
      assert.are.same({ "/page(.:format)", { format = "zip" } }, { winner(set, "/page.zip") })
    end)

    it("resolves optional parts beside a static route", function()
      local set = { "/test(/:game)", "/zone(/:game(/:user)(*))", "/test/me" }
      assert.are.same({ "/test(/:game)", { game = "yeah" } }, { winner(set, "/test/yeah") })
      assert.are.equal(404, winner(set, "/test/ozone/"))
      assert.are.same({ "/test/me", {} }, { winner(set, "/test/me") })
    end)

    it("orders a literal, then a param, then a splat", function()
      local set = { "/*", "/:slug", "/hello" }
      assert.are.same({ "/hello", {} }, { winner(set, "/hello") })
      assert.are.same({ "/:slug", { slug = "world" } }, { winner(set, "/world") })
      assert.are.same({ "/*", { splat = "whoa/zone" } }, { winner(set, "/whoa/zone") })
    end)

    it("keeps declaration order among routes that tie", function()
      local set = { "/*", "/:slug1", "/:slug2", "/:slug3", "/:slug4", "/:slug5", "/hello" }
      assert.are.same({ "/:slug1", { slug1 = "hey" } }, { winner(set, "/hey") })
    end)

    -- the two cases Lapis marks pending hold in rill
    it("prefers the more specific /test/:game-world over /test/:game", function()
      assert.are.same({ "/test/:game-world", { game = "hello" } },
        { winner({ "/test/:game", "/test/:game-world" }, "/test/hello-world") })
    end)

    it("prefers the non-optional /test/:game over /test(/:game)", function()
      assert.are.same({ "/test/:game", { game = "thing" } },
        { winner({ "/test(/:game)", "/test/:game" }, "/test/thing") })
    end)

    it("sorts by the number of captures, splat routes last", function()
      -- Lapis's list also has /*/hi/*: rill allows one '*' per route
      local set = { "/*", "/*/hi", "/:slug1/:slug2", "/:slug1/two", "/hello" }
      assert.are.same({ "/hello", {} }, { winner(set, "/hello") })
      assert.are.equal("/:slug1/two", (winner(set, "/x/two")))
      assert.are.equal("/:slug1/:slug2", (winner(set, "/x/three")))
      assert.are.equal("/*/hi", (winner(set, "/a/b/hi")))
      assert.are.equal("/*", (winner(set, "/a/b/c")))
    end)
  end)
end)
