// Compact JWS signing and verification with node:crypto alone: the devenv servers sign software
// statements and verify access tokens and software statements without a JOSE library.

import * as crypto from 'node:crypto';

const ALGORITHMS = {
  PS256: (key) => ({ key, padding: crypto.constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }),
  RS256: (key) => ({ key, padding: crypto.constants.RSA_PKCS1_PADDING }),
  ES256: (key) => ({ key, dsaEncoding: 'ieee-p1363' }),
};

const b64json = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
const unb64json = (part) => JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));

// A private signing JWK with its kid, of a fresh key pair.
export function generateSigningJwk(type, options, kid) {
  const { privateKey } = crypto.generateKeyPairSync(type, options);
  return { ...privateKey.export({ format: 'jwk' }), kid, use: 'sig' };
}

// The public half of a private JWK, as a JWKS publishes it.
export function publicJwk(jwk) {
  const key = crypto.createPublicKey({ key: jwk, format: 'jwk' });
  return { ...key.export({ format: 'jwk' }), kid: jwk.kid, use: jwk.use ?? 'sig', ...(jwk.alg ? { alg: jwk.alg } : {}) };
}

export function signJwt(claims, jwk, { alg = 'PS256', typ = 'JWT' } = {}) {
  const signing = ALGORITHMS[alg];
  if (!signing) throw new Error(`cannot sign with ${alg}`);
  const input = `${b64json({ alg, kid: jwk.kid, typ })}.${b64json(claims)}`;
  const key = crypto.createPrivateKey({ key: jwk, format: 'jwk' });
  return `${input}.${crypto.sign('sha256', Buffer.from(input), signing(key)).toString('base64url')}`;
}

// The JWS's header and claims if one of `keys` (public JWKs) signed it with one of `algorithms`;
// throws an Error whose message is the reason otherwise. The claims are not checked here.
export function verifyJwt(token, keys, algorithms = Object.keys(ALGORITHMS)) {
  const parts = typeof token === 'string' ? token.split('.') : [];
  if (parts.length !== 3) throw new Error('not a compact JWS');
  let header;
  let claims;
  try {
    header = unb64json(parts[0]);
    claims = unb64json(parts[1]);
  } catch {
    throw new Error('header or payload is not base64url JSON');
  }
  if (!algorithms.includes(header.alg) || !ALGORITHMS[header.alg]) {
    throw new Error(`signed with ${header.alg}, not ${algorithms.join(' or ')}`);
  }
  const jwk = keys.find((k) => k.kid === header.kid);
  if (!jwk) throw new Error(`signed by unknown key ${JSON.stringify(header.kid)}`);
  const key = crypto.createPublicKey({ key: jwk, format: 'jwk' });
  const signed = Buffer.from(`${parts[0]}.${parts[1]}`);
  if (!crypto.verify('sha256', signed, ALGORITHMS[header.alg](key), Buffer.from(parts[2], 'base64url'))) {
    throw new Error('bad signature');
  }
  if (!claims || typeof claims !== 'object' || Array.isArray(claims)) throw new Error('payload is not a JSON object');
  return { header, claims };
}
