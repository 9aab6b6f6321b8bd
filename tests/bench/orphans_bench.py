#!/usr/bin/env python3
"""Orphaned jobs after a crash: how soon after a SIGKILL and restart are the jobs that were
running runnable (and running) again?

Command (from the repository root, after `cargo build --release`):

    python3 tests/bench/orphans_bench.py            # 1000 jobs, 3 kills
    python3 tests/bench/orphans_bench.py --jobs 5000 --rounds 5

Each round: N `sleep` jobs (10 minutes each; the test-only kinds are switched on) run at
once (in a queue of their own, `orphans`, whose concurrency is `[jobs] default_concurrency`
= N); the release binary is SIGKILLed while all of them are running;
it is started again on the same data directory. Printed per round, from the moment the new
process is spawned: when it answers `/api/health` (store opened, orphans requeued, queues
started), and when all N jobs are running again on their second attempt (polling
`/api/jobs/stats` every 5 ms with the token issued before the kill, plus the attempt of a
sample of jobs). The target (job-queue issue): orphans runnable < 1 s after restart.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as bench  # noqa: E402


def running_count(client):
    status, body = client.call("GET", "/api/jobs/stats")
    if status != 200:
        return -1
    return int(body.get("states", {}).get("running", 0))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone-bin", default=os.path.join(bench.REPO, "target", "release", "backbone"))
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    workdir = tempfile.mkdtemp(prefix="backbone-orphans-bench-")
    env = {
        "BACKBONE_JOBS_TEST_KINDS": "true",
        "BACKBONE_JOBS_DEFAULT_CONCURRENCY": str(args.jobs),
        "BACKBONE_LOG": "warn",
    }
    server = bench.Backbone(args.backbone_bin, workdir, env)
    server.start()
    client = bench.Client(server.port, token=server.token)
    ids = []
    for _ in range(args.jobs):
        status, body = client.call("POST", "/api/jobs", {"kind": "sleep", "queue": "orphans", "payload": {"ms": 600000}})
        if status not in (200, 201, 202):
            raise SystemExit(f"enqueue failed: {status} {body}")
        ids.append(body["id"])
    sample = [ids[0], ids[len(ids) // 2], ids[-1]]
    results = []
    for rnd in range(1, args.rounds + 1):
        deadline = time.time() + 30
        while running_count(client) != args.jobs:
            if time.time() > deadline:
                raise SystemExit("the jobs never all ran before the kill")
            time.sleep(0.02)
        client.close()
        server.proc.kill()
        server.proc.wait()
        spawned = time.perf_counter()
        full_env = {**os.environ, "BACKBONE_RATE_LIMITS_ENABLED": "false", **env}
        server.proc = subprocess.Popen(
            [args.backbone_bin, "serve", "--http", f"127.0.0.1:{server.port}", "--dir", server.dir],
            stdout=server.logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=full_env)
        server.pid = server.proc.pid
        healthy = None
        while healthy is None:
            try:
                c = bench.Client(server.port)
                status, _ = c.call("GET", "/api/health")
                c.close()
                if status == 200:
                    healthy = time.perf_counter() - spawned
            except OSError:
                time.sleep(0.002)
        client = bench.Client(server.port, token=server.token)
        all_running = None
        while all_running is None:
            if running_count(client) == args.jobs:
                attempts = []
                for job_id in sample:
                    status, body = client.call("GET", f"/api/jobs/{job_id}")
                    attempts.append(body.get("attempt") if status == 200 else None)
                if all(a == rnd + 1 for a in attempts):
                    all_running = time.perf_counter() - spawned
                    break
            if time.perf_counter() - spawned > 30:
                raise SystemExit("the orphans did not run again within 30 s")
            time.sleep(0.005)
        results.append((healthy, all_running))
        print(f"round {rnd}: {args.jobs} orphans; process answering after {healthy * 1000:.0f} ms, "
              f"all {args.jobs} running again (attempt {rnd + 1}) after {all_running * 1000:.0f} ms")
    client.close()
    server.stop()
    worst = max(r[1] for r in results)
    print(f"\nworst of {args.rounds}: all orphans running again {worst * 1000:.0f} ms after the restart "
          f"(target < 1000 ms): {'MET' if worst < 1.0 else 'MISSED'}")
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"kept {workdir}")


if __name__ == "__main__":
    main()
