#!/usr/bin/env python3
"""TrailBase-style workload: authenticated users post messages into rooms they belong to,
Backbone (release binary) vs. the real PocketBase, in one run; plus sign-ins per second.

Command (from the repository root, after `cargo build --release`):

    python3 tests/bench/rooms.py

Options (defaults in brackets):
    --duration 10        seconds per wrk run                                   [10]
    --repeat 2           timed runs per workload and server (alternating)      [2]
    --users 100 --rooms 10 --rooms-per-user 3   the seeded world               [100, 10, 3]
    --concurrency 64     connections (requests in flight)                      [64]
    --json FILE          also write every measurement as JSON
    --keep               keep the work directory (data dirs, logs, wrk outputs)

Both servers get the same schema through their HTTP APIs: an auth collection `users`
(PocketBase's default `users` collection is deleted first), `rooms` (name),
`room_members` (room -> rooms, user -> users; superusers only) and `messages`
(room -> rooms, author -> users, text) whose create rule checks membership with a
`@collection` join:

    @request.auth.id != '' && author = @request.auth.id &&
    @collection.room_members.room ?= room && @collection.room_members.user ?= @request.auth.id

Both `@collection.room_members` references name the same joined row on both servers (a user
who belongs to some other room cannot post here), which the setup checks: before timing, on
each server, a member posts (200), and a non-member of the room, a forged author and an
anonymous caller are refused. List/view of messages use the same membership rule.

Seeding: N users (signed up by the superuser, one password), R rooms, each user a member of
K rooms; then every user signs in once (its token). The insert workload: wrk at C
connections, each request a POST of a message by one user into one of its rooms, rotating
over all (user, room) memberships (tests/bench/rooms.lua). The login workload: wrk at C
connections, each request an auth-with-password of the next user. Afterwards the number of
messages on each server is checked against the 2xx responses wrk counted.

Backbone runs with BACKBONE_RATE_LIMITS_ENABLED=false (its limiter is on by default and would
answer 429 to a benchmark); PocketBase runs with its defaults (its limiter is off by default).

Reports per run req/s, p50/p99 and the server's CPU time per request, the noise (CPU time of
every other process meanwhile; the load average), then the best and median of the runs, the
ratio and the verdict for the target: inserts/s >= 5x PocketBase's at 64 in flight.
"""

import argparse
import json
import resource
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as bench  # noqa: E402  (the side-by-side HTTP benchmark; its helpers are reused)

HERE = os.path.dirname(os.path.abspath(__file__))
LUA = os.path.join(HERE, "rooms.lua")
USER_PASSWORD = "bench-user-password-1"
TARGET_INSERT_RATIO = 5.0
MEMBER_RULE = "@collection.room_members.room ?= room && @collection.room_members.user ?= @request.auth.id"
CREATE_RULE = "@request.auth.id != '' && author = @request.auth.id && " + MEMBER_RULE
log = bench.log


def call(server, method, path, body=None, token=None):
    c = bench.Client(server.port, token)
    try:
        return c.call(method, path, body)
    finally:
        c.close()


def must(server, what, status, body, expect=200):
    if status != expect:
        raise RuntimeError(f"{server.name}: {what} answered {status}: {str(body)[:400]}")
    return body


def create_schema(server):
    su = server.token
    status, _ = call(server, "GET", "/api/collections/users", token=su)
    if status == 200:  # PocketBase ships an empty `users` collection; ours replaces it.
        status, body = call(server, "DELETE", "/api/collections/users", token=su)
        must(server, "delete the default users collection", status, body, 204)
    users = must(server, "create users", *call(server, "POST", "/api/collections", {
        "name": "users", "type": "auth",
        "listRule": "id = @request.auth.id", "viewRule": "id = @request.auth.id",
        "createRule": "", "updateRule": "id = @request.auth.id", "deleteRule": None,
        "fields": [{"name": "name", "type": "text", "max": 100}],
    }, su))
    rooms = must(server, "create rooms", *call(server, "POST", "/api/collections", {
        "name": "rooms", "listRule": "@request.auth.id != ''", "viewRule": "@request.auth.id != ''",
        "fields": [{"name": "name", "type": "text", "required": True, "max": 100}],
    }, su))

    def rel(name, target):
        return {"name": name, "type": "relation", "collectionId": target["id"], "maxSelect": 1, "required": True}

    must(server, "create room_members", *call(server, "POST", "/api/collections", {
        "name": "room_members", "fields": [rel("room", rooms), rel("user", users)],
    }, su))
    must(server, "create messages", *call(server, "POST", "/api/collections", {
        "name": "messages", "createRule": CREATE_RULE, "listRule": MEMBER_RULE, "viewRule": MEMBER_RULE,
        "fields": [rel("room", rooms), rel("author", users), {"name": "text", "type": "text", "max": 1000}],
    }, su))


def parallel(n, fn, workers=8):
    import concurrent.futures
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, range(n)))


def seed(server, n_users, n_rooms, per_user, workdir):
    su = server.token
    t0 = time.time()

    def user(i):
        email = f"user{i}@example.com"
        body = must(server, "create user", *call(server, "POST", "/api/collections/users/records", {
            "email": email, "password": USER_PASSWORD, "passwordConfirm": USER_PASSWORD, "name": f"User {i}",
        }, su))
        return body["id"], email

    users = parallel(n_users, user)
    rooms = [must(server, "create room", *call(server, "POST", "/api/collections/rooms/records",
                                               {"name": f"room {r}"}, su))["id"] for r in range(n_rooms)]
    steps = [0, 3, 7, 1, 5, 9, 2, 4, 6, 8]
    member_of = {i: sorted({(i + steps[k % len(steps)] + k // len(steps)) % n_rooms for k in range(per_user)})
                 for i in range(n_users)}
    pairs = [(i, r) for i in range(n_users) for r in member_of[i]]

    def member(k):
        i, r = pairs[k]
        must(server, "create membership", *call(server, "POST", "/api/collections/room_members/records",
                                                {"room": rooms[r], "user": users[i][0]}, su))

    parallel(len(pairs), member)
    log(f"{server.name}: seeded {n_users} users, {n_rooms} rooms, {len(pairs)} memberships "
        f"in {time.time() - t0:.1f}s")

    t0 = time.time()

    def sign_in(i):
        body = must(server, "sign in", *call(server, "POST", "/api/collections/users/auth-with-password",
                                             {"identity": users[i][1], "password": USER_PASSWORD}))
        return body["token"]

    tokens = parallel(n_users, sign_in, workers=4)
    log(f"{server.name}: {n_users} users signed in in {time.time() - t0:.1f}s")

    insert_file = os.path.join(workdir, f"insert-{server.name.lower()}.tsv")
    # Interleave so that consecutive lines are different users in different rooms.
    order = sorted(range(len(pairs)), key=lambda k: (k % per_user, k))
    with open(insert_file, "w") as f:
        for k in order:
            i, r = pairs[k]
            f.write(f"{tokens[i]}\t{rooms[r]}\t{users[i][0]}\n")
    login_file = os.path.join(workdir, f"login-{server.name.lower()}.txt")
    with open(login_file, "w") as f:
        f.write("".join(f"{email}\n" for _, email in users))
    return {"users": users, "rooms": rooms, "member_of": member_of, "tokens": tokens,
            "insert_file": insert_file, "login_file": login_file, "memberships": len(pairs)}


def message_count(server):
    body = must(server, "count messages", *call(server, "GET", "/api/collections/messages/records?perPage=1",
                                                token=server.token))
    return body["totalItems"]


def check_rules(server, world):
    """The create rule admits members posting as themselves and nobody else. Returns the
    number of messages it created."""
    users, rooms, member_of, tokens = world["users"], world["rooms"], world["member_of"], world["tokens"]
    path = "/api/collections/messages/records"
    own_room = member_of[0][0]
    other_room = next(r for r in range(len(rooms)) if r not in member_of[0])
    status, body = call(server, "POST", path, {"room": rooms[own_room], "author": users[0][0], "text": "hi"},
                        tokens[0])
    must(server, "a member posting into their room", status, body)
    refused = {
        "a user posting into a room they are not a member of (other rooms have members)":
            call(server, "POST", path, {"room": rooms[other_room], "author": users[0][0], "text": "x"}, tokens[0]),
        "a member posting as another user":
            call(server, "POST", path, {"room": rooms[own_room], "author": users[1][0], "text": "x"}, tokens[0]),
        "an anonymous post": call(server, "POST", path, {"room": rooms[own_room], "author": users[0][0], "text": "x"}),
    }
    for what, (status, body) in refused.items():
        if status not in (400, 401, 403, 404):
            raise RuntimeError(f"{server.name}: {what} was not refused: {status} {str(body)[:300]}")
    # A member reads the room's messages; a non-member of that room sees none of them.
    q = f"{path}?filter=room%3D%27{rooms[own_room]}%27&perPage=1"
    status, body = call(server, "GET", q, token=tokens[0])
    if status != 200 or body.get("totalItems") != 1:
        raise RuntimeError(f"{server.name}: a member should list the one message: {status} {str(body)[:300]}")
    outsider = next(i for i in range(len(users)) if own_room not in member_of[i])
    status, body = call(server, "GET", q, token=tokens[outsider])
    if status != 200 or body.get("totalItems") != 0:
        raise RuntimeError(f"{server.name}: a non-member should list no messages: {status} {str(body)[:300]}")
    log(f"{server.name}: rules check out (member 200; non-member, forged author, anonymous refused: "
        + ", ".join(str(s) for s, _ in refused.values()) + ")")
    return 1


def run_wrk(server, mode, conns, duration, threads, input_file, workdir, tag):
    t = max(1, min(threads, conns))
    cmd = ["wrk", f"-t{t}", f"-c{conns}", f"-d{duration}s", "--timeout", "10s", "--latency", "-s", LUA,
           f"http://127.0.0.1:{server.port}"]
    env = dict(os.environ, ROOMS_MODE=mode, ROOMS_FILE=input_file, ROOMS_PASSWORD=USER_PASSWORD)
    cpu0, busy0 = bench.proc_cpu_seconds(server.pid), bench.system_busy_seconds()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu1, busy1 = bench.proc_cpu_seconds(server.pid), bench.system_busy_seconds()
    with open(os.path.join(workdir, f"wrk-{server.name.lower()}-{mode}-c{conns}-{tag}.txt"), "w") as f:
        f.write(" ".join(cmd) + "\n\n" + out.stdout + out.stderr)
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed ({server.name} {mode}): {out.stderr}")
    res = bench.parse_wrk(out.stdout)
    res["server_cpu_s"] = cpu1 - cpu0 if None not in (cpu0, cpu1) else None
    res["wrk_cpu_s"] = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    res["other_cpu_s"] = max(0.0, (busy1 - busy0) - res["wrk_cpu_s"] - (res["server_cpu_s"] or 0.0))
    res["server_cpu_ms_per_req"] = (res["server_cpu_s"] * 1e3 / res["requests"]
                                    if res["requests"] and res["server_cpu_s"] is not None else None)
    res["ok"] = res["requests"] - res["non2xx"]
    return res


def summary(runs):
    rps = [r["rps"] for r in runs]
    best = max(runs, key=lambda r: r["rps"])
    return {"runs": len(runs), "rps_all": [round(x, 1) for x in rps], "rps_best": max(rps),
            "rps_median": statistics.median(rps), "p50_best_run": best.get("p50"), "p99_best_run": best.get("p99"),
            "p50_median": statistics.median([r.get("p50", 0.0) for r in runs]),
            "p99_median": statistics.median([r.get("p99", 0.0) for r in runs]),
            "cpu_ms_per_req_median": statistics.median([r["server_cpu_ms_per_req"] or 0.0 for r in runs]),
            "errors": sum(r["non2xx"] + r["socket_errors"] for r in runs),
            "other_cpu_s_max": max(r["other_cpu_s"] for r in runs)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backbone-bin", default=os.path.join(bench.REPO, "target", "release", "backbone"))
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--users", type=int, default=100)
    ap.add_argument("--rooms", type=int, default=10)
    ap.add_argument("--rooms-per-user", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--workloads", default="insert,login")
    ap.add_argument("--workdir")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.rooms_per_user > args.rooms or args.rooms_per_user < 1 or args.users < 2:
        sys.exit("need at least 2 users and 1 <= rooms-per-user <= rooms")
    workloads = [w for w in ("insert", "login") if w in args.workloads.split(",")]
    if not os.access(args.backbone_bin, os.X_OK):
        sys.exit(f"{args.backbone_bin} missing: run `cargo build --release` first")
    bench.ensure_wrk()
    t_start = time.time()
    workdir = args.workdir or tempfile.mkdtemp(prefix="backbone-rooms-")
    os.makedirs(workdir, exist_ok=True)
    log(f"work directory {workdir}")
    if bench.stale_binary(args.backbone_bin):
        log("WARNING: src/ or Cargo.* changed after the binary was built; run `cargo build --release` first")
    binary = os.path.join(workdir, "backbone")
    shutil.copy2(args.backbone_bin, binary)
    # Backbone's rate limiter is on by default; a benchmark from one IP would meet 429s.
    os.environ["BACKBONE_RATE_LIMITS_ENABLED"] = "false"
    servers = [bench.Backbone(binary, workdir), bench.PocketBase(workdir)]
    load_before = bench.loadavg()
    results = {}
    counts = {}
    try:
        worlds = {}
        for s in servers:
            s.start()
            log(f"{s.name} ({s.version}) pid {s.pid} on 127.0.0.1:{s.port}")
        for s in servers:
            create_schema(s)
            worlds[s.name] = seed(s, args.users, args.rooms, args.rooms_per_user, workdir)
            counts[s.name] = check_rules(s, worlds[s.name])
        for rep in range(args.repeat):
            for w in workloads:
                for s in servers:
                    time.sleep(1.0)
                    world = worlds[s.name]
                    r = run_wrk(s, w, args.concurrency, args.duration, args.threads,
                                world["insert_file" if w == "insert" else "login_file"], workdir, f"r{rep}")
                    r["loadavg_after"] = bench.loadavg()
                    results.setdefault((w, s.name), []).append(r)
                    if w == "insert":
                        counts[s.name] += r["ok"]
                    log(f"{s.name:10} {w:6} c={args.concurrency} run {rep + 1}: {r['rps']:8.0f} req/s  "
                        f"p50 {bench.fmt(r.get('p50'), '.2f')} ms  p99 {bench.fmt(r.get('p99'), '.2f')} ms  "
                        f"server CPU {bench.fmt(r['server_cpu_ms_per_req'], '.2f')} ms/req  "
                        f"errors {r['non2xx'] + r['socket_errors']}  other CPU {r['other_cpu_s']:.1f}s")
        stored = {}
        for s in servers:
            if "insert" in workloads:
                stored[s.name] = message_count(s)
        load_after = bench.loadavg()
    finally:
        for s in servers:
            try:
                s.stop()
            except Exception as e:  # noqa: BLE001
                log(f"stopping {s.name}: {e}")
        if not args.keep and not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        elif args.keep:
            log(f"kept {workdir}")

    bb, pb = servers[0].name, servers[1].name
    sums = {k: summary(v) for k, v in results.items()}
    p = print
    p(f"# Rooms benchmark: {args.users} users, {args.rooms} rooms, {args.rooms_per_user} rooms per user, "
      f"c={args.concurrency}, {args.duration}s x {args.repeat} runs per cell")
    p(f"{servers[0].version} vs {servers[1].version}; commit {bench.git_commit()}; "
      f"load average before {load_before}, after {load_after}; {os.cpu_count()} CPUs")
    p("")
    p("| workload | server | req/s (each run) | best | median | p50 ms (median) | p99 ms (median) "
      "| server CPU ms/req | errors | other CPU s (max) |")
    p("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for (w, name), m in sums.items():
        p(f"| {w} | {name} | {', '.join(f'{x:.0f}' for x in m['rps_all'])} | {m['rps_best']:.0f} "
          f"| {m['rps_median']:.0f} | {m['p50_median']:.2f} | {m['p99_median']:.2f} "
          f"| {m['cpu_ms_per_req_median']:.2f} | {m['errors']} | {m['other_cpu_s_max']:.1f} |")
    p("")
    verdicts = []
    for w in workloads:
        a, b = sums.get((w, bb)), sums.get((w, pb))
        if a and b and b["rps_median"] > 0:
            ratio = a["rps_median"] / b["rps_median"]
            p(f"- {w}: Backbone/PocketBase req/s {ratio:.2f}x (median of runs), "
              f"{a['rps_best'] / b['rps_best']:.2f}x (best of runs)")
            if w == "insert":
                verdicts.append((f"inserts/s >= {TARGET_INSERT_RATIO:g}x PocketBase", ratio >= TARGET_INSERT_RATIO,
                                 f"{ratio:.2f}x"))
    for name, n in stored.items():
        ok = n >= counts[name] and n <= counts[name] + args.concurrency * args.repeat
        p(f"- {name}: {n} messages stored; wrk counted {counts[name]} successful creates "
          f"({'consistent' if ok else 'INCONSISTENT'}; requests still in flight when wrk stops may add up to "
          f"{args.concurrency} per run)")
        verdicts.append((f"{name} stored every acknowledged message", ok, f"{n} vs {counts[name]}"))
    for what, ok, detail in verdicts:
        p(f"- {'MET ' if ok else 'MISSED'}  {what}  ({detail})")
    p(f"\n(total wall time {time.time() - t_start:.0f}s; command: python3 tests/bench/rooms.py "
      + " ".join(sys.argv[1:]) + ")")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "loadavg": [load_before, load_after],
                       "versions": [s.version for s in servers],
                       "runs": [{"workload": w, "server": n, **r} for (w, n), rs in results.items() for r in rs],
                       "summary": [{"workload": w, "server": n, **m} for (w, n), m in sums.items()],
                       "stored": stored, "acknowledged": counts,
                       "verdicts": [{"target": a, "met": b, "detail": c} for a, b, c in verdicts]}, f, indent=2)


if __name__ == "__main__":
    main()
