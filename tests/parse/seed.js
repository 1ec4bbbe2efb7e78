// The part of tests/parse/flow.js that differs per target: the data an app
// finds when it starts (two stores, three products, stock) and granting the
// user the flow signs up the right to sell in the first store. Everything
// else the flow does through the unmodified Parse SDK.
//
//   stockflow: its /v1 API as the bootstrap admin (POST /v1/sessions,
//              /v1/stores, /v1/products, receipts; PATCH /v1/users/{id}
//              makes the user a clerk of store A).
//   parse:     Parse Server's REST API with the master key (Store, Product
//              and Inventory objects; nothing to grant: Parse's default
//              class permissions let anyone write).
//
// Both answer the same plan: {stores: {A, B}, products: {P1, P2, P3},
// stock: {"A/P1": n, ...}, tag}.
'use strict';

const STOCK = { 'A/P1': 1000, 'A/P2': 20, 'A/P3': 5, 'B/P1': 30 };

async function http(method, url, headers, body, timeoutMs = 15000) {
  let res;
  try {
    res = await fetch(url, {
      method,
      headers: { 'Content-Type': 'application/json', ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (e) {
    throw new Error(`seed: ${method} ${url}: ${e.message}${e.cause ? ` (${e.cause.code || e.cause.message})` : ''}`);
  }
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (e) { /* not JSON */ }
  if (!res.ok) throw new Error(`seed: ${method} ${url}: ${res.status} ${text.slice(0, 300)}`);
  return json;
}

class StockflowSeeder {
  // v1: base URL of /v1 (the gateway's, e.g. http://127.0.0.1:8080/v1).
  constructor({ v1, adminUser, adminPassword }) {
    if (!adminPassword) throw new Error('seed: stockflow needs --admin-password (or STOCKFLOW_ADMIN_PASSWORD)');
    this.v1 = v1.replace(/\/$/, '');
    this.adminUser = adminUser || 'admin';
    this.adminPassword = adminPassword;
  }

  async login() {
    if (this.token) return;
    const s = await http('POST', `${this.v1}/sessions`, {},
      { username: this.adminUser, password: this.adminPassword });
    this.token = s.token;
  }

  call(method, path, body, extra = {}) {
    return http(method, this.v1 + path, { Authorization: `Bearer ${this.token}`, ...extra }, body);
  }

  async seed(tag) {
    await this.login();
    const stores = {};
    const products = {};
    let last;
    for (const k of ['A', 'B']) {
      last = await this.call('POST', '/stores', { name: `Flow ${k} ${tag}`, location: `Aisle ${k}` });
      stores[k] = last.id;
    }
    for (const [i, k] of ['P1', 'P2', 'P3'].entries()) {
      last = await this.call('POST', '/products', {
        sku: `FLOW-${k}-${tag}`, name: `Flow ${k} ${tag}`, category: 'flow',
        price: `${i + 1}.50`, reorder_level: 1,
      });
      products[k] = last.id;
    }
    for (const [key, n] of Object.entries(STOCK)) {
      const [s, p] = key.split('/');
      last = await this.call('POST', `/stores/${stores[s]}/transactions`,
        { product_id: products[p], type: 'receipt', quantity: n, reason: 'flow seed' });
    }
    // The seed is read through the facade next: wait until the read
    // models have applied its last write (read-your-writes on /v1).
    await this.call('GET', `/stores/${stores.A}`, undefined, { 'X-Min-Position': last.position });
    return { stores, products, stock: { ...STOCK }, tag };
  }

  // The row's onHand as the admin sees it (for "nothing written" where the
  // user cannot look).
  async onHand(plan, s, p) {
    await this.login();
    return (await this.call('GET', `/stores/${plan.stores[s]}/inventory/${plan.products[p]}`)).on_hand;
  }

  // Makes the user a clerk of store A (sales allowed there, not in B).
  async grant(userId, plan) {
    await this.login();
    await this.call('PATCH', `/users/${userId}`, { role: 'clerk', store_ids: [plan.stores.A] });
  }
}

class ParseSeeder {
  constructor({ server, appId, masterKey }) {
    if (!masterKey) throw new Error('seed: parse needs --master-key (or PARSE_MASTER_KEY)');
    this.server = server.replace(/\/$/, '');
    this.headers = { 'X-Parse-Application-Id': appId, 'X-Parse-Master-Key': masterKey };
  }

  create(className, body) {
    return http('POST', `${this.server}/classes/${className}`, this.headers, body);
  }

  // Parse Server 9 lets no client create a class (allowClientClassCreation
  // is off): the classes the app writes are made here, as an app's
  // deployment does; "already exists" (103) is fine.
  async schema(className, fields) {
    try {
      await http('POST', `${this.server}/schemas/${className}`, this.headers, { className, fields });
    } catch (e) {
      if (!/"code":103/.test(e.message)) throw e;
    }
  }

  async seed(tag) {
    const ptr = (className, objectId) => ({ __type: 'Pointer', className, objectId });
    await this.schema('Transaction', {
      store: { type: 'Pointer', targetClass: 'Store' },
      product: { type: 'Pointer', targetClass: 'Product' },
      type: { type: 'String' }, quantity: { type: 'Number' }, delta: { type: 'Number' },
      reason: { type: 'String' }, reference: { type: 'String' },
    });
    const stores = {};
    const products = {};
    for (const k of ['A', 'B']) {
      stores[k] = (await this.create('Store', { name: `Flow ${k} ${tag}`, location: `Aisle ${k}`, closed: false })).objectId;
    }
    for (const [i, k] of ['P1', 'P2', 'P3'].entries()) {
      products[k] = (await this.create('Product', {
        sku: `FLOW-${k}-${tag}`, name: `Flow ${k} ${tag}`, category: 'flow',
        // a String, as bench/parse/seed.js declares Product.price (the
        // benchmark runs this flow on that database; Parse refuses a Number
        // there with code 111)
        price: `${i + 1}.50`, reorderLevel: 1, discontinued: false,
      })).objectId;
    }
    for (const [key, n] of Object.entries(STOCK)) {
      const [s, p] = key.split('/');
      await this.create('Inventory', {
        store: ptr('Store', stores[s]), product: ptr('Product', products[p]),
        onHand: n, reserved: 0, available: n, version: 1,
      });
    }
    return { stores, products, stock: { ...STOCK }, tag };
  }

  async onHand(plan, s, p) {
    const where = encodeURIComponent(JSON.stringify({
      store: { __type: 'Pointer', className: 'Store', objectId: plan.stores[s] },
      product: { __type: 'Pointer', className: 'Product', objectId: plan.products[p] },
    }));
    const r = await http('GET', `${this.server}/classes/Inventory?where=${where}`, this.headers);
    return r.results[0].onHand;
  }

  async grant() { /* Parse's default class permissions: nothing to grant */ }
}

module.exports = { StockflowSeeder, ParseSeeder, STOCK };
