// Debian's chromium, headless, driven by playwright-core for tests/browser.py: one JSON request
// a line on stdin ({"op": "click", "selector": ...}), one JSON answer a line on stdout
// ({"ok": true, "value": ...} or {"ok": false, "error": ..., "logs": [...]}). The page's console
// messages and errors are kept and returned with every failure.
import readline from 'node:readline';
import { chromium } from 'playwright-core';

const DEADLINE_MS = 90000;

// CHROMIUM_ARGS: more switches, one a line (bench/console_page.py: --enable-precise-memory-info).
const extra = (process.env.CHROMIUM_ARGS || '').split('\n').filter(Boolean);
// Chromium's start is bounded (60 s) and tried twice. Playwright's own bound is 180 s, as long as
// tests/test_bench.py gives a whole bench: a console bench once hung that long before its first
// figure on a busy 2-core VM, most likely here, and a hang must fail (or recover) sooner.
async function launch() {
  for (let attempt = 1; ; attempt++) {
    try {
      return await chromium.launch({
        executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: ['--no-sandbox', ...extra],
        headless: true, timeout: 60000,
      });
    } catch (err) {
      if (attempt >= 2) throw err;
    }
  }
}
const browser = await launch();
const logs = [];
let page = null;

// A new context: 1366x768 unless ``viewport`` says otherwise; ``touch`` for a tablet.
// ``silentKeyStore``: IndexedDB's open never answers, as in Chromium's plain --headless mode.
async function open({ locale, viewport, touch, silentKeyStore }) {
  if (page) await page.context().close();
  const context = await browser.newContext({ viewport: viewport || { width: 1366, height: 768 }, locale,
    hasTouch: Boolean(touch) });
  if (silentKeyStore) await context.addInitScript(() => { indexedDB.open = () => ({}); });
  page = await context.newPage();
  // A deadline bounds a failure only: on a machine busy with other work, Chromium's first load
  // of a page (a renderer to start, a dozen modules) has taken more than playwright's 30 s.
  page.setDefaultTimeout(DEADLINE_MS);
  page.setDefaultNavigationTimeout(DEADLINE_MS);
  page.on('console', (m) => logs.push(`console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`pageerror: ${e.message}`));
  return true;
}

// Poll an expression from here: waitForFunction would compile it inside the page, which the
// page's Content-Security-Policy (no eval) rightly refuses.
async function until({ expression, timeout }) {
  const deadline = Date.now() + (timeout || DEADLINE_MS);
  while (!(await page.evaluate(expression))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${expression}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return true;
}

const ops = {
  open,
  goto: ({ url }) => page.goto(url).then((r) => r.status()),
  reload: () => page.reload().then((r) => r.status()),
  click: ({ selector }) => page.click(selector),
  fill: ({ selector, value }) => page.fill(selector, value),
  select: ({ selector, value }) => page.selectOption(selector, value),
  upload: ({ selector, path }) => page.setInputFiles(selector, path),
  wait: ({ selector, state, timeout }) => page.waitForSelector(selector, { state: state || 'visible', timeout: timeout || DEADLINE_MS }).then(() => true),
  until,
  text: ({ selector }) => page.innerText(selector),
  count: ({ selector }) => page.locator(selector).count(),
  eval: ({ expression }) => page.evaluate(expression),
  screenshot: ({ path }) => page.screenshot({ path, fullPage: true }).then(() => path),
  visible: ({ selector }) => page.locator(selector).first().isVisible(),
  box: ({ selector }) => page.locator(selector).first().boundingBox(),
  media: ({ media }) => page.emulateMedia({ media }),
  pdf: ({ path }) => page.pdf({ path, format: 'A4' }).then(() => path),
  logs: () => logs,
  // A DevTools protocol command, to the page's target or (browser: true) the browser's.
  cdp: async ({ method, params, browser: whole }) => {
    const session = whole ? await browser.newBrowserCDPSession() : await page.context().newCDPSession(page);
    try { return await session.send(method, params || {}); } finally { await session.detach(); }
  },
};

for await (const line of readline.createInterface({ input: process.stdin })) {
  const request = JSON.parse(line);
  let answer;
  try {
    const value = await ops[request.op](request);
    answer = { ok: true, value: value === undefined ? null : value };
  } catch (err) {
    answer = { ok: false, error: String(err.message || err), logs };
  }
  process.stdout.write(JSON.stringify(answer) + '\n');
}
await browser.close();
