// What every devenv server shares: its JSON config, a TLS and an mTLS listener on loopback, the
// plain-HTTP admin API's JSON helpers, the ready file the Python launcher waits for, and a clean
// shutdown on SIGTERM. Each server (server.mjs, directory.mjs) adds its own routes.

import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as path from 'node:path';
import { parseArgs } from 'node:util';

import { log } from './log.mjs';

// The config named by --config, and a reader for the PEM files it names (relative paths are
// relative to the config file).
export function loadConfig(usage) {
  const { values: args } = parseArgs({ options: { config: { type: 'string' } } });
  if (!args.config) {
    process.stderr.write(`usage: ${usage}\n`);
    process.exit(2);
  }
  const config = JSON.parse(fs.readFileSync(args.config, 'utf8'));
  const configDir = path.dirname(path.resolve(args.config));
  const readPem = (p) => fs.readFileSync(path.resolve(configDir, p));
  return { config, readPem };
}

// A TLS listener and an mTLS one (client certificates chaining to the config's client_ca),
// both with the config's server certificate; each carries its name ("tls", "mtls") as
// `listenerName` for log lines and stats.
export function createListeners(config, readPem, { tlsHandler, mtlsHandler, logRequests }) {
  const tlsBase = {
    cert: readPem(config.server_cert),
    key: readPem(config.server_key),
    minVersion: 'TLSv1.2',
  };
  const clientCas = [].concat(config.client_ca ?? []).map(readPem);
  const tlsServer = https.createServer({ ...tlsBase }, tlsHandler);
  // Client certificates are requested but never rejected at the TLS layer: a
  // handshake failure would give the client an opaque TLS error, whereas
  // Raidiam Connect answers a bad certificate with an OAuth error. Chain
  // validation against `client_ca` still happens (socket.authorized), and only
  // authorized certificates count.
  const mtlsServer = https.createServer(
    { ...tlsBase, ca: clientCas, requestCert: true, rejectUnauthorized: false },
    mtlsHandler,
  );
  for (const [server, name] of [[tlsServer, 'tls'], [mtlsServer, 'mtls']]) {
    server.listenerName = name;
    // Benchmarks reuse connections; a longer idle timeout avoids needless
    // re-handshakes between bursts.
    server.keepAliveTimeout = 30_000;
    server.on('tlsClientError', (err) => {
      if (logRequests) log(`${name} tls-error ${err.code ?? ''} ${err.message}`);
    });
  }
  return { tlsServer, mtlsServer };
}

// Port 0 binds an ephemeral port: the only race-free way to get a free one.
export function listen(server, port, host) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port ?? 0, host, () => {
      server.off('error', reject);
      resolve(server.address().port);
    });
  });
}

export function sendJson(res, status, body, headers = {}) {
  const data = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data), ...headers });
  res.end(data);
}

const JSON_LIMIT = 64 * 1024 * 1024; // bulk admin registrations (benchmarks) stay well below

export async function readJson(req, limit = JSON_LIMIT) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > limit) throw new SyntaxError(`request body over ${limit} bytes`);
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  return text ? JSON.parse(text) : undefined;
}

// The plain-HTTP admin API: `route(req, res)` answers; a bad JSON body is a 400.
export function createAdminServer(route) {
  return http.createServer((req, res) => {
    route(req, res).catch((err) => {
      log(`admin error ${err.stack ?? err}`);
      if (!res.headersSent) sendJson(res, err instanceof SyntaxError ? 400 : 500, { error: 'admin_error', error_description: err.message });
      else res.destroy();
    });
  });
}

// Written atomically: the launcher polls for this file.
export function announceReady(config, ready) {
  if (config.ready_file) {
    const tmp = `${config.ready_file}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify(ready, null, 2));
    fs.renameSync(tmp, config.ready_file);
  }
  log(`ready ${JSON.stringify(ready)}`);
}

export function stopOnSignals(servers) {
  const shutdown = (signal) => {
    log(`${signal} received, shutting down`);
    for (const server of servers) {
      server.close();
      server.closeAllConnections?.();
    }
    setTimeout(() => process.exit(0), 200).unref();
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

const FETCH_LIMIT = 1024 * 1024;

// GET `url` over HTTPS trusting `ca`, within `timeoutMs` (or until `signal` aborts) and 1 MiB:
// how one devenv server reads another's keys. Resolves to {status, headers, body}.
export function httpsGet(url, { ca, timeoutMs = 5000, signal } = {}) {
  return new Promise((resolve, reject) => {
    const request = https.get(url, { ca, timeout: timeoutMs, signal }, (res) => {
      const chunks = [];
      let size = 0;
      res.on('data', (chunk) => {
        size += chunk.length;
        if (size > FETCH_LIMIT) request.destroy(new Error(`${url}: answer over ${FETCH_LIMIT} bytes`));
        else chunks.push(chunk);
      });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    request.on('timeout', () => request.destroy(new Error(`${url}: no answer within ${timeoutMs} ms`)));
    request.on('error', reject);
  });
}

export async function fetchJson(url, options) {
  const { status, body } = await httpsGet(url, options);
  if (status !== 200) throw new Error(`${url} answered ${status}`);
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    throw new Error(`${url} did not answer JSON`);
  }
}
