-- SPDX-License-Identifier: MIT
-- The app spec/e2e_static_spec.lua serves: the directory STATIC_ROOT under
-- /assets/, with a Cache-Control, and the Lua heap's size (to show a file's
-- bytes never enter it).
local rill = require("rill")

local root = rill.env("STATIC_ROOT")

return rill.router({
  ["GET /assets/*"] = rill.static(root, { max_age = 60 }),
  ["GET /plain/*"] = rill.static(root, { gzip = false, etag = false, index = false }),
  ["GET /lua-kb"] = function()
    collectgarbage("collect")
    return tostring(math.floor(collectgarbage("count")))
  end,
})
