-- SPDX-License-Identifier: MIT
-- Routes with params, an optional segment and a splat.
local rill = require "rill"

local users = { ["1"] = "ada", ["2"] = "grace" }

return rill.router {
  ["GET /"] = function() return "try /users/1, /posts, /posts/2, /files/a/b.txt\n" end,
  ["GET /users/:id[%d]"] = function(req)
    local name = users[req.params.id]
    if not name then
      return { status = 404, body = "no such user\n" }
    end
    return name .. "\n"
  end,
  ["POST /users"] = function(req)
    users[tostring(#users + 1)] = req.body
    return { status = 201, body = "created\n" }
  end,
  ["GET /posts(/:page[%d])"] = function(req)
    return "posts, page " .. (req.params.page or "1") .. "\n"
  end,
  ["GET /files/*"] = function(req) return "file " .. req.params.splat .. "\n" end,
}
