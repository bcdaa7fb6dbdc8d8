-- SPDX-License-Identifier: MIT
-- Fixture: an app that does not compile.
return function(req)
  return "unclosed
end
