-- SPDX-License-Identifier: MIT
-- make run serves this: curl localhost:8080/ answers "hello world".
return function(req)
  return "hello world\n"
end
