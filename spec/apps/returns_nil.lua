-- SPDX-License-Identifier: MIT
-- Fixture: an app that forgets to return its handler.
local function handler() return "x" end
