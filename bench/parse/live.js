// LiveQuery side of the peer benchmark, with the parse JS SDK's own
// LiveQueryClient as the subscriber (in this process) and REST writes.
//
//   node live.js fresh RATE SECONDS OUT.json
//     subscribes to Inventory of one store (st00000001), then writes
//     PUT /parse/classes/Inventory/{id} Increment -1 at RATE writes/s (open
//     loop, a fixed schedule) over the store's rows in turn; each update
//     event is matched to its write by (objectId, new quantity). Reports
//     p50/p99 of write sent -> event and write's answer -> event (an event
//     that arrives before the answer counts 0 there; how many did is
//     reported), and events never received.
//   node live.js disconnect OUT.json
//     100 changes at 10/s; the subscriber closes its connection after the
//     30th change, stays away 5 s, reconnects and subscribes again; counts
//     the changes it never received (LiveQuery has no replay).
//
// Environment: PARSE_URL, PARSE_APP_ID, PARSE_MASTER_KEY.
'use strict';

const fs = require('fs');
const { performance } = require('perf_hooks');
const Parse = require('parse/node');

const URL_BASE = process.env.PARSE_URL || 'http://127.0.0.1:1337/parse';
const WS_URL = URL_BASE.replace(/^http/, 'ws');
const APP_ID = process.env.PARSE_APP_ID || 'stockflow-bench';
const MASTER = process.env.PARSE_MASTER_KEY;
const STORE = 'st00000001';
const HEADERS = {
  'X-Parse-Application-Id': APP_ID,
  'X-Parse-Master-Key': MASTER,
  'Content-Type': 'application/json',
};

Parse.initialize(APP_ID, undefined, MASTER);
Parse.serverURL = URL_BASE;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const rowId = (i) => STORE + 'pr' + String((i % 1000) + 1).padStart(8, '0');

function quantile(sorted, q) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

// Opens a LiveQuery client subscribed to the store's Inventory; onUpdate(obj, t).
async function subscribe(onUpdate) {
  const client = new Parse.LiveQueryClient({ applicationId: APP_ID, serverURL: WS_URL, masterKey: MASTER });
  client.on('error', (e) => console.error('live.js: LiveQuery client error:', e));
  client.open();
  const q = new Parse.Query('Inventory');
  q.equalTo('store', { __type: 'Pointer', className: 'Store', objectId: STORE });
  const sub = await client.subscribe(q);
  await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('LiveQuery subscription not open in 10 s')), 10000);
    sub.on('open', () => { clearTimeout(t); resolve(); });
  });
  sub.on('update', (obj) => onUpdate(obj, performance.now()));
  return client;
}

async function decrement(id) {
  const res = await fetch(`${URL_BASE}/classes/Inventory/${id}`, {
    method: 'PUT', headers: HEADERS, body: '{"quantity":{"__op":"Increment","amount":-1}}',
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`PUT Inventory/${id}: ${res.status} ${text.slice(0, 200)}`);
  return JSON.parse(text).quantity;
}

async function fresh(rate, seconds, out) {
  const events = new Map(); // "id:quantity" -> arrival time
  const client = await subscribe((obj, t) => events.set(`${obj.id}:${obj.get('quantity')}`, t));
  const n = Math.round(rate * seconds);
  const writes = [];
  const t0 = performance.now() + 100;
  const pending = [];
  for (let i = 0; i < n; i++) {
    const at = t0 + (i * 1000) / rate;
    const wait = at - performance.now();
    if (wait > 0) await sleep(wait);
    const w = { id: rowId(i), sent: performance.now() };
    writes.push(w);
    pending.push(decrement(w.id).then((q) => { w.answer = performance.now(); w.q = q; },
                                      (e) => { w.error = String(e.message || e); }));
  }
  await Promise.all(pending);
  await sleep(2000); // the last events
  client.close();
  const sentToEvent = [], answerToEvent = [];
  let lost = 0, early = 0, errors = 0;
  for (const w of writes) {
    if (w.error) { errors++; continue; }
    const t = events.get(`${w.id}:${w.q}`);
    if (t === undefined) { lost++; continue; }
    sentToEvent.push(t - w.sent);
    if (t < w.answer) early++;
    answerToEvent.push(Math.max(0, t - w.answer));
  }
  sentToEvent.sort((a, b) => a - b);
  answerToEvent.sort((a, b) => a - b);
  const r = {
    rate, seconds, writes: n, write_errors: errors, events_matched: sentToEvent.length,
    events_missing: lost, events_before_answer: early,
    sent_to_event_ms: { p50: quantile(sentToEvent, 0.5), p99: quantile(sentToEvent, 0.99),
                        max: sentToEvent[sentToEvent.length - 1] ?? null },
    answer_to_event_ms: { p50: quantile(answerToEvent, 0.5), p99: quantile(answerToEvent, 0.99),
                          max: answerToEvent[answerToEvent.length - 1] ?? null },
  };
  fs.writeFileSync(out, JSON.stringify(r, null, 1));
  const f = (x) => (x === null ? 'n/a' : x.toFixed(2));
  console.log(`[livequery] ${n} writes at ${rate}/s: sent->event p50 ${f(r.sent_to_event_ms.p50)} ` +
              `p99 ${f(r.sent_to_event_ms.p99)} ms; answer->event p50 ${f(r.answer_to_event_ms.p50)} ` +
              `p99 ${f(r.answer_to_event_ms.p99)} ms; missing ${lost}, before the answer ${early}, errors ${errors}`);
}

async function disconnect(out) {
  const got = new Set();
  const on = (obj) => got.add(`${obj.id}:${obj.get('quantity')}`);
  let client = await subscribe(on);
  const written = [];
  let away = null;
  for (let i = 0; i < 100; i++) {
    const at = performance.now() + 100;
    const id = rowId(500 + i);
    written.push(`${id}:${await decrement(id)}`);
    if (i === 29) {
      client.close();
      away = performance.now();
    }
    if (away !== null && performance.now() - away >= 5000) {
      client = await subscribe(on);
      away = null;
    }
    const wait = at - performance.now();
    if (wait > 0) await sleep(wait);
  }
  await sleep(2000);
  client.close();
  const lost = written.filter((k) => !got.has(k)).length;
  const r = { changes: 100, rate: 10, away_s: 5, received: 100 - lost, lost };
  fs.writeFileSync(out, JSON.stringify(r, null, 1));
  console.log(`[livequery-disconnect] 100 changes at 10/s, subscriber away 5 s: received ${r.received}, lost ${lost}`);
}

async function main() {
  const [mode, ...args] = process.argv.slice(2);
  if (!MASTER) throw new Error('PARSE_MASTER_KEY is not set');
  if (mode === 'fresh' && args.length === 3) return fresh(Number(args[0]), Number(args[1]), args[2]);
  if (mode === 'disconnect' && args.length === 1) return disconnect(args[0]);
  console.error('usage: node live.js fresh RATE SECONDS OUT.json | node live.js disconnect OUT.json');
  process.exit(2);
}

main().then(() => process.exit(0), (e) => {
  console.error('live.js:', e.message || e);
  process.exit(1);
});
