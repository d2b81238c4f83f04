// End-to-end test of `cedargate serve` in headless Chromium, driven by playwright-core.
//
// Started by tests/serve_browser.rs after it launched `cedargate serve --flush-on-reload` in a
// temporary copy of the bundle and frontend. Environment:
//   CEDARGATE_BASE       the server, e.g. http://127.0.0.1:43123
//   CEDARGATE_BUNDLE     the bundle directory of that server (policy files are edited there)
//   CEDARGATE_ARTIFACTS  where screenshots go
//   CEDARGATE_CHROMIUM   the browser (default /usr/bin/chromium)
//   CEDARGATE_SCREENSHOT_OUT  optional: where to copy the README screenshot
//
// Exits 0 when every check passed; otherwise prints the failed check, saves failure.png and
// exits 1.

import { chromium } from 'playwright-core';
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const base = process.env.CEDARGATE_BASE;
const bundle = process.env.CEDARGATE_BUNDLE;
const artifacts = process.env.CEDARGATE_ARTIFACTS;
const executablePath = process.env.CEDARGATE_CHROMIUM || '/usr/bin/chromium';
if (!base || !bundle || !artifacts) {
  console.error('CEDARGATE_BASE, CEDARGATE_BUNDLE and CEDARGATE_ARTIFACTS are required');
  process.exit(2);
}
mkdirSync(artifacts, { recursive: true });

const READER = {
  allow: ['GET /pets', 'GET /pets/{petId}', 'GET /pets/{petId}/photos/{path+}', 'GET /pets/search', 'POST /api/private'],
  deny: ['POST /pets', 'PUT /pets/{petId}', 'DELETE /pets/{petId}', 'GET /admin/users', 'ANY /admin/{proxy+}', 'GET /reports/{reportId}'],
};
const ALL = [...READER.allow, ...READER.deny];

let step = 'start';
const log = (m) => console.log(`[e2e] ${m}`);
function check(cond, message) {
  if (!cond) throw new Error(`${step}: ${message}`);
}

const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--no-first-run', '--disable-sync', '--disable-quic'],
});
const context = await browser.newContext({ viewport: { width: 1440, height: 1000 } });
await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: base });
const page = await context.newPage();
const pageErrors = [];
page.on('pageerror', (e) => pageErrors.push(String(e)));
page.on('console', (m) => { if (m.type() === 'error') log(`console: ${m.text()}`); });

const shot = async (name, options = {}) => {
  const path = join(artifacts, `${name}.png`);
  await page.screenshot({ path, fullPage: true, ...options });
  log(`screenshot ${path}`);
  return path;
};
const row = (route) => page.locator(`tr[data-route="${route}"]`);
const decision = (route) => row(route).locator('[data-field=decision]').getAttribute('data-decision');

async function decisions() {
  return page.$$eval('tr[data-route]', (rows) => Object.fromEntries(rows.map((r) => [
    r.dataset.route,
    r.querySelector('[data-field=decision]')?.dataset.decision,
  ])));
}

// Clicks a route's Call button and waits until the page shows the answer.
async function call(route, expectedStatus) {
  const before = Number(await page.evaluate(() => document.body.dataset.calls || 0));
  await row(route).locator('button[data-action=call]').click();
  await page.waitForFunction((n) => Number(document.body.dataset.calls || 0) > n, before);
  const status = await page.locator('#response [data-field=status]').textContent();
  const shown = await row(route).locator('[data-field=last-status]').textContent();
  check(status.startsWith(String(expectedStatus)), `${route}: expected ${expectedStatus}, the page shows "${status}"`);
  check(shown === String(expectedStatus), `${route}: the row shows ${shown}`);
  const body = await page.locator('#response [data-field=body]').textContent();
  log(`${route} -> ${status}`);
  return { status, body };
}

async function signIn(user, name) {
  await page.locator('#sign-in').click();
  await page.waitForURL(/\/dev-issuer\/authorize\?/);
  check((await page.locator('.dev').textContent()).includes('Development only'), 'the sign-in page says it is development-only');
  check(await page.locator('button[data-user]').count() >= 5, 'the sign-in page lists the demo users');
  if (user === 'reader') await shot('02-sign-in-page');
  await page.locator(`button[data-user=${user}]`).click();
  await page.waitForURL((u) => u.pathname === '/');
  await page.waitForSelector('body[data-ready=true]');
  await page.waitForFunction(() => !document.getElementById('who').hidden);
  await page.waitForFunction(() => document.querySelector('tr[data-route="GET /pets"] [data-field=decision]')?.dataset.decision !== 'unknown');
  const shown = await page.locator('#who-name').textContent();
  check(shown === name, `signed in as ${name}, the page shows "${shown}"`);
  check(!(await page.locator('#sign-out').isHidden()), 'sign-out is offered');
}

// execute-api ARN matching: `*` any characters (`/` and none included), `?` exactly one.
function arnMatches(pattern, arn) {
  const re = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${re}$`).test(arn);
}
// Whether an IAM policy document allows `arn`: an explicit Deny wins, else any Allow.
function policyAllows(doc, arn) {
  const hits = (effect) => doc.Statement.some((st) => st.Effect === effect
    && [].concat(st.Resource).some((r) => arnMatches(r, arn)));
  return !hits('Deny') && hits('Allow');
}
// The method ARN serve's gateway sends for a call (src/serve/gateway.rs: its region, account
// and API id), stage `prod`.
const sampleArn = (method, path) => `arn:aws:execute-api:us-east-1:123456789012:cedargate/prod/${method}/${path.replace(/^\//, '')}`;

// The policy panel: a JSON document whose statements give every route of the table its
// decision, with its compact size shown.
async function checkPolicyPanel(who) {
  check(await page.locator('#iam-policy').isVisible(), `${who}: the IAM policy panel is shown`);
  const text = await page.locator('#iam-json').textContent();
  let doc;
  try { doc = JSON.parse(text); } catch (e) { check(false, `${who}: the policy panel holds JSON (${e.message}): ${text}`); }
  check(doc.Version === '2012-10-17' && Array.isArray(doc.Statement), `${who}: an IAM policy document`);
  check(text.includes('\n  "Statement"'), `${who}: the policy is pretty-printed`);
  check(doc.Statement.some((st) => st.Effect === 'Allow'), `${who}: the policy has an Allow statement`);
  const compact = new TextEncoder().encode(JSON.stringify(doc)).length;
  const shownBytes = Number(await page.locator('#iam-size').getAttribute('data-bytes'));
  check(shownBytes === compact, `${who}: the size shown (${shownBytes}) is the compact JSON's (${compact})`);
  const sizeText = await page.locator('#iam-size').textContent();
  check(sizeText.includes(compact.toLocaleString('en')) && sizeText.includes('8 KiB'), `${who}: the size chip says "${sizeText}"`);
  const rows = await page.$$eval('tr[data-route]', (trs) => trs.map((r) => ({
    route: r.dataset.route,
    decision: r.querySelector('[data-field=decision]')?.dataset.decision,
    sample: r.querySelector('.sample')?.textContent,
  })));
  for (const r of rows.filter((x) => x.decision === 'allow' || x.decision === 'deny')) {
    const [method, path] = r.sample.split(' ');
    const allowed = policyAllows(doc, sampleArn(method, path));
    check(allowed === (r.decision === 'allow'), `${who}: the policy ${allowed ? 'allows' : 'denies'} ${r.sample}, the table says ${r.decision}`);
  }
  return doc;
}

// Every "Try it" button is entirely on screen, inside the table's box (not cut off by it).
async function checkTryItVisible(width, height) {
  await page.setViewportSize({ width, height });
  const wrap = await page.locator('.table-wrap').boundingBox();
  const scroll = await page.$eval('.table-wrap', (e) => e.scrollWidth - e.clientWidth);
  check(scroll <= 1, `${width}px: the routes table fits its card (${scroll}px scroll sideways)`);
  const buttons = page.locator('button[data-action=call]');
  const n = await buttons.count();
  check(n >= ALL.length, `${width}px: a Call button per route (${n})`);
  for (let i = 0; i < n; i++) {
    const b = await buttons.nth(i).boundingBox();
    check(b && b.x >= wrap.x - 0.5 && b.x + b.width <= wrap.x + wrap.width + 0.5 && b.x + b.width <= width,
      `${width}px: Call button ${i} (${b && b.x}..${b && b.x + b.width}) is within the table (${wrap.x}..${wrap.x + wrap.width}) and the viewport`);
  }
}

async function storedKeys() {
  return page.evaluate(() => [...Object.keys(sessionStorage), ...Object.keys(localStorage)]
    .filter((k) => k.startsWith('cedargate.')));
}

try {
  step = 'signed out';
  await page.goto(`${base}/`);
  await page.waitForSelector('body[data-ready=true]');
  check(await page.locator('#sign-in').isVisible(), 'sign-in is offered');
  check(await page.locator('#sign-out').isHidden(), 'no sign-out while signed out');
  const rows = await decisions();
  for (const r of ALL) check(rows[r] === 'unknown', `${r} has no decision while signed out (got ${rows[r]})`);
  check(rows['POST /api/public'] === 'public', 'the public endpoint is listed');
  await call('GET /pets/{petId}', 401);
  await call('POST /api/public', 200);
  await shot('01-signed-out');

  step = 'reader';
  await signIn('reader', 'Rita Reader');
  let d = await decisions();
  for (const r of READER.allow) check(d[r] === 'allow', `reader: ${r} should be allowed, the table says ${d[r]}`);
  for (const r of READER.deny) check(d[r] === 'deny', `reader: ${r} should be denied, the table says ${d[r]}`);
  const why = await row('GET /pets').locator('[data-field=policies]').textContent();
  check(why.includes('policies/pets.cedar#readers-read'), `GET /pets names its permit policy (got "${why}")`);
  const whyNot = await row('DELETE /pets/{petId}').locator('[data-field=policies]').textContent();
  check(whyNot.includes('policies/guardrails.cedar#delete-needs-scope'), `DELETE names the forbid that denies it (got "${whyNot}")`);
  check((await page.locator('[data-claim=roles]').textContent()) === 'reader', 'the token panel shows the role');
  await call('DELETE /pets/{petId}', 403);
  check((await page.locator('#response [data-field=body]').textContent()).includes('User is not authorized'), 'the 403 body is API Gateway\'s');
  await call('POST /pets', 403);
  await call('POST /api/private', 200);
  const ok = await call('GET /pets/{petId}', 200);
  check(ok.body.includes('"principalId": "dev|rita"'), 'the backend echoes the authorizer context');
  const ctx = await page.locator('#response [data-field=context]').textContent();
  check(ctx.includes('dev|rita') && ctx.includes('policyRevision'), `the authorizer context is shown (got "${ctx}")`);
  const readerShot = await shot('03-reader');

  step = 'reader: the IAM policy';
  const readerPolicy = await checkPolicyPanel('reader');
  await page.locator('#iam-copy').click();
  await page.waitForFunction(() => document.getElementById('iam-copy').textContent !== 'Copy');
  const copied = await page.evaluate(() => navigator.clipboard.readText());
  check(JSON.stringify(JSON.parse(copied)) === JSON.stringify(readerPolicy), 'Copy puts the policy document on the clipboard');
  await page.locator('#iam-policy').screenshot({ path: join(artifacts, '03b-reader-policy.png') });

  step = 'reader: layout';
  await checkTryItVisible(1280, 800);
  await shot('03c-reader-1280');
  await checkTryItVisible(800, 800);
  await shot('03d-reader-800');
  await page.setViewportSize({ width: 1440, height: 1000 });

  step = 'sign out';
  await page.locator('#sign-out').click();
  await page.waitForFunction(() => !document.getElementById('sign-in').hidden);
  check((await storedKeys()).length === 0, `sign-out clears every stored token (left: ${await storedKeys()})`);
  d = await decisions();
  check(d['GET /pets'] === 'unknown', 'no decisions after sign-out');
  await call('GET /pets/{petId}', 401);
  await call('POST /api/private', 401);
  await page.reload();
  await page.waitForSelector('body[data-ready=true]');
  check(await page.locator('#sign-in').isVisible(), 'still signed out after a reload');
  await shot('04-signed-out-again');

  step = 'admin';
  await signIn('admin', 'Ada Admin');
  d = await decisions();
  for (const r of ALL) check(d[r] === 'allow', `admin: ${r} should be allowed, the table says ${d[r]}`);
  await call('DELETE /pets/{petId}', 200);
  await call('ANY /admin/{proxy+}', 200);
  await call('GET /reports/{reportId}', 200);
  await shot('05-admin');
  await checkPolicyPanel('admin');
  // Every row now carries a status beside its button: the widest the column gets.
  for (const r of ALL) if (!(await row(r).locator('[data-field=last-status]').count())) await call(r, 200);
  await checkTryItVisible(1280, 800);
  await checkTryItVisible(800, 800);
  await page.setViewportSize({ width: 1440, height: 1000 });

  step = 'invalid policy edit';
  writeFileSync(join(bundle, 'policies', 'zz-browser.cedar'), '@id("freeze-deletes")\nforbid (principal, action == Action::"DELETE /pe');
  await page.waitForFunction(() => {
    const n = document.getElementById('notice');
    return !n.hidden && n.textContent.includes('refused');
  }, null, { timeout: 20000 });
  check((await decision('DELETE /pets/{petId}')) === 'allow', 'a refused edit changes nothing');
  await call('DELETE /pets/{petId}', 200);
  await shot('06-edit-refused');

  step = 'valid policy edit';
  writeFileSync(join(bundle, 'policies', 'zz-browser.cedar'), '@id("freeze-deletes")\nforbid (principal, action == Action::"DELETE /pets/{petId}", resource);\n');
  await page.waitForFunction(
    () => document.querySelector('tr[data-route="DELETE /pets/{petId}"] [data-field=decision]')?.dataset.decision === 'deny',
    null,
    { timeout: 20000 },
  );
  const frozen = await row('DELETE /pets/{petId}').locator('[data-field=policies]').textContent();
  check(frozen.includes('policies/zz-browser.cedar#freeze-deletes'), `the new forbid is named (got "${frozen}")`);
  check((await decision('PUT /pets/{petId}')) === 'allow', 'other routes keep their decision');
  // serve runs with --flush-on-reload here, so the same token sees the edit at once.
  await call('DELETE /pets/{petId}', 403);
  await call('PUT /pets/{petId}', 200);
  await shot('07-after-edit');
  const frozenPolicy = await checkPolicyPanel('admin after the edit');
  check(!policyAllows(frozenPolicy, sampleArn('DELETE', '/pets/42')), 'the policy shown no longer allows DELETE /pets/42');

  step = 'narrow screen';
  await page.setViewportSize({ width: 390, height: 844 });
  await shot('08-narrow');
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 1, `nothing overflows sideways on a phone (${overflow}px)`);

  check(pageErrors.length === 0, `no script errors (got ${pageErrors.join('; ')})`);
  if (process.env.CEDARGATE_SCREENSHOT_OUT) {
    copyFileSync(readerShot, process.env.CEDARGATE_SCREENSHOT_OUT);
    log(`README screenshot written to ${process.env.CEDARGATE_SCREENSHOT_OUT}`);
  }
  log('all checks passed');
  await browser.close();
  process.exit(0);
} catch (e) {
  console.error(`[e2e] FAILED: ${e.message}`);
  try { await shot('failure'); } catch { /* the page may be gone */ }
  await browser.close().catch(() => {});
  process.exit(1);
}
