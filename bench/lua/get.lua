-- GET one of KV_KEYS keys (default 10000) named key<N>; pair with a preload of the same keys.
dofile(os.getenv("KV_LUA_DIR") .. "/summary.lua")
local keys = tonumber(os.getenv("KV_KEYS") or "10000")
local counter = 0
function setup(thread)
  thread:set("offset", math.random(0, keys - 1))
end
function request()
  counter = counter + 1
  return wrk.format("GET", "/kv/key" .. ((counter * 7919 + (offset or 0)) % keys))
end
