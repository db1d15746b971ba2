// node-redis against turnstile, driven by tests/compat.rs over stdin/stdout; the
// same steps as redis_py.py (READY, wait for ROTATED, check, OK).
'use strict';
const fs = require('fs');
const path = require('path');
const readline = require('readline');
const assert = require('assert');
const { createClient } = require('redis');

const env = process.env;
const USER = env.TS_USER || undefined;
const PROTO = Number(env.TS_PROTO);
const KEY = env.TS_KEY;
const version = JSON.parse(
  fs.readFileSync(path.join(__dirname, 'node_modules', 'redis', 'package.json'))).version;

async function connect(password) {
  const c = createClient({
    socket: { host: env.TS_HOST, port: Number(env.TS_PORT), reconnectStrategy: false },
    username: USER,
    password,
    RESP: PROTO,
  });
  c.on('error', () => {}); // failures surface as rejected promises below
  await c.connect();
  return c;
}

async function check(c, value) {
  assert.strictEqual(await c.set(KEY, value), 'OK');
  assert.strictEqual(await c.get(KEY), value);
  assert.strictEqual(String(await c.sendCommand(['ACL', 'WHOAMI'])), USER || 'default');
  const info = String(await c.sendCommand(['CLIENT', 'INFO']));
  assert.ok(info.includes(`resp=${PROTO}`), info);
}

async function main() {
  const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  const c = await connect(env.TS_OLD);
  await check(c, 'before');
  const id = await c.clientId();
  console.log(`READY node-redis ${version}`);
  assert.strictEqual((await lines.next()).value.trim(), 'ROTATED');
  await check(c, 'after');
  assert.strictEqual(await c.clientId(), id, 'the connection was re-established');
  const fresh = await connect(env.TS_NEW);
  await check(fresh, 'new');
  await assert.rejects(connect(env.TS_OLD), (e) => /WRONGPASS/.test(String(e)));
  console.log('OK');
  await c.quit();
  await fresh.quit();
  process.exit(0);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
