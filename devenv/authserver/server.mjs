// Test authorization server for raidiam-token-operator.
//
// node-oidc-provider configured the way Raidiam Connect serves FAPI-grade
// machine-to-machine clients: client_credentials only, tls_client_auth and
// self_signed_tls_client_auth (RFC 8705) and private_key_jwt (RFC 7523)
// client authentication, certificate-bound (cnf.x5t#S256) JWT access tokens,
// an mTLS endpoint alias listener advertised via `mtls_endpoint_aliases`, plus
// a plain-HTTP admin API that tests use to register clients, inject faults and
// read counters.
//
// Per client it can also behave like the other servers users point the
// operator at: opaque access tokens (`access_token_format: "opaque"`), and
// client assertions that must carry the token endpoint as `aud`
// (`assertion_audience: "token_endpoint"`, refused with an error_description
// naming the claim and the URL, as such servers do).
//
// With a `registration` config key it is a data provider (a bank): RFC 7591 registration and
// RFC 7592 management at the mTLS alias, checking software statements as the Open Finance
// Brasil DCR profile says (lib/registration.mjs documents its keys).
//
// Usage: node server.mjs --config <config.json>
// devenv/raidiam_devenv/authserver.py writes the config and documents the
// admin API. Config keys (all optional except the TLS files):
//   server_cert, server_key   TLS server certificate / key (PEM paths)
//   client_ca                 PEM path or list: trust anchors for client certs
//   tls_port, mtls_port, admin_port   0 (default) = ephemeral
//   ready_file                JSON written once listening (ports, issuer, ...)
//   host (127.0.0.1), public_host (localhost)
//   issuer, mtls_base_url     "{tls_port}" / "{mtls_port}" are substituted
//   resource, resources       access token audience(s)
//   scopes, client_auth_methods, client_auth_signing_algs, access_token_alg
//   default_token_ttl (300), log_requests (true), clients ([metadata])
//   publish_mtls_aliases (true), discovery_issuer (publish a wrong issuer)
//   discovery                 extra discovery metadata
//   certificate_bound_access_tokens (true)  false: a server that binds no
//                             token and does not advertise
//                             tls_client_certificate_bound_access_tokens
//   registration              see lib/registration.mjs

import * as crypto from 'node:crypto';

import Provider, { errors } from 'oidc-provider';

import {
  certificateSubjectRdns, certificateThumbprint, dnKey, expectedDnKey, peerInfo,
} from './lib/certificates.mjs';
import { FaultList } from './lib/faults.mjs';
import { generateSigningJwk, verifyJwt } from './lib/jws.mjs';
import { log } from './lib/log.mjs';
import { registrationSetup } from './lib/registration.mjs';
import {
  announceReady, createAdminServer, createListeners, listen, loadConfig, readJson, sendJson, stopOnSignals,
} from './lib/server.mjs';

const { config, readPem } = loadConfig('node server.mjs --config <config.json>');

const HOST = config.host ?? '127.0.0.1';
const PUBLIC_HOST = config.public_host ?? 'localhost';
const DEFAULT_TOKEN_TTL = config.default_token_ttl ?? 300;
const LOG_REQUESTS = config.log_requests ?? true;
const ACCESS_TOKEN_ALG = config.access_token_alg ?? 'PS256';
const SCOPES = config.scopes ?? [
  'openid',
  'directory:software',
  'directory:website',
  'payments',
  'accounts',
  'consents',
  'resources',
  'customers',
  'credit-cards-accounts',
  'loans',
  'financings',
];
const SCOPE_SET = new Set(SCOPES);
const CLIENT_AUTH_METHODS = config.client_auth_methods ?? [
  'tls_client_auth',
  'self_signed_tls_client_auth',
  'private_key_jwt',
  'client_secret_post',
  'client_secret_basic',
];
const ASSERTION_ALGS = config.client_auth_signing_algs ?? ['PS256', 'ES256', 'EdDSA', 'Ed25519', 'RS256'];
const TOKEN_PATH = '/token';
// A protected resource on the mTLS listener that accepts only certificate-bound access tokens
// presented over mutual TLS with the certificate they are bound to (RFC 8705 section 3), as
// Open Finance Brasil's APIs do.
const RESOURCE_PATH = '/resource';
const DISCOVERY_PATHS = new Set(['/.well-known/openid-configuration', '/.well-known/oauth-authorization-server']);
const FAPI_PROFILES = new Set(['2.0', '1.0 Final']);
const ACCESS_TOKEN_FORMATS = new Set(['jwt', 'opaque']);
const ASSERTION_AUDIENCES = new Set(['token_endpoint']);
const CERTIFICATE_BOUND_ACCESS_TOKENS = config.certificate_bound_access_tokens ?? true;

// ---------------------------------------------------------------------------
// Listeners. They are created (and bound) before the Provider exists because
// the issuer URL contains the port, and binding port 0 is the only race-free
// way to get a free port. Requests are dispatched through `appHandler`, which
// is set once the provider is built (no request can arrive before the ready
// file is written anyway).
// ---------------------------------------------------------------------------

let appHandler = (_req, res) => {
  res.statusCode = 503;
  res.end('starting');
};
const dispatch = (req, res) => appHandler(req, res);

const { tlsServer, mtlsServer } = createListeners(config, readPem, {
  tlsHandler: dispatch,
  mtlsHandler: (req, res) => (new URL(req.url, 'https://x').pathname === RESOURCE_PATH
    ? protectedResource(req, res)
    : dispatch(req, res)),
  logRequests: LOG_REQUESTS,
});

const tlsPort = await listen(tlsServer, config.tls_port, HOST);
const mtlsPort = await listen(mtlsServer, config.mtls_port, HOST);

const ISSUER = (config.issuer ?? `https://${PUBLIC_HOST}:{tls_port}`).replace('{tls_port}', String(tlsPort));
const MTLS_BASE = (config.mtls_base_url ?? `https://${PUBLIC_HOST}:{mtls_port}`).replace(
  '{mtls_port}',
  String(mtlsPort),
);
const RESOURCE = config.resource ?? `${ISSUER}/resource`;
const RESOURCES = new Set(config.resources ?? [RESOURCE]);

// ---------------------------------------------------------------------------
// Peer certificate handling (RFC 8705); the DER and DN code is in lib/certificates.mjs.
// ---------------------------------------------------------------------------

function getCertificate(ctx) {
  const info = peerInfo(ctx.socket);
  // Only certificates that chain to the configured client CA count, both for
  // tls_client_auth and for binding tokens of private_key_jwt clients. A
  // self_signed_tls_client_auth client chains to nothing: its certificate is
  // checked against the one registered in its jwks (x5c) instead.
  if (info?.authorized) return info.pem;
  return ctx.oidc?.client?.clientAuthMethod === 'self_signed_tls_client_auth' ? info?.pem : undefined;
}

function certificateAuthorized(ctx) {
  return peerInfo(ctx.socket)?.authorized === true;
}

function certificateSubjectMatches(ctx, property, expected) {
  const info = peerInfo(ctx.socket);
  if (!info) return false;
  switch (property) {
    case 'tls_client_auth_subject_dn': {
      info.subjectKey ??= dnKey(certificateSubjectRdns(info.raw));
      const expectedKey = expectedDnKey(expected);
      const matches = expectedKey !== null && expectedKey === info.subjectKey;
      if (!matches) ctx.state.certMismatch = `subject ${info.subjectKey} != ${expectedKey}`;
      return matches;
    }
    case 'tls_client_auth_san_dns':
      info.x509 ??= new crypto.X509Certificate(info.raw);
      return info.x509.checkHost(expected, { subject: 'never', wildcards: false }) === expected;
    case 'tls_client_auth_san_ip':
      info.x509 ??= new crypto.X509Certificate(info.raw);
      return info.x509.checkIP(expected) !== undefined;
    case 'tls_client_auth_san_email':
      info.x509 ??= new crypto.X509Certificate(info.raw);
      return info.x509.checkEmail(expected, { subject: 'never' }) !== undefined;
    case 'tls_client_auth_san_uri':
      info.x509 ??= new crypto.X509Certificate(info.raw);
      return (info.x509.subjectAltName ?? '').split(', ').includes(`URI:${expected}`);
    default:
      return false;
  }
}

// ---------------------------------------------------------------------------
// Storage. The bundled memory adapter is an LRU of 1000 entries shared by all
// models, which would silently evict clients registered by a benchmark and
// weaken client_assertion jti replay detection. This one keeps clients
// forever and everything else until it expires.
// ---------------------------------------------------------------------------

const clientStore = new Map(); // client_id -> metadata
const modelStores = new Map(); // model name -> Map(id -> {payload, expiresAt})

function storeFor(model) {
  let store = modelStores.get(model);
  if (!store) {
    store = new Map();
    modelStores.set(model, store);
  }
  return store;
}

setInterval(() => {
  const now = Date.now();
  for (const store of modelStores.values()) {
    for (const [id, entry] of store) if (entry.expiresAt <= now) store.delete(id);
  }
}, 30_000).unref();

class Adapter {
  constructor(model) {
    this.model = model;
    this.store = model === 'Client' ? null : storeFor(model);
  }

  async upsert(id, payload, expiresIn) {
    if (this.model === 'Client') {
      clientStore.set(id, payload);
      // A registration updated over RFC 7592 takes effect at the next token request.
      clientCache.delete(id);
      return;
    }
    const expiresAt = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : Infinity;
    this.store.set(id, { payload, expiresAt });
  }

  async find(id) {
    if (this.model === 'Client') return clientStore.get(id);
    const entry = this.store.get(id);
    if (!entry) return undefined;
    if (entry.expiresAt <= Date.now()) {
      this.store.delete(id);
      return undefined;
    }
    return entry.payload;
  }

  async findByUserCode(userCode) {
    for (const { payload } of this.store.values()) if (payload.userCode === userCode) return payload;
    return undefined;
  }

  async findByUid(uid) {
    for (const { payload } of this.store.values()) if (payload.uid === uid) return payload;
    return undefined;
  }

  async consume(id) {
    const entry = this.store.get(id);
    if (entry) entry.payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    if (this.model === 'Client') {
      clientStore.delete(id);
      clientCache.delete(id);
    } else {
      this.store.delete(id);
    }
  }

  async revokeByGrantId(grantId) {
    for (const [id, { payload }] of this.store) if (payload.grantId === grantId) this.store.delete(id);
  }
}

// ---------------------------------------------------------------------------
// Provider.
// ---------------------------------------------------------------------------

const resourceServerInfo = {
  scope: SCOPES.join(' '),
  accessTokenFormat: 'jwt',
  jwt: { sign: { alg: ACCESS_TOKEN_ALG } },
};

// A server that wants its token endpoint as the client assertion's audience
// says so in error_description, with the URL: that text is what a user gets
// to see, so it names the claim and the value it expected.
function assertionAudienceError(wanted, got) {
  const error = new errors.InvalidClientAuth(`aud ${JSON.stringify(got)} is not the token endpoint`);
  error.error_description = `The "aud" claim of the client_assertion must be the token endpoint URL ${wanted}, not ${JSON.stringify(got)}.`;
  return error;
}

async function assertJwtClientAuthClaimsAndHeader(ctx, claims, _header, client) {
  if (client.assertion_audience === 'token_endpoint') {
    // The endpoint the request was sent to: the mTLS alias or the plain one.
    const wanted = ctx.oidc.urlFor('token');
    const audiences = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
    if (!audiences.includes(wanted)) throw assertionAudienceError(wanted, claims.aud);
    return;
  }
  // node-oidc-provider's own rule, kept for every other client.
  if (ctx.oidc.isFapi('2.0') && claims.aud !== ctx.oidc.issuer) {
    throw new errors.InvalidClientAuth('audience (aud) must equal the issuer identifier url');
  }
}

const registration = registrationSetup(config, { readPem, scopes: SCOPE_SET, log });

const discoveryExtras = { ...(config.discovery ?? {}) };
if (config.publish_mtls_aliases ?? true) {
  discoveryExtras.mtls_endpoint_aliases = { token_endpoint: `${MTLS_BASE}${TOKEN_PATH}` };
  if (registration.enabled) {
    discoveryExtras.mtls_endpoint_aliases.registration_endpoint = `${MTLS_BASE}${registration.discovery.registration_endpoint}`;
  }
}

const SIGNING_KEYS = [
  generateSigningJwk('rsa', { modulusLength: 2048 }, 'rsa-sig'),
  generateSigningJwk('ec', { namedCurve: 'P-256' }, 'ec-sig'),
];

const provider = new Provider(ISSUER, {
  ...(registration.enabled ? { fetch: registration.fetch } : {}),
  adapter: Adapter,
  clients: [],
  jwks: { keys: SIGNING_KEYS },
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  findAccount: async () => undefined,
  scopes: SCOPES,
  clientAuthMethods: CLIENT_AUTH_METHODS,
  enabledJWA: { clientAuthSigningAlgValues: ASSERTION_ALGS },
  clientDefaults: {
    grant_types: ['client_credentials'],
    response_types: [],
    token_endpoint_auth_method: 'private_key_jwt',
  },
  extraClientMetadata: {
    // fapi_profile: "2.0" | "1.0 Final" selects the FAPI profile per client.
    // token_ttl: access token lifetime in seconds for this client. A fraction
    // (0.5) is what the response's expires_in says; the JWT's exp rounds up.
    // access_token_format: "jwt" (default) | "opaque".
    // assertion_audience: "token_endpoint" accepts client assertions only
    //   with the token endpoint URL as aud.
    // On a data provider also what lib/registration.mjs keeps of a registration.
    properties: ['fapi_profile', 'token_ttl', 'access_token_format', 'assertion_audience', ...registration.extraProperties],
    validator(_ctx, key, value, metadata) {
      if (value === undefined || value === null) {
        delete metadata[key];
        return;
      }
      if (key === 'fapi_profile' && !FAPI_PROFILES.has(value)) {
        throw new errors.InvalidClientMetadata(`fapi_profile must be one of ${[...FAPI_PROFILES].join(', ')}`);
      }
      if (key === 'token_ttl' && !(Number.isFinite(value) && value > 0 && value <= 2 ** 31)) {
        throw new errors.InvalidClientMetadata('token_ttl must be a positive number of seconds');
      }
      if (key === 'access_token_format' && !ACCESS_TOKEN_FORMATS.has(value)) {
        throw new errors.InvalidClientMetadata(`access_token_format must be one of ${[...ACCESS_TOKEN_FORMATS].join(', ')}`);
      }
      if (key === 'assertion_audience' && !ASSERTION_AUDIENCES.has(value)) {
        throw new errors.InvalidClientMetadata(`assertion_audience must be one of ${[...ASSERTION_AUDIENCES].join(', ')}`);
      }
    },
  },
  discovery: discoveryExtras,
  assertJwtClientAuthClaimsAndHeader,
  ttl: {
    ClientCredentials: (_ctx, _token, client) => Math.ceil(client?.token_ttl ?? DEFAULT_TOKEN_TTL),
    AccessToken: DEFAULT_TOKEN_TTL,
    IdToken: 3600,
    Interaction: 600,
    Session: 3600,
    Grant: 3600,
    RefreshToken: 3600,
    DeviceCode: 600,
    BackchannelAuthenticationRequest: 600,
    PreAuthorizedCode: 600,
  },
  features: {
    ...registration.features,
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    userinfo: { enabled: false },
    mTLS: {
      enabled: true,
      certificateBoundAccessTokens: CERTIFICATE_BOUND_ACCESS_TOKENS,
      tlsClientAuth: true,
      selfSignedTlsClientAuth: true,
      getCertificate,
      certificateAuthorized,
      certificateSubjectMatches,
    },
    fapi: {
      enabled: true,
      profile: (_ctx, client) => client?.fapi_profile,
    },
    resourceIndicators: {
      enabled: true,
      // Raidiam Connect issues client_credentials tokens without the client
      // having to name a resource; every token gets the one audience.
      defaultResource: async () => RESOURCE,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, resourceIndicator, client) => {
        if (!RESOURCES.has(resourceIndicator)) throw new errors.InvalidTarget();
        // Upstream silently drops scopes the resource server does not know;
        // an authorization server is expected to refuse them instead.
        for (const scope of (ctx.oidc.params?.scope ?? '').split(' ')) {
          if (scope && !SCOPE_SET.has(scope)) {
            throw new errors.InvalidScope('requested scope is not supported', scope);
          }
        }
        return { ...resourceServerInfo, accessTokenFormat: client?.access_token_format ?? 'jwt' };
      },
    },
  },
});

// Client lookups hit this cache first: upstream caches dynamic clients in a
// 100-entry LRU keyed by a hash of their metadata, which thrashes (and
// rebuilds Client objects per request) once a benchmark registers thousands.
const clientCache = new Map();
{
  const ClientModel = provider.Client;
  const baseFind = ClientModel.find.bind(ClientModel);
  ClientModel.find = async (id) => {
    const hit = clientCache.get(id);
    if (hit) return hit;
    const client = await baseFind(id);
    if (client) clientCache.set(id, client);
    return client;
  };
}

async function registerClient(metadata) {
  if (!metadata || typeof metadata !== 'object' || Array.isArray(metadata)) {
    throw new errors.InvalidClientMetadata('client metadata must be a JSON object');
  }
  if (typeof metadata.client_id !== 'string' || !metadata.client_id) {
    throw new errors.InvalidClientMetadata('client_id is mandatory');
  }
  // Validate eagerly so a bad registration fails the admin call instead of
  // surfacing later as an invalid_client at the token endpoint.
  await provider.Client.validate(metadata);
  clientStore.set(metadata.client_id, structuredClone(metadata));
  clientCache.delete(metadata.client_id);
}

// ---------------------------------------------------------------------------
// Faults and statistics.
// ---------------------------------------------------------------------------

const TOKEN_MODES = new Set(['status', 'hang', 'slow', 'response']);
// A registration request answered late: handled (the client registered), then held for delay_ms.
const REGISTRATION_MODES = new Set(['late']);
const DISCOVERY_MODES = new Set(['discovery_issuer', 'no_mtls_aliases']);

function newStats() {
  return {
    started_at: new Date().toISOString(),
    token_requests_total: 0,
    token_requests_by_client: {},
    token_requests_by_listener: { tls: 0, mtls: 0 },
    issued_total: 0,
    issued_by_client: {},
    errors_total: 0,
    errors_by_code: {},
    faulted_total: 0,
    discovery_requests_total: 0,
    resource_accepted_total: 0,
    resource_rejected_total: 0,
    resource_rejected_by_reason: {},
  };
}
let stats = newStats();
// Arrival time (ms since the epoch) of every token request, by client; served
// only on request (GET /admin/stats?timeline=1) because it grows with traffic.
let timeline = {};

const bump = (obj, key) => {
  obj[key] = (obj[key] ?? 0) + 1;
};

// The endpoints a fault can hit: token and discovery always, registration (POST, and GET, PUT,
// DELETE on a client's registration_client_uri) on a data provider.
const FAULT_ENDPOINTS = new Set(['token', 'discovery', 'registration']);

function validateFault(body) {
  const { mode } = body;
  if (!TOKEN_MODES.has(mode) && !DISCOVERY_MODES.has(mode) && !REGISTRATION_MODES.has(mode)) {
    throw new Error(`mode must be one of ${[...TOKEN_MODES, ...DISCOVERY_MODES, ...REGISTRATION_MODES].join(', ')}`);
  }
  const endpoint = DISCOVERY_MODES.has(mode) ? 'discovery' : (body.endpoint ?? 'token');
  if (REGISTRATION_MODES.has(mode) && endpoint !== 'registration') throw new Error(`${mode} mode is for endpoint registration`);
  if (!FAULT_ENDPOINTS.has(endpoint)) throw new Error(`endpoint must be one of ${[...FAULT_ENDPOINTS].join(', ')}`);
  if (mode === 'status' && !(Number.isSafeInteger(body.status) && body.status >= 100 && body.status <= 599)) {
    throw new Error('status mode needs an HTTP status');
  }
  if ((mode === 'slow' || mode === 'late') && !(Number.isFinite(body.delay_ms) && body.delay_ms >= 0)) {
    throw new Error(`${mode} mode needs delay_ms`);
  }
  if (mode === 'discovery_issuer' && typeof body.issuer !== 'string') {
    throw new Error('discovery_issuer mode needs issuer');
  }
  return { ...body, endpoint };
}

const faults = new FaultList(validateFault);

// Consumes one use of the first fault for this endpoint (and client, and HTTP method, where the
// fault names one) that `predicate` accepts, and returns it.
function takeFault(endpoint, clientId, predicate = () => true, method = undefined) {
  return faults.take((f) => f.endpoint === endpoint
    && (f.client_id === undefined || f.client_id === null || f.client_id === clientId)
    && (f.method === undefined || f.method === null || method === undefined || f.method.toUpperCase() === method)
    && predicate(f));
}

function defaultErrorCode(status) {
  if (status === 503) return 'temporarily_unavailable';
  if (status >= 500) return 'server_error';
  if (status === 401) return 'invalid_client';
  return 'invalid_request';
}

const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

// Answers the request according to `fault`. Returns false when the request
// should continue to the provider (slow mode).
async function applyFault(ctx, fault) {
  if (fault.delay_ms) await sleep(fault.delay_ms);
  if (fault.mode === 'slow') return false;
  if (fault.mode === 'hang') {
    // Accept the request and never answer; resolve only once the client gave
    // up so the pending promise does not outlive the connection.
    ctx.respond = false;
    await new Promise((resolve) => {
      if (ctx.res.destroyed || ctx.res.closed) resolve();
      else ctx.res.once('close', resolve);
    });
    return true;
  }
  const status = fault.status ?? 200;
  ctx.status = status;
  if (fault.retry_after !== undefined && fault.retry_after !== null) {
    ctx.set('Retry-After', String(fault.retry_after));
  }
  for (const [name, value] of Object.entries(fault.headers ?? {})) ctx.set(name, String(value));
  let body = fault.body;
  if (body === undefined || body === null) {
    body = fault.mode === 'status'
      ? JSON.stringify({ error: fault.error ?? defaultErrorCode(status), error_description: 'injected fault' })
      : '';
  } else if (typeof body !== 'string') {
    body = JSON.stringify(body);
  }
  if (fault.repeat) body = body.repeat(fault.repeat);
  ctx.type = fault.content_type ?? 'application/json';
  ctx.body = body;
  return true;
}

const BODY_LIMIT = 56 * 1024; // same limit oidc-provider applies

async function readRawBody(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > BODY_LIMIT) throw new errors.InvalidRequest('request entity too large');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

// Best-effort client identification for stats and client-scoped faults;
// oidc-provider performs the real authentication afterwards.
function requestClientId(params, authorization) {
  const fromParam = params.get('client_id');
  if (fromParam) return fromParam;
  if (authorization?.toLowerCase().startsWith('basic ')) {
    const decoded = Buffer.from(authorization.slice(6).trim(), 'base64').toString('utf8');
    const i = decoded.indexOf(':');
    if (i > 0) {
      try {
        return decodeURIComponent(decoded.slice(0, i).replace(/\+/g, '%20'));
      } catch {
        return decoded.slice(0, i);
      }
    }
  }
  const assertion = params.get('client_assertion');
  if (assertion) {
    try {
      const payload = JSON.parse(Buffer.from(assertion.split('.')[1], 'base64url').toString('utf8'));
      if (typeof payload.sub === 'string') return payload.sub;
      if (typeof payload.iss === 'string') return payload.iss;
    } catch {
      // fall through
    }
  }
  return 'unknown';
}

provider.use(async (ctx, next) => {
  const started = process.hrtime.bigint();
  const listener = ctx.req.socket.server?.listenerName ?? ctx.socket.server?.listenerName ?? '?';
  let clientId;
  let note = '';
  try {
    if (registration.enabled && registration.handles(ctx)) {
      clientId = await registration.handle(ctx, next, {
        takeFault: (endpoint, id, method) => takeFault(endpoint, id, (f) => TOKEN_MODES.has(f.mode) || REGISTRATION_MODES.has(f.mode), method),
        applyFault,
        sleep,
        readBody: readRawBody,
      });
      return;
    }
    if (ctx.path === TOKEN_PATH && ctx.method === 'POST') {
      let params = new URLSearchParams();
      if (ctx.is('application/x-www-form-urlencoded')) {
        const raw = await readRawBody(ctx.req);
        params = new URLSearchParams(raw);
        // The stream is consumed; oidc-provider falls back to this value.
        ctx.request.body = raw;
      }
      clientId = requestClientId(params, ctx.get('authorization'));
      stats.token_requests_total += 1;
      bump(stats.token_requests_by_client, clientId);
      (timeline[clientId] ??= []).push(Date.now());
      bump(stats.token_requests_by_listener, listener);
      const fault = takeFault('token', clientId);
      if (fault) {
        stats.faulted_total += 1;
        note = ` fault=${fault.mode}`;
        if (await applyFault(ctx, fault)) return;
      }
      await next();
      if (ctx.status === 200) {
        stats.issued_total += 1;
        bump(stats.issued_by_client, clientId);
        // The provider only issues whole seconds; a fractional lifetime is said as given.
        const ttl = clientStore.get(clientId)?.token_ttl;
        if (ttl !== undefined && !Number.isInteger(ttl) && ctx.body && typeof ctx.body === 'object') {
          ctx.body.expires_in = ttl;
        }
      } else {
        stats.errors_total += 1;
        bump(stats.errors_by_code, ctx.body?.error ?? String(ctx.status));
      }
      return;
    }
    if (ctx.method === 'GET' && DISCOVERY_PATHS.has(ctx.path)) {
      stats.discovery_requests_total += 1;
      const fault = takeFault('discovery', undefined, (f) => TOKEN_MODES.has(f.mode));
      if (fault) {
        stats.faulted_total += 1;
        note = ` fault=${fault.mode}`;
        if (await applyFault(ctx, fault)) return;
      }
      await next();
      if (ctx.status === 200 && ctx.body && typeof ctx.body === 'object') {
        if (takeFault('discovery', undefined, (f) => f.mode === 'no_mtls_aliases')) {
          delete ctx.body.mtls_endpoint_aliases;
          note = ' fault=no_mtls_aliases';
        }
        const issuerFault = takeFault('discovery', undefined, (f) => f.mode === 'discovery_issuer');
        if (issuerFault) {
          ctx.body.issuer = issuerFault.issuer;
          note += ' fault=discovery_issuer';
        } else if (config.discovery_issuer) {
          ctx.body.issuer = config.discovery_issuer;
        }
      }
      return;
    }
    await next();
  } finally {
    if (LOG_REQUESTS) {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      let detail = '';
      if (ctx.status >= 400 && ctx.body && typeof ctx.body === 'object' && ctx.body.error) {
        detail = ` error=${ctx.body.error} (${ctx.state.errorDetail ?? ctx.body.error_description ?? ''})`;
      }
      const peer = peerInfo(ctx.socket);
      if (peer && !peer.authorized) detail += ` untrusted-cert=${peer.authorizationError}`;
      if (ctx.state.certMismatch) detail += ` ${ctx.state.certMismatch}`;
      log(`${listener} ${ctx.method} ${ctx.path} ${ctx.respond === false ? 'hung' : ctx.status} ${ms.toFixed(1)}ms${clientId ? ` client=${clientId}` : ''}${note}${detail}`);
    }
  }
});

// ---------------------------------------------------------------------------
// The protected resource (GET /resource on the mTLS listener).
// ---------------------------------------------------------------------------

// The access token's claims if its signature, issuer, audience and lifetime are good; throws
// an Error whose message is the reason otherwise.
function verifiedAccessToken(token) {
  const { claims } = verifyJwt(token, SIGNING_KEYS);
  if (claims.iss !== ISSUER) throw new Error('wrong issuer');
  const audiences = [].concat(claims.aud ?? []);
  if (!audiences.some((a) => RESOURCES.has(a))) throw new Error('wrong audience');
  if (!(claims.exp > Date.now() / 1000)) throw new Error('expired');
  return claims;
}

function protectedResource(req, res) {
  const reject = (reason) => {
    stats.resource_rejected_total += 1;
    bump(stats.resource_rejected_by_reason, reason);
    if (LOG_REQUESTS) log(`mtls ${req.method} ${RESOURCE_PATH} 401 ${reason}`);
    const body = JSON.stringify({ error: 'invalid_token', error_description: reason });
    res.writeHead(401, {
      'content-type': 'application/json',
      'www-authenticate': `Bearer error="invalid_token", error_description="${reason}"`,
    });
    res.end(body);
  };
  const peer = peerInfo(req.socket);
  if (!peer || !peer.authorized) return reject('no trusted client certificate');
  const match = /^Bearer ([^ ]+)$/.exec(req.headers.authorization ?? '');
  if (!match) return reject('no bearer token');
  let claims;
  try {
    claims = verifiedAccessToken(match[1]);
  } catch (error) {
    return reject(`invalid token: ${error.message}`);
  }
  const thumbprint = certificateThumbprint(peer.raw);
  const bound = claims.cnf?.['x5t#S256'];
  if (!bound) return reject('token is not certificate-bound');
  if (bound !== thumbprint) return reject('token is bound to another certificate');
  stats.resource_accepted_total += 1;
  if (LOG_REQUESTS) log(`mtls ${req.method} ${RESOURCE_PATH} 200 client=${claims.client_id}`);
  const body = JSON.stringify({ client_id: claims.client_id, scope: claims.scope, 'x5t#S256': bound });
  res.writeHead(200, { 'content-type': 'application/json' });
  return res.end(body);
}

provider.on('server_error', (_ctx, err) => log(`server_error ${err.stack ?? err}`));
// Responses carry oidc-provider's deliberately generic error_description
// (e.g. "client authentication failed", as a production server would); the
// precise reason goes to the log line instead.
provider.on('grant.error', (ctx, err) => {
  ctx.state.errorDetail = err.error_detail;
});

// ---------------------------------------------------------------------------
// Admin API (plain HTTP, loopback only).
// ---------------------------------------------------------------------------

function serverInfo() {
  return {
    status: 'ok',
    issuer: ISSUER,
    token_endpoint: `${ISSUER}${TOKEN_PATH}`,
    mtls_token_endpoint: `${MTLS_BASE}${TOKEN_PATH}`,
    resource: RESOURCE,
    protected_resource_url: `${MTLS_BASE}${RESOURCE_PATH}`,
    ...(registration.enabled ? {
      registration_endpoint: `${ISSUER}${registration.discovery.registration_endpoint}`,
      mtls_registration_endpoint: `${MTLS_BASE}${registration.discovery.registration_endpoint}`,
    } : {}),
    tls_port: tlsPort,
    mtls_port: mtlsPort,
    admin_port: adminServer.address()?.port,
    pid: process.pid,
    clients: clientStore.size,
  };
}

async function adminRoute(req, res) {
  const url = new URL(req.url, 'http://admin');
  const route = `${req.method} ${url.pathname.replace(/\/+$/, '')}`;
  const clientMatch = /^\/admin\/clients\/(.+)$/.exec(url.pathname);

  if (route === 'GET /admin/health') return sendJson(res, 200, serverInfo());
  if (route === 'GET /admin/stats') {
    const body = {
      ...stats,
      ...(registration.enabled ? registration.stats() : {}),
      clients_registered: clientStore.size,
      faults_active: faults.length,
    };
    if (url.searchParams.get('timeline') === '1') body.token_request_times_by_client = timeline;
    return sendJson(res, 200, body);
  }
  if (route === 'POST /admin/stats/reset') {
    stats = newStats();
    timeline = {};
    if (registration.enabled) registration.resetStats();
    return sendJson(res, 200, stats);
  }
  if (route === 'POST /admin/clients') {
    const body = await readJson(req);
    const list = Array.isArray(body) ? body : [body];
    const registered = [];
    for (const metadata of list) {
      try {
        await registerClient(metadata);
      } catch (err) {
        return sendJson(res, 400, {
          error: err.error ?? 'invalid_client_metadata',
          error_description: err.error_description ?? err.message,
          client_id: metadata?.client_id,
          registered,
        });
      }
      registered.push(metadata.client_id);
    }
    return sendJson(res, 200, { registered });
  }
  if (route === 'GET /admin/clients') return sendJson(res, 200, [...clientStore.keys()]);
  if (clientMatch && req.method === 'GET') {
    const metadata = clientStore.get(decodeURIComponent(clientMatch[1]));
    return metadata ? sendJson(res, 200, metadata) : sendJson(res, 404, { error: 'not_found' });
  }
  if (clientMatch && req.method === 'DELETE') {
    const id = decodeURIComponent(clientMatch[1]);
    clientStore.delete(id);
    clientCache.delete(id);
    return sendJson(res, 200, { deleted: id });
  }
  if (await faults.route(req, res, url.pathname)) return undefined;
  return sendJson(res, 404, { error: 'not_found', error_description: route });
}

const adminServer = createAdminServer(adminRoute);

for (const metadata of config.clients ?? []) {
  await registerClient(metadata);
}

appHandler = provider.callback();
const adminPort = await listen(adminServer, config.admin_port, HOST);

const ready = serverInfo();
ready.admin_port = adminPort;
ready.admin_url = `http://${HOST}:${adminPort}`;
announceReady(config, ready);
stopOnSignals([tlsServer, mtlsServer, adminServer]);
