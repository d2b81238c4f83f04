// A real OIDC issuer for cedargate's integration tests: oauth2-mock-server on 127.0.0.1.
//
// Usage: node mock-issuer.mjs [--alg RS256] [--trailing-slash]
//
// Prints the issuer URL on the first line of stdout once it is listening, then serves until
// stdin closes (the test process went away) or it gets SIGTERM/SIGINT.
//
// Token requests (POST /token, grant_type=client_credentials) accept these extra form fields,
// applied in the `beforeTokenSigning` hook so the token is signed by the server as usual:
//   aud          the audience (the server's own handling, kept here for clarity)
//   sub          the subject (default: `<client_id>@clients`, as Auth0 does for M2M tokens)
//   roles        comma-separated: an Auth0-style namespaced claim `https://cedargate.example/roles`
//   permissions  comma-separated: the `permissions` array of Auth0 RBAC
//   scope        the space-separated `scope` string (the server's own handling)
//   iss          overrides `iss` (to forge a token in another issuer's name)
//   kid          overrides the header `kid` (a kid the JWKS does not know)
//
// GET /test/jwks-requests answers {"count": N}: how many times the JWKS was served. The
// discovery document points `jwks_uri` at /test/jwks, a counted copy of the server's /jwks.

import { OAuth2Server } from 'oauth2-mock-server';

const ROLES_CLAIM = 'https://cedargate.example/roles';

const args = process.argv.slice(2);
const alg = args.includes('--alg') ? args[args.indexOf('--alg') + 1] : 'RS256';
const trailingSlash = args.includes('--trailing-slash');

const server = new OAuth2Server();
// One key: the server round-robins its keys, so a second one would make kids unpredictable.
await server.issuer.keys.generate(alg);
await server.start(0, '127.0.0.1');
const { port } = server.address();
// The default issuer URL says `localhost`; cedargate allows plain http only on loopback and
// compares issuers exactly, so name the address we listen on.
server.issuer.url = `http://127.0.0.1:${port}${trailingSlash ? '/' : ''}`;
const base = `http://127.0.0.1:${port}`;

let jwksRequests = 0;
server.service.addRoute('GET', '/test/jwks', (_req, res) => {
  jwksRequests += 1;
  res.writeHead(200, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify({ keys: server.issuer.keys.toJSON() }));
});
server.service.addRoute('GET', '/test/jwks-requests', (_req, res) => {
  res.writeHead(200, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify({ count: jwksRequests }));
});
server.service.on('beforeWellKnownOpenIdConfiguration', (response) => {
  response.body.jwks_uri = `${base}/test/jwks`;
});

const list = (value) => String(value).split(',').map((s) => s.trim()).filter((s) => s !== '');

server.service.on('beforeTokenSigning', (token, req) => {
  const body = req.body ?? {};
  token.payload.sub = body.sub ?? `${body.client_id ?? 'client'}@clients`;
  if (body.aud !== undefined) token.payload.aud = body.aud;
  if (body.roles !== undefined) token.payload[ROLES_CLAIM] = list(body.roles);
  if (body.permissions !== undefined) token.payload.permissions = list(body.permissions);
  if (body.iss !== undefined) token.payload.iss = body.iss;
  if (body.kid !== undefined) token.header.kid = body.kid;
});

process.stdout.write(`${server.issuer.url}\n`);

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  await server.stop().catch(() => {});
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.stdin.on('end', stop);
process.stdin.on('close', stop);
process.stdin.resume();
