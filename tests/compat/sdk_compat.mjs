// Drives a server with the real, unmodified PocketBase JS SDK and checks that every call
// behaves as it does against PocketBase itself (0.23+ API).
//
//   node sdk_compat.mjs <base-url> <superuser-email> <superuser-password>
//
// The three values may also come from SDK_COMPAT_URL, SDK_COMPAT_EMAIL and
// SDK_COMPAT_PASSWORD. Exits 0 and prints `sdk compat: N checks passed` when everything
// matches; otherwise exits 1 and lists every failing step with its failed check, what was
// expected and what came back (a failing essential step, such as sign-in, stops the run).
// It creates uniquely named collections (one base collection; then an auth collection of users
// and a collection of their notes, protected by owner rules) and deletes them at the end (also
// on failure).

import assert from 'node:assert/strict';
import { inspect } from 'node:util';
import PocketBase, { ClientResponseError } from 'pocketbase';

const [argUrl, argEmail, argPassword] = process.argv.slice(2);
const baseUrl = argUrl || process.env.SDK_COMPAT_URL;
const email = argEmail || process.env.SDK_COMPAT_EMAIL;
const password = argPassword || process.env.SDK_COMPAT_PASSWORD;
if (!baseUrl || !email || !password) {
    console.error('usage: node sdk_compat.mjs <base-url> <superuser-email> <superuser-password>');
    console.error('   (or set SDK_COMPAT_URL, SDK_COMPAT_EMAIL, SDK_COMPAT_PASSWORD)');
    process.exit(2);
}

const RECORD_ID = /^[a-z0-9]{15}$/;
const TIMESTAMP = /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const RECORD_COUNT = 30;

let passed = 0;
const failures = [];

/**
 * Runs one step. A failing step is recorded and the run goes on with the next one, so a
 * single run lists every mismatch; a failing `essential` step (one the rest depends on)
 * stops the run.
 */
async function step(name, body, { essential = false } = {}) {
    const before = passed;
    try {
        await body();
        console.log(`ok   ${name} (${passed - before} checks)`);
    } catch (err) {
        console.log(`FAIL ${name}`);
        failures.push({ name, message: describe(err) });
        if (essential) throw new Error(`essential step failed: ${name}`);
    }
}

/** One counted assertion. */
function check(fn, ...args) {
    fn(...args);
    passed++;
}

/** Awaits `promise`, expecting it to reject with a ClientResponseError; returns the error. */
async function rejection(promise) {
    try {
        const value = await promise;
        assert.fail(`expected the call to reject, it resolved with ${JSON.stringify(value)}`);
    } catch (err) {
        if (err instanceof assert.AssertionError) throw err;
        check(assert.ok, err instanceof ClientResponseError, `expected a ClientResponseError, got ${err}`);
        return err;
    }
}

function describe(err) {
    if (err instanceof ClientResponseError) {
        return (
            `ClientResponseError status=${err.status} url=${err.url}\n` +
            `  response: ${JSON.stringify(err.response)}` +
            (err.status === 0 && err.originalError
                ? `\n  cause: ${err.originalError}${err.originalError.cause ? ` (${err.originalError.cause})` : ''}`
                : '')
        );
    }
    if (err instanceof assert.AssertionError) {
        const first = err.message.split('\n')[0];
        if (err.operator === 'fail') return first;
        return `check failed: ${first}\n  expected: ${inspect(err.expected)}\n  actual:   ${inspect(err.actual)}`;
    }
    return err?.stack || String(err);
}

const pb = new PocketBase(baseUrl);
pb.autoCancellation(false);
const anon = new PocketBase(baseUrl);
anon.autoCancellation(false);

const suffix = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
const collectionName = `sdk_compat_${suffix}`;
let collectionCreated = false;

async function run() {
    // ---- superuser sign-in ------------------------------------------------------------
    let auth;
    await step(
        "collection('_superusers').authWithPassword",
        async () => {
            auth = await pb.collection('_superusers').authWithPassword(email, password);
            check(assert.equal, typeof auth.token, 'string', 'auth.token is a string');
            check(assert.ok, auth.token.length > 0, 'auth.token is not empty');
            check(assert.equal, auth.record?.email, email, 'auth.record.email is the superuser email');
            check(assert.equal, auth.record?.collectionName, '_superusers', 'auth.record.collectionName');
            check(assert.match, String(auth.record?.id), RECORD_ID, 'auth.record.id is a 15-char id');
            check(assert.equal, auth.record?.password, undefined, 'the password hash is not returned');
            check(assert.equal, pb.authStore.isValid, true, 'authStore.isValid after sign-in');
            check(assert.equal, pb.authStore.token, auth.token, 'authStore.token holds the new token');
            check(assert.equal, pb.authStore.record?.email, email, 'authStore.record.email');
            check(assert.equal, pb.authStore.isSuperuser, true, 'authStore.isSuperuser');
        },
        { essential: true },
    );

    await step("collection('_superusers').authWithPassword with a wrong password", async () => {
        const other = new PocketBase(baseUrl);
        const err = await rejection(other.collection('_superusers').authWithPassword(email, 'wrong-password-123'));
        check(assert.equal, err.status, 400, 'a failed sign-in answers 400');
        check(assert.equal, typeof err.response?.message, 'string', 'the error carries a message');
        check(assert.equal, other.authStore.isValid, false, 'the auth store stays empty');
    });

    // ---- collections ------------------------------------------------------------------
    let created;
    let fieldNames;
    await step(
        'collections.create',
        async () => {
            created = await pb.collections.create({
                name: collectionName,
                type: 'base',
                listRule: '',
                viewRule: null,
                createRule: null,
                updateRule: null,
                deleteRule: null,
                fields: [
                    { name: 'title', type: 'text', required: true, max: 200 },
                    { name: 'count', type: 'number' },
                    { name: 'done', type: 'bool' },
                    { name: 'status', type: 'select', values: ['draft', 'published'], maxSelect: 1 },
                    { name: 'meta', type: 'json' },
                    { name: 'created', type: 'autodate', onCreate: true, onUpdate: false },
                    { name: 'updated', type: 'autodate', onCreate: true, onUpdate: true },
                ],
            });
            collectionCreated = true;
            check(assert.equal, created.name, collectionName, 'collection name');
            check(assert.equal, created.type, 'base', 'collection type');
            check(assert.equal, typeof created.id, 'string', 'collection id is a string');
            check(assert.ok, created.id.length > 0, 'collection id is not empty');
            check(assert.equal, created.listRule, '', 'listRule "" (public)');
            check(assert.equal, created.viewRule, null, 'viewRule null (superusers only)');
            check(assert.equal, created.createRule, null, 'createRule null');
            check(assert.ok, Array.isArray(created.fields), 'fields is an array');
            fieldNames = created.fields.map((f) => f.name);
            for (const name of ['id', 'title', 'count', 'done', 'status', 'meta', 'created', 'updated']) {
                check(assert.ok, fieldNames.includes(name), `fields include ${name} (got ${fieldNames.join(',')})`);
            }
            const field = Object.fromEntries(created.fields.map((f) => [f.name, f]));
            check(assert.equal, field.title.type, 'text', 'title.type');
            check(assert.equal, field.title.required, true, 'title.required');
            check(assert.equal, field.title.max, 200, 'title.max');
            check(assert.equal, field.count.type, 'number', 'count.type');
            check(assert.equal, field.done.type, 'bool', 'done.type');
            check(assert.equal, field.status.type, 'select', 'status.type');
            check(assert.deepEqual, field.status.values, ['draft', 'published'], 'status.values');
            check(assert.equal, field.status.maxSelect, 1, 'status.maxSelect');
            check(assert.equal, field.meta.type, 'json', 'meta.type');
            check(assert.equal, field.created.type, 'autodate', 'created.type');
            check(assert.equal, field.updated.onUpdate, true, 'updated.onUpdate');
            check(assert.equal, field.id.type, 'text', 'id.type');
            check(assert.equal, field.id.system, true, 'id.system');
            for (const f of created.fields) {
                check(assert.equal, typeof f.id, 'string', `field ${f.name} has an id`);
            }
        },
        { essential: true },
    );

    await step('collections.create with a taken name', async () => {
        const err = await rejection(pb.collections.create({ name: collectionName, type: 'base', fields: [] }));
        check(assert.equal, err.status, 400, 'a duplicate collection name answers 400');
        check(assert.ok, err.response?.data?.name, `data.name holds the field error (got ${JSON.stringify(err.response?.data)})`);
        check(assert.equal, typeof err.response.data.name.code, 'string', 'data.name.code is a string');
    });

    await step('collections.getOne', async () => {
        const byName = await pb.collections.getOne(collectionName);
        check(assert.equal, byName.id, created.id, 'same id by name');
        check(assert.equal, byName.name, collectionName, 'same name');
        check(assert.deepEqual, byName.fields.map((f) => f.name), fieldNames, 'same fields in the same order');
        const byId = await pb.collections.getOne(created.id);
        check(assert.equal, byId.name, collectionName, 'found by id too');
        const err = await rejection(pb.collections.getOne(`missing_${suffix}`));
        check(assert.equal, err.status, 404, 'an unknown collection answers 404');
    });

    await step('collections.getList / getFullList', async () => {
        const list = await pb.collections.getList(1, 100);
        check(assert.equal, list.page, 1, 'page');
        check(assert.equal, list.perPage, 100, 'perPage');
        check(assert.ok, list.totalItems >= 2, `totalItems counts _superusers and ours (got ${list.totalItems})`);
        check(assert.ok, list.totalPages >= 1, 'totalPages');
        const names = list.items.map((c) => c.name);
        check(assert.ok, names.includes(collectionName), `the new collection is listed (got ${names.join(',')})`);
        check(assert.ok, names.includes('_superusers'), '_superusers is listed');
        const full = await pb.collections.getFullList({ batch: 2 });
        check(assert.equal, full.length, list.totalItems, 'getFullList({batch: 2}) sees every collection');
    });

    // ---- records ----------------------------------------------------------------------
    const records = pb.collection(collectionName);
    let first;
    let sparse;
    const all = [];

    await step(
        'collection(name).create',
        async () => {
            first = await records.create({
                title: 'first',
                count: 3,
                done: true,
                status: 'draft',
                meta: { a: 1, tags: ['x', 'y'], nested: { ok: true } },
            });
            all.push(first.id);
            check(assert.match, String(first.id), RECORD_ID, 'record id is 15 chars [a-z0-9]');
            check(assert.equal, first.collectionId, created.id, 'collectionId');
            check(assert.equal, first.collectionName, collectionName, 'collectionName');
            check(assert.equal, first.title, 'first', 'title');
            check(assert.equal, first.count, 3, 'count');
            check(assert.equal, first.done, true, 'done');
            check(assert.equal, first.status, 'draft', 'status');
            check(assert.deepEqual, first.meta, { a: 1, tags: ['x', 'y'], nested: { ok: true } }, 'meta');
            check(assert.match, String(first.created), TIMESTAMP, 'created is "YYYY-MM-DD HH:MM:SS.sssZ"');
            check(assert.match, String(first.updated), TIMESTAMP, 'updated is "YYYY-MM-DD HH:MM:SS.sssZ"');
        },
        { essential: true },
    );

    await step(
        'collection(name).create with only the required field (zero values)',
        async () => {
            sparse = await records.create({ title: 'sparse' });
            all.push(sparse.id);
            check(assert.equal, sparse.title, 'sparse', 'title');
            check(assert.equal, sparse.count, 0, 'an unset number is 0');
            check(assert.equal, sparse.done, false, 'an unset bool is false');
            check(assert.equal, sparse.status, '', 'an unset single select is ""');
            check(assert.equal, sparse.meta, null, 'an unset json is null');
        },
        { essential: true },
    );

    await step('collection(name).getOne', async () => {
        const got = await records.getOne(first.id);
        check(assert.deepEqual, got, first, 'getOne returns what create returned');
        const some = await records.getOne(first.id, { fields: 'id,title' });
        check(assert.deepEqual, some, { id: first.id, title: 'first' }, "getOne(id, {fields: 'id,title'})");
        const err = await rejection(records.getOne('aaaaaaaaaaaaaaa'));
        check(assert.equal, err.status, 404, 'an unknown record id rejects 404');
    });

    await step('collection(name).update', async () => {
        const updated = await records.update(first.id, { title: 'first (edited)', count: 4 });
        check(assert.equal, updated.id, first.id, 'same id');
        check(assert.equal, updated.title, 'first (edited)', 'title changed');
        check(assert.equal, updated.count, 4, 'count changed');
        check(assert.equal, updated.done, true, 'done kept');
        check(assert.equal, updated.status, 'draft', 'status kept');
        check(assert.deepEqual, updated.meta, first.meta, 'meta kept');
        check(assert.equal, updated.created, first.created, 'created kept');
        check(assert.ok, updated.updated >= first.updated, 'updated did not go back');
        const again = await records.getOne(first.id);
        check(assert.deepEqual, again, updated, 'getOne sees the update');
    });

    await step('validation errors (ClientResponseError.response.data)', async () => {
        const err = await rejection(records.create({ count: 1 }));
        check(assert.equal, err.status, 400, 'a missing required field answers 400');
        check(assert.equal, typeof err.response?.message, 'string', 'response.message is a string');
        check(assert.equal, err.data, err.response, 'err.data is err.response');
        check(
            assert.equal,
            err.response?.data?.title?.code,
            'validation_required',
            `data.title.code (got data ${JSON.stringify(err.response?.data)})`,
        );
        check(assert.equal, typeof err.response.data.title.message, 'string', 'data.title.message');
        check(assert.equal, err.response.data.count, undefined, 'no error for a valid field');

        const err2 = await rejection(records.update(first.id, { title: '' }));
        check(assert.equal, err2.status, 400, 'blanking a required field answers 400');
        check(assert.equal, err2.response?.data?.title?.code, 'validation_required', 'data.title.code on update');
        const unchanged = await records.getOne(first.id);
        check(assert.equal, unchanged.title, 'first (edited)', 'a failed update changes nothing');
    });

    await step(
        `create ${RECORD_COUNT - 2} more records`,
        async () => {
            for (let i = 3; i <= RECORD_COUNT; i++) {
                const r = await records.create({
                    title: `record ${String(i).padStart(2, '0')}`,
                    count: i * 10,
                    done: i % 2 === 0,
                    status: i % 3 === 0 ? 'published' : 'draft',
                });
                all.push(r.id);
            }
            check(assert.equal, new Set(all).size, RECORD_COUNT, 'every record has its own id');
        },
        { essential: true },
    );

    await step("collection(name).getList(1, 20, {sort: '-created'})", async () => {
        const page1 = await records.getList(1, 20, { sort: '-created' });
        check(assert.equal, page1.page, 1, 'page');
        check(assert.equal, page1.perPage, 20, 'perPage');
        check(assert.equal, page1.totalItems, RECORD_COUNT, 'totalItems');
        check(assert.equal, page1.totalPages, Math.ceil(RECORD_COUNT / 20), 'totalPages');
        check(assert.equal, page1.items.length, 20, 'items on page 1');
        for (let i = 1; i < page1.items.length; i++) {
            const [a, b] = [page1.items[i - 1].created, page1.items[i].created];
            check(assert.ok, a >= b, `items sorted by -created at ${i}: ${a} then ${b}`);
        }
        const page2 = await records.getList(2, 20, { sort: '-created' });
        check(assert.equal, page2.page, 2, 'page 2');
        check(assert.equal, page2.items.length, RECORD_COUNT - 20, 'items on page 2');
        const seen = new Set([...page1.items, ...page2.items].map((r) => r.id));
        check(assert.equal, seen.size, RECORD_COUNT, 'the two pages hold every record once');
        check(
            assert.ok,
            page1.items[page1.items.length - 1].created >= page2.items[0].created,
            'page 2 continues the order of page 1',
        );
    });

    await step('collection(name).getList with skipTotal', async () => {
        const list = await records.getList(1, 5, { sort: 'count', skipTotal: true });
        check(assert.equal, list.totalItems, -1, 'totalItems is -1 with skipTotal');
        check(assert.equal, list.totalPages, -1, 'totalPages is -1 with skipTotal');
        check(assert.equal, list.items.length, 5, 'items still come back');
        const slim = await records.getList(1, 3, { sort: 'count', fields: 'id,count' });
        check(assert.deepEqual, slim.items.map((r) => Object.keys(r).sort()), [['count', 'id'], ['count', 'id'], ['count', 'id']], "getList with fields: 'id,count'");
    });

    await step("collection(name).getFullList({sort: 'count', batch: 10})", async () => {
        const full = await records.getFullList({ sort: 'count', batch: 10 });
        check(assert.equal, full.length, RECORD_COUNT, 'every record (3 full batches of 10, then an empty page)');
        check(assert.deepEqual, new Set(full.map((r) => r.id)), new Set(all), 'the same records');
        const counts = full.map((r) => r.count);
        check(assert.deepEqual, counts, [...counts].sort((a, b) => a - b), 'sorted by count ascending');
        check(assert.equal, full[0].id, sparse.id, 'count 0 comes first');
        const desc = await records.getFullList({ sort: '-count', batch: 7 });
        check(assert.equal, desc.length, RECORD_COUNT, 'every record with batch 7 (last page short)');
        check(assert.deepEqual, desc.map((r) => r.id), full.map((r) => r.id).reverse(), "'-count' is the reverse");
        const byDefault = await records.getFullList({ sort: 'count' });
        check(assert.deepEqual, byDefault.map((r) => r.id), full.map((r) => r.id), 'default batch (1000): one page');
    });

    await step('collection(name).getList / getFirstListItem with a filter (pb.filter)', async () => {
        const filter = pb.filter('count >= {:min} && done = {:done}', { min: 100, done: true });
        const list = await records.getList(1, 50, { filter, sort: 'count' });
        const expected = [];
        for (let i = 10; i <= RECORD_COUNT; i++) if (i % 2 === 0) expected.push(i * 10);
        check(assert.deepEqual, list.items.map((r) => r.count), expected, `filter ${filter}`);
        check(assert.equal, list.totalItems, expected.length, 'totalItems counts the matches only');
        const one = await records.getFirstListItem(pb.filter('title = {:t}', { t: 'first (edited)' }));
        check(assert.equal, one.id, first.id, 'getFirstListItem finds the record');
        const err = await rejection(records.getFirstListItem(pb.filter('title = {:t}', { t: 'nope' })));
        check(assert.equal, err.status, 404, 'getFirstListItem without a match rejects 404');
    });

    await step('collection rules seen by an anonymous client', async () => {
        const list = await anon.collection(collectionName).getList(1, 5);
        check(assert.equal, list.totalItems, RECORD_COUNT, 'listRule "" lets anyone list');
        const err = await rejection(anon.collection(collectionName).getOne(first.id));
        check(assert.equal, err.status, 403, 'viewRule null refuses anonymous views with 403');
        const err2 = await rejection(anon.collection(collectionName).create({ title: 'x' }));
        check(assert.equal, err2.status, 403, 'createRule null refuses anonymous creates with 403');

        const changed = await pb.collections.update(collectionName, { viewRule: '' });
        check(assert.equal, changed.viewRule, '', 'collections.update sets viewRule ""');
        check(assert.equal, changed.listRule, '', 'collections.update keeps listRule');
        check(assert.deepEqual, changed.fields.map((f) => f.name), fieldNames, 'collections.update keeps the fields');
        const seen = await anon.collection(collectionName).getOne(first.id);
        check(assert.equal, seen.id, first.id, 'viewRule "" lets anyone view');
    });

    await step('collection(name).delete', async () => {
        const deleted = await records.delete(sparse.id);
        check(assert.equal, deleted, true, 'delete resolves true');
        const err = await rejection(records.getOne(sparse.id));
        check(assert.equal, err.status, 404, 'getOne of the deleted id rejects 404');
        check(assert.equal, typeof err.response?.message, 'string', 'the 404 carries a message');
        const err2 = await rejection(records.delete(sparse.id));
        check(assert.equal, err2.status, 404, 'deleting it again rejects 404');
        const list = await records.getList(1, 1);
        check(assert.equal, list.totalItems, RECORD_COUNT - 1, 'one record fewer');
    });

    await step("collection('_superusers').authRefresh", async () => {
        const before = pb.authStore.token;
        const refreshed = await pb.collection('_superusers').authRefresh();
        check(assert.equal, typeof refreshed.token, 'string', 'a token comes back');
        check(assert.ok, refreshed.token.length > 0, 'the token is not empty');
        check(assert.equal, refreshed.record?.email, email, 'record.email');
        check(assert.equal, refreshed.record?.id, auth.record.id, 'the same superuser');
        check(assert.equal, pb.authStore.token, refreshed.token, 'authStore holds the refreshed token');
        check(assert.equal, pb.authStore.isValid, true, 'authStore.isValid after refresh');
        check(assert.ok, before.length > 0, 'there was a token before');
        const err = await rejection(anon.collection('_superusers').authRefresh());
        check(assert.equal, err.status, 401, 'authRefresh without a token rejects 401');
    });

    await step('collections.delete', async () => {
        const deleted = await pb.collections.delete(collectionName);
        collectionCreated = false;
        check(assert.equal, deleted, true, 'collections.delete resolves true');
        const err = await rejection(pb.collections.getOne(collectionName));
        check(assert.equal, err.status, 404, 'the deleted collection is gone');
        const err2 = await rejection(records.getList(1, 1));
        check(assert.equal, err2.status, 404, 'its records endpoint is gone too');
    });
}

// ---- users: signup, sign-in, refresh, sign-out and rule-protected records -----------------
//
// Sign-in requests here (users and the superuser together): 1 superuser sign-in plus 1 wrong
// superuser password above, then 2 user sign-ins, 1 wrong user password and 1 sign-in after
// the sign-out below — well under the server's default per-IP (20/min) and per-identity
// (10/min) sign-in limits, so the test runs with the rate limiter on, as shipped.

const usersName = `sdk_users_${suffix}`;
const notesName = `sdk_notes_${suffix}`;
let usersCreated = false;
let notesCreated = false;
const USER_PASSWORD = 'user-password-123';

/** Decodes the payload of a JWT (base64url JSON), or throws. */
function jwtPayload(token) {
    const parts = String(token).split('.');
    assert.equal(parts.length, 3, `a JWT has 3 dot-separated parts (got ${parts.length})`);
    return JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
}

async function runUsers() {
    let users;
    let notes;
    await step(
        'collections.create: an auth collection and a base collection with an owner rule',
        async () => {
            users = await pb.collections.create({
                name: usersName,
                type: 'auth',
                listRule: 'id = @request.auth.id',
                viewRule: 'id = @request.auth.id',
                createRule: '',
                updateRule: 'id = @request.auth.id',
                deleteRule: null,
                fields: [{ name: 'name', type: 'text', max: 100 }],
            });
            usersCreated = true;
            check(assert.equal, users.type, 'auth', 'type auth');
            const names = users.fields.map((f) => f.name);
            for (const name of ['id', 'email', 'emailVisibility', 'verified', 'password', 'tokenKey', 'name']) {
                check(assert.ok, names.includes(name), `auth fields include ${name} (got ${names.join(',')})`);
            }
            check(assert.equal, users.passwordAuth?.enabled, true, 'passwordAuth.enabled');
            notes = await pb.collections.create({
                name: notesName,
                type: 'base',
                listRule: 'owner = @request.auth.id',
                viewRule: 'owner = @request.auth.id',
                createRule: "@request.auth.id != '' && owner = @request.auth.id",
                updateRule: null,
                deleteRule: null,
                fields: [
                    { name: 'text', type: 'text', required: true },
                    { name: 'owner', type: 'relation', collectionId: users.id, maxSelect: 1, required: true },
                ],
            });
            notesCreated = true;
            const owner = notes.fields.find((f) => f.name === 'owner');
            check(assert.equal, owner?.type, 'relation', 'owner is a relation');
            check(assert.equal, owner?.collectionId, users.id, 'owner points at the users collection');
        },
        { essential: true },
    );

    const alice = new PocketBase(baseUrl);
    alice.autoCancellation(false);
    const bob = new PocketBase(baseUrl);
    bob.autoCancellation(false);
    const stranger = new PocketBase(baseUrl);
    stranger.autoCancellation(false);
    const aliceEmail = `alice_${suffix}@example.com`;
    const bobEmail = `bob_${suffix}@example.com`;
    let aliceRecord;
    let bobRecord;

    await step(
        'collection(users).create: anonymous signup',
        async () => {
            aliceRecord = await alice.collection(usersName).create({
                email: aliceEmail,
                password: USER_PASSWORD,
                passwordConfirm: USER_PASSWORD,
                name: 'Alice',
            });
            check(assert.match, String(aliceRecord.id), RECORD_ID, 'the new user has a 15-char id');
            check(assert.equal, aliceRecord.collectionName, usersName, 'collectionName');
            check(assert.equal, aliceRecord.name, 'Alice', 'name');
            check(assert.equal, aliceRecord.verified, false, 'a new user is not verified');
            check(assert.equal, aliceRecord.password, undefined, 'no password in the response');
            check(assert.equal, aliceRecord.tokenKey, undefined, 'no tokenKey in the response');
            check(assert.equal, alice.authStore.isValid, false, 'signing up does not sign in');
            bobRecord = await bob.collection(usersName).create({
                email: bobEmail,
                password: USER_PASSWORD,
                passwordConfirm: USER_PASSWORD,
                name: 'Bob',
            });
            check(assert.notEqual, bobRecord.id, aliceRecord.id, 'two users, two ids');
            const err = await rejection(
                stranger.collection(usersName).create({
                    email: aliceEmail,
                    password: USER_PASSWORD,
                    passwordConfirm: USER_PASSWORD,
                }),
            );
            check(assert.equal, err.status, 400, 'signing up with a taken email answers 400');
            const err2 = await rejection(
                stranger.collection(usersName).create({
                    email: `carol_${suffix}@example.com`,
                    password: USER_PASSWORD,
                    passwordConfirm: 'something-else-123',
                }),
            );
            check(assert.equal, err2.status, 400, 'a mismatched passwordConfirm answers 400');
            check(assert.ok, err2.response?.data?.passwordConfirm, `data.passwordConfirm (got ${JSON.stringify(err2.response?.data)})`);
        },
        { essential: true },
    );

    await step("collection(users).listAuthMethods", async () => {
        const methods = await stranger.collection(usersName).listAuthMethods();
        check(assert.equal, methods.password?.enabled, true, 'password.enabled');
        check(assert.ok, Array.isArray(methods.password?.identityFields), 'password.identityFields is an array');
        check(assert.ok, methods.password.identityFields.includes('email'), 'email is an identity field');
        check(assert.equal, typeof methods.oauth2?.enabled, 'boolean', 'oauth2.enabled is a boolean');
        check(assert.ok, Array.isArray(methods.oauth2?.providers), 'oauth2.providers is an array');
        check(assert.equal, typeof methods.otp?.enabled, 'boolean', 'otp.enabled is a boolean');
        check(assert.equal, typeof methods.mfa?.enabled, 'boolean', 'mfa.enabled is a boolean');
    });

    let aliceAuth;
    await step(
        'collection(users).authWithPassword',
        async () => {
            aliceAuth = await alice.collection(usersName).authWithPassword(aliceEmail, USER_PASSWORD);
            check(assert.equal, alice.authStore.isValid, true, 'authStore.isValid');
            check(assert.equal, alice.authStore.isSuperuser, false, 'a user is not a superuser');
            check(assert.equal, aliceAuth.record?.email, aliceEmail, 'record.email');
            check(assert.equal, aliceAuth.record?.id, aliceRecord.id, 'record.id');
            check(assert.equal, aliceAuth.record?.collectionName, usersName, 'record.collectionName');
            check(assert.equal, aliceAuth.record?.password, undefined, 'no password hash');
            check(assert.equal, alice.authStore.record?.id, aliceRecord.id, 'authStore.record.id');
            check(assert.equal, alice.authStore.token, aliceAuth.token, 'authStore.token');
            const payload = jwtPayload(aliceAuth.token);
            check(assert.equal, typeof payload.exp, 'number', `the token payload has a numeric exp (${JSON.stringify(payload)})`);
            check(assert.ok, payload.exp > Date.now() / 1000, 'exp is in the future');
            check(assert.equal, payload.type, 'auth', 'payload.type is "auth"');
            check(assert.equal, payload.id, aliceRecord.id, 'payload.id is the user id');
            check(assert.equal, payload.collectionId, users.id, 'payload.collectionId');
            await bob.collection(usersName).authWithPassword(bobEmail, USER_PASSWORD);
            check(assert.equal, bob.authStore.record?.id, bobRecord.id, 'bob signed in too');
        },
        { essential: true },
    );

    await step('collection(users).authWithPassword with a wrong password', async () => {
        const other = new PocketBase(baseUrl);
        const err = await rejection(other.collection(usersName).authWithPassword(aliceEmail, 'wrong-password-123'));
        check(assert.equal, err.status, 400, 'a wrong password answers 400');
        check(assert.equal, other.authStore.isValid, false, 'the auth store stays empty');
    });

    await step('collection(users).authRefresh', async () => {
        const before = alice.authStore.token;
        // Tokens carry whole seconds; wait so the refreshed one is certainly a different string
        // even on a server that derives it from the issue time alone.
        await new Promise((r) => setTimeout(r, 1100));
        const refreshed = await alice.collection(usersName).authRefresh();
        check(assert.equal, typeof refreshed.token, 'string', 'a token comes back');
        check(assert.notEqual, refreshed.token, before, 'a new token');
        check(assert.equal, refreshed.record?.id, aliceRecord.id, 'the same user');
        check(assert.equal, alice.authStore.token, refreshed.token, 'authStore holds the new token');
        check(assert.ok, jwtPayload(refreshed.token).exp >= jwtPayload(before).exp, 'exp did not go back');
        const me = await alice.collection(usersName).getOne(aliceRecord.id);
        check(assert.equal, me.email, aliceEmail, 'the refreshed token works (getOne of self)');
    });

    const aliceNotes = [];
    const bobNotes = [];
    await step(
        'users create notes they own',
        async () => {
            for (let i = 0; i < 3; i++) {
                const n = await alice.collection(notesName).create({ text: `alice ${i}`, owner: aliceRecord.id });
                check(assert.equal, n.owner, aliceRecord.id, 'owner is alice');
                aliceNotes.push(n.id);
            }
            for (let i = 0; i < 2; i++) {
                const n = await bob.collection(notesName).create({ text: `bob ${i}`, owner: bobRecord.id });
                bobNotes.push(n.id);
            }
            const err = await rejection(bob.collection(notesName).create({ text: 'forged', owner: aliceRecord.id }));
            check(assert.ok, [400, 403].includes(err.status), `a note for someone else is refused (got ${err.status})`);
            const err2 = await rejection(stranger.collection(notesName).create({ text: 'anon', owner: aliceRecord.id }));
            check(assert.ok, [400, 403].includes(err2.status), `an anonymous note is refused (got ${err2.status})`);
        },
        { essential: true },
    );

    await step('the list rule: each user sees only their own notes', async () => {
        const a = await alice.collection(notesName).getList(1, 50, { sort: 'text' });
        check(assert.equal, a.totalItems, aliceNotes.length, "alice's totalItems");
        check(assert.deepEqual, a.items.map((n) => n.text), ['alice 0', 'alice 1', 'alice 2'], "alice's notes");
        const b = await bob.collection(notesName).getFullList({ sort: 'text' });
        check(assert.deepEqual, b.map((n) => n.id).sort(), [...bobNotes].sort(), "bob's getFullList");
        const bPage = await bob.collection(notesName).getList(1, 1);
        check(assert.equal, bPage.totalItems, bobNotes.length, "bob's totalItems");
        check(assert.equal, bPage.totalPages, bobNotes.length, "bob's totalPages with perPage 1");
        const filtered = await bob.collection(notesName).getList(1, 50, { filter: pb.filter('text ~ {:t}', { t: 'alice' }) });
        check(assert.equal, filtered.totalItems, 0, "a filter does not reach alice's notes");
        const anonList = await stranger.collection(notesName).getList(1, 50);
        check(assert.equal, anonList.totalItems, 0, 'an anonymous list sees nothing');
        check(assert.deepEqual, anonList.items, [], 'no items for anonymous');
        const all = await pb.collection(notesName).getList(1, 50);
        check(assert.equal, all.totalItems, aliceNotes.length + bobNotes.length, 'a superuser sees every note');
    });

    await step("getOne of someone else's note or user answers 404", async () => {
        const own = await alice.collection(notesName).getOne(aliceNotes[0]);
        check(assert.equal, own.text, 'alice 0', 'alice views her own note');
        const err = await rejection(alice.collection(notesName).getOne(bobNotes[0]));
        check(assert.equal, err.status, 404, "alice viewing bob's note answers 404");
        const err2 = await rejection(stranger.collection(notesName).getOne(aliceNotes[0]));
        check(assert.equal, err2.status, 404, 'an anonymous view answers 404');
        const err3 = await rejection(alice.collection(usersName).getOne(bobRecord.id));
        check(assert.equal, err3.status, 404, "alice viewing bob's user record answers 404");
        const us = await alice.collection(usersName).getFullList();
        check(assert.deepEqual, us.map((u) => u.id), [aliceRecord.id], 'the users list shows only oneself');
    });

    await step('a user cannot verify themselves', async () => {
        const err = await rejection(alice.collection(usersName).update(aliceRecord.id, { verified: true }));
        check(assert.equal, err.status, 400, 'update(self, {verified: true}) answers 400');
        check(assert.ok, err.response?.data?.verified, `data.verified holds the error (got ${JSON.stringify(err.response?.data)})`);
        const me = await alice.collection(usersName).getOne(aliceRecord.id);
        check(assert.equal, me.verified, false, 'still unverified');
        const renamed = await alice.collection(usersName).update(aliceRecord.id, { name: 'Alice A.' });
        check(assert.equal, renamed.name, 'Alice A.', 'other fields of oneself can be updated');
        check(assert.equal, alice.authStore.record?.name, 'Alice A.', 'the SDK syncs authStore.record');
    });

    await step('authStore.clear() makes the client anonymous', async () => {
        bob.authStore.clear();
        check(assert.equal, bob.authStore.isValid, false, 'isValid false after clear');
        const list = await bob.collection(notesName).getList(1, 50);
        check(assert.equal, list.totalItems, 0, 'a cleared client lists nothing');
        const err = await rejection(bob.collection(notesName).getOne(bobNotes[0]));
        check(assert.equal, err.status, 404, 'a cleared client cannot view its own note');
    });

    await step('auth-logout revokes the token', async () => {
        const token = alice.authStore.token;
        const res = await alice.send(`/api/collections/${usersName}/auth-logout`, { method: 'POST' });
        check(assert.ok, res !== undefined, 'the sign-out call resolves');
        check(assert.equal, alice.authStore.token, token, 'the SDK still holds the old token');
        const err = await rejection(alice.collection(usersName).authRefresh());
        check(assert.equal, err.status, 401, 'authRefresh with the revoked token answers 401');
        const list = await alice.collection(notesName).getList(1, 50);
        check(assert.equal, list.totalItems, 0, 'the revoked token lists nothing');
        alice.authStore.clear();
        const again = await alice.collection(usersName).authWithPassword(aliceEmail, USER_PASSWORD);
        check(assert.notEqual, again.token, token, 'signing in again gives a new token');
        const mine = await alice.collection(notesName).getList(1, 50);
        check(assert.equal, mine.totalItems, aliceNotes.length, 'the new token sees her notes again');
    });
}

/** Files: uploads through the SDK's FormData conversion, getURL (with thumbs), file tokens. */
const filesName = `sdk_files_${suffix}`;
let filesCreated = false;
// A 1x1 PNG.
const PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==', 'base64');

async function runFiles() {
    await step('create a collection with file fields', async () => {
        await pb.collections.create({
            name: filesName,
            type: 'base',
            listRule: '@request.auth.id != ""',
            viewRule: '@request.auth.id != ""',
            createRule: null,
            updateRule: null,
            deleteRule: null,
            fields: [
                { name: 'title', type: 'text' },
                { name: 'doc', type: 'file', maxSelect: 1, maxSize: 100000 },
                { name: 'gallery', type: 'file', maxSelect: 5, maxSize: 100000, mimeTypes: ['image/png'], thumbs: ['50x50', '0x20'] },
                { name: 'secret', type: 'file', maxSelect: 1, protected: true },
            ],
        });
        filesCreated = true;
    }, { essential: true });

    let record;
    await step('create a record with files (the SDK sends FormData with @jsonPayload)', async () => {
        record = await pb.collection(filesName).create({
            title: 'with files',
            doc: new File(['hello from the sdk'], 'Hello There.txt', { type: 'text/plain' }),
            gallery: [new File([PNG], 'dot.png', { type: 'image/png' })],
            secret: new File(['top secret'], 'secret.txt'),
        });
        check(assert.equal, record.title, 'with files', 'JSON fields travel in @jsonPayload');
        check(assert.match, record.doc, /^hello_there_[a-z0-9]{10}\.txt$/, 'a single file field is a sanitized name');
        check(assert.ok, Array.isArray(record.gallery) && record.gallery.length === 1, 'a multi file field is an array');
        check(assert.match, record.secret, /\.txt$/, 'the protected file is stored');
    }, { essential: true });

    await step('create from a FormData the caller built', async () => {
        const form = new FormData();
        form.append('title', 'from FormData');
        form.append('doc', new Blob(['form bytes'], { type: 'text/plain' }), 'form.txt');
        form.append('gallery', new Blob([PNG], { type: 'image/png' }), 'one.png');
        form.append('gallery', new Blob([PNG], { type: 'image/png' }), 'two.png');
        const made = await pb.collection(filesName).create(form);
        check(assert.equal, made.title, 'from FormData', 'text parts become field values');
        check(assert.match, made.doc, /^form_[a-z0-9]{10}\.txt$/, 'the file part is stored');
        check(assert.equal, made.gallery.length, 2, 'repeated parts fill a multi file field');
        const res = await fetch(pb.files.getURL(made, made.doc), { headers: { Authorization: pb.authStore.token } });
        check(assert.equal, await res.text(), 'form bytes', 'and downloads with its bytes');
    });

    await step('getURL serves the file (and its thumb as WebP)', async () => {
        const url = pb.files.getURL(record, record.doc);
        check(assert.ok, url.startsWith(`${baseUrl.replace(/\/$/, '')}/api/files/`), `getURL points at /api/files (${url})`);
        const headers = { Authorization: pb.authStore.token };
        const res = await fetch(url, { headers });
        check(assert.equal, res.status, 200, 'the file downloads');
        check(assert.equal, await res.text(), 'hello from the sdk', 'with the uploaded bytes');
        const anonymous = await fetch(url);
        check(assert.equal, anonymous.status, 404, 'the view rule hides it from anonymous callers');
        const thumb = await fetch(pb.files.getURL(record, record.gallery[0], { thumb: '50x50' }), { headers });
        check(assert.equal, thumb.status, 200, 'the thumb downloads');
        check(assert.equal, thumb.headers.get('content-type'), 'image/webp', 'thumbs are WebP');
        const legacy = pb.files.getUrl(record, record.doc);
        check(assert.equal, legacy, url, 'the deprecated getUrl gives the same URL');
    });

    await step('protected files need pb.files.getToken()', async () => {
        const url = pb.files.getURL(record, record.secret);
        const without = await fetch(url, { headers: { Authorization: pb.authStore.token } });
        check(assert.equal, without.status, 404, 'no file token: 404');
        const token = await pb.files.getToken();
        check(assert.equal, typeof token, 'string', 'getToken returns a string');
        const res = await fetch(pb.files.getURL(record, record.secret, { token }));
        check(assert.equal, res.status, 200, 'with the file token: 200');
        check(assert.equal, await res.text(), 'top secret', 'the protected bytes');
    });

    await step('append with field+ and remove with field-', async () => {
        const first = record.gallery[0];
        const more = await pb.collection(filesName).update(record.id, {
            'gallery+': new File([PNG], 'second.png', { type: 'image/png' }),
        });
        check(assert.equal, more.gallery.length, 2, 'gallery+ appends');
        check(assert.equal, more.gallery[0], first, 'the existing file stays first');
        const fewer = await pb.collection(filesName).update(record.id, { 'gallery-': [first] });
        check(assert.deepEqual, fewer.gallery, [more.gallery[1]], 'gallery- removes by name');
        const wrong = await rejection(pb.collection(filesName).update(record.id, {
            gallery: new File(['not an image'], 'fake.png', { type: 'image/png' }),
        }));
        check(assert.equal, wrong.status, 400, 'a refused content type answers 400');
        check(assert.equal, wrong.response?.data?.gallery?.code, 'validation_invalid_mime_type', 'with the field error');
    });
}

/**
 * The other services: batch (with a file part), update modifiers, collection list filters,
 * scaffolds, truncate, crons, logs, settings, sign-in by another identity field, and the
 * clear 501 of what is not served yet.
 */
const servicesName = `sdk_services_${suffix}`;
const membersName = `sdk_members_${suffix}`;
let servicesCreated = false;
let membersCreated = false;

async function runServices() {
    await step('create a collection for the services', async () => {
        await pb.collections.create({
            name: servicesName,
            type: 'base',
            fields: [
                { name: 'title', type: 'text' },
                { name: 'n', type: 'number' },
                { name: 'tags', type: 'select', values: ['a', 'b', 'c'], maxSelect: 3 },
                { name: 'doc', type: 'file', maxSelect: 1, maxSize: 100000 },
            ],
        });
        servicesCreated = true;
    }, { essential: true });

    let made;
    await step('createBatch().send() with a file part (multipart @jsonPayload + requests.N.field)', async () => {
        const batch = pb.createBatch();
        batch.collection(servicesName).create({ title: 'one', n: 1, doc: new File(['batch bytes'], 'batch.txt', { type: 'text/plain' }) });
        batch.collection(servicesName).create({ title: 'two', tags: ['a'] });
        const replies = await batch.send();
        check(assert.equal, replies.length, 2, 'one reply per request');
        check(assert.deepEqual, replies.map((r) => r.status), [200, 200], 'both created');
        made = replies.map((r) => r.body);
        check(assert.match, made[0].doc, /^batch_[a-z0-9]{10}\.txt$/, 'the file part became the record\'s file');
        const res = await fetch(pb.files.getURL(made[0], made[0].doc), { headers: { Authorization: pb.authStore.token } });
        check(assert.equal, await res.text(), 'batch bytes', 'the stored file has the bytes sent');
    });

    await step('a failing batch changes nothing', async () => {
        const batch = pb.createBatch();
        batch.collection(servicesName).create({ title: 'kept?' });
        batch.collection(servicesName).update('nonexistent00000', { title: 'x' });
        const err = await rejection(batch.send());
        check(assert.ok, err.status >= 400 && err.status < 500, `a 4xx, got ${err.status}`);
        const kept = await pb.collection(servicesName).getList(1, 1, { filter: 'title = "kept?"' });
        check(assert.equal, kept.totalItems, 0, 'the first request was rolled back');
    });

    await step('update modifiers: n+ / n-, tags+ / +tags / tags-', async () => {
        const id = made[0].id;
        let r = await pb.collection(servicesName).update(id, { 'n+': 5 });
        check(assert.equal, r.n, 6, 'n+ adds to the stored value');
        r = await pb.collection(servicesName).update(id, { 'n-': 2 });
        check(assert.equal, r.n, 4, 'n- subtracts');
        r = await pb.collection(servicesName).update(id, { 'tags+': ['b', 'c'], '+tags': 'a' });
        check(assert.deepEqual, r.tags, ['a', 'b', 'c'], 'prepend and append');
        r = await pb.collection(servicesName).update(id, { 'tags-': 'b' });
        check(assert.deepEqual, r.tags, ['a', 'c'], 'remove');
        const err = await rejection(pb.collection(servicesName).update(id, { 'title+': 'x' }));
        check(assert.equal, err.status, 400, 'a modifier the field lacks is refused');
        check(assert.equal, err.response?.data?.['title+']?.code, 'validation_unknown_modifier', 'with a field error');
    });

    await step('update modifiers in a batch', async () => {
        const id = made[0].id;
        const batch = pb.createBatch();
        batch.collection(servicesName).update(id, { 'n+': 10 });
        batch.collection(servicesName).update(id, { 'n+': 10, 'tags-': ['a'] });
        const replies = await batch.send();
        check(assert.equal, replies[1].body.n, 24, 'the second request sees the first');
        check(assert.deepEqual, replies[1].body.tags, ['c'], 'tags- in a batch');
    });

    await step('collections.getList with filter and sort; getFirstListItem', async () => {
        const list = await pb.collections.getList(1, 50, { filter: `name ~ "${suffix}"`, sort: '-name' });
        const names = list.items.map((c) => c.name);
        check(assert.ok, names.includes(servicesName), 'the filter finds the collection');
        check(assert.deepEqual, names, [...names].sort().reverse(), 'sorted by -name');
        check(assert.ok, names.every((n) => n.includes(suffix)), 'only matching collections');
        const system = await pb.collections.getList(1, 50, { filter: 'system = true' });
        check(assert.ok, system.items.some((c) => c.name === '_superusers'), 'system collections by filter');
        const first = await pb.collections.getFirstListItem(`name = "${servicesName}"`);
        check(assert.equal, first.name, servicesName, 'getFirstListItem finds it');
        const none = await rejection(pb.collections.getFirstListItem('name = "no_such_collection"'));
        check(assert.equal, none.status, 404, 'getFirstListItem without a match is 404');
        const bad = await rejection(pb.collections.getList(1, 10, { filter: 'nope = 1' }));
        check(assert.equal, bad.status, 400, 'an unknown filter field is 400');
    });

    await step('collections.getScaffolds', async () => {
        const scaffolds = await pb.collections.getScaffolds();
        check(assert.equal, scaffolds.auth?.type, 'auth', 'an auth scaffold');
        check(assert.equal, scaffolds.base?.type, 'base', 'a base scaffold');
        check(assert.equal, scaffolds.view?.type, 'view', 'a view scaffold');
        check(assert.ok, scaffolds.auth.fields.some((f) => f.name === 'email'), 'the auth scaffold has the system fields');
    });

    await step('collections.truncate', async () => {
        const ok = await pb.collections.truncate(servicesName);
        check(assert.equal, ok, true, 'truncate resolves true');
        const list = await pb.collection(servicesName).getList(1, 10);
        check(assert.equal, list.totalItems, 0, 'no records left');
        const err = await rejection(pb.collections.truncate('_superusers'));
        check(assert.equal, err.status, 400, '_superusers cannot be truncated');
    });

    await step('crons.getFullList and crons.run', async () => {
        const crons = await pb.crons.getFullList();
        check(assert.ok, Array.isArray(crons), 'an array');
        const sweep = crons.find((c) => c.kind === 'files.sweep');
        check(assert.ok, sweep && typeof sweep.id === 'string' && typeof sweep.expression === 'string', 'items are {id, expression}');
        check(assert.equal, await pb.crons.run(sweep.id), true, 'run resolves true');
        const err = await rejection(pb.crons.run('no_such_cron'));
        check(assert.equal, err.status, 404, 'an unknown cron is 404');
    });

    await step('logs.getList, logs.getOne and logs.getStats', async () => {
        let list;
        for (let i = 0; i < 60; i++) {
            list = await pb.logs.getList(1, 5);
            if (list.items.length) break;
            await new Promise((r) => setTimeout(r, 500));
        }
        check(assert.ok, list.items.length > 0, 'the request log has rows');
        const one = await pb.logs.getOne(list.items[0].id);
        check(assert.deepEqual, one, list.items[0], 'getOne answers the same row');
        const stats = await pb.logs.getStats();
        check(assert.ok, Array.isArray(stats) && stats.length > 0, 'stats is a non-empty array');
        check(assert.ok, stats.every((s) => typeof s.total === 'number' && typeof s.date === 'string'), 'of {total, date}');
        const err = await rejection(pb.logs.getOne('nope'));
        check(assert.equal, err.status, 404, 'an unknown log id is 404');
    });

    await step('settings.getAll and settings.update', async () => {
        const all = await pb.settings.getAll();
        check(assert.equal, typeof all.meta?.appName, 'string', 'meta.appName');
        check(assert.equal, typeof all.smtp?.enabled, 'boolean', 'smtp.enabled');
        const before = all.meta.appName;
        const changed = await pb.settings.update({ meta: { appName: `sdk ${suffix}` } });
        check(assert.equal, changed.meta.appName, `sdk ${suffix}`, 'update answers the new settings');
        check(assert.equal, (await pb.settings.getAll()).meta.appName, `sdk ${suffix}`, 'and keeps them');
        await pb.settings.update({ meta: { appName: before } });
        const err = await rejection(pb.settings.update({ meta: { appName: 5 } }));
        check(assert.equal, err.status, 400, 'a wrong type is 400');
    });

    await step('authWithPassword by another identity field (passwordAuth.identityFields)', async () => {
        await pb.collections.create({
            name: membersName,
            type: 'auth',
            createRule: '',
            fields: [{ name: 'username', type: 'text' }],
            indexes: [`CREATE UNIQUE INDEX idx_${membersName}_username ON ${membersName} (username)`],
            passwordAuth: { enabled: true, identityFields: ['username', 'email'] },
        });
        membersCreated = true;
        await pb.collection(membersName).create({
            email: `member_${suffix}@example.com`, username: `member_${suffix}`,
            password: USER_PASSWORD, passwordConfirm: USER_PASSWORD,
        });
        const client = new PocketBase(baseUrl);
        const byName = await client.collection(membersName).authWithPassword(`member_${suffix}`, USER_PASSWORD);
        check(assert.equal, byName.record.username, `member_${suffix}`, 'signed in by username');
        const byEmail = await client.collection(membersName).authWithPassword(`member_${suffix}@example.com`, USER_PASSWORD);
        check(assert.equal, byEmail.record.id, byName.record.id, 'and by email');
        const methods = await client.collection(membersName).listAuthMethods();
        check(assert.deepEqual, methods.password.identityFields, ['username', 'email'], 'listAuthMethods names them');
        const err = await rejection(client.collection(membersName).authWithPassword(`member_${suffix}`, 'wrong-password'));
        check(assert.equal, err.status, 400, 'a wrong password is 400');
        const noIndex = await rejection(pb.collections.update(membersName, { indexes: [] }));
        check(assert.equal, noIndex.status, 400, 'an identity field needs its unique index');
    });

    await step('what is not served yet answers a clear 501', async () => {
        const calls = [
            ['backups.getFullList', () => pb.backups.getFullList()],
            ['backups.create', () => pb.backups.create('x.zip')],
            ['backups.restore', () => pb.backups.restore('x.zip')],
            ['backups.delete', () => pb.backups.delete('x.zip')],
            ['collections.import', () => pb.collections.import([], false)],
            ['settings.testS3', () => pb.settings.testS3('storage')],
            ['authWithOAuth2Code', () => pb.collection(membersName).authWithOAuth2Code('google', 'c', 'v', 'http://localhost/')],
        ];
        for (const [name, call] of calls) {
            const err = await rejection(call());
            check(assert.equal, err.status, 501, `${name} is 501`);
            check(assert.match, String(err.response?.message), /not available yet/, `${name} says what is missing`);
        }
    });
}

try {
    await run();
    await runUsers();
    await runFiles();
    await runServices();
} catch (err) {
    if (!failures.length) failures.push({ name: '(script)', message: describe(err) });
} finally {
    for (const [created, name] of [
        [membersCreated, membersName],
        [servicesCreated, servicesName],
        [filesCreated, filesName],
        [notesCreated, notesName],
        [usersCreated, usersName],
    ]) {
        if (!created) continue;
        try {
            await pb.collections.delete(name);
        } catch (err) {
            console.error(`cleanup: could not delete collection ${name}: ${describe(err)}`);
        }
    }
    if (collectionCreated) {
        try {
            await pb.collections.delete(collectionName);
        } catch (err) {
            console.error(`cleanup: could not delete collection ${collectionName}: ${describe(err)}`);
        }
    }
}

if (failures.length) {
    console.error(`sdk compat: ${failures.length} step(s) FAILED (${passed} checks passed) against ${baseUrl}`);
    for (const f of failures) console.error(`\n[${f.name}]\n${f.message}`);
    process.exitCode = 1;
} else {
    console.log(`sdk compat: ${passed} checks passed`);
}
