// Stella Gateway test Authority: a real OIDC / OAuth 2.0 Authorization Server
// (panva's oidc-provider) for end-to-end tests. NOT for production use: it
// keeps everything in memory, uses plain http on loopback and accepts the
// client certificate from a test-only request header.
//
// stdout carries exactly one line, the readiness line:
//   AUTHORITY_READY {"issuer":"http://127.0.0.1:PORT","port":PORT}
// Everything else (oidc-provider notices included) goes to stderr.
//
// Environment:
//   AUTHORITY_PORT          port to bind (default 0 = ephemeral)
//   AUTHORITY_HOST          address to bind (default 127.0.0.1; 0.0.0.0 in a
//                           container)
//   AUTHORITY_ISSUER        issuer URL (default http://127.0.0.1:PORT); set it
//                           to the URL clients and the gateway reach this
//                           Authority by, e.g. http://authority:7100 in compose
//   AUTHORITY_CLIENTS_FILE  JSON file: array of extra client metadata objects
//                           (or {"clients":[...]}); they are added to the
//                           built-in clients, replacing a built-in one with
//                           the same client_id
//   AUTHORITY_KEYS_FILE     JWKS with private keys; loaded if it exists,
//                           otherwise generated keys are written there
//   AUTHORITY_AT_TTL        access token lifetime in seconds (default 300)
//   AUTHORITY_DEFAULT_RESOURCE  audience used when no resource= is sent
//                           (default http://gateway.local/api)
//   AUTHORITY_DPOP_NONCE    1: DPoP token requests must carry a nonce of the
//                           Authority's (first answer 400 use_dpop_nonce
//                           with a DPoP-Nonce header); off by default
//   AUTHORITY_TEST_MINT     1 enables POST /__test/mint (benchmarks, and tokens
//                           shaped as other providers issue them; see
//                           mintTokens and SHAPES below); off by default
//   AUTHORITY_OPAQUE_RESOURCE  resource indicator whose access tokens are
//                           opaque (checked by introspection; default
//                           http://gateway.local/opaque)
//   AUTHORITY_CLAIMS_FILE   JSON file read on every claims request: an object
//                           mapping a subject or client_id to the claims the
//                           Authority supplies for it (POST /claims)
//   AUTHORITY_STORE_FILE    JSON file: the access tokens it issued are kept
//                           there too (loaded at start), so a restarted
//                           Authority still introspects the opaque tokens
//                           it issued before (the drills stop and start it)
//   AUTHORITY_TLS_CERT_FILE, AUTHORITY_TLS_KEY_FILE
//                           PEM certificate chain and key: serve https
//                           instead of http (the production compose's CI run
//                           puts this Authority behind an https issuer URL)
//   AUTHORITY_MTLS_PORT, AUTHORITY_MTLS_CERT_FILE, AUTHORITY_MTLS_KEY_FILE
//                           a second, https listener that asks for a client
//                           certificate (RFC 8705 section 5): discovery names
//                           its token endpoint in mtls_endpoint_aliases, and a
//                           token issued there to a client with
//                           tls_client_certificate_bound_access_tokens is
//                           bound to the certificate presented on TLS (the
//                           local stack, scripts/dev-up.sh). Any certificate
//                           is accepted for binding: the client still
//                           authenticates with its secret.

import { promisify } from 'node:util';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';

// oidc-provider prints some notices with console.info (stdout). Route all
// console output to stderr before it is loaded, so that stdout only ever
// carries the readiness line.
for (const method of ['log', 'info', 'debug']) {
  // eslint-disable-next-line no-console
  console[method] = (...args) => console.error(...args);
}

const { default: Provider, errors } = await import('oidc-provider');

const log = (...args) => console.error('[authority]', ...args);

// ---------------------------------------------------------------------------
// configuration from the environment

function intEnv(name, dflt, { min = 0 } = {}) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return dflt;
  const value = Number(raw);
  if (!Number.isSafeInteger(value) || value < min) {
    throw new Error(`${name} must be an integer >= ${min}, got ${JSON.stringify(raw)}`);
  }
  return value;
}

const PORT = intEnv('AUTHORITY_PORT', 0);
const HOST = process.env.AUTHORITY_HOST || '127.0.0.1';
const ISSUER = process.env.AUTHORITY_ISSUER || '';
if (ISSUER && (!/^https?:\/\/[^/]+$/.test(ISSUER))) {
  throw new Error(`AUTHORITY_ISSUER must be an http(s) origin without a path or trailing slash, got ${JSON.stringify(ISSUER)}`);
}
const AT_TTL = intEnv('AUTHORITY_AT_TTL', 300, { min: 1 });
const DEFAULT_RESOURCE = process.env.AUTHORITY_DEFAULT_RESOURCE || 'http://gateway.local/api';
const TEST_MINT = process.env.AUTHORITY_TEST_MINT === '1';
const OPAQUE_RESOURCE = process.env.AUTHORITY_OPAQUE_RESOURCE || 'http://gateway.local/opaque';
const CLAIMS_FILE = process.env.AUTHORITY_CLAIMS_FILE || '';
const DPOP_NONCE = process.env.AUTHORITY_DPOP_NONCE === '1';
const SLOW_MS = Number(process.env.AUTHORITY_SLOW_MS || 0);
const CERT_HEADER = 'x-test-client-cert';
const OIDC_SCOPES = ['openid', 'offline_access'];

// ---------------------------------------------------------------------------
// clients

const BUILTIN_CLIENTS = [
  {
    client_id: 'svc-bearer',
    client_secret: 'svc-bearer-secret',
    scope: 'echo.read echo.write admin',
    tenant: 'acme',
  },
  {
    client_id: 'svc-dpop',
    client_secret: 'svc-dpop-secret',
    scope: 'echo.read echo.write admin',
    tenant: 'acme',
    dpop_bound_access_tokens: true,
  },
  {
    client_id: 'svc-mtls',
    client_secret: 'svc-mtls-secret',
    scope: 'echo.read echo.write admin',
    tenant: 'acme',
    tls_client_certificate_bound_access_tokens: true,
  },
  {
    client_id: 'svc-readonly',
    client_secret: 'svc-readonly-secret',
    scope: 'echo.read',
    tenant: 'globex',
  },
  // The gateway itself: introspects opaque tokens and reads claims.
  {
    client_id: 'gateway',
    client_secret: 'gateway-secret',
  },
];

const CLIENT_DEFAULTS = {
  grant_types: ['client_credentials'],
  response_types: [],
  redirect_uris: [],
  token_endpoint_auth_method: 'client_secret_basic',
};

function loadClients() {
  const byId = new Map();
  for (const c of BUILTIN_CLIENTS) byId.set(c.client_id, c);

  const file = process.env.AUTHORITY_CLIENTS_FILE;
  if (file) {
    const parsed = JSON.parse(fs.readFileSync(file, 'utf8'));
    const extra = Array.isArray(parsed) ? parsed : parsed?.clients;
    if (!Array.isArray(extra)) {
      throw new Error(`${file}: expected a JSON array of clients or {"clients": [...]}`);
    }
    for (const c of extra) {
      if (!c || typeof c.client_id !== 'string') throw new Error(`${file}: every client needs a client_id`);
      byId.set(c.client_id, c);
    }
    log(`loaded ${extra.length} client(s) from ${file}`);
  }

  return [...byId.values()].map((c) => ({ ...CLIENT_DEFAULTS, ...c }));
}

const clients = loadClients();

// Every scope any client may hold is a scope the Authority supports, and
// every resource server (audience) accepts all non-OIDC scopes.
const apiScopes = [...new Set(clients.flatMap((c) => (c.scope ? c.scope.split(' ') : [])))]
  .filter((s) => s && !OIDC_SCOPES.includes(s));
const RESOURCE_SCOPE = apiScopes.join(' ');

// ---------------------------------------------------------------------------
// signing keys

const thumbprint = (jwk) => {
  const members = jwk.kty === 'RSA'
    ? { e: jwk.e, kty: jwk.kty, n: jwk.n }
    : { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y };
  return crypto.createHash('sha256').update(JSON.stringify(members)).digest('base64url');
};

// Asynchronous generation: node 20's generateKeyPairSync was seen to hang in
// garbage collection (about one start in fifty under load).
const generateKeyPair = promisify(crypto.generateKeyPair);

async function generateKeys() {
  const ec = (await generateKeyPair('ec', { namedCurve: 'P-256' })).privateKey.export({ format: 'jwk' });
  const rsa = (await generateKeyPair('rsa', { modulusLength: 2048 })).privateKey.export({ format: 'jwk' });
  // ES256 first: it is the access token signing key.
  return {
    keys: [
      { ...ec, use: 'sig', alg: 'ES256', kid: thumbprint(ec) },
      { ...rsa, use: 'sig', alg: 'RS256', kid: thumbprint(rsa) },
    ],
  };
}

async function loadKeys() {
  const file = process.env.AUTHORITY_KEYS_FILE;
  if (file && fs.existsSync(file)) {
    const jwks = JSON.parse(fs.readFileSync(file, 'utf8'));
    if (!Array.isArray(jwks?.keys) || !jwks.keys.some((k) => k.kty === 'EC' && k.crv === 'P-256' && k.d)) {
      throw new Error(`${file}: expected a JWKS with a private EC P-256 key`);
    }
    log(`loaded signing keys from ${file}`);
    return jwks;
  }
  const jwks = await generateKeys();
  if (file) {
    fs.writeFileSync(file, `${JSON.stringify(jwks, null, 2)}\n`, { mode: 0o600 });
    log(`generated signing keys and wrote them to ${file}`);
  }
  return jwks;
}

const jwks = await loadKeys();

// ---------------------------------------------------------------------------
// AUTHORITY_STORE_FILE: issued access tokens kept in a file

// oidc-provider's adapter interface as a factory (one object per model):
// every model in memory, and the access tokens (AccessToken,
// ClientCredentials) also in the file, rewritten atomically on each change
// and read at start, expired ones dropped.
const PERSISTED_MODELS = new Set(['AccessToken', 'ClientCredentials']);
function fileAdapter(file) {
  const records = new Map(); // `${model}:${id}` -> { payload, expiresAt (ms) | null }
  if (fs.existsSync(file)) {
    for (const [key, record] of Object.entries(JSON.parse(fs.readFileSync(file, 'utf8')))) {
      if (record.expiresAt === null || record.expiresAt > Date.now()) records.set(key, record);
    }
    log(`loaded ${records.size} issued tokens from ${file}`);
  }
  const save = () => {
    const kept = {};
    for (const [key, record] of records) {
      if (PERSISTED_MODELS.has(key.slice(0, key.indexOf(':')))) kept[key] = record;
    }
    const tmp = `${file}.tmp.${process.pid}`;
    fs.writeFileSync(tmp, JSON.stringify(kept), { mode: 0o600 });
    fs.renameSync(tmp, file);
  };
  const live = (record) => record && (record.expiresAt === null || record.expiresAt > Date.now());
  const findBy = (field, value) => {
    for (const record of records.values()) {
      if (live(record) && record.payload[field] === value) return record.payload;
    }
    return undefined;
  };
  return (model) => {
    const key = (id) => `${model}:${id}`;
    const changed = () => { if (PERSISTED_MODELS.has(model)) save(); };
    return {
      async upsert(id, payload, expiresIn) {
        const expiresAt = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : null;
        records.set(key(id), { payload, expiresAt });
        changed();
      },
      async find(id) {
        const record = records.get(key(id));
        return live(record) ? record.payload : undefined;
      },
      findByUid: async (uid) => findBy('uid', uid),
      findByUserCode: async (userCode) => findBy('userCode', userCode),
      async consume(id) {
        const record = records.get(key(id));
        if (record) record.payload.consumed = Math.floor(Date.now() / 1000);
        changed();
      },
      async destroy(id) {
        records.delete(key(id));
        changed();
      },
      async revokeByGrantId(grantId) {
        for (const [k, record] of records) {
          if (record.payload.grantId === grantId) records.delete(k);
        }
        save();
      },
    };
  };
}
const STORE_FILE = process.env.AUTHORITY_STORE_FILE || '';

// ---------------------------------------------------------------------------
// client certificate: the one presented on the mTLS listener
// (AUTHORITY_MTLS_PORT), else the test-only request header

// The header value is the client certificate PEM, URL-encoded
// (encodeURIComponent, like nginx's $ssl_client_escaped_cert). Also accepted:
// a PEM whose newlines are written as the two characters "\n", or the bare
// base64 DER. Returns the certificate as a PEM string, or undefined.
function certificateFromHeader(ctx) {
  const peer = ctx.req.socket.getPeerCertificate?.();
  if (peer?.raw) return new crypto.X509Certificate(peer.raw).toString();
  let value = ctx.get(CERT_HEADER);
  if (!value) return undefined;
  if (value.includes('%')) value = decodeURIComponent(value);
  value = value.replace(/\\n/g, '\n');
  if (!value.includes('-----BEGIN')) {
    const b64 = value.replace(/\s+/g, '');
    value = `-----BEGIN CERTIFICATE-----\n${b64.match(/.{1,64}/g)?.join('\n')}\n-----END CERTIFICATE-----\n`;
  }
  try {
    return new crypto.X509Certificate(value).toString();
  } catch (err) {
    throw new errors.InvalidRequest(`${CERT_HEADER} header is not a valid certificate: ${err.message}`);
  }
}

// ---------------------------------------------------------------------------
// provider

const TLS_CERT_FILE = process.env.AUTHORITY_TLS_CERT_FILE || '';
const TLS_KEY_FILE = process.env.AUTHORITY_TLS_KEY_FILE || '';
if (Boolean(TLS_CERT_FILE) !== Boolean(TLS_KEY_FILE)) {
  throw new Error('AUTHORITY_TLS_CERT_FILE and AUTHORITY_TLS_KEY_FILE go together');
}
const server = TLS_CERT_FILE
  ? https.createServer({ cert: fs.readFileSync(TLS_CERT_FILE), key: fs.readFileSync(TLS_KEY_FILE) })
  : http.createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(PORT, HOST, () => {
    server.off('error', reject);
    resolve();
  });
});
const { port } = server.address();
const issuer = ISSUER || `${TLS_CERT_FILE ? 'https' : 'http'}://127.0.0.1:${port}`;

const MTLS_PORT = intEnv('AUTHORITY_MTLS_PORT', -1); // unset: no mTLS listener; 0: ephemeral
const MTLS_CERT_FILE = process.env.AUTHORITY_MTLS_CERT_FILE || '';
const MTLS_KEY_FILE = process.env.AUTHORITY_MTLS_KEY_FILE || '';
if (MTLS_PORT >= 0 && !(MTLS_CERT_FILE && MTLS_KEY_FILE)) {
  throw new Error('AUTHORITY_MTLS_PORT needs AUTHORITY_MTLS_CERT_FILE and AUTHORITY_MTLS_KEY_FILE');
}
const mtlsServer = MTLS_PORT >= 0
  ? https.createServer({
    cert: fs.readFileSync(MTLS_CERT_FILE),
    key: fs.readFileSync(MTLS_KEY_FILE),
    requestCert: true,
    rejectUnauthorized: false,
  })
  : undefined;
if (mtlsServer) {
  await new Promise((resolve, reject) => {
    mtlsServer.once('error', reject);
    mtlsServer.listen(MTLS_PORT, HOST, () => {
      mtlsServer.off('error', reject);
      resolve();
    });
  });
}
const mtlsOrigin = mtlsServer ? `https://127.0.0.1:${mtlsServer.address().port}` : '';

const configuration = {
  clients,
  jwks,
  ...(STORE_FILE ? { adapter: fileAdapter(STORE_FILE) } : {}),
  scopes: [...OIDC_SCOPES, ...apiScopes],
  // Only the machine-to-machine endpoints matter; no accounts exist.
  async findAccount() {
    return undefined;
  },
  extraClientMetadata: {
    properties: ['tenant'],
    validator(ctx, key, value) {
      if (key === 'tenant' && value !== undefined && typeof value !== 'string') {
        throw new errors.InvalidClientMetadata('tenant must be a string');
      }
    },
  },
  async extraTokenClaims(ctx, token) {
    const client = ctx?.oidc?.client?.clientId === token.clientId
      ? ctx.oidc.client
      : await provider.Client.find(token.clientId);
    const claims = { client_id: token.clientId };
    if (client?.tenant) claims.tenant = client.tenant;
    return claims;
  },
  ttl: {
    AccessToken: (ctx, token) => token.resourceServer?.accessTokenTTL || AT_TTL,
    ClientCredentials: (ctx, token) => token.resourceServer?.accessTokenTTL || AT_TTL,
  },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    dPoP: DPOP_NONCE
      ? { enabled: true, nonceSecret: crypto.randomBytes(32), requireNonce: () => true }
      : { enabled: true },
    mTLS: {
      enabled: true,
      certificateBoundAccessTokens: true,
      getCertificate: certificateFromHeader,
    },
    resourceIndicators: {
      enabled: true,
      async defaultResource(ctx, client, oneOf) {
        return oneOf || DEFAULT_RESOURCE;
      },
      async useGrantedResource() {
        return true;
      },
      async getResourceServerInfo(ctx, resourceIndicator) {
        const url = URL.parse(resourceIndicator);
        if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
          throw new errors.InvalidTarget('resource must be an http(s) URL');
        }
        return {
          scope: RESOURCE_SCOPE,
          audience: resourceIndicator,
          accessTokenTTL: AT_TTL,
          ...(resourceIndicator === OPAQUE_RESOURCE
            ? { accessTokenFormat: 'opaque' }
            : { accessTokenFormat: 'jwt', jwt: { sign: { alg: 'ES256' } } }),
        };
      },
    },
  },
  // Interactions are never used (no end-users); keep the provider quiet.
  interactions: {
    url(ctx, interaction) {
      return `/interaction/${interaction.uid}`;
    },
  },
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
};

const provider = new Provider(issuer, configuration);

// The mTLS listener's token endpoint in discovery (RFC 8705 section 5);
// oidc-provider does not write mtls_endpoint_aliases itself.
if (mtlsServer) {
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.path.endsWith('/.well-known/openid-configuration') && ctx.body?.token_endpoint) {
      const path = new URL(ctx.body.token_endpoint).pathname;
      ctx.body.mtls_endpoint_aliases = { token_endpoint: `${mtlsOrigin}${path}` };
    }
  });
}

provider.on('server_error', (ctx, err) => log('server_error', err));
provider.on('grant.error', (ctx, err) => log('grant.error', err?.message, err?.error_description ?? '', err?.error_detail ?? ''));

// A client_credentials request without a scope parameter gets all the
// scopes registered for the client (oidc-provider would otherwise issue a
// token without any scope claim). oidc-provider has no option for this, so the
// built-in grant handler is wrapped; it is reached through an internal module
// of the pinned oidc-provider version.
try {
  const { default: internals } = await import('oidc-provider/lib/helpers/weak_cache.js');
  const { grantTypeHandlers, grantTypeParams, grantTypeDupes } = internals(provider);
  const builtin = grantTypeHandlers.get('client_credentials');
  if (typeof builtin !== 'function') throw new Error('client_credentials handler not found');
  provider.registerGrantType(
    'client_credentials',
    async (ctx) => {
      if (!ctx.oidc.params.scope && ctx.oidc.client?.scope) {
        ctx.oidc.params.scope = ctx.oidc.client.scope;
      }
      return builtin(ctx);
    },
    grantTypeParams.get('client_credentials'),
    grantTypeDupes.get('client_credentials'),
  );
} catch (err) {
  log(`warning: could not install the default-scope wrapper (${err.message}); `
    + 'tokens requested without scope will carry no scope claim');
}

// Test-only, and only with AUTHORITY_TEST_MINT=1 (bench/tokens.sh): many
// distinct access tokens fast, without a token request each.
//   POST /__test/mint?count=N[&client=ID][&scope=S][&resource=URL]
// answers N tokens, one per line (text/plain, streamed in batches). Each is
// what a client_credentials request of that client (default svc-bearer) for
// that scope (default echo.read) and resource would get: the same header
// (ES256, typ at+jwt, the kid of the signing key the JWKS publishes), the same
// claims in the same order, signed with the same key, a fresh jti each, iat
// now, exp now + AUTHORITY_AT_TTL. Sender-constrained clients are refused
// (their tokens need a cnf claim this endpoint does not make).
//
// With &shape=NAME the tokens are shaped as another provider issues them
// (SHAPES below), for the gateway's token profiles; the extra parameters
// roles, client_roles (space-separated) and tenant say what goes where that
// provider puts roles and tenants.
const MINT_MAX = 10_000_000;
const mintKey = jwks.keys.find((k) => k.kty === 'EC' && k.crv === 'P-256' && k.alg === 'ES256' && k.d);
const mintPrivateKey = crypto.createPrivateKey({ key: mintKey, format: 'jwk' });
const rsaKey = jwks.keys.find((k) => k.kty === 'RSA' && k.alg === 'RS256' && k.d);
const rsaPrivateKey = crypto.createPrivateKey({ key: rsaKey, format: 'jwk' });

// Access tokens as five other Authorities issue them: each provider's header
// (typ or none), claim names, nesting and issuer form, as its documentation
// shows them (the pages are cited in docs/authorities.md). They are signed
// with this Authority's RS256 key, the algorithm all five use. Each shape has
// its own issuer, this Authority's URL followed by the provider's path form,
// and a discovery document there whose jwks_uri is this Authority's /jwks, so
// a gateway configured with that issuer loads the real keys.
//   GET /__test/shapes   {"keycloak": {"issuer": "..."}, ...}
// Subjects and tenant ids are fixed per shape (tests compare them); jti and
// the like are fresh for each token.
const ENTRA_TENANT = '0b3c5e7a-4d2f-4c1b-9e8a-6f5d4c3b2a19';
const COGNITO_POOL = 'us-east-1_St3llaP0l';
const uuid = () => crypto.randomUUID();
const opaque = (bytes = 16) => crypto.randomBytes(bytes).toString('base64url');
const words = (text) => (text ? text.split(' ').filter(Boolean) : []);
const SHAPES = {
  // Keycloak: https://{host}/realms/{realm}; header typ JWT; realm roles in
  // realm_access.roles, client roles per client in resource_access; the
  // client in azp; the payload's own typ says Bearer (ID for an ID token).
  keycloak: {
    path: '/realms/stella',
    header: (kid) => ({ alg: 'RS256', typ: 'JWT', kid }),
    claims: (t) => ({
      exp: t.exp,
      iat: t.iat,
      jti: uuid(),
      iss: t.iss,
      aud: [t.aud, 'account'],
      sub: '8f5e2c1a-3b4d-4e6f-9a0b-1c2d3e4f5a6b',
      typ: 'Bearer',
      azp: t.clientId,
      sid: uuid(),
      acr: '1',
      'allowed-origins': ['/*'],
      realm_access: { roles: ['default-roles-stella', 'offline_access', 'uma_authorization', ...t.roles] },
      resource_access: {
        ...(t.clientRoles.length ? { [t.clientId]: { roles: t.clientRoles } } : {}),
        account: { roles: ['manage-account', 'view-profile'] },
      },
      scope: ['profile', 'email', ...t.scope].join(' '),
      email_verified: false,
      preferred_username: 'alice',
    }),
  },
  // Microsoft Entra ID v2.0: https://login.microsoftonline.com/{tid}/v2.0;
  // header typ JWT with x5t; aud the API's application id; scp a
  // space-separated string; app roles in roles; the client in azp; the
  // tenant in tid; uti, not jti.
  entra: {
    path: `/${ENTRA_TENANT}/v2.0`,
    header: (kid) => ({ typ: 'JWT', alg: 'RS256', x5t: kid, kid }),
    claims: (t) => ({
      aud: t.aud,
      iss: t.iss,
      iat: t.iat,
      nbf: t.iat,
      exp: t.exp,
      aio: opaque(48),
      azp: t.clientId,
      azpacr: '1',
      name: 'Alice',
      oid: '3c1f8a2e-5b6d-4c7e-8f90-a1b2c3d4e5f6',
      preferred_username: 'alice@stella.example',
      rh: `0.${opaque(32)}.`,
      ...(t.roles.length ? { roles: t.roles } : {}),
      ...(t.scope.length ? { scp: t.scope.join(' ') } : {}),
      sub: 'Xw2yS5t8bQ3kR7mN1pL4vJ6hG9fD0cA2zE5uI8oY3wT',
      tid: ENTRA_TENANT,
      uti: opaque(16),
      ver: '2.0',
    }),
  },
  // Auth0 (its default token profile): https://{tenant}.auth0.com/ with the
  // trailing slash; header typ JWT; aud the API and the userinfo endpoint;
  // the client in azp; no jti; RBAC permissions in permissions; an
  // organization in org_id; custom claims namespaced by a URL (here roles an
  // Action adds, from client_roles).
  auth0: {
    path: '/auth0/',
    header: (kid) => ({ alg: 'RS256', typ: 'JWT', kid }),
    claims: (t) => ({
      ...(t.clientRoles.length ? { 'https://stella.example/roles': t.clientRoles } : {}),
      iss: t.iss,
      sub: 'auth0|5f7c8ec7c33c6c004bbafe82',
      aud: [t.aud, `${t.iss}userinfo`],
      iat: t.iat,
      exp: t.exp,
      scope: ['openid', 'profile', ...t.scope].join(' '),
      ...(t.tenant ? { org_id: t.tenant } : {}),
      azp: t.clientId,
      permissions: t.roles,
    }),
  },
  // Okta custom authorization server: https://{domain}/oauth2/{serverId}; no
  // typ in the header; scp an array; the client in cid, the user's id in uid;
  // groups once the server has a groups claim.
  okta: {
    path: '/oauth2/default',
    header: (kid) => ({ kid, alg: 'RS256' }),
    claims: (t) => ({
      ver: 1,
      jti: `AT.${opaque(32)}`,
      iss: t.iss,
      aud: t.aud,
      iat: t.iat,
      exp: t.exp,
      cid: t.clientId,
      uid: '00u1a2b3c4D5e6F7g8h9',
      scp: t.scope,
      auth_time: t.iat - 5,
      sub: 'alice@stella.example',
      ...(t.roles.length ? { groups: t.roles } : {}),
    }),
  },
  // Amazon Cognito user pool: https://cognito-idp.{region}.amazonaws.com/{poolId};
  // no typ in the header; no aud in an access token, the app client in
  // client_id; token_use access; groups in cognito:groups.
  cognito: {
    path: `/${COGNITO_POOL}`,
    header: (kid) => ({ kid, alg: 'RS256' }),
    claims: (t) => ({
      sub: '5a1b7c3d-9e2f-4a6b-8c0d-e1f2a3b4c5d6',
      ...(t.roles.length ? { 'cognito:groups': t.roles } : {}),
      iss: t.iss,
      version: 2,
      client_id: t.clientId,
      origin_jti: uuid(),
      event_id: uuid(),
      token_use: 'access',
      scope: t.scope.join(' '),
      auth_time: t.iat,
      exp: t.exp,
      iat: t.iat,
      jti: uuid(),
      username: 'alice',
    }),
  },
  // A Cognito ID token of the same pool: aud is the app client, token_use id.
  'cognito-id': {
    path: `/${COGNITO_POOL}`,
    header: (kid) => ({ kid, alg: 'RS256' }),
    claims: (t) => ({
      sub: '5a1b7c3d-9e2f-4a6b-8c0d-e1f2a3b4c5d6',
      ...(t.roles.length ? { 'cognito:groups': t.roles } : {}),
      email_verified: true,
      iss: t.iss,
      'cognito:username': 'alice',
      origin_jti: uuid(),
      aud: t.clientId,
      event_id: uuid(),
      token_use: 'id',
      auth_time: t.iat,
      exp: t.exp,
      iat: t.iat,
      jti: uuid(),
      email: 'alice@stella.example',
    }),
  },
};
const shapeIssuer = (shape) => `${issuer}${shape.path}`;
// The discovery document of each shape's issuer, by request path (a trailing
// slash of the issuer is dropped before the well-known path, as OIDC
// Discovery 4 says).
const shapeDiscovery = new Map(Object.values(SHAPES).map((shape) => [
  `${shape.path.replace(/\/$/, '')}/.well-known/openid-configuration`,
  {
    issuer: shapeIssuer(shape),
    jwks_uri: `${issuer}/jwks`,
    response_types_supported: ['code'],
    subject_types_supported: ['public'],
    id_token_signing_alg_values_supported: ['RS256'],
  },
]));

async function mintTokens(req, res, query) {
  const fail = (status, message) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: message }));
  };
  const count = Number(query.get('count') ?? '1');
  if (!Number.isSafeInteger(count) || count < 1 || count > MINT_MAX) return fail(400, `count must be 1..${MINT_MAX}`);
  const clientId = query.get('client') ?? 'svc-bearer';
  const client = clients.find((c) => c.client_id === clientId);
  if (!client) return fail(400, `unknown client ${clientId}`);
  if (client.dpop_bound_access_tokens || client.tls_client_certificate_bound_access_tokens) {
    return fail(400, `${clientId} gets sender-constrained tokens; minting makes unbound ones only`);
  }
  const scope = query.get('scope') ?? 'echo.read';
  const held = (client.scope ?? '').split(' ');
  if (!scope.split(' ').every((s) => held.includes(s))) return fail(400, `${clientId} does not hold scope ${scope}`);
  const aud = query.get('resource') ?? DEFAULT_RESOURCE;
  const shapeName = query.get('shape');
  const shape = shapeName === null ? undefined : SHAPES[shapeName];
  if (shapeName !== null && !Object.hasOwn(SHAPES, shapeName)) {
    return fail(400, `unknown shape ${shapeName}; one of ${Object.keys(SHAPES).join(', ')}`);
  }

  const b64 = (text) => Buffer.from(text).toString('base64url');
  const header = b64(JSON.stringify(shape ? shape.header(rsaKey.kid) : { alg: 'ES256', typ: 'at+jwt', kid: mintKey.kid }));
  const sign = shape
    ? (input) => crypto.sign('sha256', Buffer.from(input), rsaPrivateKey)
    : (input) => crypto.sign('sha256', Buffer.from(input), { key: mintPrivateKey, dsaEncoding: 'ieee-p1363' });
  res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'no-store' });
  const BATCH = 1000;
  for (let done = 0; done < count;) {
    const iat = Math.floor(Date.now() / 1000);
    const lines = [];
    for (const end = Math.min(count, done + BATCH); done < end; done += 1) {
      let claims;
      if (shape) {
        claims = shape.claims({
          iss: shapeIssuer(shape),
          clientId,
          scope: words(scope),
          aud,
          roles: words(query.get('roles')),
          clientRoles: words(query.get('client_roles')),
          tenant: query.get('tenant') || undefined,
          iat,
          exp: iat + AT_TTL,
        });
      } else {
        claims = { client_id: clientId };
        if (client.tenant) claims.tenant = client.tenant;
        Object.assign(claims, {
          jti: crypto.randomBytes(32).toString('base64url'), sub: clientId, iat, exp: iat + AT_TTL, scope, iss: issuer, aud,
        });
      }
      const input = `${header}.${b64(JSON.stringify(claims))}`;
      lines.push(`${input}.${sign(input).toString('base64url')}\n`);
    }
    if (!res.write(lines.join(''))) await new Promise((resolve) => res.once('drain', resolve));
    if (res.destroyed) return undefined;
  }
  res.end();
  return undefined;
}

// The claims endpoint: POST /claims with the calling client's credentials
// (client_secret_basic) and a form of `sub` and `client_id`; answers the
// claims AUTHORITY_CLAIMS_FILE holds for the subject (else the client_id),
// or {} when it holds none. The file is read on every request, so tests can
// change what the Authority says while it runs.
let claimsRequests = 0;
function basicClient(req) {
  const value = req.headers.authorization || '';
  if (!value.startsWith('Basic ')) return undefined;
  const decoded = Buffer.from(value.slice(6), 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return undefined;
  const form = (t) => decodeURIComponent(t.replace(/\+/g, ' '));
  const id = form(decoded.slice(0, colon));
  const secret = form(decoded.slice(colon + 1));
  const client = clients.find((c) => c.client_id === id);
  if (!client || typeof client.client_secret !== 'string') return undefined;
  const a = Buffer.from(client.client_secret);
  const b = Buffer.from(secret);
  return a.length === b.length && crypto.timingSafeEqual(a, b) ? client : undefined;
}
function claimsEndpoint(req, res) {
  const reply = (status, body) => {
    res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    res.end(JSON.stringify(body));
  };
  if (!basicClient(req)) return reply(401, { error: 'invalid_client' });
  let body = '';
  req.setEncoding('utf8');
  req.on('data', (chunk) => { body += chunk; if (body.length > 65536) req.destroy(); });
  req.on('end', () => {
    claimsRequests += 1;
    const params = new URLSearchParams(body);
    let table = {};
    if (CLAIMS_FILE && fs.existsSync(CLAIMS_FILE)) {
      try {
        table = JSON.parse(fs.readFileSync(CLAIMS_FILE, 'utf8'));
      } catch (err) {
        log('claims file unreadable', err.message);
        return reply(500, { error: 'server_error' });
      }
    }
    const sub = params.get('sub');
    const clientId = params.get('client_id');
    const found = (sub && table[sub]) || (clientId && table[clientId]) || {};
    return reply(200, found);
  });
  return undefined;
}

// Test-only: the number of JWKS documents served, so that tests can count
// the gateway's fetches at the Authority (GET /__test/jwks-count).
let jwksFetches = 0;
let introspections = 0;
// The connections introspection requests came on (tests check that the
// gateway reuses them).
const introspectionSockets = new WeakSet();
let introspectionConnections = 0;
function countIntrospection(req) {
  introspections += 1;
  if (!introspectionSockets.has(req.socket)) {
    introspectionSockets.add(req.socket);
    introspectionConnections += 1;
  }
}
const handle = provider.callback();
// The mTLS listener serves the provider only (the token endpoint is what
// clients use it for).
mtlsServer?.on('request', (req, res) => handle(req, res));
server.on('request', (req, res) => {
  const path = (req.url || '').split('?')[0];
  if (path === '/__test/jwks-count') {
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    res.end(JSON.stringify({ jwks_fetches: jwksFetches, introspections, claims_requests: claimsRequests, introspection_connections: introspectionConnections }));
    return;
  }
  // AUTHORITY_SLOW_MS: the claims and introspection endpoints answer this
  // much later, so tests can send concurrent requests while one is pending.
  if (SLOW_MS > 0 && req.method === 'POST' && (path === '/claims' || path === '/token/introspection')) {
    if (path === '/token/introspection') countIntrospection(req);
    setTimeout(() => (path === '/claims' ? claimsEndpoint(req, res) : handle(req, res)), SLOW_MS);
    return;
  }
  if (path === '/claims' && req.method === 'POST') {
    claimsEndpoint(req, res);
    return;
  }
  if (path === '/token/introspection') countIntrospection(req);
  if (TEST_MINT && path === '/__test/shapes' && req.method === 'GET') {
    const shapes = Object.fromEntries(Object.entries(SHAPES).map(([name, shape]) => [name, { issuer: shapeIssuer(shape) }]));
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    res.end(JSON.stringify(shapes));
    return;
  }
  if (TEST_MINT && req.method === 'GET' && shapeDiscovery.has(path)) {
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    res.end(JSON.stringify(shapeDiscovery.get(path)));
    return;
  }
  if (TEST_MINT && path === '/__test/mint' && req.method === 'POST') {
    mintTokens(req, res, new URL(req.url, issuer).searchParams).catch((err) => {
      log('mint failed', err);
      res.destroy();
    });
    return;
  }
  if (path === '/jwks') jwksFetches += 1;
  handle(req, res);
});

process.stdout.write(`AUTHORITY_READY ${JSON.stringify({ issuer, port, ...(mtlsServer ? { mtls: mtlsOrigin } : {}) })}\n`);
log(`issuer ${issuer}, ${clients.length} clients, access token TTL ${AT_TTL}s, default resource ${DEFAULT_RESOURCE}`
  + `${TEST_MINT ? ', test-only token minting ON (POST /__test/mint)' : ''}`
  + `${DPOP_NONCE ? ', DPoP nonces required at the token endpoint' : ''}`);

let stopping = false;
function shutdown(signal) {
  if (stopping) return;
  stopping = true;
  log(`${signal} received, shutting down`);
  server.close(() => process.exit(0));
  server.closeAllConnections?.();
  mtlsServer?.close();
  mtlsServer?.closeAllConnections?.();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
