// A data provider's (bank's) client registration: RFC 7591 registration and RFC 7592 management
// on node-oidc-provider, with the checks the Open Finance Brasil DCR profile puts on a software
// statement (open-banking-brasil-dynamic-client-registration, clause 7.1) when the config names
// the directory's keys.
//
// Config (`registration` in server.mjs's config; absent: no registration endpoint):
//   software_statement        absent: a plain RFC 7591 server that takes no SSA; else
//     jwks_uri                the directory's JWKS (https, trusted through `directory_ca`)
//     issuer                  the SSA's expected `iss` (optional)
//     max_age (300)           seconds an SSA is good for after its `iat`
//   directory_ca              PEM path: trust anchor for the directory's TLS certificate
//   require_mtls              registration and management only over mutual TLS with a trusted
//                             certificate (default: true when software statements are checked)
//   initial_access_token      a string the registration request must carry as Bearer token
//   rotate_registration_access_token (false)  a new registration_access_token on every PUT

import { certificateSubjectRdns, peerInfo, profileDnMismatch } from './certificates.mjs';
import { verifyJwt } from './jws.mjs';
import { fetchJson, httpsGet } from './server.mjs';

const REGISTRATION_PATH = '/reg';

// The scopes each regulatory role of the SSA's software_roles allows (the profile's clause 7.2).
const ROLE_SCOPES = {
  DADOS: ['openid', 'accounts', 'credit-cards-accounts', 'consents', 'customers', 'invoice-financings',
    'financings', 'loans', 'unarranged-accounts-overdraft', 'resources'],
  PAGTO: ['openid', 'payments'],
  CONTA: ['openid'],
  CCORR: ['openid'],
};

// RFC 7591 section 3.2.2: a refusal names the error and says why.
class Refusal extends Error {
  constructor(error, description, status = 400) {
    super(description);
    this.error = error;
    this.status = status;
  }
}

function newStats() {
  return {
    registration_requests_total: 0,
    registrations_created_total: 0,
    registrations_read_total: 0,
    registrations_updated_total: 0,
    registrations_deleted_total: 0,
    registration_errors_by_code: {},
    registrations_by_client: {},
  };
}

const OUTCOMES = {
  POST: [201, 'created'],
  GET: [200, 'read'],
  PUT: [200, 'updated'],
  DELETE: [204, 'deleted'],
};

export function registrationSetup(config, { readPem, scopes, log }) {
  const settings = config.registration;
  if (!settings) return { enabled: false, features: {}, extraProperties: [], discovery: {} };
  const ssa = settings.software_statement ?? null;
  const requireMtls = settings.require_mtls ?? ssa !== null;
  const directoryCa = settings.directory_ca ? readPem(settings.directory_ca) : undefined;
  let stats = newStats();

  const features = {
    registration: {
      enabled: true,
      initialAccessToken: settings.initial_access_token ?? false,
      issueRegistrationAccessToken: true,
    },
    registrationManagement: {
      enabled: true,
      rotateRegistrationAccessToken: settings.rotate_registration_access_token ?? false,
    },
  };

  // node-oidc-provider reads a registered client's jwks_uri (the SSA's software_jwks_uri, on
  // the directory's keystore) through this: GET only, trusting the directory's CA. Its own
  // fetch refuses loopback addresses, where every devenv server listens.
  async function fetchKeys(url, options) {
    if ((options?.method ?? 'GET') !== 'GET') throw new Error(`only GET is fetched, not ${options.method}`);
    const { status, headers, body } = await httpsGet(String(url), { ca: directoryCa, signal: options?.signal });
    const flat = Object.entries(headers).map(([name, value]) => [name, [].concat(value).join(', ')]);
    return new Response(body, { status, headers: flat });
  }

  // The client's registration_client_uri id, or undefined for the registration endpoint itself.
  function route(ctx) {
    if (ctx.path === REGISTRATION_PATH) return ctx.method === 'POST' ? { clientId: undefined } : null;
    const match = /^\/reg\/([^/]+)$/.exec(ctx.path);
    return match && OUTCOMES[ctx.method] ? { clientId: decodeURIComponent(match[1]) } : null;
  }

  async function directoryKeys() {
    const jwks = await fetchJson(ssa.jwks_uri, { ca: directoryCa });
    if (!Array.isArray(jwks?.keys)) throw new Error(`${ssa.jwks_uri} is not a JWKS`);
    return jwks.keys;
  }

  // The SSA's claims once the profile's checks on it pass (clause 7.1, items 2 and 3).
  async function softwareStatementClaims(statement) {
    if (typeof statement !== 'string' || !statement) {
      throw new Refusal('invalid_software_statement', 'software_statement is required: the SSA the directory issued for this software');
    }
    let keys;
    try {
      keys = await directoryKeys();
    } catch (err) {
      log(`cannot read the directory's keys: ${err.message}`);
      throw new Refusal('server_error', 'the directory\'s keys cannot be read to check the software_statement', 500);
    }
    let claims;
    try {
      ({ claims } = verifyJwt(statement, keys, ['PS256']));
    } catch (err) {
      throw new Refusal('invalid_software_statement', `software_statement is not signed by the directory (PS256): ${err.message}`);
    }
    if (ssa.issuer && claims.iss !== ssa.issuer) {
      throw new Refusal('invalid_software_statement', `software_statement iss ${JSON.stringify(claims.iss)} is not the directory ${JSON.stringify(ssa.issuer)}`);
    }
    const now = Math.floor(Date.now() / 1000);
    const maxAge = ssa.max_age ?? 300;
    if (!Number.isFinite(claims.iat)) throw new Refusal('invalid_software_statement', 'software_statement has no iat');
    if (now - claims.iat > maxAge) {
      throw new Refusal('invalid_software_statement', `software_statement was issued ${now - claims.iat} s ago, more than ${maxAge} s before this request: fetch a fresh one from the directory`);
    }
    if (claims.iat > now + 60) throw new Refusal('invalid_software_statement', 'software_statement iat is in the future');
    return claims;
  }

  // The SSA must be of the organisation the client certificate names: organizationIdentifier
  // OFBBR-<org_id>, or the org_id as OU in certificates issued before September 2022 (the
  // profile's "Client registration" controls, items 2 and 4).
  function checkOrganisation(claims, peer) {
    const attributes = certificateSubjectRdns(peer.raw).flat();
    const named = attributes.some(([oid, value]) => (oid === '2.5.4.97' && value === `OFBBR-${claims.org_id}`)
      || (oid === '2.5.4.11' && value === claims.org_id));
    if (!named) {
      throw new Refusal('invalid_software_statement', `the software_statement is of organisation ${claims.org_id}, which the client certificate does not name (organizationIdentifier OFBBR-${claims.org_id})`);
    }
  }

  // The metadata to register: the request checked against the SSA, the SSA's values taking
  // precedence where both say something (clause 7.1, items 4 to 12).
  function checkedMetadata(body, claims, peer) {
    if (body.jwks !== undefined) {
      throw new Refusal('invalid_client_metadata', 'jwks must not be sent: the keys are the SSA\'s software_jwks_uri, by reference in jwks_uri');
    }
    if (body.jwks_uri !== undefined && body.jwks_uri !== claims.software_jwks_uri) {
      throw new Refusal('invalid_client_metadata', `jwks_uri ${JSON.stringify(body.jwks_uri)} is not the SSA's software_jwks_uri ${JSON.stringify(claims.software_jwks_uri)}`);
    }
    const allowedRedirects = new Set(claims.software_redirect_uris ?? []);
    const redirects = body.redirect_uris;
    if (!Array.isArray(redirects) || redirects.length === 0) {
      throw new Refusal('invalid_redirect_uri', 'redirect_uris is required: one or more of the SSA\'s software_redirect_uris');
    }
    const outside = redirects.filter((uri) => !allowedRedirects.has(uri));
    if (outside.length) {
      throw new Refusal('invalid_redirect_uri', `redirect_uris ${JSON.stringify(outside)} are not among the SSA's software_redirect_uris`);
    }
    const roleScopes = new Set((claims.software_roles ?? []).flatMap((role) => ROLE_SCOPES[role] ?? [])
      .filter((scope) => scopes.has(scope)));
    let { scope } = body;
    if (scope === undefined) {
      scope = [...roleScopes].join(' ');
    } else {
      const refused = String(scope).split(' ').filter((s) => s && !roleScopes.has(s));
      if (refused.length) {
        throw new Refusal('invalid_client_metadata', `scope ${refused.join(' ')} is not allowed by the SSA's software_roles ${JSON.stringify(claims.software_roles ?? [])}`);
      }
    }
    if (body.token_endpoint_auth_method === 'tls_client_auth') {
      const others = ['tls_client_auth_san_dns', 'tls_client_auth_san_uri', 'tls_client_auth_san_ip', 'tls_client_auth_san_email']
        .filter((key) => body[key] !== undefined);
      if (others.length) {
        throw new Refusal('invalid_client_metadata', `${others.join(', ')}: only tls_client_auth_subject_dn identifies a tls_client_auth client here`);
      }
      const dn = body.tls_client_auth_subject_dn;
      if (typeof dn !== 'string' || !dn) {
        throw new Refusal('invalid_client_metadata', 'tls_client_auth_subject_dn is required for tls_client_auth');
      }
      const mismatch = profileDnMismatch(dn, peer.raw);
      if (mismatch) {
        throw new Refusal('invalid_client_metadata', `tls_client_auth_subject_dn ${mismatch}`);
      }
    }
    return {
      ...body,
      scope,
      jwks_uri: claims.software_jwks_uri,
      software_id: claims.software_id,
      client_name: claims.software_client_name ?? body.client_name,
    };
  }

  async function checkRequest(ctx, readBody) {
    const peer = peerInfo(ctx.socket);
    if (requireMtls && !peer?.authorized) {
      throw new Refusal('invalid_client', 'client registration needs mutual TLS with a trusted client certificate: use mtls_endpoint_aliases.registration_endpoint', 401);
    }
    if (!ssa || (ctx.method !== 'POST' && ctx.method !== 'PUT') || !ctx.is('application/json')) return;
    let body;
    try {
      body = JSON.parse(await readBody(ctx.req));
    } catch {
      throw new Refusal('invalid_request', 'the request body is not JSON');
    }
    if (!body || typeof body !== 'object' || Array.isArray(body)) {
      throw new Refusal('invalid_request', 'the request body is not a JSON object');
    }
    const claims = await softwareStatementClaims(body.software_statement);
    checkOrganisation(claims, peer);
    // The stream is consumed; oidc-provider falls back to this value.
    ctx.request.body = JSON.stringify(checkedMetadata(body, claims, peer));
  }

  function count(ctx, clientId) {
    const [status, outcome] = OUTCOMES[ctx.method];
    if (ctx.status === status) {
      const id = clientId ?? ctx.body?.client_id;
      stats[`registrations_${outcome}_total`] += 1;
      const perClient = (stats.registrations_by_client[id] ??= { created: 0, read: 0, updated: 0, deleted: 0 });
      perClient[outcome] += 1;
    } else if (ctx.status >= 400) {
      const code = ctx.body?.error ?? String(ctx.status);
      stats.registration_errors_by_code[code] = (stats.registration_errors_by_code[code] ?? 0) + 1;
    }
  }

  // Answers a registration request (the caller's middleware already logs it); faults are
  // applied first, as on the token endpoint. Returns the client id it concerns, if known.
  // A `late` fault handles the request as usual, counts it, and only then holds the answer
  // for its delay_ms: a client that gives up (or stops) meanwhile never learns what was made.
  async function handle(ctx, next, { takeFault, applyFault, readBody, sleep }) {
    const { clientId } = route(ctx);
    stats.registration_requests_total += 1;
    let late;
    try {
      const fault = takeFault('registration', clientId, ctx.method);
      if (fault?.mode === 'late') late = fault;
      else if (fault && await applyFault(ctx, fault)) return clientId;
      try {
        await checkRequest(ctx, readBody);
      } catch (err) {
        if (!(err instanceof Refusal)) throw err;
        ctx.status = err.status;
        ctx.body = { error: err.error, error_description: err.message };
        if (err.status === 401) ctx.set('WWW-Authenticate', `Bearer error="${err.error}"`);
        return clientId;
      }
      await next();
      if (late) {
        count(ctx, clientId);
        await sleep(late.delay_ms);
      }
      return clientId ?? ctx.body?.client_id;
    } finally {
      if (!late) count(ctx, clientId);
    }
  }

  return {
    enabled: true,
    features,
    fetch: fetchKeys,
    // Kept as registered and returned on read, as RFC 7591 section 3.2.1 asks.
    extraProperties: ['software_statement', 'software_id'],
    discovery: { registration_endpoint: REGISTRATION_PATH },
    handles: (ctx) => route(ctx) !== null,
    handle,
    stats: () => stats,
    resetStats: () => {
      stats = newStats();
    },
  };
}
