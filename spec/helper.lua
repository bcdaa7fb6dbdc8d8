-- SPDX-License-Identifier: MIT
-- Loaded by busted before the specs (.busted). Specs spawn build/rill unless
-- RILL_BIN names another binary (the ASan build, an installed rill).
local test = require "rill.test"
test.bin = os.getenv("RILL_BIN") or "./build/rill"
