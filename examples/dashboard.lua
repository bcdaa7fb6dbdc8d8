-- A live dashboard: a ticker publishes the server's figures as JSON every
-- few seconds; browsers follow them on an event stream that resumes after a
-- reconnect; anyone may post a note to every screen.
--   rill examples/dashboard.lua -- --every 2      (or DASHBOARD_EVERY=2)
local rill = require "rill"

-- configuration: `-- --every N` after rill's options, else the environment, else 5 s
local every = rill.env("DASHBOARD_EVERY", 5)
for i, arg in ipairs(rill.args) do
  if arg == "--every" then every = tonumber(rill.args[i + 1]) or every end
end

rill.hub.configure({ history = 100 }) -- what a reconnecting screen can catch up on

-- once: with --workers, one worker publishes (the master picks it), not each of them
rill.every(every, function()
  local s = rill.stats()
  rill.publish("dashboard", { event = "figures", data = rill.json.encode({
    requests = s.requests and s.requests.GET and s.requests.GET["2xx"] or 0,
    streams = s.streams,
    at = rill.now(),
  }) })
end, { once = true })

local PAGE = [[<!doctype html>
<meta charset="utf-8"><title>dashboard</title>
<pre id="figures">waiting...</pre><ul id="notes"></ul>
<script>
const es = new EventSource("/events");
es.addEventListener("figures", (e) => { document.getElementById("figures").textContent = e.data; });
es.addEventListener("note", (e) => {
  const li = document.createElement("li");
  li.textContent = JSON.parse(e.data).text;
  document.getElementById("notes").append(li);
});
</script>
]]

return rill.router {
  ["GET /"] = function() return { headers = { ["content-type"] = "text/html; charset=utf-8" }, body = PAGE } end,
  ["GET /events"] = function(req)
    -- a browser that reconnects sends Last-Event-ID: it gets what it missed, then live events
    return rill.sse(rill.subscribe("dashboard", { last_event_id = rill.sse.last_event_id(req) }))
  end,
  ["POST /notes"] = function(req)
    local note = req:json() -- a 400 for the client if it is not JSON
    if type(note) ~= "table" or type(note.text) ~= "string" or note.text == "" then
      return { status = 422, json = { error = "a note is {\"text\": \"...\"}" } }
    end
    local id = rill.publish("dashboard", { event = "note", data = rill.json.encode({ text = note.text }) })
    return { status = 201, json = { id = id } }
  end,
}
