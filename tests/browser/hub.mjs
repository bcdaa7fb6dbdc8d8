// SPDX-License-Identifier: MIT
// A real browser against examples/hub.lua: Debian's chromium opens the page,
// receives events through EventSource, the server drops the connection, the
// browser reconnects on its own with Last-Event-ID, and the page must show
// every event once, in order. Run by `make test-browser` (part of make test).
import { chromium } from "playwright-core";
import { spawn } from "node:child_process";

const RILL = (process.env.RILL_BIN || "build/rill").split(" ");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const TIMEOUT = 15000;

// Spawns rill on port 0 and resolves with its URL, read from the
// "rill listening on" line (never a probe connection).
function startRill() {
  const proc = spawn(RILL[0], [...RILL.slice(1), "examples/hub.lua", "--listen", "127.0.0.1:0"], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let log = "";
  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("rill did not start:\n" + log)), TIMEOUT);
    proc.stderr.on("data", (data) => {
      log += data;
      const m = log.match(/rill listening on (http:\/\/\S+)/);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    proc.on("exit", (code) => reject(new Error(`rill exited (${code}):\n${log}`)));
  });
  return { proc, ready, log: () => log };
}

async function post(url, body) {
  const res = await fetch(url, { method: "POST", body });
  return res.text();
}

function check(cond, what) {
  if (!cond) throw new Error("check failed: " + what);
}

async function main() {
  const rill = startRill();
  let browser;
  try {
    const base = await rill.ready;
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"],
      // playwright gives it a new empty profile of its own
    });
    const page = await browser.newPage();
    page.setDefaultTimeout(TIMEOUT);
    const state = (text) => page.waitForFunction(
      (t) => document.getElementById("state").textContent.startsWith(t), text);
    const shown = (n) => page.waitForFunction(
      (k) => document.querySelectorAll("#log li").length >= k, n);

    await page.goto(base + "/?topic=browser");
    await state("connected (1)");
    for (let i = 1; i <= 3; i++) await post(`${base}/publish/browser`, `m${i}`);
    await shown(3);

    // the server drops the stream; while the browser is away, 3 more events
    check((await post(`${base}/drop/browser`, "")) === "dropped 1\n", "one stream dropped");
    await state("reconnecting");
    for (let i = 4; i <= 6; i++) await post(`${base}/publish/browser`, `m${i}`);
    // the browser comes back by itself, sending Last-Event-ID
    await state("connected (2)");
    for (let i = 7; i <= 8; i++) await post(`${base}/publish/browser`, `m${i}`);
    await shown(8);

    const items = await page.$$eval("#log li", (els) => els.map((e) => `${e.className}:${e.textContent}`));
    const want = [1, 2, 3, 4, 5, 6, 7, 8].map((i) => `msg:m${i}`);
    check(JSON.stringify(items) === JSON.stringify(want),
      `gap-free, duplicate-free sequence, got ${JSON.stringify(items)}`);
    console.log("browser: the page shows m1..m8 once each, across a drop and an automatic resume");
    console.log("browser: 1 passed, 0 failed");
  } finally {
    if (browser) await browser.close();
    rill.proc.kill("SIGKILL");
  }
}

main().catch((err) => {
  console.error(err.message || err);
  console.log("browser: 0 passed, 1 failed");
  process.exit(1);
});
