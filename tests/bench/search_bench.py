#!/usr/bin/env python3
"""Search benchmark: Backbone's full-text search vs SQLite FTS5 vs PocketBase's `~` filter.

Command (from the repository root, after `cargo build --release`):

    python3 tests/bench/search_bench.py

Options (defaults in brackets):
    --docs 100000       documents in the corpus                                      [100000]
    --pb-docs N         documents loaded into PocketBase (its `~` is a scan)         [= --docs]
    --duration 15       seconds per query run (Backbone, FTS5)                       [15]
    --pb-duration 30    seconds of the PocketBase query run                          [30]
    --conns 16          concurrent clients                                           [16]
    --binary PATH       Backbone binary [$CARGO_TARGET_DIR/release/backbone or target/release/backbone]
    --skip-pb           leave PocketBase out
    --json FILE         also write the measurements as JSON
    --keep              keep the work directory

The corpus is deterministic (seed 8): a vocabulary of 50,000 pseudo-words, each document a
6-word title and a 150-250 word body drawn from a Zipf distribution (s = 1.07) over that
vocabulary. Queries are 500 deterministic one- or two-word queries over mid-frequency
words (ranks 200-3000, each matching roughly 0.5-8% of the documents alone).

What runs, in one process, on 127.0.0.1:
- Backbone (`serve`, own temp dir, rate limits off): a `docs` collection (title boost 2,
  body), list rule public. Indexing throughput: documents through `/api/batch` (50 per
  request, 4 client threads) until `/api/search/status` reports no lag, i.e. until all are
  searchable. Queries: `GET /api/collections/docs/search?q=...&perPage=20` (ranked, typo
  tolerant, last word also a prefix, total counted, list rule applied) under wrk with
  --conns connections.
- SQLite FTS5 (Python's sqlite3, in-process, no HTTP): `fts5(title, body)`, inserted in one
  transaction. Queries: the top 20 by bm25 plus `count(*)` of the matches (what Backbone
  answers), --conns threads with their own connections.
- PocketBase (`tests/peers/pocketbase.sh`): the same collection, loaded through its
  batch API; queries `filter=((title~'w1' || body~'w1') && ...)&perPage=20` under wrk.

Targets (issue #8): Backbone query p50 <= 5 ms, >= 50x PocketBase's `~` (p50 and req/s),
within 2x of FTS5's query p50. Prints a markdown table and a verdict per target. Exits
non-zero only when the benchmark itself could not run.
"""

import argparse
import bisect
import concurrent.futures
import json
import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run as base  # noqa: E402  (servers, HTTP client, wrk parsing)

LUA = os.path.join(HERE, "search.lua")
SEED = 8
VOCAB = 50_000
ZIPF_S = 1.07
QUERIES = 500
BATCH = 50
log = base.log


# ---------------------------------------------------------------- corpus

def vocabulary(rng):
    """VOCAB distinct pseudo-words of 4-10 letters, rank order = generation order."""
    consonants, vowels = "bcdfghjklmnprstvwz", "aeiou"
    words, seen = [], set()
    while len(words) < VOCAB:
        syllables = rng.randint(2, 4)
        w = "".join(rng.choice(consonants) + rng.choice(vowels) for _ in range(syllables))
        if rng.random() < 0.3:
            w += rng.choice(consonants)
        if w not in seen:
            seen.add(w)
            words.append(w)
    return words


def corpus(n):
    rng = random.Random(SEED)
    words = vocabulary(rng)
    cum, total = [], 0.0
    for r in range(1, VOCAB + 1):
        total += 1.0 / r ** ZIPF_S
        cum.append(total)
    docs = []
    for _ in range(n):
        title = " ".join(rng.choices(words, cum_weights=cum, k=6))
        body = " ".join(rng.choices(words, cum_weights=cum, k=rng.randint(150, 250)))
        docs.append({"title": title, "body": body})
    qrng = random.Random(SEED + 1)
    queries = []
    for _ in range(QUERIES):
        k = 1 if qrng.random() < 0.5 else 2
        queries.append([words[qrng.randint(200, 3000)] for _ in range(k)])
    return docs, queries


# ---------------------------------------------------------------- loading

def call(server, method, path, body=None, token=True):
    c = base.Client(server.port, server.token if token else None)
    try:
        return c.call(method, path, body)
    finally:
        c.close()


def must(status, body, what):
    if status != 200:
        raise RuntimeError(f"{what}: {status} {str(body)[:500]}")
    return body


def setup(server):
    body = {"name": "docs", "listRule": "", "viewRule": "", "createRule": "",
            "fields": [{"name": "title", "type": "text"}, {"name": "body", "type": "text"}]}
    if isinstance(server, base.Backbone):
        body["search"] = {"enabled": True, "fields": [{"name": "title", "boost": 2}, {"name": "body"}]}
    must(*call(server, "POST", "/api/collections", body), f"{server.name}: create docs")
    if isinstance(server, base.PocketBase):
        must(*call(server, "PATCH", "/api/settings",
                   {"batch": {"enabled": True, "maxRequests": BATCH, "timeout": 30, "maxBodySize": 0}}),
             "PocketBase: enable batch")


def load(server, docs, threads=4):
    """Creates the documents through /api/batch; returns the seconds it took."""
    chunks = [docs[i:i + BATCH] for i in range(0, len(docs), BATCH)]
    local = threading.local()
    clients, lock = [], threading.Lock()

    def one(chunk):
        if not hasattr(local, "c"):
            local.c = base.Client(server.port, server.token)
            with lock:
                clients.append(local.c)
        reqs = [{"method": "POST", "url": "/api/collections/docs/records", "body": d} for d in chunk]
        status, body = local.c.call("POST", "/api/batch", {"requests": reqs})
        if status != 200:
            raise RuntimeError(f"{server.name}: batch failed: {status} {str(body)[:300]}")

    started = time.time()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        for i, _ in enumerate(pool.map(one, chunks)):
            if i % 200 == 0:
                log(f"{server.name}: {i * BATCH}/{len(docs)} loaded")
    for c in clients:
        c.close()
    return time.time() - started


def wait_searchable(server, timeout=1800):
    deadline = time.time() + timeout
    while time.time() < deadline:
        status, body = call(server, "GET", "/api/search/status")
        if status == 200 and body["lag"] == 0 and not body["rebuilding"]:
            return body
        time.sleep(0.1)
    raise RuntimeError("Backbone's index did not catch up")


# ---------------------------------------------------------------- queries

def backbone_path(words):
    return "/api/collections/docs/search?" + urllib.parse.urlencode({"q": " ".join(words), "perPage": 20})


def pocketbase_path(words):
    terms = " && ".join(f"(title~'{w}' || body~'{w}')" for w in words)
    return "/api/collections/docs/records?" + urllib.parse.urlencode({"filter": f"({terms})", "perPage": 20})


def wrk(server, paths, conns, duration, workdir, label):
    path_file = os.path.join(workdir, f"paths-{label}.txt")
    with open(path_file, "w") as f:
        f.write("\n".join(paths) + "\n")
    threads = max(1, min(os.cpu_count() or 2, conns))
    cmd = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{duration}s", "--timeout", "30s", "--latency", "-s", LUA,
           f"http://127.0.0.1:{server.port}"]
    cpu0 = base.proc_cpu_seconds(server.pid)
    out = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, BENCH_PATHS=path_file))
    cpu1 = base.proc_cpu_seconds(server.pid)
    with open(os.path.join(workdir, f"wrk-{label}.txt"), "w") as f:
        f.write(" ".join(cmd) + "\n\n" + out.stdout + out.stderr)
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed ({label}): {out.stderr}")
    res = base.parse_wrk(out.stdout)
    m = re.search(r"Latency\s+([\d.]+\w+)", out.stdout)
    if m:
        res["mean"] = base.to_ms(m.group(1))
    if res["requests"]:
        res["server_cpu_ms_per_req"] = (cpu1 - cpu0) * 1e3 / res["requests"]
    return res


def fts5_build(path, docs):
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE VIRTUAL TABLE docs USING fts5(title, body)")
    started = time.time()
    with db:
        db.executemany("INSERT INTO docs(title, body) VALUES (?, ?)", ((d["title"], d["body"]) for d in docs))
    elapsed = time.time() - started
    db.close()
    return elapsed


def fts5_query(db, words):
    match = " ".join(f'"{w}"' for w in words)
    rows = db.execute("SELECT rowid, title, bm25(docs, 2.0, 1.0) AS s FROM docs WHERE docs MATCH ? "
                      "ORDER BY s LIMIT 20", (match,)).fetchall()
    (total,) = db.execute("SELECT count(*) FROM docs WHERE docs MATCH ?", (match,)).fetchone()
    return rows, total


def fts5_run(path, queries, conns, duration):
    stop = time.time() + duration
    latencies, lock = [], threading.Lock()

    def worker(n):
        db = sqlite3.connect(path, check_same_thread=False)
        rng = random.Random(n)
        mine = []
        while time.time() < stop:
            words = queries[rng.randrange(len(queries))]
            t0 = time.perf_counter()
            fts5_query(db, words)
            mine.append((time.perf_counter() - t0) * 1e3)
        db.close()
        with lock:
            latencies.extend(mine)

    started = time.time()
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.time() - started
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]  # noqa: E731
    return {"requests": len(latencies), "rps": len(latencies) / elapsed, "p50": pick(0.50), "p99": pick(0.99),
            "mean": sum(latencies) / len(latencies)}


def sanity(server, fts_path, queries):
    """Exact single-word totals agree between Backbone ("word" is exact) and FTS5."""
    db = sqlite3.connect(fts_path)
    for words in queries[:10]:
        w = words[0]
        status, body = call(server, "GET", "/api/collections/docs/search?" + urllib.parse.urlencode({"q": f'"{w}"'}))
        must(status, body, "Backbone sanity query")
        _, total = fts5_query(db, [w])
        if body["totalItems"] != total:
            raise RuntimeError(f"totals differ for {w!r}: Backbone {body['totalItems']}, FTS5 {total}")
    db.close()
    log("sanity: exact single-word totals equal in Backbone and FTS5")


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(base.REPO, "target"))
    ap.add_argument("--binary", default=os.path.join(target, "release", "backbone"))
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--pb-docs", type=int)
    ap.add_argument("--duration", type=int, default=15)
    ap.add_argument("--pb-duration", type=int, default=30)
    ap.add_argument("--conns", type=int, default=16)
    ap.add_argument("--skip-pb", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    if not os.access(args.binary, os.X_OK):
        sys.exit(f"{args.binary} missing: run `cargo build --release` first")
    base.ensure_wrk()
    workdir = tempfile.mkdtemp(prefix="search-bench-")
    results = {"docs": args.docs, "conns": args.conns}
    servers = []
    try:
        log(f"generating the corpus ({args.docs} documents)")
        t0 = time.time()
        docs, queries = corpus(args.docs)
        words = sum(len(d["body"].split()) + 6 for d in docs)
        log(f"corpus ready in {time.time() - t0:.0f} s: {words} words, {len(queries)} queries")
        results["words"] = words

        fts_path = os.path.join(workdir, "fts5.db")
        secs = fts5_build(fts_path, docs)
        results["fts5_index_docs_per_s"] = args.docs / secs
        log(f"FTS5: indexed in {secs:.1f} s ({args.docs / secs:.0f} docs/s, one transaction)")

        bb = base.Backbone(args.binary, workdir)
        servers.append(bb)
        bb.start()
        results["backbone_version"] = bb.version
        setup(bb)
        # Throughput until searchable: from the first batch to no index lag.
        started = time.time()
        acked = load(bb, docs)
        status = wait_searchable(bb)
        searchable = time.time() - started
        results["backbone_acked_s"] = acked
        results["backbone_searchable_s"] = searchable
        results["backbone_index_docs_per_s"] = args.docs / searchable
        log(f"Backbone: {args.docs} documents acknowledged in {acked:.1f} s, all searchable after {searchable:.1f} s")
        results["backbone_status"] = status
        sanity(bb, fts_path, queries)

        bb_paths = [backbone_path(q) for q in queries]
        log(f"Backbone: queries, c={args.conns}, {args.duration} s")
        results["backbone"] = wrk(bb, bb_paths, args.conns, args.duration, workdir, "backbone")

        log(f"FTS5: queries, {args.conns} threads, {args.duration} s")
        results["fts5"] = fts5_run(fts_path, queries, args.conns, args.duration)

        # One query at a time: latency without queueing behind the other 15.
        log(f"Backbone: queries, c=1, {args.duration} s")
        results["backbone_c1"] = wrk(bb, bb_paths, 1, args.duration, workdir, "backbone-c1")
        log(f"FTS5: queries, 1 thread, {args.duration} s")
        results["fts5_c1"] = fts5_run(fts_path, queries, 1, args.duration)

        if not args.skip_pb:
            bb.stop()
            pb = base.PocketBase(workdir)
            servers.append(pb)
            pb.start()
            results["pocketbase_version"] = pb.version
            setup(pb)
            n = args.pb_docs or args.docs
            secs = load(pb, docs[:n])
            results["pb_docs"] = n
            results["pocketbase_index_docs_per_s"] = n / secs
            log(f"PocketBase: {n} documents in {secs:.1f} s")
            pb_paths = [pocketbase_path(q) for q in queries]
            log(f"PocketBase: queries, c={args.conns}, {args.pb_duration} s")
            results["pocketbase"] = wrk(pb, pb_paths, args.conns, args.pb_duration, workdir, "pocketbase")
    finally:
        for s in servers:
            s.stop()
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    report(results, args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


def report(r, args):
    bb, fts, pb = r.get("backbone", {}), r.get("fts5", {}), r.get("pocketbase")
    print()
    print(f"Search benchmark: {r['docs']} documents ({r['words']} words, Zipf s={ZIPF_S} over {VOCAB} words), "
          f"queries at concurrency {r['conns']}")
    print()
    bb1, fts1 = r.get("backbone_c1", {}), r.get("fts5_c1", {})
    print(f"| | indexing docs/s | c={r['conns']} p50 ms | p99 ms | mean ms | queries/s | c=1 p50 ms | c=1 p99 ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| Backbone (API, ranked, typos, prefix, highlights, rules) | {r['backbone_index_docs_per_s']:.0f} | "
          f"{bb['p50']:.2f} | {bb['p99']:.2f} | {bb.get('mean', 0):.2f} | {bb['rps']:.0f} | "
          f"{bb1.get('p50', 0):.2f} | {bb1.get('p99', 0):.2f} |")
    print(f"| SQLite FTS5 (in-process, top 20 + count) | {r['fts5_index_docs_per_s']:.0f} | "
          f"{fts['p50']:.2f} | {fts['p99']:.2f} | {fts['mean']:.2f} | {fts['rps']:.0f} | "
          f"{fts1.get('p50', 0):.2f} | {fts1.get('p99', 0):.2f} |")
    if pb:
        print(f"| PocketBase `~` ({r['pb_docs']} docs, API) | {r['pocketbase_index_docs_per_s']:.0f} | "
              f"{pb['p50']:.2f} | {pb['p99']:.2f} | {pb.get('mean', 0):.2f} | {pb['rps']:.1f} | | |")
    print()
    verdict = lambda ok: "met" if ok else "MISSED"  # noqa: E731
    print(f"- Backbone query p50 {bb['p50']:.2f} ms (target <= 5 ms): {verdict(bb['p50'] <= 5)}")
    ratio = bb["p50"] / fts["p50"] if fts["p50"] else float("inf")
    print(f"- Backbone p50 / FTS5 p50 at c={r['conns']} = {ratio:.2f} (target <= 2): {verdict(ratio <= 2)}")
    if bb1 and fts1:
        print(f"- at c=1: Backbone p50 / FTS5 p50 = {bb1['p50'] / fts1['p50']:.2f}; "
              f"mean latency at c={r['conns']}: Backbone {bb.get('mean', 0):.2f} ms, FTS5 {fts['mean']:.2f} ms")
    if pb:
        speed = pb["p50"] / bb["p50"] if bb["p50"] else float("inf")
        rps = bb["rps"] / pb["rps"] if pb["rps"] else float("inf")
        print(f"- PocketBase p50 / Backbone p50 = {speed:.0f}x, Backbone/PocketBase queries/s = {rps:.0f}x "
              f"(target >= 50x): {verdict(speed >= 50 and rps >= 50)}")


if __name__ == "__main__":
    main()
