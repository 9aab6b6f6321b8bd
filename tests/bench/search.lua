-- wrk script for tests/bench/search_bench.py: each request is a random line of the file
-- BENCH_PATHS (request paths with their query strings, already URL-encoded).
-- Each wrk thread has its own Lua state and its own random sequence.

local paths = {}
local n = 0
local next_tid = 0

function setup(thread)
  next_tid = next_tid + 1
  thread:set("tid", next_tid)
end

function init(args)
  math.randomseed(os.time() * 1000 + (tid or 0) * 7919)
  for _ = 1, 10 do math.random() end
  local file = assert(os.getenv("BENCH_PATHS"), "BENCH_PATHS must name the path file")
  for line in io.lines(file) do
    if #line > 0 then
      n = n + 1
      paths[n] = line
    end
  end
  assert(n > 0, "no paths in " .. file)
end

function request()
  return wrk.format("GET", paths[math.random(1, n)])
end
