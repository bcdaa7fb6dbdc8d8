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

    it("breaks remaining ties by the pattern string", function()
      for _, order in ipairs(permutations { { "/:a/x", "first" }, { "/x/:b", "second" } }) do
        local app = router.new()
        for _, r in ipairs(order) do app:get(r[1], tag(r[2])) end
        -- same class and literal count; "/:a/x" sorts before "/x/:b"
        assert.are.equal("first", app(req("GET", "/x/x")))
      end
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
end)
