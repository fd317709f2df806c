// A real OpenID provider (panva's certified oidc-provider) for Tollgate's sign-in tests,
// on loopback only, all state in memory. Started by tests/src/oidc.rs, which reads the
// one ready line this prints on stdout:
//
//   oidc-provider ready issuer=<issuer> port=<port>
//
// Environment:
//   OIDC_ISSUER        the issuer URL tokens name (the tests put a proxy there)
//   OIDC_PORT          where to listen on 127.0.0.1 (0 = any free port)
//   OIDC_CLIENTS       JSON [{"client_id", "client_secret"}], each a native client whose
//                      loopback redirect URI /auth/callback matches on any port
//   OIDC_ID_TOKEN_TTL  seconds an ID token lives (default 600)
//   OIDC_EXIT_WITH_STDIN  0 = keep running when stdin closes (default: exit then)
//
// Test users are set at run time by the test itself: POST /test/users with JSON
// {"username", "password", "sub", "email", "email_verified", "groups", "org"} replaces
// the user of that username (a later sign-in sees the new groups). Logins go through a
// tiny form of our own (#username, #password, #submit); consent is granted by the
// interaction handler, since native clients are asked for it on every login.
import http from 'node:http';
import Provider from 'oidc-provider';

const issuer = process.env.OIDC_ISSUER;
if (!issuer) {
  console.error('OIDC_ISSUER is required');
  process.exit(2);
}
const port = Number(process.env.OIDC_PORT || 0);
const idTokenTtl = Number(process.env.OIDC_ID_TOKEN_TTL || 600);
const clients = JSON.parse(process.env.OIDC_CLIENTS || '[]').map((c) => ({
  client_id: c.client_id,
  client_secret: c.client_secret,
  application_type: 'native',
  token_endpoint_auth_method: 'client_secret_basic',
  grant_types: ['authorization_code'],
  response_types: ['code'],
  redirect_uris: ['http://127.0.0.1/auth/callback', 'http://localhost/auth/callback'],
  post_logout_redirect_uris: ['http://127.0.0.1/', 'http://localhost/'],
}));

/** username -> user; replaced through POST /test/users. */
const users = new Map();

const provider = new Provider(issuer, {
  clients,
  pkce: { required: () => true },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
    groups: ['groups', 'org'],
  },
  scopes: ['openid', 'email', 'profile', 'groups'],
  // Otherwise email and groups would only be in userinfo, not in the ID token.
  conformIdTokenClaims: false,
  async findAccount(_ctx, sub) {
    const user = [...users.values()].find((u) => u.sub === sub);
    if (!user) return undefined;
    return {
      accountId: sub,
      async claims() {
        return {
          sub,
          email: user.email,
          email_verified: user.email_verified !== false,
          name: user.username,
          groups: user.groups || [],
          ...(user.org ? { org: user.org } : {}),
        };
      },
    };
  },
  // Cookies ignore ports: on 127.0.0.1 the provider's must not collide with Tollgate's.
  cookies: {
    names: { session: 'op_session', interaction: 'op_interaction', resume: 'op_resume' },
    keys: ['tollgate-test-provider-cookie-key'],
  },
  features: {
    devInteractions: { enabled: false },
    rpInitiatedLogout: { enabled: true },
  },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  ttl: {
    AccessToken: 600,
    AuthorizationCode: 120,
    IdToken: idTokenTtl,
    Interaction: 600,
    Session: 3600,
    Grant: 3600,
  },
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId
      || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    return grantId ? ctx.oidc.provider.Grant.find(grantId) : undefined;
  },
});
const callback = provider.callback();

function readBody(req) {
  return new Promise((resolve, reject) => {
    let data = '';
    req.on('data', (chunk) => { data += chunk; });
    req.on('end', () => resolve(data));
    req.on('error', reject);
  });
}

function send(res, status, type, body) {
  res.writeHead(status, { 'content-type': type });
  res.end(body);
}

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

async function grantConsent(req, res, details) {
  const { prompt, params, session, grantId } = details;
  const grant = grantId
    ? await provider.Grant.find(grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
  if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(prompt.details.missingResourceScopes || {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const saved = await grant.save();
  await provider.interactionFinished(req, res, { consent: { grantId: saved } }, { mergeWithLastSubmission: true });
}

async function interaction(req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) return send(res, 400, 'text/plain', 'interaction mismatch');
  if (details.prompt.name === 'consent') return grantConsent(req, res, details);
  if (action === 'login' && req.method === 'POST') {
    const form = new URLSearchParams(await readBody(req));
    const user = users.get(form.get('username') || '');
    if (!user || user.password !== form.get('password')) {
      return send(res, 401, 'text/html', '<p id="error">wrong username or password</p>');
    }
    return provider.interactionFinished(req, res, { login: { accountId: user.sub } }, { mergeWithLastSubmission: false });
  }
  return send(res, 200, 'text/html', `<!doctype html><title>Sign in</title>
<form method="post" action="/interaction/${escape(uid)}/login">
<input id="username" name="username"><input id="password" name="password" type="password">
<button id="submit" type="submit">Sign in</button></form>`);
}

const server = http.createServer(async (req, res) => {
  try {
    const url = new URL(req.url, 'http://127.0.0.1');
    if (url.pathname === '/test/users' && req.method === 'POST') {
      const user = JSON.parse(await readBody(req));
      if (!user.username || !user.sub) return send(res, 400, 'text/plain', 'username and sub are required');
      users.set(user.username, user);
      return send(res, 204, 'text/plain', '');
    }
    const match = url.pathname.match(/^\/interaction\/([^/]+)(?:\/(login))?$/);
    if (match) return await interaction(req, res, match[1], match[2]);
    return callback(req, res);
  } catch (err) {
    console.error('provider error', err);
    if (!res.headersSent) send(res, 500, 'text/plain', 'provider error');
  }
});

// The test process owns us: when it goes, so do we (stdin closes with it). deploy/local/up
// runs us in the background instead (OIDC_EXIT_WITH_STDIN=0) and stops us by pid.
if (process.env.OIDC_EXIT_WITH_STDIN !== '0') {
  process.stdin.on('end', () => process.exit(0));
  process.stdin.resume();
}

server.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider ready issuer=${issuer} port=${server.address().port}`);
});
