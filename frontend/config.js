// The demo page's one configuration file. `cedargate serve` serves it as it is.
//
// Locally, leave the `null`s: the page then asks `cedargate serve` (GET /_cedargate/config) and
// signs in against its development issuer (or against CEDARGATE_ISSUER when serve has one).
//
// Against a deployed API, fill in your OIDC issuer and API, for example with Auth0:
//   issuer:   'https://YOUR_TENANT.eu.auth0.com/',   // exactly the `iss` of your tokens
//   clientId: 'your SPA application's client id',    // allow this page's URL as a callback,
//                                                    // logout URL and web origin in Auth0
//   audience: 'https://api.cedargate.example',       // your API's identifier (CEDARGATE_AUDIENCE)
//   apiBase:  'https://abc123.execute-api.eu-west-1.amazonaws.com/prod',
//   routes:   [{ method: 'GET', path: '/pets/42', route: 'GET /pets/{petId}' }, ...],
//   devEndpoints: false,
export default {
  // OIDC issuer URL; null: the one `cedargate serve` uses.
  issuer: null,
  // OAuth client id of this page; null: `cedargate-demo` with the development issuer.
  clientId: null,
  // The API audience to ask tokens for; null: serve's audience.
  audience: null,
  scope: 'openid profile email',
  // Where the API is: null: this server's stage (e.g. `/prod`).
  apiBase: null,
  // The routes to offer when serve's route list is not available (a deployed API).
  routes: [],
  // Use serve's development endpoints (/status, /_cedargate/routes, /_cedargate/explain).
  devEndpoints: true,
};
