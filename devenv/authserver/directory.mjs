// Test directory for raidiam-token-operator, configured like Raidiam Connect's directory API.
//
// On its mTLS listener (the directory's "matls-api" host) it serves
//   GET /organisations/{OrganisationId}/softwarestatements/{SoftwareStatementId}/assertion
// to a caller that presents a trusted client certificate and a bearer access token from the
// devenv authorization server with scope directory:software, bound (cnf.x5t#S256) to that
// certificate, whose client belongs to the organisation. The answer is the software statement
// assertion (SSA): a JWT (application/jwt, at most 4,000 characters) signed PS256 with the
// directory's own key, with the claims the Open Finance Brasil DCR profile lists (clause 8.1).
//
// On its TLS listener (the "keystore" host) it publishes the directory's public keys at
// /openbanking.jwks, and each software statement's keys, where the admin API gave them, at
// /{OrganisationId}/{SoftwareStatementId}/application.jwks.
//
// Usage: node directory.mjs --config <config.json>; devenv/raidiam_devenv/directory.py writes
// the config and documents the admin API. Config keys:
//   server_cert, server_key, client_ca, ready_file, host, public_host, tls_port, mtls_port,
//   admin_port, log_requests     as for server.mjs
//   token_issuer                 the authorization server whose access tokens are accepted
//   token_jwks_uri               its JWKS (fetched when a token names an unknown key)
//   token_ca                     PEM path: trust anchor for that server's TLS certificate
//   ssa_issuer                   the SSA's iss

import * as crypto from 'node:crypto';

import { certificateThumbprint, peerInfo } from './lib/certificates.mjs';
import { FaultList } from './lib/faults.mjs';
import { generateSigningJwk, publicJwk, signJwt, verifyJwt } from './lib/jws.mjs';
import { log } from './lib/log.mjs';
import {
  announceReady, createAdminServer, createListeners, fetchJson, listen, loadConfig, readJson, sendJson,
  stopOnSignals,
} from './lib/server.mjs';

const { config, readPem } = loadConfig('node directory.mjs --config <config.json>');

const HOST = config.host ?? '127.0.0.1';
const PUBLIC_HOST = config.public_host ?? 'localhost';
const LOG_REQUESTS = config.log_requests ?? true;
const SSA_ISSUER = config.ssa_issuer ?? 'Raidiam devenv directory SSA issuer';
const TOKEN_CA = config.token_ca ? readPem(config.token_ca) : undefined;
const REQUIRED_SCOPE = 'directory:software';
const SSA_LIMIT = 4000; // characters, as Raidiam documents the assertion
const ASSERTION_PATH = /^\/organisations\/([^/]+)\/softwarestatements\/([^/]+)\/assertion$/;
const SOFTWARE_JWKS_PATH = /^\/([^/]+)\/([^/]+)\/(application|transport)\.jwks$/;
const DIRECTORY_JWKS_PATH = '/openbanking.jwks';

// The directory's signing key, and one it never publishes: what a "foreign_key" fault signs
// with, as an SSA forged or from another directory would be.
const SIGNING_KEY = generateSigningJwk('rsa', { modulusLength: 2048 }, 'directory-ssa-signer');
const FOREIGN_KEY = generateSigningJwk('rsa', { modulusLength: 2048 }, 'directory-ssa-signer');

const organisations = new Map(); // organisation_id -> organisation
const softwareStatements = new Map(); // `${org}/${ss}` -> software statement

// ---------------------------------------------------------------------------
// Faults and statistics.
// ---------------------------------------------------------------------------

const FAULT_MODES = new Set(['outage', 'stale_ssa', 'foreign_key']);

const faults = new FaultList((body) => {
  if (!FAULT_MODES.has(body.mode)) throw new Error(`mode must be one of ${[...FAULT_MODES].join(', ')}`);
  if (body.mode === 'outage' && ![undefined, null, 'ssa', 'jwks'].includes(body.endpoint)) {
    throw new Error('outage endpoint must be ssa or jwks');
  }
  if (body.mode === 'outage' && body.status !== undefined
    && !(Number.isSafeInteger(body.status) && body.status >= 500 && body.status <= 599)) {
    throw new Error('outage status must be a 5xx HTTP status');
  }
  if (body.mode === 'stale_ssa' && body.age !== undefined && !(Number.isSafeInteger(body.age) && body.age > 0)) {
    throw new Error('stale_ssa age must be a positive number of seconds');
  }
  return body;
});

function newStats() {
  return {
    started_at: new Date().toISOString(),
    ssa_requests_total: 0,
    ssa_issued_total: 0,
    ssa_requests_by_software_statement: {},
    ssa_refused_by_reason: {},
    jwks_requests_total: 0,
    faulted_total: 0,
  };
}
let stats = newStats();

const bump = (obj, key) => {
  obj[key] = (obj[key] ?? 0) + 1;
};

// ---------------------------------------------------------------------------
// Listeners.
// ---------------------------------------------------------------------------

const { tlsServer, mtlsServer } = createListeners(config, readPem, {
  tlsHandler: (req, res) => answer(req, res, 'tls', keystore),
  mtlsHandler: (req, res) => answer(req, res, 'mtls', assertion),
  logRequests: LOG_REQUESTS,
});
const tlsPort = await listen(tlsServer, config.tls_port, HOST);
const mtlsPort = await listen(mtlsServer, config.mtls_port, HOST);
const KEYSTORE_BASE = `https://${PUBLIC_HOST}:${tlsPort}`;
const API_BASE = `https://${PUBLIC_HOST}:${mtlsPort}`;

class Refusal extends Error {
  constructor(status, error, description, headers = {}) {
    super(description);
    this.status = status;
    this.error = error;
    this.headers = headers;
  }
}

// One request on either listener: the route answers with [status, content type, body] or
// throws a Refusal; either way one log line says what happened, without tokens or SSAs.
async function answer(req, res, listener, routeFor) {
  const started = process.hrtime.bigint();
  let detail = '';
  let status;
  try {
    if (req.method !== 'GET') throw new Refusal(405, 'invalid_request', 'only GET is served here');
    const [code, type, body, note = ''] = await routeFor(req);
    status = code;
    detail = note;
    res.writeHead(code, { 'content-type': type, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
    res.end(body);
  } catch (err) {
    const refusal = err instanceof Refusal ? err : new Refusal(500, 'server_error', 'internal error');
    if (!(err instanceof Refusal)) log(`${listener} error ${err.stack ?? err}`);
    status = refusal.status;
    detail = ` error=${refusal.error} (${refusal.message})`;
    sendJson(res, refusal.status, { error: refusal.error, error_description: refusal.message }, refusal.headers);
  } finally {
    if (LOG_REQUESTS) {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      log(`${listener} ${req.method} ${new URL(req.url, 'https://x').pathname} ${status} ${ms.toFixed(1)}ms${detail}`);
    }
  }
}

// ---------------------------------------------------------------------------
// The keystore (TLS listener).
// ---------------------------------------------------------------------------

async function keystore(req) {
  const { pathname } = new URL(req.url, 'https://x');
  stats.jwks_requests_total += 1;
  const fault = faults.take((f) => f.mode === 'outage' && f.endpoint === 'jwks');
  if (fault) throw outage(fault);
  if (pathname === DIRECTORY_JWKS_PATH) {
    return [200, 'application/json', JSON.stringify({ keys: [publicJwk({ ...SIGNING_KEY, alg: 'PS256' })] })];
  }
  const match = SOFTWARE_JWKS_PATH.exec(pathname);
  const statement = match && softwareStatements.get(`${decodeURIComponent(match[1])}/${decodeURIComponent(match[2])}`);
  const jwks = statement && (match[3] === 'application' ? statement.jwks : statement.transport_jwks);
  if (!jwks) throw new Refusal(404, 'not_found', `no key set at ${pathname}`);
  return [200, 'application/json', JSON.stringify(jwks)];
}

// ---------------------------------------------------------------------------
// The SSA endpoint (mTLS listener).
// ---------------------------------------------------------------------------

function outage(fault) {
  stats.faulted_total += 1;
  const headers = fault.retry_after === undefined ? {} : { 'retry-after': String(fault.retry_after) };
  return new Refusal(fault.status ?? 503, 'temporarily_unavailable', 'the directory is unavailable (injected outage)', headers);
}

let tokenKeys = [];

// The authorization server's keys; fetched again when a token names a key not seen yet (the
// server's keys are new at each start), at most once per request.
async function tokenKey(kid) {
  if (!tokenKeys.some((k) => k.kid === kid)) {
    const jwks = await fetchJson(config.token_jwks_uri, { ca: TOKEN_CA });
    tokenKeys = Array.isArray(jwks?.keys) ? jwks.keys : [];
  }
  return tokenKeys;
}

function headerKid(token) {
  try {
    return JSON.parse(Buffer.from(token.split('.')[0], 'base64url').toString('utf8')).kid;
  } catch {
    return undefined;
  }
}

// The access token's claims once it is good for this caller: signed by the authorization
// server, not expired, with directory:software, bound to the certificate presented.
async function authorizedClaims(req, peer) {
  const invalid = (reason) => new Refusal(401, 'invalid_token', reason, {
    'www-authenticate': `Bearer error="invalid_token", error_description="${reason}"`,
  });
  const match = /^Bearer ([^ ]+)$/.exec(req.headers.authorization ?? '');
  if (!match) throw invalid('no bearer token');
  let claims;
  try {
    ({ claims } = verifyJwt(match[1], await tokenKey(headerKid(match[1]))));
  } catch (err) {
    throw invalid(`invalid token: ${err.message}`);
  }
  if (claims.iss !== config.token_issuer) throw invalid('invalid token: wrong issuer');
  if (!(claims.exp > Date.now() / 1000)) throw invalid('invalid token: expired');
  const bound = claims.cnf?.['x5t#S256'];
  if (!bound) throw invalid('token is not certificate-bound');
  if (bound !== certificateThumbprint(peer.raw)) throw invalid('token is bound to another certificate');
  if (!String(claims.scope ?? '').split(' ').includes(REQUIRED_SCOPE)) {
    throw new Refusal(403, 'insufficient_scope', `the token lacks scope ${REQUIRED_SCOPE}`, {
      'www-authenticate': `Bearer error="insufficient_scope", scope="${REQUIRED_SCOPE}"`,
    });
  }
  return claims;
}

// The organisation whose software statement the token's client is (its software_client_id).
function organisationOf(clientId) {
  for (const statement of softwareStatements.values()) {
    if (statement.client_id === clientId) return statement.organisation_id;
  }
  return undefined;
}

function softwareStatementClaims(statement, { iat }) {
  const organisation = organisations.get(statement.organisation_id);
  const keys = `${KEYSTORE_BASE}/${encodeURIComponent(statement.organisation_id)}/${encodeURIComponent(statement.software_statement_id)}`;
  const roles = statement.roles;
  return {
    software_mode: statement.mode ?? 'Test',
    software_redirect_uris: statement.redirect_uris,
    software_statement_roles: roles.map((role) => ({ role, authorisation_domain: 'Open Banking', status: 'Active' })),
    software_client_name: statement.client_name,
    org_status: organisation.status ?? 'Active',
    software_client_id: statement.client_id,
    iss: SSA_ISSUER,
    software_client_description: statement.description ?? statement.client_name,
    software_jwks_uri: statement.jwks_uri ?? `${keys}/application.jwks`,
    software_jwks_inactive_uri: `${keys}/inactive/application.jwks`,
    software_jwks_transport_uri: `${keys}/transport.jwks`,
    software_jwks_transport_inactive_uri: `${keys}/inactive/transport.jwks`,
    software_id: statement.software_statement_id,
    software_client_uri: statement.client_uri ?? statement.redirect_uris[0] ?? KEYSTORE_BASE,
    org_id: statement.organisation_id,
    org_number: organisation.org_number ?? '',
    org_name: organisation.organisation_name,
    software_environment: 'sandbox',
    software_version: statement.version ?? '1.0',
    software_roles: roles,
    organisation_competent_authority_claims: roles.map((role) => ({
      authorisation_domain: 'Open Banking',
      authority_code: 'BCB',
      authority_name: 'Banco Central',
      authorisation_role: role,
      registration_id: `${organisation.org_number ?? ''}-OBB-${role}`,
      status: 'Active',
    })),
    iat,
    jti: crypto.randomUUID(),
  };
}

async function assertion(req) {
  const { pathname } = new URL(req.url, 'https://x');
  const match = ASSERTION_PATH.exec(pathname);
  if (!match) throw new Refusal(404, 'not_found', `no route ${pathname}`);
  const [organisationId, softwareStatementId] = [decodeURIComponent(match[1]), decodeURIComponent(match[2])];
  const key = `${organisationId}/${softwareStatementId}`;
  stats.ssa_requests_total += 1;
  bump(stats.ssa_requests_by_software_statement, key);
  const refuse = (refusal) => {
    bump(stats.ssa_refused_by_reason, refusal.message);
    return refusal;
  };
  const down = faults.take((f) => f.mode === 'outage' && (f.endpoint ?? 'ssa') === 'ssa');
  if (down) throw refuse(outage(down));
  const peer = peerInfo(req.socket);
  if (!peer?.authorized) throw refuse(new Refusal(401, 'invalid_client', 'no trusted client certificate'));
  const claims = await authorizedClaims(req, peer).catch((err) => { throw refuse(err); });
  const statement = softwareStatements.get(key);
  if (!statement) throw refuse(new Refusal(404, 'not_found', 'no such software statement'));
  if (organisationOf(claims.client_id) !== organisationId) {
    throw refuse(new Refusal(403, 'access_denied', 'the token\'s client is not a software statement of this organisation'));
  }
  const stale = faults.take((f) => f.mode === 'stale_ssa');
  const foreign = faults.take((f) => f.mode === 'foreign_key');
  if (stale || foreign) stats.faulted_total += 1;
  const iat = Math.floor(Date.now() / 1000) - (stale ? (stale.age ?? 600) : 0);
  const ssa = signJwt(softwareStatementClaims(statement, { iat }), foreign ? FOREIGN_KEY : SIGNING_KEY);
  stats.ssa_issued_total += 1;
  const note = ` client=${claims.client_id}${stale ? ' fault=stale_ssa' : ''}${foreign ? ' fault=foreign_key' : ''}`;
  return [200, 'application/jwt', ssa, note];
}

// ---------------------------------------------------------------------------
// Admin API (plain HTTP, loopback only).
// ---------------------------------------------------------------------------

const isNonEmptyString = (v) => typeof v === 'string' && v.length > 0;

function checkedOrganisation(body) {
  if (!body || typeof body !== 'object') throw new Error('organisation must be a JSON object');
  if (!isNonEmptyString(body.organisation_id)) throw new Error('organisation_id is required');
  return { organisation_name: body.organisation_id, ...body };
}

function checkedSoftwareStatement(body) {
  if (!body || typeof body !== 'object') throw new Error('software statement must be a JSON object');
  for (const key of ['organisation_id', 'software_statement_id', 'client_id']) {
    if (!isNonEmptyString(body[key])) throw new Error(`${key} is required`);
  }
  if (!organisations.has(body.organisation_id)) throw new Error(`organisation ${body.organisation_id} is not registered`);
  const statement = {
    client_name: body.software_statement_id,
    redirect_uris: [],
    roles: ['DADOS'],
    ...body,
  };
  if (!Array.isArray(statement.redirect_uris) || !statement.redirect_uris.every(isNonEmptyString)) {
    throw new Error('redirect_uris must be a list of URIs');
  }
  if (!Array.isArray(statement.roles) || !statement.roles.every(isNonEmptyString)) throw new Error('roles must be a list of role names');
  const size = signJwt(softwareStatementClaims(statement, { iat: 0 }), SIGNING_KEY).length;
  if (size > SSA_LIMIT) throw new Error(`its SSA would be ${size} characters, more than the ${SSA_LIMIT} the directory issues`);
  return statement;
}

function serverInfo() {
  return {
    status: 'ok',
    api_base_url: API_BASE,
    keystore_base_url: KEYSTORE_BASE,
    jwks_uri: `${KEYSTORE_BASE}${DIRECTORY_JWKS_PATH}`,
    ssa_issuer: SSA_ISSUER,
    tls_port: tlsPort,
    mtls_port: mtlsPort,
    pid: process.pid,
  };
}

async function adminRoute(req, res) {
  const url = new URL(req.url, 'http://admin');
  const route = `${req.method} ${url.pathname.replace(/\/+$/, '')}`;
  if (route === 'GET /admin/health') return sendJson(res, 200, serverInfo());
  if (route === 'GET /admin/stats') return sendJson(res, 200, { ...stats, faults_active: faults.length });
  if (route === 'POST /admin/stats/reset') {
    stats = newStats();
    return sendJson(res, 200, stats);
  }
  if (route === 'POST /admin/organisations' || route === 'POST /admin/softwarestatements') {
    const organisation = route.endsWith('organisations');
    let entry;
    try {
      entry = (organisation ? checkedOrganisation : checkedSoftwareStatement)(await readJson(req));
    } catch (err) {
      if (err instanceof SyntaxError) throw err;
      return sendJson(res, 400, { error: 'invalid_request', error_description: err.message });
    }
    if (organisation) organisations.set(entry.organisation_id, entry);
    else softwareStatements.set(`${entry.organisation_id}/${entry.software_statement_id}`, entry);
    return sendJson(res, 200, entry);
  }
  if (await faults.route(req, res, url.pathname)) return undefined;
  return sendJson(res, 404, { error: 'not_found', error_description: route });
}

const adminServer = createAdminServer(adminRoute);
const adminPort = await listen(adminServer, config.admin_port, HOST);
announceReady(config, { ...serverInfo(), admin_port: adminPort, admin_url: `http://${HOST}:${adminPort}` });
stopOnSignals([tlsServer, mtlsServer, adminServer]);
