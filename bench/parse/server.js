// The peer of issue 6: Parse Server 9 (express + ParseServer) on PostgreSQL,
// with LiveQuery for Inventory and Transaction in the same process (its
// in-memory pub/sub, no Redis), listening on 127.0.0.1. Started and stopped
// by bench/parse/setup.sh and stop.sh; everything comes from the environment:
//
//   PARSE_PG_URI        postgres://postgres@127.0.0.1:PORT/parse_bench (required)
//   PARSE_APP_ID        application id (default stockflow-bench)
//   PARSE_MASTER_KEY    master key (required)
//   PARSE_PORT          port (default 1337)
//   PARSE_LOG_DIR       Parse's own log folder (default bench/parse/logs)
//   PARSE_IDEMPOTENCY   1: enable Parse's (experimental) request idempotency
//                       on classes/.* (X-Parse-Request-Id, ttl 300 s); off by
//                       default, as in a stock Parse Server
//   PARSE_CLOUD         a Cloud Code file to load (tests/parse/flow.js runs
//                       Parse Server with tests/parse/cloud.js, the
//                       template's afterSave that moves Inventory); none by
//                       default
//
// Options that differ from Parse's defaults, and why:
//   allowCustomObjectId: the seed gives Store/Product/Inventory objectIds of
//     its own choosing, so an Inventory row's id is its store's id followed by
//     its product's id and the load generator can address a row from the
//     {store}{product} placeholders (creates without an objectId still get a
//     random one; Parse only checks an objectId that is given).
//   directAccess: true (Parse's default since 6; set so it is explicit).
'use strict';

const http = require('http');
const path = require('path');
const express = require('express');
const { ParseServer } = require('parse-server');

function need(name) {
  const v = process.env[name];
  if (!v) {
    console.error(`server.js: ${name} is not set`);
    process.exit(2);
  }
  return v;
}

async function main() {
  const port = Number(process.env.PARSE_PORT || 1337);
  const appId = process.env.PARSE_APP_ID || 'stockflow-bench';
  const masterKey = need('PARSE_MASTER_KEY');
  const databaseURI = need('PARSE_PG_URI');
  const serverURL = `http://127.0.0.1:${port}/parse`;
  const options = {
    databaseURI,
    appId,
    masterKey,
    serverURL,
    directAccess: true,
    allowCustomObjectId: true,
    logsFolder: process.env.PARSE_LOG_DIR || path.join(__dirname, 'logs'),
    logLevel: 'warn',
    liveQuery: { classNames: ['Inventory', 'Transaction'] },
  };
  if (process.env.PARSE_CLOUD) options.cloud = path.resolve(process.env.PARSE_CLOUD);
  const idempotent = process.env.PARSE_IDEMPOTENCY === '1';
  if (idempotent) {
    options.idempotencyOptions = { paths: ['classes/.*'], ttl: 300 };
  }
  const parse = new ParseServer(options);
  await parse.start();
  const app = express();
  app.use('/parse', parse.app);
  const server = http.createServer(app);
  server.keepAliveTimeout = 65000;
  await ParseServer.createLiveQueryServer(server, { appId, masterKey, serverURL });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  console.log(`parse-server ${require('parse-server/package.json').version} on ${serverURL}` +
              ` (LiveQuery on ws://127.0.0.1:${port}/parse, idempotency ` +
              `${idempotent ? 'on' : 'off'})`);
  const stop = () => {
    server.close();
    Promise.resolve(parse.handleShutdown && parse.handleShutdown())
      .finally(() => process.exit(0));
    setTimeout(() => process.exit(0), 3000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((e) => {
  console.error('server.js:', e);
  process.exit(1);
});
