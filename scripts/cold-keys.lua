-- wrk: POST /v1/keys/verify with each key of $KEYS_FILE (one a line) at most
-- once until the list is exhausted: each of the $THREADS wrk threads walks
-- its own stride of it. Used by bench-verify.sh and bench-scale.sh.
local keys = {}
for line in io.lines(os.getenv("KEYS_FILE")) do if #line > 0 then keys[#keys + 1] = line end end
local counter = 0
function setup(thread) counter = counter + 1; thread:set("tid", counter) end
local i, step
function init(args) step = tonumber(os.getenv("THREADS")); i = (tid or 1) - 1 end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
function request()
  local k = keys[(i % #keys) + 1]; i = i + step
  return wrk.format(nil, nil, nil, '{"key":"' .. k .. '"}')
end
