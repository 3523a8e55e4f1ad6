// Client certificates on the devenv servers' mTLS listeners (RFC 8705): the peer certificate of
// a TLS connection, its subject Name read from the DER, RFC 4514 subject DN strings parsed and
// compared with it, and the Open Finance Brasil DCR profile's own DN format.

import * as crypto from 'node:crypto';

import { log } from './log.mjs';

// Parsing the peer certificate once per TLS connection (not per request)
// keeps keep-alive benchmarks cheap.
const peerCache = new WeakMap();

export function peerInfo(socket) {
  let info = peerCache.get(socket);
  if (info === undefined) {
    info = null;
    if (typeof socket?.getPeerCertificate === 'function') {
      const peer = socket.getPeerCertificate(false);
      if (peer?.raw) {
        info = {
          raw: peer.raw,
          authorized: socket.authorized === true,
          authorizationError: socket.authorizationError,
          pem: `-----BEGIN CERTIFICATE-----\n${peer.raw.toString('base64').replace(/.{64}/g, '$&\n')}\n-----END CERTIFICATE-----\n`,
          subjectKey: undefined,
          x509: undefined,
        };
      }
    }
    peerCache.set(socket, info);
  }
  return info;
}

// --- Minimal DER walker: just enough to read the subject Name exactly as
// encoded, instead of re-parsing OpenSSL's display string (whose escaping and
// attribute naming differ from RFC 4514 producers such as Python's
// `cryptography`).

function readTlv(buf, off) {
  const tag = buf[off];
  let len = buf[off + 1];
  let hdr = 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    len = 0;
    for (let i = 0; i < n; i += 1) len = len * 256 + buf[off + 2 + i];
    hdr += n;
  }
  return { tag, start: off, body: off + hdr, end: off + hdr + len };
}

function tlvChildren(buf, tlv) {
  const out = [];
  for (let o = tlv.body; o < tlv.end;) {
    const child = readTlv(buf, o);
    out.push(child);
    o = child.end;
  }
  return out;
}

function decodeOid(bytes) {
  const parts = [];
  let value = 0;
  for (let i = 0; i < bytes.length; i += 1) {
    value = value * 128 + (bytes[i] & 0x7f);
    if (!(bytes[i] & 0x80)) {
      if (parts.length === 0) {
        const first = value < 80 ? Math.floor(value / 40) : 2;
        parts.push(first, value - first * 40);
      } else {
        parts.push(value);
      }
      value = 0;
    }
  }
  return parts.join('.');
}

// DER string value -> JS string. Non-string types are kept as RFC 4514
// "#hex" of the whole TLV, which is also how such values are written in DN
// strings, so both sides normalise to the same text.
function decodeDirectoryString(buf, tlv) {
  const content = buf.subarray(tlv.body, tlv.end);
  switch (tlv.tag) {
    case 0x0c: // UTF8String
      return content.toString('utf8');
    case 0x12: // NumericString
    case 0x13: // PrintableString
    case 0x16: // IA5String
    case 0x1a: // VisibleString
    case 0x14: // TeletexString (treated as Latin-1, as most toolkits do)
      return content.toString('latin1');
    case 0x1e: { // BMPString (UTF-16BE)
      const swapped = Buffer.from(content);
      swapped.swap16();
      return swapped.toString('utf16le');
    }
    case 0x1c: { // UniversalString (UTF-32BE)
      let s = '';
      for (let i = 0; i + 3 < content.length; i += 4) s += String.fromCodePoint(content.readUInt32BE(i));
      return s;
    }
    default:
      return `#${buf.subarray(tlv.start, tlv.end).toString('hex')}`;
  }
}

export function certificateSubjectRdns(der) {
  const cert = readTlv(der, 0);
  const tbs = tlvChildren(der, cert)[0];
  const fields = tlvChildren(der, tbs);
  const offset = fields[0].tag === 0xa0 ? 1 : 0; // optional [0] version
  const subject = fields[offset + 4]; // serial, signature, issuer, validity, subject
  return tlvChildren(der, subject).map((set) => tlvChildren(der, set).map((seq) => {
    const [oid, value] = tlvChildren(der, seq);
    return [decodeOid(der.subarray(oid.body, oid.end)), decodeDirectoryString(der, value)];
  }));
}

// Attribute type keywords (RFC 4514 + OpenSSL short/long names) -> OID, so
// "CN", "commonName", "2.5.4.3" and "OID.2.5.4.3" all compare equal.
const ATTRIBUTE_OIDS = Object.fromEntries(Object.entries({
  '2.5.4.3': ['cn', 'commonname'],
  '2.5.4.4': ['sn', 'surname'],
  '2.5.4.5': ['serialnumber'],
  '2.5.4.6': ['c', 'countryname'],
  '2.5.4.7': ['l', 'localityname'],
  '2.5.4.8': ['st', 's', 'stateorprovincename'],
  '2.5.4.9': ['street', 'streetaddress'],
  '2.5.4.10': ['o', 'organizationname'],
  '2.5.4.11': ['ou', 'organizationalunitname'],
  '2.5.4.12': ['title'],
  '2.5.4.15': ['businesscategory'],
  '2.5.4.17': ['postalcode'],
  '2.5.4.42': ['gn', 'givenname'],
  '2.5.4.46': ['dnqualifier'],
  '2.5.4.97': ['organizationidentifier'],
  '0.9.2342.19200300.100.1.1': ['uid', 'userid'],
  '0.9.2342.19200300.100.1.25': ['dc', 'domaincomponent'],
  '1.2.840.113549.1.9.1': ['emailaddress', 'email', 'e'],
  '1.3.6.1.4.1.311.60.2.1.1': ['jurisdictionl', 'jurisdictionlocalityname'],
  '1.3.6.1.4.1.311.60.2.1.2': ['jurisdictionst', 'jurisdictionstateorprovincename'],
  '1.3.6.1.4.1.311.60.2.1.3': ['jurisdictionc', 'jurisdictioncountryname'],
}).flatMap(([oid, names]) => names.map((n) => [n, oid])));

function attributeOid(type) {
  const t = type.trim().toLowerCase().replace(/^oid\./, '');
  if (/^\d+(\.\d+)+$/.test(t)) return t;
  const oid = ATTRIBUTE_OIDS[t];
  if (!oid) throw new Error(`unknown DN attribute type ${type}`);
  return oid;
}

function decodeHexValue(hex) {
  const der = Buffer.from(hex, 'hex');
  return decodeDirectoryString(der, readTlv(der, 0));
}

// Lenient RFC 4514 parser ("," or ";" between RDNs, "+" inside multi-valued
// RDNs, backslash and \XX escapes, "#hex" and legacy quoted values).
export function parseDn(dn) {
  const rdns = [];
  let rdn = [];
  let i = 0;
  const n = dn.length;
  while (i < n) {
    let type = '';
    while (i < n && dn[i] !== '=') type += dn[i++];
    if (i >= n) throw new Error(`malformed DN near "${type}"`);
    i += 1;
    while (i < n && dn[i] === ' ') i += 1;
    let value;
    const hexValue = dn[i] === '#';
    if (hexValue) {
      let hex = '';
      i += 1;
      while (i < n && /[0-9a-fA-F]/.test(dn[i])) hex += dn[i++];
      value = decodeHexValue(hex);
    } else if (dn[i] === '"') {
      i += 1;
      let s = '';
      while (i < n && dn[i] !== '"') {
        if (dn[i] === '\\') i += 1;
        s += dn[i++];
      }
      i += 1;
      value = s;
    } else {
      const bytes = [];
      let lastSignificant = 0;
      while (i < n && !',;+'.includes(dn[i])) {
        if (dn[i] === '\\') {
          const hex = dn.slice(i + 1, i + 3);
          if (/^[0-9a-fA-F]{2}$/.test(hex)) {
            bytes.push(parseInt(hex, 16));
            i += 3;
          } else {
            bytes.push(...Buffer.from(dn[i + 1] ?? '', 'utf8'));
            i += 2;
          }
          lastSignificant = bytes.length;
        } else {
          bytes.push(...Buffer.from(dn[i], 'utf8'));
          i += 1;
          if (dn[i - 1] !== ' ') lastSignificant = bytes.length;
        }
      }
      value = Buffer.from(bytes.slice(0, lastSignificant)).toString('utf8');
    }
    while (i < n && dn[i] === ' ') i += 1;
    // The type as written and whether the value was "#hex" are kept for the profile's format
    // check; matching looks at the OID and the value only.
    rdn.push([attributeOid(type), value, type.trim(), hexValue]);
    if (i >= n || dn[i] === ',' || dn[i] === ';') {
      rdns.push(rdn);
      rdn = [];
    }
    i += 1;
    while (i < n && dn[i] === ' ') i += 1;
  }
  if (rdn.length) rdns.push(rdn);
  return rdns;
}

// Canonical form: RDN order is ignored. X.500 order (as in the DER) and
// RFC 4514 order (reversed) are both common in registrations, and the set of
// attribute/value pairs is what identifies the certificate holder.
export function dnKey(rdns) {
  return JSON.stringify(rdns
    .map((rdn) => rdn.map(([oid, value]) => `${oid}=${value}`).sort().join('+'))
    .sort());
}

const expectedDnCache = new Map();
export function expectedDnKey(dn) {
  let key = expectedDnCache.get(dn);
  if (key === undefined) {
    try {
      key = dnKey(parseDn(dn));
    } catch (err) {
      log(`cannot parse tls_client_auth_subject_dn ${JSON.stringify(dn)}: ${err.message}`);
      key = null;
    }
    expectedDnCache.set(dn, key);
  }
  return key;
}

// base64url SHA-256 of the DER certificate: what a certificate-bound token carries as
// cnf.x5t#S256 (RFC 8705 section 3.1).
export function certificateThumbprint(raw) {
  return crypto.createHash('sha256').update(raw).digest('base64url');
}

// The Open Finance Brasil DCR profile (clause 7.1.2) fixes one string for a certificate's
// subject: its RDNs in reverse order joined by ",", these attributes by their RFC 4514 name with
// a readable value, every other attribute by its dotted OID, "=#" and the DER of its value in
// hex (businessCategory, jurisdictionCountryName, serialNumber, organizationIdentifier, ...).
const PROFILE_DESCRIPTORS = {
  '2.5.4.3': 'CN',
  '2.5.4.6': 'C',
  '2.5.4.7': 'L',
  '2.5.4.8': 'ST',
  '2.5.4.9': 'STREET',
  '2.5.4.10': 'O',
  '2.5.4.11': 'OU',
  '0.9.2342.19200300.100.1.1': 'UID',
  '0.9.2342.19200300.100.1.25': 'DC',
};

// Why `dn` is not the presented certificate's subject in the profile's format, or null when it
// is. Values compare as caseIgnoreMatch does (RFC 4517 section 4.2.11).
export function profileDnMismatch(dn, der) {
  let registered;
  try {
    registered = parseDn(dn);
  } catch (err) {
    return `cannot be parsed (${err.message})`;
  }
  for (const [oid, , type, hexValue] of registered.flat()) {
    const descriptor = PROFILE_DESCRIPTORS[oid];
    if (descriptor && type.toUpperCase() !== descriptor) {
      return `has ${type} where the profile writes ${descriptor}`;
    }
    if (!descriptor && (type !== oid || !hexValue)) {
      const written = type === oid ? `${type}=<text>` : type;
      return `has ${written} where the profile writes ${oid}=#<DER of the value in hex>`;
    }
  }
  const subject = [...certificateSubjectRdns(der)].reverse();
  const text = (rdns) => JSON.stringify(rdns.map((rdn) => rdn.map(([oid, value]) => `${oid}=${value.toLowerCase()}`)));
  if (text(registered) !== text(subject)) {
    return 'is not the subject of the client certificate presented (RDNs in reverse order)';
  }
  return null;
}
