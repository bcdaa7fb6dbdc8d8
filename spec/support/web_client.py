# SPDX-License-Identifier: MIT
# A client rill did not write, for spec/e2e_web_spec.lua: Python's json,
# urllib and http.cookiejar against spec/apps/web.lua. Exits non-zero with
# the reason on the first thing that is not as it should be.
import http.cookiejar, json, sys, urllib.error, urllib.parse, urllib.request

base = "http://127.0.0.1:%s" % sys.argv[1]

def fail(msg):
    sys.exit(msg)

def post(path, body, ctype):
    req = urllib.request.Request(base + path, data=body, headers={"Content-Type": ctype}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()

# JSON in and out: what Python writes comes back as Python reads it
doc = {"s": "caf\u00e9 \u2615 \"q\" \\ /", "n": [0, -1, 2.5, 1e300, 12345678901], "t": True, "f": False,
       "z": None, "deep": [[[{"k": "v"}]]], "obj": {}}
status, headers, body = post("/echo", json.dumps(doc).encode(), "application/json; charset=utf-8")
if status != 201 or headers["Content-Type"] != "application/json":
    fail("echo: %s %s" % (status, headers["Content-Type"]))
got = json.loads(body)["got"]
if got != doc:
    fail("echo: %r != %r" % (got, doc))

# A malformed body: a 400 of one short line of text
for bad in [b'{"a":', b"{'a': 1}", b"[1,]", b"NaN", b"\xff\xfe"]:
    status, headers, body = post("/echo", bad, "application/json")
    text = body.decode()
    if status != 400 or not text.startswith("malformed JSON: ") or text.count("\n") != 1:
        fail("malformed %r: %s %r" % (bad, status, text))
status, _, body = post("/echo", b"{}", "text/plain")
if status != 400 or not body.startswith(b"expected a JSON body"):
    fail("wrong type: %s %r" % (status, body))

# A form as a browser's urlencode writes it
form = {"name": "Ada Lovelace", "sym": "a&b=c+d%", "uni": "\u00e9\u2615"}
status, _, body = post("/form", urllib.parse.urlencode(form).encode(), "application/x-www-form-urlencoded")
if status != 200 or json.loads(body) != form:
    fail("form: %s %r" % (status, body))

# Cookies through a real cookie jar: set, stored, sent back, decoded to the values set
jar = http.cookiejar.CookieJar()
opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
with opener.open(base + "/set", timeout=10) as r:
    expected = json.loads(r.read())
if len(jar) != len(expected):
    fail("the jar kept %d of %d cookies: %r" % (len(jar), len(expected), [c.name for c in jar]))
for c in jar:
    if not c.has_nonstandard_attr("HttpOnly") or c.path != "/" or c.expires is None:
        fail("cookie %s: attributes %r %r %r" % (c.name, c.path, c.expires, c._rest))
with opener.open(base + "/show", timeout=10) as r:
    back = json.loads(r.read())
if back != expected:
    fail("cookies: %r != %r" % (back, expected))

# A redirect followed
with urllib.request.urlopen(base + "/go", timeout=10) as r:
    if r.url != base + "/landing" or r.read() != b"landed\n":
        fail("redirect: %s" % r.url)
print("ok")
