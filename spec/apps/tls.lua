-- SPDX-License-Identifier: MIT
-- The app spec/e2e_tls_spec.lua serves over https: its scheme, a stream fed
-- by the hub (the client publishes the next event only after it read the
-- last), a large body, and a chunked upload echoed back.
local rill = require("rill")

return rill.router({
  ["GET /"] = function(req)
    return "hello " .. req.scheme .. "\n"
  end,
  ["GET /events"] = function()
    return rill.sse(rill.subscribe("tls"), { heartbeat = 0 })
  end,
  ["POST /publish"] = function(req)
    rill.publish("tls", { data = req.body })
    return { status = 204 }
  end,
  ["GET /big"] = function()
    return string.rep("0123456789abcdef", 65536) -- 1 MiB
  end,
  ["POST /echo"] = function(req)
    return req.body
  end,
  ["GET /wait"] = function()
    rill.sleep(0.2) -- the client's next request waits in the input meanwhile
    return "waited\n"
  end,
  ["GET /three"] = function()
    return { body = { "one\n", "two\n", "three\n" } } -- close-delimited for HTTP/1.0
  end,
})
