-- SPDX-License-Identifier: MIT
-- Fixture: an app whose top level raises.
error("no config found")
