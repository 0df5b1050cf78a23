-- PUT 64-byte values (KV_VALUE_BYTES) to KV_KEYS distinct keys; each connection walks its own stride so
-- two connections rarely write the same key at the same moment.
dofile(os.getenv("KV_LUA_DIR") .. "/summary.lua")
local keys = tonumber(os.getenv("KV_KEYS") or "10000")
local value = string.rep("v", tonumber(os.getenv("KV_VALUE_BYTES") or "64"))
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("base", threads * 104729)
end
local counter = 0
function request()
  counter = counter + 1
  return wrk.format("PUT", "/kv/key" .. ((base + counter * 7919) % keys), nil, value)
end
