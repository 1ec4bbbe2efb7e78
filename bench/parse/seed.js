// Seeds the peer with the data shape of bench/run.sh: 20 Store, 1,000
// Product and 20,000 Inventory objects (pointers to its store and product,
// quantity 1,000,000 like stockflow's seed), through Parse's REST API
// (schemas first, then POST /parse/batch of 50 creates, 8 batches in
// flight). Then writes, into OUT_DIR, the files sf-loadgen reads:
//
//   ids.json           {"stores": [...], "products": [...]} as bench/run.sh
//                      writes it for stockflow (Parse objectIds here)
//   spec-*.json        the Parse requests as sf-loadgen specs (below)
//
// objectIds are chosen by the seed (server.js sets allowCustomObjectId):
// Store "st00000001".., Product "pr00000001".., and an Inventory row's id is
// its store's id followed by its product's id, so a spec addresses the row
// of a random pair as /parse/classes/Inventory/{store}{product}.
//
//   node seed.js OUT_DIR      (PARSE_URL, PARSE_APP_ID, PARSE_MASTER_KEY;
//                              SEED_STORES, SEED_PRODUCTS to shrink it)
'use strict';

const fs = require('fs');
const path = require('path');

const URL_BASE = process.env.PARSE_URL || 'http://127.0.0.1:1337/parse';
const APP_ID = process.env.PARSE_APP_ID || 'stockflow-bench';
const MASTER = process.env.PARSE_MASTER_KEY;
const STORES = Number(process.env.SEED_STORES || 20);
const PRODUCTS = Number(process.env.SEED_PRODUCTS || 1000);
const QUANTITY = 1000000;
const BATCH = 50;
const IN_FLIGHT = 8;

const HEADERS = {
  'X-Parse-Application-Id': APP_ID,
  'X-Parse-Master-Key': MASTER,
  'Content-Type': 'application/json',
};

async function call(method, p, body) {
  const res = await fetch(URL_BASE + p, {
    method,
    headers: HEADERS,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${p}: ${res.status} ${text.slice(0, 300)}`);
  return JSON.parse(text);
}

const ptr = (className, objectId) => ({ __type: 'Pointer', className, objectId });
const id = (prefix, i) => prefix + String(i + 1).padStart(8, '0');

async function schema(className, fields) {
  // Explicit schemas, so that 64 concurrent first writes do not race to
  // create the class.
  await call('POST', `/schemas/${className}`, { className, fields });
}

// Creates objects with POST /batch, BATCH per request, IN_FLIGHT at once.
async function createAll(className, objects) {
  const batches = [];
  for (let i = 0; i < objects.length; i += BATCH) batches.push(objects.slice(i, i + BATCH));
  let next = 0;
  async function worker() {
    while (next < batches.length) {
      const b = batches[next++];
      const res = await call('POST', '/batch', {
        requests: b.map((o) => ({ method: 'POST', path: `/parse/classes/${className}`, body: o })),
      });
      const bad = res.filter((r) => !r.success);
      if (bad.length) throw new Error(`${className}: ${bad.length} creates failed: ${JSON.stringify(bad[0])}`);
    }
  }
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
}

function specs(out) {
  const storePtr = '{"__type":"Pointer","className":"Store","objectId":"{store}"}';
  const productPtr = '{"__type":"Pointer","className":"Product","objectId":"{product}"}';
  const txBody = `{"store":${storePtr},"product":${productPtr},"type":"sale","quantity":1}`;
  const incBody = '{"quantity":{"__op":"Increment","amount":-1}}';
  // where={"store":{"__type":"Pointer","className":"Store","objectId":"{store}"}},
  // percent-encoded except for the placeholder.
  const where = encodeURIComponent('{"store":{"__type":"Pointer","className":"Store","objectId":"')
    + '{store}' + encodeURIComponent('"}}');
  const write = (name, ops) => fs.writeFileSync(path.join(out, name), JSON.stringify({ ops }, null, 1));
  write('spec-transaction.json', [
    { name: 'transaction', method: 'POST', path: '/parse/classes/Transaction', body: txBody }]);
  write('spec-increment.json', [
    { name: 'increment', method: 'PUT', path: '/parse/classes/Inventory/{store}{product}', body: incBody }]);
  // One stock movement = the Transaction, then the Increment on the same
  // connection (sf-loadgen draws the follow-up's pair anew: same cost).
  write('spec-movement.json', [
    { name: 'transaction', method: 'POST', path: '/parse/classes/Transaction', body: txBody,
      capture: 'objectId',
      then: [{ name: 'increment', method: 'PUT', path: '/parse/classes/Inventory/{store}{product}', body: incBody }] }]);
  write('spec-read-page.json', [
    { name: 'page', method: 'GET', path: `/parse/classes/Inventory?where=${where}&limit=100` }]);
  write('spec-read-row.json', [
    { name: 'row', method: 'GET', path: '/parse/classes/Inventory/{store}{product}' }]);
}

async function main() {
  const out = process.argv[2];
  if (!out || !MASTER) {
    console.error('usage: PARSE_MASTER_KEY=... node seed.js OUT_DIR');
    process.exit(2);
  }
  fs.mkdirSync(out, { recursive: true });
  const t0 = Date.now();
  await schema('Store', { name: { type: 'String' }, location: { type: 'String' } });
  await schema('Product', {
    sku: { type: 'String' }, name: { type: 'String' }, price: { type: 'String' },
    reorder_level: { type: 'Number' } });
  await schema('Inventory', {
    store: { type: 'Pointer', targetClass: 'Store' },
    product: { type: 'Pointer', targetClass: 'Product' },
    quantity: { type: 'Number' } });
  await schema('Transaction', {
    store: { type: 'Pointer', targetClass: 'Store' },
    product: { type: 'Pointer', targetClass: 'Product' },
    type: { type: 'String' }, quantity: { type: 'Number' } });

  const stores = Array.from({ length: STORES }, (_, i) => id('st', i));
  const products = Array.from({ length: PRODUCTS }, (_, i) => id('pr', i));
  await createAll('Store', stores.map((s, i) => ({ objectId: s, name: `bench store ${i}`, location: 'bench' })));
  await createAll('Product', products.map((p, i) => ({
    objectId: p, sku: `BENCH-${i}`, name: `bench product ${i}`, price: '9.99', reorder_level: 10 })));
  const inv = [];
  for (const s of stores) {
    for (const p of products) {
      inv.push({ objectId: s + p, store: ptr('Store', s), product: ptr('Product', p), quantity: QUANTITY });
    }
  }
  await createAll('Inventory', inv);
  // With no constraint Parse's PostgreSQL adapter answers a count from the
  // planner's estimate (0 before ANALYZE): count with a where.
  const where = encodeURIComponent(JSON.stringify({ quantity: { $gte: 0 } }));
  const count = await call('GET', `/classes/Inventory?where=${where}&limit=0&count=1`);
  if (count.count !== STORES * PRODUCTS) {
    throw new Error(`Inventory holds ${count.count} rows, expected ${STORES * PRODUCTS}`);
  }
  fs.writeFileSync(path.join(out, 'ids.json'), JSON.stringify({ stores, products }));
  specs(out);
  const secs = (Date.now() - t0) / 1000;
  console.log(`seed: ${STORES} Store, ${PRODUCTS} Product, ${count.count} Inventory in ${secs.toFixed(1)} s`);
  fs.writeFileSync(path.join(out, 'seed.json'), JSON.stringify({
    stores: STORES, products: PRODUCTS, inventory: count.count, seconds: secs }));
}

main().catch((e) => {
  console.error('seed.js:', e.message || e);
  process.exit(1);
});
