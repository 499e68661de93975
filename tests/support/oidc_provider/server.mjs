// The tests' OpenID Connect provider: the certified oidc-provider package, configured from a JSON
// file (argv[2]) that tests/support/oidc_provider.py writes, on http://127.0.0.1:<port>.
//
// Accounts come from a JSON file read again on every lookup, so a test moves a user between
// groups, disables or deletes them by rewriting it: {"alice": {"password": "...", "groups": [...],
// "disabled": false}}. A disabled or deleted account makes findAccount return undefined, which
// oidc-provider turns into invalid_grant on a refresh. The sign-in page is a minimal form checking
// those passwords; consent is granted without a page (the clients are first-party). No page
// loads anything from outside 127.0.0.1.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { createServer as createTlsServer } from 'node:https';

import Provider, { errors } from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const port = Number(process.env.OIDC_PORT || config.port);
const issuer = config.issuer || `http://127.0.0.1:${port}`;

function readAccounts() {
  return JSON.parse(readFileSync(config.accounts, 'utf8'));
}

function activeAccount(name) {
  const accounts = readAccounts();
  const entry = Object.hasOwn(accounts, name) ? accounts[name] : undefined;
  return entry && !entry.disabled ? entry : undefined;
}

function signingKey(type, options, alg) {
  const jwk = generateKeyPairSync(type, options).privateKey.export({ format: 'jwk' });
  return { ...jwk, alg, use: 'sig', kid: `${alg.toLowerCase()}-${randomBytes(4).toString('hex')}` };
}

const html = (title, body) => `<!DOCTYPE html><html><head><meta charset="utf-8"><title>${title}</title></head>
<body><h1>${title}</h1>${body}</body></html>`;
const escape = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const provider = new Provider(issuer, {
  clients: config.clients,
  jwks: { keys: [signingKey('rsa', { modulusLength: 2048 }, 'RS256'), signingKey('ec', { namedCurve: 'P-256' }, 'ES256')] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  scopes: ['openid', 'offline_access', 'profile', 'email', 'groups'],
  claims: {
    openid: ['sub'],
    profile: ['preferred_username', 'name'],
    email: ['email'],
    groups: ['groups', 'realm_access'],
  },
  // false: the scopes' claims (preferred_username, groups) go into the ID token as well, as
  // Keycloak's mappers do; true (the default): only into userinfo.
  conformIdTokenClaims: config.claimsInIdToken !== true,
  pkce: { required: () => true },
  // A refresh token for every code flow, with or without offline_access (which this provider
  // drops unless prompt=consent): it expires with the provider's session, so a logout ends it.
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  features: {
    devInteractions: { enabled: false },
    rpInitiatedLogout: {
      enabled: true,
      logoutSource: async (ctx, form) => {
        ctx.body = html('Sign out', `${form}<button autofocus type="submit" form="op.logoutForm" value="yes" name="logout">Yes, sign me out</button>`);
      },
      postLogoutSuccessSource: async (ctx) => {
        ctx.body = html('Signed out', '<p>You are signed out.</p>');
      },
    },
  },
  renderError: async (ctx, out) => {
    ctx.type = 'html';
    ctx.body = html('Error', `<pre>${escape(JSON.stringify(out))}</pre>`);
  },
  ttl: {
    AccessToken: config.accessTokenSeconds || 60,
    AuthorizationCode: 60,
    IdToken: 60,
    RefreshToken: 3600,
    Interaction: 600,
    Session: 3600,
    Grant: 3600,
  },
  async findAccount(ctx, sub) {
    const entry = activeAccount(sub);
    if (!entry) return undefined;
    return {
      accountId: sub,
      async claims() {
        return {
          sub,
          preferred_username: entry.username ?? sub,
          name: entry.name ?? sub,
          email: entry.email ?? `${sub}@example.test`,
          groups: entry.groups ?? [],
          // Roles as Keycloak puts them: nested, for roles_claim: realm_access.roles.
          realm_access: { roles: entry.roles ?? [] },
        };
      },
    };
  },
});

function loginPage(uid, message = '') {
  return html('Sign in', `${message ? `<p role="alert">${escape(message)}</p>` : ''}
<form method="post" action="/interaction/${uid}/login" autocomplete="off">
<label>Username <input name="username" autofocus></label>
<label>Password <input name="password" type="password"></label>
<button type="submit">Sign in</button>
</form>`);
}

async function readForm(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

async function grantConsent(req, res, details) {
  const { grantId, session, params, prompt } = details;
  const grant = grantId
    ? await provider.Grant.find(grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
  if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
  await provider.interactionFinished(req, res, { consent: { grantId: await grant.save() } }, { mergeWithLastSubmission: true });
}

async function interaction(req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) throw new errors.SessionNotFound('interaction mismatch');
  if (details.prompt.name === 'consent') return grantConsent(req, res, details);
  if (req.method === 'GET' && !action) {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    return res.end(loginPage(uid));
  }
  if (req.method === 'POST' && action === 'login') {
    const form = await readForm(req);
    const name = form.get('username') || '';
    const entry = activeAccount(name);
    if (!entry || entry.password !== form.get('password')) {
      res.writeHead(401, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      return res.end(loginPage(uid, 'Wrong username or password.'));
    }
    return provider.interactionFinished(req, res, { login: { accountId: name } }, { mergeWithLastSubmission: false });
  }
  res.writeHead(405);
  return res.end();
}

const callback = provider.callback();
// config.tls {cert, key} (PEM files): served over https, as a real provider is.
const serve = config.tls
  ? (handler) => createTlsServer({ cert: readFileSync(config.tls.cert), key: readFileSync(config.tls.key) }, handler)
  : (handler) => createServer(handler);
const server = serve(async (req, res) => {
  const match = /^\/interaction\/([\w-]+)(?:\/(login))?$/.exec(new URL(req.url, issuer).pathname);
  if (!match) return callback(req, res);
  try {
    return await interaction(req, res, match[1], match[2]);
  } catch (error) {
    res.writeHead(400, { 'content-type': 'text/html; charset=utf-8' });
    return res.end(html('Error', `<pre>${escape(error.message)}</pre>`));
  }
});
server.listen(port, '127.0.0.1', () => console.log(`oidc-provider listening on ${issuer}`));
