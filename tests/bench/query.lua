-- wrk script for tests/bench/query_bench.py: the query-engine workloads.
--
--   BENCH_MODE   indexed | indexed_nototal | scan | get | expand
--   BENCH_IDS    file with one seeded item id per line (modes get and expand)
--   BENCH_CATEGORIES, BENCH_PRICES, BENCH_RATINGS   value ranges the seeder used
--
-- indexed: filter (category = 'cK' && price >= X), sort -price, page of 20 (an index on
--          (category, price) exists in both servers)
-- indexed_nototal: the same with skipTotal=1 (no count of all matches)
-- scan:    filter rating = R (no index), page of 20
-- get:     one item by a random id
-- expand:  the same, with expand=author.org (two relation levels)
--
-- Each wrk thread has its own Lua state: setup() (main state) numbers the threads, init()
-- (thread state) loads the ids and seeds its own random generator with its number.

local mode = os.getenv("BENCH_MODE") or "indexed"
local categories = tonumber(os.getenv("BENCH_CATEGORIES") or "10")
local prices = tonumber(os.getenv("BENCH_PRICES") or "1000")
local ratings = tonumber(os.getenv("BENCH_RATINGS") or "100")
local records_path = "/api/collections/items/records"

local ids = {}
local n_ids = 0
local next_tid = 0

function setup(thread)
  next_tid = next_tid + 1
  thread:set("tid", next_tid)
end

local function urlencode(s)
  return (s:gsub("[^%w%-_%.~]", function(c) return string.format("%%%02X", string.byte(c)) end))
end

function init(args)
  local me = tid or 0
  math.randomseed(os.time() * 1000 + me * 7919)
  for _ = 1, 10 do math.random() end
  if mode == "get" or mode == "expand" then
    local file = assert(os.getenv("BENCH_IDS"), "BENCH_IDS must name the id file")
    for line in io.lines(file) do
      if #line > 0 then
        n_ids = n_ids + 1
        ids[n_ids] = line
      end
    end
    assert(n_ids > 0, "no ids in " .. file)
  end
end

function request()
  if mode == "indexed" or mode == "indexed_nototal" then
    local filter = string.format("(category = 'c%d' && price >= %d)", math.random(0, categories - 1),
      math.random(0, prices - 1))
    local extra = mode == "indexed_nototal" and "&skipTotal=1" or ""
    return wrk.format("GET", records_path .. "?perPage=20&sort=-price" .. extra .. "&filter=" .. urlencode(filter))
  elseif mode == "scan" then
    local filter = string.format("rating = %d", math.random(0, ratings - 1))
    return wrk.format("GET", records_path .. "?perPage=20&filter=" .. urlencode(filter))
  elseif mode == "expand" then
    return wrk.format("GET", records_path .. "/" .. ids[math.random(n_ids)] .. "?expand=author.org")
  else
    return wrk.format("GET", records_path .. "/" .. ids[math.random(n_ids)])
  end
end
