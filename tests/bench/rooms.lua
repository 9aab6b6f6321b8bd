-- wrk script for tests/bench/rooms.py: authenticated users post messages into rooms they
-- belong to (mode insert), or sign in with their password (mode login).
--
--   ROOMS_MODE      insert | login
--   ROOMS_FILE      insert: lines "token<TAB>room id<TAB>author id" (one per membership);
--                   login:  lines "email"
--   ROOMS_PASSWORD  login: the password every seeded user has
--
-- Every wrk thread pre-builds one request per line (its own Authorization header and JSON
-- body) and walks them in turn, starting at a different offset per thread, so consecutive
-- requests come from different users into different rooms.

local mode = os.getenv("ROOMS_MODE") or "insert"
local file = assert(os.getenv("ROOMS_FILE"), "ROOMS_FILE must name the input file")
local password = os.getenv("ROOMS_PASSWORD") or ""

local reqs = {}
local n = 0
local i = 0
local next_tid = 0

function setup(thread)
  next_tid = next_tid + 1
  thread:set("tid", next_tid)
end

local function json_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end) .. '"'
end

function init(args)
  for line in io.lines(file) do
    if #line > 0 then
      n = n + 1
      if mode == "insert" then
        local token, room, author = line:match("^([^\t]+)\t([^\t]+)\t([^\t]+)$")
        assert(token, "bad line in " .. file .. ": " .. line)
        local body = string.format('{"room":%s,"author":%s,"text":%s}', json_string(room),
          json_string(author), json_string("hello from " .. author .. " in " .. room))
        reqs[n] = wrk.format("POST", "/api/collections/messages/records",
          { ["Authorization"] = token, ["Content-Type"] = "application/json" }, body)
      else
        local body = string.format('{"identity":%s,"password":%s}', json_string(line), json_string(password))
        reqs[n] = wrk.format("POST", "/api/collections/users/auth-with-password",
          { ["Content-Type"] = "application/json" }, body)
      end
    end
  end
  assert(n > 0, "no lines in " .. file)
  -- Threads start spread over the list.
  i = ((tid or 1) - 1) * math.floor(n / 7 + 1) % n
end

function request()
  i = i % n + 1
  return reqs[i]
end
