// Realtime with the real, unmodified PocketBase JS SDK (EventSource from npm `eventsource`):
// collection and record subscriptions, create/update/delete from single writes, a batch and
// a cascade, a record the list rule hides never arriving, unsubscribe, and a reconnect after
// the connection is killed that delivers every missed event in order.
//
//   node realtime.mjs <base-url> <superuser-email> <superuser-password>
//
// The realtime client talks through a local TCP proxy, so the test can kill its connection
// the way a network drop would. To resume across the SDK's reconnects (it opens a new
// EventSource each time), the EventSource given to the SDK remembers the last event id it
// saw and passes it as `?lastEventId=` (README, "Realtime"). Exits 0 and prints
// `realtime: N checks passed` when everything matches.

import assert from 'node:assert/strict';
import net from 'node:net';
import { EventSource } from 'eventsource';
import PocketBase from 'pocketbase';

const [baseUrl, email, password] = process.argv.slice(2);
if (!baseUrl || !email || !password) {
    console.error('usage: node realtime.mjs <base-url> <superuser-email> <superuser-password>');
    process.exit(2);
}

let passed = 0;
function check(fn, ...args) {
    fn(...args);
    passed++;
}

/** Waits until `pred()` holds (or fails after `ms`). */
async function until(pred, what, ms = 5000) {
    const end = Date.now() + ms;
    while (!pred()) {
        if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 20));
    }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// An EventSource that resumes where the previous one lost its connection.
let lastEventId = '';
const wrapped = new WeakMap();
class ResumingEventSource extends EventSource {
    constructor(url, init) {
        const u = new URL(url);
        if (lastEventId) u.searchParams.set('lastEventId', lastEventId);
        super(u.toString(), init);
    }
    // Resume only after a lost connection: closing an open stream (the SDK unsubscribing
    // from everything) starts the next connection afresh.
    close() {
        if (this.readyState === EventSource.OPEN) lastEventId = '';
        super.close();
    }
    addEventListener(type, listener, options) {
        const w = (e) => {
            if (e.lastEventId) lastEventId = e.lastEventId;
            return listener.call(this, e);
        };
        wrapped.set(listener, w);
        super.addEventListener(type, w, options);
    }
    removeEventListener(type, listener, options) {
        super.removeEventListener(type, wrapped.get(listener) || listener, options);
    }
}
globalThis.EventSource = ResumingEventSource;

// A TCP proxy in front of the server whose connections can be cut.
const target = new URL(baseUrl);
const sockets = new Set();
const proxy = net.createServer((inbound) => {
    const outbound = net.connect(Number(target.port), target.hostname);
    for (const s of [inbound, outbound]) {
        sockets.add(s);
        s.on('close', () => sockets.delete(s));
        s.on('error', () => {});
    }
    inbound.pipe(outbound);
    outbound.pipe(inbound);
});
await new Promise((r) => proxy.listen(0, '127.0.0.1', r));
const proxyUrl = `http://127.0.0.1:${proxy.address().port}`;
const killConnections = () => {
    for (const s of sockets) s.destroy();
};

const su = new PocketBase(baseUrl);
su.autoCancellation(false);
await su.collection('_superusers').authWithPassword(email, password);
const suffix = Math.random().toString(36).slice(2, 8);
const authors = `rt_authors_${suffix}`;
const books = `rt_books_${suffix}`;
const drafts = `rt_drafts_${suffix}`;
await su.collections.create({ name: authors, type: 'base', listRule: '', viewRule: '', fields: [{ name: 'name', type: 'text' }] });
await su.collections.create({
    name: books, type: 'base', listRule: '', viewRule: '',
    fields: [
        { name: 'title', type: 'text' },
        { name: 'author', type: 'relation', collectionId: authors, maxSelect: 1, cascadeDelete: true },
    ],
});
await su.collections.create({
    name: drafts, type: 'base', listRule: 'public = true', viewRule: 'public = true',
    fields: [{ name: 'title', type: 'text' }, { name: 'public', type: 'bool' }],
});

const client = new PocketBase(proxyUrl);
client.autoCancellation(false);
const seen = [];
let failed = false;
try {
    // Collection topic: single writes arrive as create, update, delete, in order.
    const unsubscribeAll = await client.collection(books).subscribe('*', (e) => seen.push(['*', e.action, e.record.title]));
    check(assert.equal, client.realtime.isConnected, true);
    const book = await su.collection(books).create({ title: 'one' });
    await su.collection(books).update(book.id, { title: 'two' });
    await su.collection(books).delete(book.id);
    await until(() => seen.length >= 3, 'three events');
    check(assert.deepEqual, seen.splice(0), [['*', 'create', 'one'], ['*', 'update', 'two'], ['*', 'delete', 'two']]);

    // Record topic: only that record.
    const watched = await su.collection(books).create({ title: 'watched' });
    const other = await su.collection(books).create({ title: 'other' });
    await until(() => seen.length >= 2, 'creates');
    seen.length = 0;
    const unsubscribeOne = await client.collection(books).subscribe(watched.id, (e) => seen.push(['one', e.action, e.record.title]));
    await su.collection(books).update(other.id, { title: 'other 2' });
    await su.collection(books).update(watched.id, { title: 'watched 2' });
    await until(() => seen.length >= 3, 'record events');
    check(assert.deepEqual, seen.splice(0), [['*', 'update', 'other 2'], ['*', 'update', 'watched 2'], ['one', 'update', 'watched 2']]);
    await unsubscribeOne();

    // A batch: every change, in the batch's order.
    const author = await su.collection(authors).create({ name: 'Le Guin' });
    const batch = su.createBatch();
    batch.collection(books).create({ title: 'b1', author: author.id });
    batch.collection(books).create({ title: 'b2', author: author.id });
    batch.collection(books).delete(other.id);
    await batch.send();
    await until(() => seen.length >= 3, 'batch events');
    check(assert.deepEqual, seen.splice(0), [['*', 'create', 'b1'], ['*', 'create', 'b2'], ['*', 'delete', 'other 2']]);

    // A cascade: deleting the author deletes its books.
    await su.collection(authors).delete(author.id);
    await until(() => seen.length >= 2, 'cascade events');
    check(assert.deepEqual, seen.splice(0).sort(), [['*', 'delete', 'b1'], ['*', 'delete', 'b2']]);

    // The list rule decides at send time: the private draft never arrives.
    const draftsSeen = [];
    const unsubscribeDrafts = await client.collection(drafts).subscribe('*', (e) => draftsSeen.push(e.record.title));
    await su.collection(drafts).create({ title: 'private', public: false });
    await su.collection(drafts).create({ title: 'public', public: true });
    await until(() => draftsSeen.length >= 1, 'the public draft');
    await sleep(300);
    check(assert.deepEqual, draftsSeen, ['public']);
    await unsubscribeDrafts();

    // Unsubscribed: nothing more arrives.
    await unsubscribeAll();
    await su.collection(books).create({ title: 'unwatched' });
    await sleep(400);
    check(assert.deepEqual, seen, []);

    // Killing the connection: the SDK reconnects and gets every event it missed, in order.
    await client.collection(books).subscribe('*', (e) => seen.push(['*', e.action, e.record.title]));
    await su.collection(books).create({ title: 'before' });
    await until(() => seen.length >= 1, 'the event before the cut');
    killConnections();
    for (const title of ['m1', 'm2', 'm3']) {
        await su.collection(books).create({ title });
    }
    await until(() => seen.length >= 4, 'the missed events after the reconnect', 15000);
    await sleep(300);
    check(assert.deepEqual, seen.splice(0), [['*', 'create', 'before'], ['*', 'create', 'm1'], ['*', 'create', 'm2'], ['*', 'create', 'm3']]);
    await su.collection(books).create({ title: 'after' });
    await until(() => seen.length >= 1, 'a live event after the reconnect');
    check(assert.deepEqual, seen.splice(0), [['*', 'create', 'after']]);
    await client.realtime.unsubscribe();
} catch (err) {
    failed = true;
    console.log(`FAIL ${err.stack || err}`);
} finally {
    for (const name of [books, drafts, authors]) {
        await su.collections.delete(name).catch(() => {});
    }
    proxy.close();
    killConnections();
}
if (failed) process.exit(1);
console.log(`realtime: ${passed} checks passed`);
process.exit(0);
