// Injected faults, as every devenv server's admin API takes them: POST /admin/fault adds one (a
// JSON object whose `mode` the server knows, `count` for only the next N matching requests),
// GET lists, DELETE /admin/fault clears all, DELETE /admin/fault/<id> one.

import { log } from './log.mjs';
import { readJson, sendJson } from './server.mjs';

export class FaultList {
  #faults = [];
  #nextId = 1;

  // `validate(body)` throws an Error naming what is wrong, or returns the fault to keep.
  constructor(validate) {
    this.validate = validate;
  }

  get length() {
    return this.#faults.length;
  }

  add(body) {
    if (!body || typeof body !== 'object' || Array.isArray(body)) throw new Error('fault must be a JSON object');
    if (body.count !== undefined && body.count !== null && !(Number.isSafeInteger(body.count) && body.count > 0)) {
      throw new Error('count must be a positive integer');
    }
    const fault = { id: this.#nextId++, ...this.validate(body) };
    fault.remaining = body.count ?? null;
    this.#faults.push(fault);
    return fault;
  }

  // The first fault that `predicate` accepts, with one of its uses consumed.
  take(predicate) {
    const fault = this.#faults.find(predicate);
    if (fault && fault.remaining !== null) {
      fault.remaining -= 1;
      if (fault.remaining <= 0) this.#faults = this.#faults.filter((f) => f !== fault);
    }
    return fault;
  }

  list() {
    return this.#faults;
  }

  // Answers the admin API's /admin/fault routes; false for any other route.
  async route(req, res, pathname) {
    const route = `${req.method} ${pathname.replace(/\/+$/, '')}`;
    const one = /^\/admin\/fault\/(\d+)$/.exec(pathname);
    if (route === 'POST /admin/fault') {
      let fault;
      try {
        fault = this.add(await readJson(req));
      } catch (err) {
        sendJson(res, 400, { error: 'invalid_fault', error_description: err.message });
        return true;
      }
      log(`admin fault set ${JSON.stringify({ ...fault, body: fault.body === undefined ? undefined : '<body>' })}`);
      sendJson(res, 200, fault);
      return true;
    }
    if (route === 'GET /admin/fault') {
      sendJson(res, 200, this.#faults);
      return true;
    }
    if (route === 'DELETE /admin/fault') {
      const cleared = this.#faults.length;
      this.#faults = [];
      if (cleared) log(`admin faults cleared (${cleared})`);
      sendJson(res, 200, { cleared });
      return true;
    }
    if (one && req.method === 'DELETE') {
      const before = this.#faults.length;
      this.#faults = this.#faults.filter((f) => f.id !== Number(one[1]));
      sendJson(res, 200, { cleared: before - this.#faults.length });
      return true;
    }
    return false;
  }
}
