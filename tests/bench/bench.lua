-- wrk script for tests/bench/run.py: one script, four request shapes chosen by BENCH_MODE.
--
--   BENCH_MODE   get | create | list | health
--   BENCH_TOKEN  value of the Authorization header (empty or unset: no header)
--   BENCH_IDS    file with one seeded record id per line (mode get)
--   BENCH_COLL   collection name (default "bench")
--
-- Run by the driver as, e.g.:
--   BENCH_MODE=get BENCH_IDS=ids.txt BENCH_TOKEN=... wrk -t2 -c64 -d10s --latency -s bench.lua http://127.0.0.1:PORT
--
-- Each wrk thread has its own Lua state: setup() (main state) hands every thread a number,
-- init() (thread state) loads the ids and seeds its own random generator with it.

local mode = os.getenv("BENCH_MODE") or "get"
local token = os.getenv("BENCH_TOKEN") or ""
local coll = os.getenv("BENCH_COLL") or "bench"
local records_path = "/api/collections/" .. coll .. "/records"

local ids = {}
local n_ids = 0
local counter = 0
local next_tid = 0

function setup(thread)
  next_tid = next_tid + 1
  thread:set("tid", next_tid)
end

function init(args)
  local me = tid or 0
  math.randomseed(os.time() * 1000 + me * 7919)
  for _ = 1, 10 do math.random() end
  if token ~= "" then
    wrk.headers["Authorization"] = token
  end
  if mode == "get" then
    local file = assert(os.getenv("BENCH_IDS"), "BENCH_IDS must name the id file")
    for line in io.lines(file) do
      if #line > 0 then
        n_ids = n_ids + 1
        ids[n_ids] = line
      end
    end
    assert(n_ids > 0, "no ids in " .. file)
  elseif mode == "create" then
    wrk.headers["Content-Type"] = "application/json"
  end
end

local list_path = records_path .. "?page=1&perPage=20&sort=-created"

function request()
  if mode == "get" then
    return wrk.format("GET", records_path .. "/" .. ids[math.random(n_ids)])
  elseif mode == "create" then
    counter = counter + 1
    local body = string.format('{"title":"wrk-%d-%d","views":%d}', tid or 0, counter, counter % 1000)
    return wrk.format("POST", records_path, nil, body)
  elseif mode == "list" then
    return wrk.format("GET", list_path)
  else
    return wrk.format("GET", "/api/health")
  end
end
