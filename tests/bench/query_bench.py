#!/usr/bin/env python3
"""Query-engine benchmark: Backbone (release binary) vs. the real PocketBase, 100k records.

Command (from the repository root, after `cargo build --release`):

    python3 tests/bench/query_bench.py

Options (defaults in brackets):
    --records 100000      items seeded into each server                    [100000]
    --duration 10         seconds per wrk run                              [10]
    --binary PATH         Backbone binary [$CARGO_TARGET_DIR/release/backbone or target/release/backbone]
    --wait-quiet 20       before each run, wait up to this many seconds for the box to be
                          under 10% busy (other builds share the machine)  [20]
    --json FILE           also write the measurements as JSON
    --keep                keep the work directory (data dirs, logs, wrk outputs)

What it does: starts Backbone (`serve`, own temp dir, rate limits off) and PocketBase
(`tests/peers/pocketbase.sh start`), both on 127.0.0.1; creates the same three
collections in both: `orgs` (name), `authors` (name, relation `org`), `items` (title,
category, price, rating, relation `author`) with `CREATE INDEX idx_items_cat_price ON items
(category, price)`; all rules public, so requests carry no token. Seeds 10 orgs, 100
authors and N items (category c(i%10), price (i*7919)%1000, rating (i*31)%100) through
`/api/batch` (50 sub-requests per batch, both servers' default cap; PocketBase's batch API is
switched on through its settings first), checks both servers give the same totals for a few
filters, then runs wrk (tests/bench/query.lua) per workload, Backbone then PocketBase:

    indexed  c=64  filter (category='cK' && price>=X), sort -price, page of 20 (index + sort),
                   with totalItems (the default: both servers count every match)
    indexed_nototal c=64  the same with skipTotal=1
    indexed  c=1   the first one at one connection (latency without queueing)
    scan     c=1   filter rating=R (no index) over all N items, page of 20, with total
    get      c=64  one item by random id
    expand   c=64  the same with expand=author.org (2 levels)
    get1/expand1 c=1 the same two at one connection (latency without queueing)

Targets (issue #5): indexed >= 10x PocketBase req/s and p50 <= 2 ms; scan p50 <= 50 ms;
expand 2 levels <= 2x a plain get (server CPU per request and req/s ratio). Prints a
markdown table and a verdict per target. Exits 0 on misses; non-zero only when the
benchmark itself could not run.
"""

import argparse
import concurrent.futures
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run as base  # noqa: E402  (the HTTP benchmark's helpers: servers, wrk parsing, /proc)

LUA = os.path.join(HERE, "query.lua")
CATEGORIES, PRICES, RATINGS = 10, 1000, 100
N_ORGS, N_AUTHORS = 10, 100
BATCH = 50
INDEX = "CREATE INDEX idx_items_cat_price ON items (category, price)"

log = base.log


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
    """Creates the three collections (same bodies in both servers); returns their ids."""
    public = {"listRule": "", "viewRule": "", "createRule": ""}
    orgs = must(*call(server, "POST", "/api/collections",
                      {"name": "orgs", "fields": [{"name": "name", "type": "text"}], **public}),
                f"{server.name}: orgs")
    authors = must(*call(server, "POST", "/api/collections", {
        "name": "authors", **public,
        "fields": [{"name": "name", "type": "text"},
                   {"name": "org", "type": "relation", "collectionId": orgs["id"], "maxSelect": 1}]}),
        f"{server.name}: authors")
    must(*call(server, "POST", "/api/collections", {
        "name": "items", **public,
        "fields": [{"name": "title", "type": "text"},
                   {"name": "category", "type": "text"},
                   {"name": "price", "type": "number"},
                   {"name": "rating", "type": "number"},
                   {"name": "author", "type": "relation", "collectionId": authors["id"], "maxSelect": 1},
                   {"name": "created", "type": "autodate", "onCreate": True, "onUpdate": False},
                   {"name": "updated", "type": "autodate", "onCreate": True, "onUpdate": True}],
        "indexes": [INDEX]}),
        f"{server.name}: items")
    if isinstance(server, base.PocketBase):
        must(*call(server, "PATCH", "/api/settings",
                   {"batch": {"enabled": True, "maxRequests": BATCH, "timeout": 30, "maxBodySize": 0}}),
             "PocketBase: enable batch")


def item(i, authors):
    return {"title": f"item-{i}", "category": f"c{i % CATEGORIES}", "price": (i * 7919) % PRICES,
            "rating": (i * 31) % RATINGS, "author": authors[i % len(authors)]}


def batch_create(server, collection, bodies, threads=4):
    """Creates records through /api/batch, BATCH per request; returns their ids in order."""
    chunks = [bodies[i:i + BATCH] for i in range(0, len(bodies), BATCH)]
    local = threading.local()
    clients, lock = [], threading.Lock()

    def one(chunk):
        if not hasattr(local, "c"):
            local.c = base.Client(server.port, server.token)
            with lock:
                clients.append(local.c)
        reqs = [{"method": "POST", "url": f"/api/collections/{collection}/records", "body": b} for b in chunk]
        status, body = local.c.call("POST", "/api/batch", {"requests": reqs})
        if status != 200 or not isinstance(body, list):
            raise RuntimeError(f"{server.name}: batch failed: {status} {str(body)[:500]}")
        return [r["body"]["id"] for r in body]

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        out = [i for ids in pool.map(one, chunks) for i in ids]
    for c in clients:
        c.close()
    return out


def seed(server, n, workdir):
    t0 = time.time()
    orgs = batch_create(server, "orgs", [{"name": f"org-{i}"} for i in range(N_ORGS)])
    authors = batch_create(server, "authors",
                           [{"name": f"author-{i}", "org": orgs[i % N_ORGS]} for i in range(N_AUTHORS)])
    ids = batch_create(server, "items", [item(i, authors) for i in range(n)])
    took = time.time() - t0
    path = os.path.join(workdir, f"item-ids-{server.name.lower()}.txt")
    with open(path, "w") as f:
        f.write("\n".join(ids) + "\n")
    log(f"{server.name}: seeded {n} items (+{N_ORGS} orgs, {N_AUTHORS} authors) in {took:.1f}s")
    return path, took


def same_answers(servers):
    """Both servers hold the same data: equal totals (and equal first pages by title where the
    sort has no ties) for a few filters."""
    from urllib.parse import quote
    checks = ["category = 'c3' && price >= 990", "rating = 7", "price < 3", "title ~ 'item-9999%'"]
    for f in checks:
        seen = []
        for s in servers:
            status, body = call(s, "GET", f"/api/collections/items/records?perPage=5&sort=-price,title&filter={quote(f)}",
                                token=False)
            must(status, body, f"{s.name}: {f}")
            seen.append((body["totalItems"], [i["title"] for i in body["items"]]))
        if seen[0] != seen[1]:
            raise RuntimeError(f"servers disagree on {f!r}: {seen}")
        log(f"both servers: {f!r} -> {seen[0][0]} items")


def run_wrk(server, mode, conns, duration, ids_file, outdir):
    cmd = ["wrk", f"-t{min(2, conns)}", f"-c{conns}", f"-d{duration}s", "--timeout", "10s", "--latency",
           "-s", LUA, f"http://127.0.0.1:{server.port}"]
    env = dict(os.environ, BENCH_MODE=mode, BENCH_IDS=ids_file, BENCH_CATEGORIES=str(CATEGORIES),
               BENCH_PRICES=str(PRICES), BENCH_RATINGS=str(RATINGS))
    cpu0 = base.proc_cpu_seconds(server.pid)
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy0 = base.system_busy_seconds()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    busy1 = base.system_busy_seconds()
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu1 = base.proc_cpu_seconds(server.pid)
    with open(os.path.join(outdir, f"wrk-{server.name.lower()}-{mode}-c{conns}.txt"), "w") as f:
        f.write(" ".join(cmd) + "\n\n" + out.stdout + out.stderr)
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed ({server.name} {mode} c{conns}): {out.stderr}")
    res = base.parse_wrk(out.stdout)
    res["server_cpu_s"] = cpu1 - cpu0 if None not in (cpu0, cpu1) else None
    wrk_cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    res["other_cpu_s"] = max(0.0, (busy1 - busy0) - wrk_cpu - (res["server_cpu_s"] or 0.0))
    res["cpu_ms_per_req"] = (res["server_cpu_s"] * 1e3 / res["requests"]
                             if res["requests"] and res["server_cpu_s"] is not None else None)
    res["loadavg"] = base.loadavg()
    return res


RUNS = [("indexed", 64), ("indexed_nototal", 64), ("indexed", 1), ("scan", 1), ("get", 64), ("expand", 64),
        ("get", 1), ("expand", 1)]


def verdicts(r):
    bb = lambda m, c: r.get(("Backbone", m, c))  # noqa: E731
    pb = lambda m, c: r.get(("PocketBase", m, c))  # noqa: E731
    out = []

    def add(name, value, ok):
        out.append((name, value, "met" if ok else "MISSED"))

    i_bb, i_pb = bb("indexed", 64), pb("indexed", 64)
    if i_bb and i_pb:
        ratio = i_bb["rps"] / i_pb["rps"] if i_pb["rps"] else float("inf")
        add("indexed filter+sort c=64: >= 10x PocketBase req/s", f"{ratio:.1f}x ({i_bb['rps']:.0f} vs {i_pb['rps']:.0f})",
            ratio >= 10)
        add("indexed filter+sort c=64: p50 <= 2 ms", f"{i_bb.get('p50', float('nan')):.2f} ms", i_bb.get("p50", 1e9) <= 2)
    i1 = bb("indexed", 1)
    if i1:
        add("(informative) indexed filter+sort c=1: p50 <= 2 ms", f"{i1.get('p50', float('nan')):.2f} ms",
            i1.get("p50", 1e9) <= 2)
    s_bb = bb("scan", 1)
    if s_bb:
        add("non-indexed filter over all items c=1: p50 <= 50 ms", f"{s_bb.get('p50', float('nan')):.1f} ms",
            s_bb.get("p50", 1e9) <= 50)
    g, e = bb("get", 64), bb("expand", 64)
    if g and e:
        cpu = e["cpu_ms_per_req"] / g["cpu_ms_per_req"] if g["cpu_ms_per_req"] else float("inf")
        rps = g["rps"] / e["rps"] if e["rps"] else float("inf")
        add("expand 2 levels c=64: server CPU <= 2x a plain get", f"{cpu:.2f}x", cpu <= 2)
        add("expand 2 levels c=64: req/s cost <= 2x a plain get", f"{rps:.2f}x", rps <= 2)
    g1, e1 = bb("get", 1), bb("expand", 1)
    if g1 and e1 and g1.get("p50"):
        lat = e1["p50"] / g1["p50"]
        add("expand 2 levels c=1: p50 <= 2x a plain get", f"{lat:.2f}x ({e1['p50']:.3f} vs {g1['p50']:.3f} ms)", lat <= 2)
    return out


def report(r, meta):
    lines = []
    p = lines.append
    p(f"Query benchmark, {meta['records']} items, {meta['duration']} s per run, {meta['when']}, commit {meta['commit']}")
    p(f"machine: {meta['machine']}")
    p(f"seeding via /api/batch: Backbone {meta['seed']['Backbone']:.1f} s, PocketBase {meta['seed']['PocketBase']:.1f} s")
    p("")
    p("| workload | conns | server | req/s | p50 ms | p99 ms | server CPU ms/req | other CPU s | load avg |")
    p("|---|---|---|---|---|---|---|---|---|")
    for mode, conns in RUNS:
        for name in ("Backbone", "PocketBase"):
            x = r.get((name, mode, conns))
            if not x:
                continue
            p(f"| {mode} | {conns} | {name} | {x['rps']:.0f} | {base.fmt(x.get('p50'), '.2f')} | "
              f"{base.fmt(x.get('p99'), '.2f')} | {base.fmt(x['cpu_ms_per_req'], '.3f')} | "
              f"{x['other_cpu_s']:.1f} | {x['loadavg']} |")
        bb, pb = r.get(("Backbone", mode, conns)), r.get(("PocketBase", mode, conns))
        if bb and pb and pb["rps"]:
            p(f"| {mode} | {conns} | ratio | {bb['rps'] / pb['rps']:.1f}x | | | | | |")
    p("")
    p(f"Backbone plan for the indexed query: `{json.dumps(meta.get('plan'))}`")
    p("")
    p("| target | measured | verdict |")
    p("|---|---|---|")
    for name, value, verdict in verdicts(r):
        p(f"| {name} | {value} | {verdict} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--duration", type=int, default=10)
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(base.REPO, "target")
    ap.add_argument("--binary", default=os.path.join(target, "release", "backbone"))
    ap.add_argument("--wait-quiet", type=float, default=20)
    ap.add_argument("--json")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    if not os.path.exists(args.binary):
        sys.exit(f"no binary at {args.binary}: run cargo build --release first")
    if base.stale_binary(args.binary):
        log("WARNING: a source file is newer than the binary (not rebuilt?)")
    base.ensure_wrk()
    # Backbone's per-IP rate limits would throttle a load generator on the same address;
    # PocketBase's limiter is off by default.
    os.environ["BACKBONE_RATE_LIMITS_ENABLED"] = "false"
    workdir = tempfile.mkdtemp(prefix="bb-query-bench-")
    binary = os.path.join(workdir, "backbone")
    shutil.copy2(args.binary, binary)
    servers = [base.Backbone(binary, workdir), base.PocketBase(workdir)]
    results, meta = {}, {"records": args.records, "duration": args.duration, "seed": {},
                         "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": base.git_commit()}
    try:
        m = base.machine_info(workdir)
        meta["machine"] = f"{m['nproc']} cpus ({m['cpu']}), {m['mem_gib']} GiB, {m.get('disk', '?')}, {m['wrk']}"
        ids = {}
        for s in servers:
            s.start()
            log(f"{s.name} on port {s.port} (pid {s.pid})")
            setup(s)
            ids[s.name], meta["seed"][s.name] = seed(s, args.records, workdir)
        same_answers(servers)
        status, body = call(servers[0], "GET", "/api/collections/items/records?perPage=20&sort=-price&explain=1&filter="
                            + "%28category%20%3D%20%27c3%27%20%26%26%20price%20%3E%3D%20500%29")
        meta["plan"] = must(status, body, "explain")["explain"]
        for mode, conns in RUNS:
            for s in servers:
                base.wait_for_quiet_box(args.wait_quiet, verbose=False)
                res = run_wrk(s, mode, conns, args.duration, ids[s.name], workdir)
                results[(s.name, mode, conns)] = res
                log(f"{s.name} {mode} c={conns}: {res['rps']:.0f} req/s, p50 {base.fmt(res.get('p50'), '.2f')} ms, "
                    f"non-2xx {res['non2xx']}, other CPU {res['other_cpu_s']:.1f}s")
                if res["non2xx"] or res["socket_errors"]:
                    log(f"WARNING: {s.name} {mode}: {res['non2xx']} non-2xx, {res['socket_errors']} socket errors")
        print(report(results, meta))
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"meta": meta, "runs": [{"server": k[0], "mode": k[1], "conns": k[2], **v}
                                                  for k, v in results.items()]}, f, indent=2)
    finally:
        for s in servers:
            s.stop()
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
