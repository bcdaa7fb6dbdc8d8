-- SPDX-License-Identifier: MIT
-- Streamed request bodies (spec/e2e_body_stream_spec.lua): routes that read
-- their body as it arrives, and routes beside them that read it whole.
local rill = require "rill"
local router = require "rill.router"

local UPSTREAM = os.getenv("UPSTREAM")
local hits = 0
local app = router.new(nil, {
  -- a custom 404 on a streamed path reads req.body as always
  not_found = function(req) return { status = 404, body = "not found, body " .. #req.body .. "\n" } end,
})

-- How the body came: "BYTES PIECES BIGGEST LUA_KIB", the Lua heap's peak while reading.
local function count(req, limit)
  local bytes, pieces, biggest, heap = 0, 0, 0, 0
  for piece in req:body_reader(limit) do
    bytes, pieces = bytes + #piece, pieces + 1
    biggest = math.max(biggest, #piece)
    heap = math.max(heap, collectgarbage("count"))
  end
  return ("%d %d %d %d\n"):format(bytes, pieces, biggest, math.floor(heap))
end

app:post("/count", rill.streamed_body(function(req) return count(req) end))
app:post("/count/:limit[%d]", rill.streamed_body(function(req)
  return count(req, tonumber(req.params.limit))
end))
app:post("/echo", rill.streamed_body(function(req)
  local body = req:read_body(1024 * 1024)
  return "echo " .. body .. " " .. #req.body .. "\n" -- req.body has it too, once read
end))
app:post("/early", rill.streamed_body(function() return "early\n" end))
-- answers without reading, after the client sent more than the gate holds for a reader
app:post("/early-late", rill.streamed_body(function()
  rill.sleep(0.3)
  return "early\n"
end))
-- works before reading (longer than --keepalive-timeout): the client waiting for 100 Continue stays
app:post("/slow", rill.streamed_body(function(req)
  rill.sleep(3)
  return count(req)
end))
-- a streaming reply that echoes the body as it arrives
app:post("/duplex", rill.streamed_body(function(req)
  local reader = req:body_reader(1024 * 1024)
  return { body = function() return reader() end }
end))
app:post("/unread", rill.streamed_body(function(req)
  return req.body -- not read yet: an error
end))
-- A route that reads its body whole, on a path the gate streams (/count's prefix).
app:post("/count-whole", function(req) return "whole " .. #req.body .. "\n" end)
app:post("/plain", function(req) return "plain " .. #req.body .. "\n" end)

-- Relays the body to the upstream as it arrives; the upstream's JSON, and how it went.
app:put("/relay/:name", rill.streamed_body(function(req)
  local reader = req:body_reader(64 * 1024 * 1024)
  local pieces, biggest, heap = 0, 0, 0
  local up = assert(rill.fetch(UPSTREAM .. "/store/" .. req.params.name, {
    method = "PUT",
    body = function()
      local piece = reader()
      if piece then
        pieces, biggest = pieces + 1, math.max(biggest, #piece)
        heap = math.max(heap, collectgarbage("count"))
      end
      return piece
    end,
  }))
  local answer = up:read()
  return { status = up.status, body = answer, headers = {
    ["x-pieces"] = pieces, ["x-biggest"] = biggest, ["x-lua-kib"] = math.floor(heap) } }
end))
app:put("/relay-bad", rill.streamed_body(function()
  rill.fetch(UPSTREAM .. "/bad", { method = "PUT", body = function() return 42 end })
end))

app:get("/hits", function() return tostring(hits) end)
app:get("/smuggled", function()
  hits = hits + 1
  return "smuggled\n"
end)

return app
