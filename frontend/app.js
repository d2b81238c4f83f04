// cedargate demo page: sign in with OIDC (authorization code + PKCE), call the API's routes,
// and show which routes the policies allow the signed-in caller, and why.
//
// Plain JavaScript, no framework, no build step. Configuration: config.js.
// Tokens live in sessionStorage under `cedargate.*`; signing out removes every such key from
// sessionStorage and localStorage.

import config from './config.js';

const PREFIX = 'cedargate.';
const ROLES_CLAIM = 'https://cedargate.example/roles';

const state = {
  settings: null,
  routes: [],
  explanation: null,
  status: null,
  revision: null,
  selected: null,
  lastStatus: new Map(),
};

// ---------------------------------------------------------------------------------------
// Storage

const storage = {
  get(key) { return sessionStorage.getItem(PREFIX + key); },
  set(key, value) { sessionStorage.setItem(PREFIX + key, value); },
  remove(key) { sessionStorage.removeItem(PREFIX + key); },
  clearAll() {
    for (const store of [sessionStorage, localStorage]) {
      for (const key of Object.keys(store)) {
        if (key.startsWith(PREFIX)) store.removeItem(key);
      }
    }
  },
};

// ---------------------------------------------------------------------------------------
// Small helpers

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function b64url(bytes) {
  let s = '';
  for (const b of new Uint8Array(bytes)) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function randomString(n) {
  return b64url(crypto.getRandomValues(new Uint8Array(n)));
}

// Reads a JWT's payload for display. The page never trusts it: the gateway verifies tokens.
function jwtPayload(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const json = decodeURIComponent(
      atob(part).split('').map((c) => '%' + c.charCodeAt(0).toString(16).padStart(2, '0')).join(''),
    );
    return JSON.parse(json);
  } catch {
    return null;
  }
}

function notice(message, kind = 'warn') {
  const n = $('notice');
  if (!message) {
    n.hidden = true;
    n.textContent = '';
    return;
  }
  n.className = `notice ${kind}`;
  n.textContent = message;
  n.hidden = false;
}

async function getJson(url, options = {}) {
  const res = await fetch(url, options);
  const text = await res.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = text; }
  return { res, body, text };
}

// ---------------------------------------------------------------------------------------
// Settings and OIDC

async function loadSettings() {
  let served = {};
  if (config.devEndpoints) {
    try {
      const { res, body } = await getJson('/_cedargate/config');
      if (res.ok && body) served = body;
    } catch { /* not served by cedargate serve */ }
  }
  state.settings = {
    issuer: config.issuer ?? served.issuer ?? null,
    clientId: config.clientId ?? served.clientId ?? 'cedargate-demo',
    audience: config.audience ?? served.audience ?? null,
    scope: config.scope ?? served.scope ?? 'openid profile email',
    apiBase: (config.apiBase ?? served.apiBase ?? '').replace(/\/$/, ''),
    devEndpoints: Boolean(config.devEndpoints),
    developmentIssuer: Boolean(served.developmentIssuer) && config.issuer == null,
  };
  $('dev-banner').hidden = !state.settings.developmentIssuer;
}

let discoveryCache = null;
async function discovery() {
  if (discoveryCache) return discoveryCache;
  const issuer = state.settings.issuer;
  if (!issuer) throw new Error('no OIDC issuer is configured (config.js)');
  const { res, body } = await getJson(`${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`);
  if (!res.ok || !body || !body.authorization_endpoint) {
    throw new Error(`cannot read the issuer's discovery document (${res.status})`);
  }
  discoveryCache = body;
  return body;
}

function redirectUri() {
  return `${location.origin}${location.pathname}`;
}

async function signIn() {
  try {
    const d = await discovery();
    const verifier = randomString(32);
    const flow = { verifier, state: randomString(16), nonce: randomString(16) };
    storage.set('flow', JSON.stringify(flow));
    const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier));
    const url = new URL(d.authorization_endpoint);
    const params = {
      response_type: 'code',
      client_id: state.settings.clientId,
      redirect_uri: redirectUri(),
      scope: state.settings.scope,
      state: flow.state,
      nonce: flow.nonce,
      code_challenge: b64url(digest),
      code_challenge_method: 'S256',
    };
    if (state.settings.audience) params.audience = state.settings.audience;
    for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
    location.assign(url.toString());
  } catch (e) {
    notice(`Sign-in is not available: ${e.message}`, 'error');
  }
}

// Finishes a sign-in when the issuer sent the browser back with `?code=…&state=…`.
async function finishSignIn() {
  const params = new URLSearchParams(location.search);
  if (!params.has('code') && !params.has('error')) return;
  const flow = JSON.parse(storage.get('flow') || 'null');
  storage.remove('flow');
  history.replaceState(null, '', location.pathname);
  if (params.has('error')) {
    notice(`Sign-in did not complete: ${params.get('error_description') || params.get('error')}`, 'error');
    return;
  }
  if (!flow || flow.state !== params.get('state')) {
    notice('Sign-in response ignored: it does not belong to a sign-in started here.', 'error');
    return;
  }
  try {
    const d = await discovery();
    const form = new URLSearchParams({
      grant_type: 'authorization_code',
      client_id: state.settings.clientId,
      code: params.get('code'),
      redirect_uri: redirectUri(),
      code_verifier: flow.verifier,
    });
    const { res, body } = await getJson(d.token_endpoint, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: form,
    });
    if (!res.ok || !body || !body.access_token) {
      throw new Error((body && (body.error_description || body.error)) || `status ${res.status}`);
    }
    if (body.id_token) {
      const id = jwtPayload(body.id_token);
      if (id && id.nonce && id.nonce !== flow.nonce) throw new Error('the ID token is for another sign-in');
      storage.set('id_token', body.id_token);
    }
    storage.set('access_token', body.access_token);
  } catch (e) {
    notice(`Sign-in failed: ${e.message}`, 'error');
  }
}

function accessToken() {
  const token = storage.get('access_token');
  if (!token) return null;
  const claims = jwtPayload(token);
  if (claims && typeof claims.exp === 'number' && claims.exp * 1000 < Date.now()) {
    storage.clearAll();
    notice('Your session expired. Sign in again.', 'info');
    return null;
  }
  return token;
}

async function signOut() {
  const idToken = storage.get('id_token');
  storage.clearAll();
  state.explanation = null;
  state.lastStatus.clear();
  render();
  notice('Signed out. Every stored token was removed.', 'info');
  // A real issuer keeps a session of its own: end it too when it offers RP-initiated logout.
  if (!state.settings.developmentIssuer) {
    try {
      const d = await discovery();
      if (d.end_session_endpoint) {
        const url = new URL(d.end_session_endpoint);
        url.searchParams.set('client_id', state.settings.clientId);
        url.searchParams.set('post_logout_redirect_uri', redirectUri());
        if (idToken) url.searchParams.set('id_token_hint', idToken);
        location.assign(url.toString());
      }
    } catch { /* nothing more to end */ }
  }
}

// ---------------------------------------------------------------------------------------
// Data from cedargate serve

const VERBS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS', 'ANY'];

// By path template (literal segments sort before `{…}`), then by verb.
function byPathThenVerb(a, b) {
  const [va, pa] = [a.route.split(' ')[0], a.route.slice(a.route.indexOf(' ') + 1)];
  const [vb, pb] = [b.route.split(' ')[0], b.route.slice(b.route.indexOf(' ') + 1)];
  if (pa !== pb) return pa < pb ? -1 : 1;
  return VERBS.indexOf(va) - VERBS.indexOf(vb);
}

async function loadRoutes() {
  let routes = null;
  if (state.settings.devEndpoints) {
    try {
      const { res, body } = await getJson('/_cedargate/routes');
      if (res.ok && body && Array.isArray(body.routes)) routes = body.routes;
    } catch { /* fall back to config.js */ }
  }
  if (!routes) {
    routes = (config.routes || []).map((r) => ({
      route: r.route || `${r.method} ${r.path}`,
      method: r.method,
      samplePath: r.path,
      authorizer: r.authorizer !== false,
    }));
  }
  state.routes = routes.sort(byPathThenVerb);
}

async function loadExplanation() {
  const token = accessToken();
  if (!token || !state.settings.devEndpoints) {
    state.explanation = null;
    return;
  }
  try {
    const { res, body } = await getJson('/_cedargate/explain', {
      headers: { Authorization: `Bearer ${token}` },
    });
    if (res.ok) {
      state.explanation = body;
    } else {
      state.explanation = null;
      if (res.status === 401) notice(`The server refused your token: ${(body && body.reason) || 'unauthorized'}`, 'error');
    }
  } catch {
    state.explanation = null;
  }
}

async function pollStatus() {
  if (!state.settings.devEndpoints) return;
  let body;
  try {
    const r = await getJson('/status');
    if (!r.res.ok) return;
    body = r.body;
  } catch {
    return;
  }
  state.status = body;
  const policy = body.policy || {};
  const revision = policy.revision || null;
  const changed = state.revision !== null && revision !== state.revision;
  state.revision = revision;
  const chip = $('revision');
  chip.textContent = `policies: ${revision || 'none'}`;
  chip.classList.toggle('fresh', changed);
  const auth = body.authorizer || {};
  $('cache').textContent = `cache: ${auth.cacheTtlSeconds ?? '?'} s${auth.flushOnReload ? ', flushed on reload' : ''}`;

  if (policy.lastOutcome === 'refused' || policy.lastOutcome === 'failed') {
    notice(`The last policy change was refused, so revision ${revision || 'none'} keeps serving: ${policy.lastError || 'unknown error'}`, 'error');
  } else if (changed) {
    const cached = auth.flushOnReload || !auth.cacheTtlSeconds
      ? 'The gateway cache was flushed, so your next call uses them.'
      : `Like API Gateway, the gateway keeps each token's cached policy for up to ${auth.cacheTtlSeconds} s: calls with your current token may still get the old answer (sign in again for a new token).`;
    notice(`Policies reloaded: revision ${revision}. The table shows the new decisions. ${cached}`, 'info');
  }
  if (changed) {
    await loadRoutes();
    await loadExplanation();
    render();
  }
}

// ---------------------------------------------------------------------------------------
// Calling routes

const SAMPLE_BODIES = {
  POST: { name: 'Rex', kind: 'dog' },
  PUT: { name: 'Rex', kind: 'dog', vaccinated: true },
  PATCH: { vaccinated: true },
};

async function callRoute(route) {
  const headers = {};
  const token = accessToken();
  if (token && route.authorizer) headers.Authorization = `Bearer ${token}`;
  let body;
  if (SAMPLE_BODIES[route.method]) {
    body = JSON.stringify(SAMPLE_BODIES[route.method]);
    headers['Content-Type'] = 'application/json';
  }
  const url = `${state.settings.apiBase}${route.samplePath}`;
  state.selected = route.route;
  let result;
  try {
    const { res, body: resBody, text } = await getJson(url, { method: route.method, headers, body });
    result = { status: res.status, statusText: res.statusText, body: resBody, text };
  } catch (e) {
    result = { status: 0, statusText: 'network error', body: null, text: String(e) };
  }
  state.lastStatus.set(route.route, result.status);
  showResponse(route, url, result);
  render();
  // For scripts and tests: how many calls have finished and been shown.
  document.body.dataset.calls = String(Number(document.body.dataset.calls || 0) + 1);
}

function explainStatus(route, result) {
  const s = result.status;
  if (s === 401) return route.authorizer
    ? 'No valid token: API Gateway answers 401 before any policy is looked at.'
    : 'Unauthorized.';
  if (s === 403 && result.body && result.body.message === 'Missing Authentication Token') {
    return 'No route takes this path: REST APIs answer 403 "Missing Authentication Token".';
  }
  if (s === 403) {
    const explicit = JSON.stringify(result.body || '').includes('explicit deny');
    return explicit
      ? 'The IAM policy for your token denies this route explicitly (a Deny statement matched).'
      : 'No Allow statement of the IAM policy for your token matches this route.';
  }
  if (s >= 200 && s < 300) {
    return route.authorizer
      ? 'The IAM policy for your token allows this route; the backend answered.'
      : 'A public route: no authorizer.';
  }
  return '';
}

function showResponse(route, url, result) {
  $('response-empty').hidden = true;
  const box = $('response-body');
  box.hidden = false;
  const q = (f) => box.querySelector(`[data-field="${f}"]`);
  const ok = result.status >= 200 && result.status < 300;
  q('status').textContent = `${result.status} ${result.statusText || ''}`.trim();
  q('status').className = `status ${ok ? 'ok' : 'bad'}`;
  q('request').textContent = `${route.method} ${url}`;
  let explanation = explainStatus(route, result);
  const ctx = result.body && result.body.requestContext && result.body.requestContext.authorizer;
  if (ctx && ctx.policyRevision && state.revision && ctx.policyRevision !== state.revision) {
    explanation += ` Answered from the policy cached for your token (revision ${ctx.policyRevision}); the current revision is ${state.revision}.`;
  }
  q('explain').textContent = explanation;
  q('body').textContent = typeof result.body === 'object' && result.body !== null
    ? JSON.stringify(result.body, null, 2)
    : (result.text || '(empty)');
  const dl = q('context');
  dl.replaceChildren();
  if (ctx) {
    for (const [k, v] of Object.entries(ctx)) dl.append(el('dt', { text: k }), el('dd', { text: String(v) }));
  }
  q('context-block').hidden = !ctx;
}

// ---------------------------------------------------------------------------------------
// Rendering

function decisionFor(routeName) {
  if (!state.explanation || !Array.isArray(state.explanation.routes)) return null;
  return state.explanation.routes.find((r) => r.route === routeName) || null;
}

function renderRow(route) {
  const [verb, ...rest] = route.route.split(' ');
  const template = rest.join(' ');
  const d = route.authorizer ? decisionFor(route.route) : null;
  let decision;
  let policies;
  if (!route.authorizer) {
    decision = el('span', { class: 'decision none', 'data-field': 'decision', 'data-decision': 'public', text: 'Public' });
    policies = el('span', { class: 'default-deny', text: 'no authorizer' });
  } else if (!d) {
    decision = el('span', { class: 'decision none', 'data-field': 'decision', 'data-decision': 'unknown', text: '—' });
    policies = el('span', { class: 'default-deny', text: accessToken() ? '' : 'sign in to see' });
  } else {
    decision = el('span', {
      class: `decision ${d.allowed ? 'allow' : 'deny'}`,
      'data-field': 'decision',
      'data-decision': d.allowed ? 'allow' : 'deny',
      text: d.allowed ? '✓ Allow' : '✕ Deny',
    });
    // Policy ids are `<file>#<@id>`. An allowed route's reasons are permits, a denied one's forbids.
    const reasons = (d.reasons || []).map((id) => el('code', {
      class: `policy ${d.allowed ? 'permit' : 'forbid'}`,
      title: d.allowed ? 'permit policy that allows this route' : 'forbid policy that denies this route',
      text: id,
    }));
    policies = el('div', { class: 'policies', 'data-field': 'policies' },
      reasons.length ? reasons : el('span', { class: 'default-deny', text: 'no permit applies (default deny)' }));
    const gatewayAllows = d.gateway === 'allow';
    if (d.gateway && gatewayAllows !== d.allowed) {
      policies.append(el('span', { class: 'mismatch', text: `the IAM policy gives: ${d.gateway}` }));
    }
  }
  const last = state.lastStatus.get(route.route);
  const lastChip = last === undefined ? null : el('span', {
    class: `last ${last >= 200 && last < 300 ? 'ok' : 'bad'}`,
    'data-field': 'last-status',
    text: String(last),
  });
  const call = el('button', {
    class: 'call',
    type: 'button',
    'data-action': 'call',
    'aria-label': `Call ${route.method} ${route.samplePath}`,
    onclick: () => callRoute(route),
  }, 'Call');
  return el('tr', { 'data-route': route.route, class: state.selected === route.route ? 'selected' : null },
    el('td', {},
      el('div', { class: 'route' },
        el('span', { class: `verb ${verb}`, text: verb }),
        el('span', { class: 'route-text' },
          el('span', { class: 'template', text: template }),
          el('span', { class: 'sample', text: `${route.method} ${route.samplePath}` })),
        route.authorizer ? null : el('span', { class: 'public-tag', text: 'public' }))),
    el('td', {}, el('div', { class: 'decision-cell' }, decision, policies)),
    el('td', { class: 'call-cell' }, lastChip, call));
}

function renderIdentity() {
  const token = accessToken();
  const claims = token ? jwtPayload(token) : null;
  const id = jwtPayload(storage.get('id_token') || '') || {};
  $('sign-in').hidden = Boolean(claims);
  $('sign-out').hidden = !claims;
  $('who').hidden = !claims;
  $('identity').hidden = !claims;
  if (!claims) {
    $('routes-hint').textContent = 'Sign in to see which routes the policies allow you, and why. Calls without a token get 401.';
    return;
  }
  const name = id.name || claims.email || claims.sub;
  $('who-name').textContent = name;
  $('who-sub').textContent = claims.sub;
  $('who-avatar').textContent = (name || '?').trim().charAt(0).toUpperCase();
  $('routes-hint').textContent = 'Decisions for your token, from the Cedar policies loaded now. "Call" sends the request through the gateway.';
  const dl = $('claims');
  dl.replaceChildren();
  const roles = claims[ROLES_CLAIM];
  const rows = [
    ['sub', claims.sub],
    ['roles', Array.isArray(roles) && roles.length ? roles.join(', ') : '—'],
    ['scope', claims.scope || '—'],
    ['email', claims.email || '—'],
    ['expires', claims.exp ? new Date(claims.exp * 1000).toLocaleTimeString() : '—'],
  ];
  for (const [k, v] of rows) dl.append(el('dt', { text: k }), el('dd', { 'data-claim': k, text: v }));
  const principal = state.explanation && state.explanation.principal && state.explanation.principal.uid;
  $('principal').textContent = principal ? `${principal.type}::"${principal.id}"` : `User::"${claims.sub}"`;
}

// The documented limit of an authorizer's policy for WebSocket APIs, and cedargate's portable
// target (REST APIs accept more).
const POLICY_BUDGET = 8 * 1024;

// The IAM policy the authorizer returns for this token: what API Gateway caches and answers
// every route from. Its size is counted by the server, as compact JSON.
function renderPolicy() {
  const card = $('iam-policy');
  const iam = accessToken() && state.explanation ? state.explanation.iamPolicy : null;
  card.hidden = !iam;
  if (!iam) return;
  const { document: doc, bytes, forCall } = iam;
  const ttl = state.status && state.status.authorizer ? state.status.authorizer.cacheTtlSeconds : null;
  const size = $('iam-size');
  size.dataset.bytes = String(bytes);
  size.classList.toggle('over', bytes > POLICY_BUDGET);
  size.textContent = `${bytes.toLocaleString('en')} B of ${POLICY_BUDGET / 1024} KiB`;
  size.title = `${bytes} bytes as compact JSON. 8 KiB is the limit for WebSocket API authorizers and the portable target; REST APIs accept more.`;
  if (!doc) {
    $('iam-hint').textContent = 'This authorizer answers with simple responses ({"isAuthorized": …}): there is no IAM policy.';
    $('iam-json').textContent = '';
    $('iam-copy').hidden = true;
    return;
  }
  $('iam-copy').hidden = false;
  const cached = ttl ? `API Gateway caches it for your token for up to ${ttl} s` : 'API Gateway would cache it for your token';
  $('iam-hint').textContent = `What the authorizer returns for a first call to ${forCall.method} ${forCall.path}. ${cached} and answers every route from it: one Allow for the routes the table allows, a Deny where a wildcard would cover a denied route. (A first call to a denied route adds a Deny for that request.)`;
  $('iam-json').textContent = JSON.stringify(doc, null, 2);
}

async function copyPolicy() {
  const text = $('iam-json').textContent;
  const button = $('iam-copy');
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = 'Copied';
  } catch {
    // No clipboard (an insecure origin, or permission refused): select it for Ctrl+C instead.
    getSelection().selectAllChildren($('iam-json'));
    button.textContent = 'Selected: press Ctrl+C';
  }
  setTimeout(() => { button.textContent = 'Copy'; }, 2000);
}

function render() {
  renderIdentity();
  renderPolicy();
  const tbody = document.querySelector('#routes tbody');
  tbody.replaceChildren(...state.routes.map(renderRow));
  if (!state.routes.length) {
    tbody.append(el('tr', {}, el('td', { colspan: 3, class: 'default-deny', text: 'No routes: is a valid policy bundle loaded? See /status.' })));
  }
}

// ---------------------------------------------------------------------------------------
// Start

async function main() {
  $('sign-in').addEventListener('click', signIn);
  $('sign-out').addEventListener('click', signOut);
  $('iam-copy').addEventListener('click', copyPolicy);
  await loadSettings();
  await finishSignIn();
  await pollStatus();
  await loadRoutes();
  await loadExplanation();
  render();
  document.body.dataset.ready = 'true';
  if (state.settings.devEndpoints) setInterval(pollStatus, 1500);
}

main().catch((e) => notice(`The page failed to start: ${e.message}`, 'error'));
