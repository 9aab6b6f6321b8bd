#!/usr/bin/env python3
"""Soak test (the reliability suite's long profile): mixed load for a long time against the
release binary; resident memory and the data file must stay bounded.

Command (from the repository root, after `cargo build --release`):

    python3 tests/soak.py                      # 30 minutes (the release profile)
    python3 tests/soak.py --minutes 3          # a quick look

Options: --minutes N [30], --workers N [8], --live N [4000] (records kept alive: creates
beyond it delete the oldest, so the data set is steady), --binary PATH
[target/release/backbone], --keep (keep the data directory).

Load, per worker, in a loop: create a record (0.5-3 KB of text) 35 %, update one 20 %,
list with a filter and sort 20 %, view one 10 %, delete (beyond --live) as needed,
sign in as a user 3 % (argon2), enqueue a `noop` job 7 %, read /metrics 5 % of the time.
Every 10 s: RSS, data file size, request totals and errors. Any 5xx or transport error is
a failure.

Pass criteria (checked at the end, printed as MET/MISSED; exit status 1 on a miss):
- no 5xx answers and no transport errors;
- RSS bounded: the peak of the last third of the run is at most 1.25x the peak of the
  middle third + 16 MiB (a leak grows without bound; a cache that warms up does not);
- the data file bounded: its size at the end is at most 1.5x its size at one third of the
  run + 16 MiB (the live data set is steady; the request log, capped at 16 MiB here, and
  finished jobs are pruned).
"""

import argparse
import os
import random
import shutil
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench"))
import run as bench  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.by_op = {}
        self.errors = []

    def add(self, op, status):
        with self.lock:
            counts = self.by_op.setdefault(op, {})
            counts[status] = counts.get(status, 0) + 1

    def error(self, text):
        with self.lock:
            if len(self.errors) < 50:
                self.errors.append(text)

    def totals(self):
        with self.lock:
            n = sum(sum(c.values()) for c in self.by_op.values())
            bad = sum(v for c in self.by_op.values() for s, v in c.items() if s >= 500 or s == 0)
            return n, bad


def worker(port, token, user_tokens, live, limit, stats, stop, seed):
    rng = random.Random(seed)
    su = bench.Client(port, token)
    anon = bench.Client(port)
    while not stop.is_set():
        r = rng.random()
        status = 200
        try:
            if r < 0.35:
                body = {"title": f"t{rng.randrange(10**9)}", "views": rng.randrange(1000),
                        "note": "lorem ipsum " * rng.randrange(40, 250)}
                status, out = su.call("POST", "/api/collections/soak/records", body)
                stats.add("create", status)
                if status == 200:
                    with live["lock"]:
                        live["ids"].append(out["id"])
                        excess = len(live["ids"]) - limit
                        victims = [live["ids"].pop(0) for _ in range(max(0, excess))]
                    for victim in victims:
                        status, _ = su.call("DELETE", f"/api/collections/soak/records/{victim}")
                        stats.add("delete", status)
            elif r < 0.55:
                with live["lock"]:
                    rid = rng.choice(live["ids"]) if live["ids"] else None
                if rid:
                    status, _ = su.call("PATCH", f"/api/collections/soak/records/{rid}",
                                        {"views": rng.randrange(1000)})
                    # 404: deleted meanwhile by another worker.
                    stats.add("update", status)
            elif r < 0.75:
                status, out = su.call("GET", "/api/collections/soak/records?perPage=20&sort=-views"
                                      f"&filter=views%3E{rng.randrange(1000)}")
                stats.add("list", status)
                if status != 200:
                    stats.error(f"list {status}: {str(out)[:200]}")
            elif r < 0.85:
                with live["lock"]:
                    rid = rng.choice(live["ids"]) if live["ids"] else None
                if rid:
                    status, _ = su.call("GET", f"/api/collections/soak/records/{rid}")
                    stats.add("view", status)
            elif r < 0.88:
                email, _ = rng.choice(user_tokens)
                status, _ = anon.call("POST", "/api/collections/members/auth-with-password",
                                      {"identity": email, "password": "soak-password-1"})
                stats.add("login", status)
            elif r < 0.95:
                status, _ = su.call("POST", "/api/jobs", {"kind": "noop", "payload": {"n": rng.randrange(100)}})
                stats.add("job", status)
            else:
                status, _ = su.call("GET", "/metrics")
                stats.add("metrics", status)
            if status >= 500:
                stats.error(f"{status} at {time.strftime('%H:%M:%S')}")
        except Exception as exc:  # transport errors are failures, recorded and counted
            stats.add("transport", 0)
            stats.error(f"transport: {exc!r}")
            su = bench.Client(port, token)
            anon = bench.Client(port)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--live", type=int, default=4000)
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "backbone"))
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="backbone-soak-")
    # A small request-log budget, so the log reaches its cap (and is pruned) within the run:
    # the data file's growth then shows whether anything else grows without bound.
    server = bench.Backbone(args.binary, work, env={"BACKBONE_OBSERVE_REQUEST_LOG_MAX_MB": "16"})
    server.start()
    data_file = os.path.join(server.dir, "data.redb")
    try:
        su = bench.Client(server.port, server.token)
        status, body = su.call("POST", "/api/collections", {
            "name": "soak", "listRule": "", "viewRule": "",
            "fields": [{"name": "title", "type": "text"}, {"name": "views", "type": "number"},
                       {"name": "note", "type": "text", "max": 10000}],
            "indexes": ["CREATE INDEX idx_views ON soak (views)"]})
        assert status == 200, body
        status, body = su.call("POST", "/api/collections", {"name": "members", "type": "auth", "createRule": ""})
        assert status == 200, body
        users = []
        for i in range(20):
            email = f"soak{i}@example.com"
            status, body = su.call("POST", "/api/collections/members/records",
                                   {"email": email, "password": "soak-password-1",
                                    "passwordConfirm": "soak-password-1"})
            assert status == 200, body
            users.append((email, None))
        stats = Stats()
        stop = threading.Event()
        live = {"lock": threading.Lock(), "ids": []}
        threads = [threading.Thread(target=worker, daemon=True,
                                    args=(server.port, server.token, users, live, args.live, stats, stop, i))
                   for i in range(args.workers)]
        for t in threads:
            t.start()
        started = time.time()
        total = args.minutes * 60
        samples = []  # (seconds, rss bytes, file bytes, requests, bad)
        print("   t(s)   RSS MiB   file MiB   requests    req/s   5xx+transport", flush=True)
        last_n, last_t = 0, started
        while time.time() - started < total:
            time.sleep(min(10, max(0.1, total - (time.time() - started))))
            now = time.time()
            rss = (bench.proc_status(server.pid, "VmRSS") or 0) * 2**20
            size = os.path.getsize(data_file)
            n, bad = stats.totals()
            samples.append((now - started, rss, size, n, bad))
            print(f"{now - started:7.0f} {rss / 2**20:9.1f} {size / 2**20:10.1f} {n:10d} "
                  f"{(n - last_n) / max(now - last_t, 1e-9):8.0f} {bad:15d}", flush=True)
            last_n, last_t = n, now
        stop.set()
        for t in threads:
            t.join(30)
        hwm = (bench.proc_status(server.pid, "VmHWM") or 0) * 2**20
    finally:
        server.stop()
    n, bad = stats.totals()
    third = max(1, len(samples) // 3)
    middle = samples[third:2 * third] or samples
    last = samples[2 * third:] or samples
    rss_mid = max(s[1] for s in middle)
    rss_last = max(s[1] for s in last)
    file_third = samples[third - 1][2]
    file_end = samples[-1][2]
    print()
    print(f"# Soak: {args.minutes:g} min, {args.workers} workers, {n} requests, by operation and status:")
    for op, counts in sorted(stats.by_op.items()):
        print(f"  {op:10s} {dict(sorted(counts.items()))}")
    print(f"RSS: middle third peak {rss_mid / 2**20:.1f} MiB, last third peak {rss_last / 2**20:.1f} MiB, "
          f"VmHWM {hwm / 2**20:.1f} MiB")
    print(f"data file: {file_third / 2**20:.1f} MiB at one third, {file_end / 2**20:.1f} MiB at the end")
    checks = [
        ("no 5xx answers and no transport errors", bad == 0),
        ("RSS bounded (last third peak <= 1.25x middle third peak + 16 MiB)",
         rss_last <= rss_mid * 1.25 + 16 * 2**20),
        ("data file bounded (end <= 1.5x one-third size + 16 MiB)", file_end <= file_third * 1.5 + 16 * 2**20),
    ]
    for text, ok in checks:
        print(f"- {'MET   ' if ok else 'MISSED'} {text}")
    if stats.errors:
        print("errors (first 50):", *stats.errors, sep="\n  ")
    if args.keep:
        print(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(0 if all(ok for _, ok in checks) else 1)


if __name__ == "__main__":
    main()
