-- SPDX-License-Identifier: MIT
-- rill.static(root, opts): a handler that serves the files under root, as
-- nginx's static module does: GET and HEAD, index.html for a directory,
-- MIME types, ETag and Last-Modified with their 304s, one byte range (206,
-- 416), Cache-Control, precompressed .gz siblings. What to send is decided
-- here; src/static.c opens the file (beneath the root, by the kernel's
-- openat2) and the server sends it (sendfile, or with the head when small):
-- its bytes never enter the Lua state.
local core = require "rill.core"

local type, tostring, tonumber, error, pairs = type, tostring, tonumber, error, pairs
local fmt, byte = string.format, string.byte
local os_date, io_open = os.date, io.open

local M = {}

-- The web's own types first; /etc/mime.types (Debian's media-types) for the rest.
local BUILTIN = {
  html = "text/html; charset=utf-8", htm = "text/html; charset=utf-8",
  css = "text/css; charset=utf-8", js = "text/javascript; charset=utf-8",
  mjs = "text/javascript; charset=utf-8", json = "application/json",
  map = "application/json", txt = "text/plain; charset=utf-8",
  md = "text/markdown; charset=utf-8", csv = "text/csv; charset=utf-8",
  xml = "application/xml", svg = "image/svg+xml", png = "image/png",
  jpg = "image/jpeg", jpeg = "image/jpeg", gif = "image/gif", webp = "image/webp",
  avif = "image/avif", ico = "image/x-icon", woff = "font/woff", woff2 = "font/woff2",
  ttf = "font/ttf", otf = "font/otf", wasm = "application/wasm", pdf = "application/pdf",
  mp4 = "video/mp4", webm = "video/webm", mp3 = "audio/mpeg", ogg = "audio/ogg",
  wav = "audio/wav", zip = "application/zip", gz = "application/gzip",
  webmanifest = "application/manifest+json", appcache = "text/cache-manifest",
}
local DEFAULT_TYPE = "application/octet-stream"

local system_types -- ext -> type from /etc/mime.types, read once

local function load_system_types()
  system_types = {}
  local f = io_open("/etc/mime.types")
  if not f then return end
  for line in f:lines() do
    local mime, exts = line:match("^([%w%.%+%-]+/[%w%.%+%-]+)%s+(.+)$")
    if mime then
      for ext in exts:gmatch("%S+") do
        if system_types[ext] == nil then system_types[ext] = mime end
      end
    end
  end
  f:close()
end

local function mime_of(name, extra)
  local ext = name:match("%.([^./]+)$")
  if not ext then return DEFAULT_TYPE end
  ext = ext:lower()
  if extra and extra[ext] then return extra[ext] end
  if BUILTIN[ext] then return BUILTIN[ext] end
  if not system_types then load_system_types() end
  return system_types[ext] or DEFAULT_TYPE
end

---------------------------------------------------------------------------
-- HTTP dates (RFC 9110 5.6.7): IMF-fixdate out; IMF-fixdate, RFC 850 and
-- asctime in. An invalid date is ignored, as the RFC says.

local MONTHS = { Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6, Jul = 7, Aug = 8, Sep = 9,
  Oct = 10, Nov = 11, Dec = 12 }

local function http_date(t)
  return os_date("!%a, %d %b %Y %H:%M:%S GMT", t)
end

-- Days from 1970-01-01 to y-m-d (proleptic Gregorian).
local function days_from_civil(y, m, d)
  y = m <= 2 and y - 1 or y
  local era = (y >= 0 and y or y - 399) // 400
  local yoe = y - era * 400
  local doy = (153 * (m + (m > 2 and -3 or 9)) + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  return era * 146097 + doe - 719468
end

local function parse_date(s)
  if type(s) ~= "string" then return nil end
  local d, mon, y, H, Mi, S = s:match("^%a%a%a, (%d%d) (%a%a%a) (%d%d%d%d) (%d%d):(%d%d):(%d%d) GMT$")
  if not d then -- RFC 850: Sunday, 06-Nov-94 08:49:37 GMT
    d, mon, y, H, Mi, S = s:match("^%a+, (%d%d)%-(%a%a%a)%-(%d%d) (%d%d):(%d%d):(%d%d) GMT$")
    if y then y = tonumber(y) + (tonumber(y) < 70 and 2000 or 1900) end
  end
  if not d then -- asctime: Sun Nov  6 08:49:37 1994
    mon, d, H, Mi, S, y = s:match("^%a%a%a (%a%a%a) ([ %d]%d) (%d%d):(%d%d):(%d%d) (%d%d%d%d)$")
  end
  local m = mon and MONTHS[mon]
  if not m then return nil end
  d, y, H, Mi, S = tonumber(d), tonumber(y), tonumber(H), tonumber(Mi), tonumber(S)
  if d < 1 or d > 31 or H > 23 or Mi > 59 or S > 60 then return nil end
  return days_from_civil(y, m, d) * 86400 + H * 3600 + Mi * 60 + S
end

---------------------------------------------------------------------------
-- Conditions and ranges

-- Whether an If-None-Match list names etag (weak comparison: W/ is ignored).
local function none_match(header, etag)
  if header:match("^%s*%*%s*$") then return true end
  local want = etag:gsub("^W/", "")
  for tag in header:gmatch('[^,%s][^,]*') do
    tag = tag:gsub("%s+$", ""):gsub("^W/", "")
    if tag == want then return true end
  end
  return false
end

-- The one range of a Range header for a file of size bytes: first, last; or
-- "unsatisfiable"; or nil to ignore it (not bytes, several ranges, malformed).
local function parse_range(header, size)
  local spec = header:match("^%s*bytes%s*=%s*(.-)%s*$")
  if not spec or spec:find(",", 1, true) then return nil end
  local a, b = spec:match("^(%d*)%-(%d*)$")
  if not a or (a == "" and b == "") or #a > 15 or #b > 15 then return nil end
  if a == "" then -- the last b bytes
    local n = tonumber(b)
    if n == 0 or size == 0 then return "unsatisfiable" end
    return (n >= size and 0 or size - n), size - 1
  end
  local first, last = tonumber(a), b ~= "" and tonumber(b) or nil
  if last and last < first then return nil end -- malformed: ignored
  if first >= size then return "unsatisfiable" end
  last = last or size - 1
  return first, (last < size and last or size - 1)
end

-- Whether If-Range lets the Range apply: a strong ETag equal to ours, or our exact Last-Modified.
local function if_range_holds(header, etag, last_modified)
  if not header then return true end
  if header:sub(1, 1) == '"' then return header == etag end
  return header == last_modified
end

-- Whether Accept-Encoding takes gzip: the server's own reading (src/compress.c), one parser.
local function accepts_gzip(header)
  return type(header) == "string" and core.gz_accepts(header)
end

local REFUSALS = { [403] = "forbidden", [404] = "not found", [503] = "busy" }

---------------------------------------------------------------------------
-- The path asked for, checked by name (static.c checks the descriptor).

-- The raw path of the target has an encoded slash, backslash or NUL: the
-- decoded path would not say which segments the client meant.
local function encoded_separator(target)
  local raw = (target or ""):match("^[^?]*") or ""
  return raw:find("%%2[fF]") or raw:find("%%5[cC]") or raw:find("%%00") or raw:find("\\", 1, true)
end

-- rel, or nil and the status that refuses it (403 for a way out, 404 for a hidden file).
local function relative_path(path, dotfiles)
  if path:find("\0", 1, true) then return nil, 403 end
  local parts = {}
  for seg in path:gmatch("[^/]+") do
    if seg == ".." or seg == "." then return nil, 403 end
    if not dotfiles and byte(seg) == 46 then return nil, 404 end -- ".git", ".env"
    parts[#parts + 1] = seg
  end
  return table.concat(parts, "/")
end

---------------------------------------------------------------------------

local function refuse(status, text, headers)
  headers = headers or {}
  headers["content-type"] = "text/plain; charset=utf-8"
  return { status = status, headers = headers, body = text .. "\n" }
end

local function check_opts(opts)
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    error("bad argument #2 to 'static' (table expected, got " .. type(opts) .. ")", 3)
  end
  local function want(name, kinds)
    local v = opts[name]
    if v ~= nil and not kinds[type(v)] then
      error(("bad argument #2 to 'static' (%s must be %s, got %s)"):format(name,
        table.concat((function() local t = {} for k in pairs(kinds) do t[#t + 1] = k end table.sort(t) return t end)(), " or "),
        type(v)), 4)
    end
  end
  want("index", { string = true, boolean = true })
  want("cache_control", { string = true })
  want("max_age", { number = true })
  want("gzip", { boolean = true })
  want("dotfiles", { boolean = true })
  want("etag", { boolean = true })
  want("mime", { table = true })
  want("param", { string = true })
  if opts.index == true then
    error("bad argument #2 to 'static' (index must be a file name or false, got true)", 3)
  end
  if type(opts.index) == "string" and (opts.index == "" or opts.index:find("/", 1, true)) then
    error("bad argument #2 to 'static' (index must be a file name, got '" .. opts.index .. "')", 3)
  end
  if opts.max_age and (opts.max_age < 0 or opts.max_age > 1e9 or opts.max_age ~= opts.max_age // 1) then
    error("bad argument #2 to 'static' (max_age must be a whole number of seconds up to 1e9, got " .. tostring(opts.max_age) .. ")", 3)
  end
  if opts.cache_control and opts.cache_control:find("[%c]") then
    error("bad argument #2 to 'static' (cache_control has a control character)", 3)
  end
  for ext, mime in pairs(opts.mime or {}) do
    if type(ext) ~= "string" or type(mime) ~= "string" then
      error("bad argument #2 to 'static' (mime maps extensions to types, strings both)", 3)
    end
  end
  return opts
end

-- rill.static(root [, opts]) → handler. opts: index ("index.html"; false:
-- none), cache_control (a Cache-Control value) or max_age (seconds: "public,
-- max-age=N"), gzip (true: serve name.gz to clients that accept gzip),
-- etag (true), dotfiles (false: a segment starting with "." is a 404),
-- mime (extra extension → type), param ("splat": the router parameter
-- holding the file's path; without one, req.path).
function M.static(root, opts)
  if type(root) ~= "string" then
    error("bad argument #1 to 'static' (string expected, got " .. type(root) .. ")", 2)
  end
  opts = check_opts(opts)
  local real, err = core.static_root(root)
  if not real then
    error("bad argument #1 to 'static' (" .. err .. ")", 2)
  end
  local index = opts.index == nil and "index.html" or opts.index
  local gzip = opts.gzip ~= false
  local use_etag = opts.etag ~= false
  local dotfiles = opts.dotfiles == true
  local param = opts.param or "splat"
  local extra_mime = {}
  for ext, mime in pairs(opts.mime or {}) do extra_mime[ext:lower()] = mime end
  local cache_control = opts.cache_control or (opts.max_age and fmt("public, max-age=%d", opts.max_age))

  -- The file, its size and mtime, and whether it is the .gz sibling; or
  -- nil, "dir"; or nil, why, status (403, 404).
  local function open(rel, want_gzip)
    if want_gzip then
      local file, size, mtime, nsec = core.static_open(real, rel .. ".gz")
      if file then return file, size, mtime, true, nsec end
    end
    local file, size, mtime, nsec = core.static_open(real, rel)
    if file then return file, size, mtime, false, nsec end
    return nil, size, mtime
  end

  return function(req)
    local method = req.method
    if method ~= "GET" and method ~= "HEAD" then
      return refuse(405, "method not allowed", { allow = "GET, HEAD" })
    end
    local path = req.params and req.params[param] or req.path
    if type(path) ~= "string" then path = req.path end
    if encoded_separator(req.target) then return refuse(403, "forbidden") end
    local rel, status = relative_path(path, dotfiles)
    if not rel then return refuse(status, status == 403 and "forbidden" or "not found") end
    local h = req.headers
    local want_gzip = gzip and accepts_gzip(h["accept-encoding"])
    local name, file, size, mtime, gzipped, nsec = rel, nil, "dir", nil, nil, nil
    if rel ~= "" then
      file, size, mtime, gzipped, nsec = open(rel, want_gzip)
    end
    if not file and size == "dir" then
      local target_path = (req.target or req.path):match("^[^?]*")
      if rel ~= "" and target_path:sub(-1) ~= "/" then -- /docs → /docs/, as nginx does
        local query = (req.target or ""):match("%?.*$") or ""
        return { status = 301, headers = { location = target_path .. "/" .. query,
          ["content-type"] = "text/plain; charset=utf-8" }, body = "moved\n" }
      end
      if not index then return refuse(404, "not found") end
      name = rel == "" and index or rel .. "/" .. index
      file, size, mtime, gzipped, nsec = open(name, want_gzip)
      if not file then
        local status = (mtime == 403 or mtime == 503) and mtime or 404 -- a directory as index: 404
        return refuse(status, REFUSALS[status] or "error")
      end
    elseif not file then
      return refuse(mtime, REFUSALS[mtime] or "error") -- static_open's status
    end

    -- nginx's "MTIME-SIZE", with the nanoseconds: two writes of one size in a second differ
    local etag = use_etag and fmt('"%x.%x-%x%s"', mtime, nsec, size, gzipped and "-gz" or "") or nil
    local last_modified = http_date(mtime)
    local headers = {
      ["content-type"] = mime_of(name, extra_mime),
      ["last-modified"] = last_modified,
      ["accept-ranges"] = "bytes",
      etag = etag,
      ["cache-control"] = cache_control,
      vary = gzip and "Accept-Encoding" or nil,
      ["content-encoding"] = gzipped and "gzip" or nil,
    }
    -- 304: If-None-Match decides when given; else If-Modified-Since
    local inm, ims = h["if-none-match"], h["if-modified-since"]
    local not_modified
    if inm and etag then
      not_modified = none_match(inm, etag)
    elseif inm == nil and ims then
      local since = parse_date(ims)
      not_modified = since ~= nil and mtime <= since
    end
    if not_modified then
      file:close()
      -- a 304 carries the validators and caching fields, not the representation's own
      headers["content-type"], headers["accept-ranges"], headers["content-encoding"] = nil, nil, nil
      return { status = 304, headers = headers }
    end
    local range = h["range"]
    if range and method == "GET" and if_range_holds(h["if-range"], etag, last_modified) then
      local first, last = parse_range(range, size)
      if first == "unsatisfiable" then
        file:close()
        return refuse(416, "range not satisfiable", { ["content-range"] = "bytes */" .. size })
      elseif first then
        headers["content-range"] = fmt("bytes %d-%d/%d", first, last, size)
        return { status = 206, headers = headers, body = file, offset = first, length = last - first + 1 }
      end
    end
    return { status = 200, headers = headers, body = file, offset = 0, length = size }
  end
end

-- For specs: the pieces with rules of their own.
M.parse_range, M.parse_date, M.http_date, M.mime_of, M.accepts_gzip = parse_range, parse_date, http_date, mime_of, accepts_gzip

return M
