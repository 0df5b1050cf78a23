-- PUT 64-byte values (KV_VALUE_BYTES) to KV_KEYS distinct keys, so that no two requests in flight ever write the
-- same key (a second writer of a prepared key is refused with 409, first one wins, which a test counting non-2xx
-- answers must not see): thread T of up to 16 writes only the keys whose number is T modulo 16, and its connections
-- share one counter, so its requests in flight take consecutive keys of that class (distinct while a thread has
-- fewer than KV_KEYS/16 connections). With a stride between threads instead, two threads' counters drifted into
-- step now and then on a fast cluster, and 31 of 64275 puts conflicted.
dofile(os.getenv("KV_LUA_DIR") .. "/summary.lua")
local keys = tonumber(os.getenv("KV_KEYS") or "10000")
local value = string.rep("v", tonumber(os.getenv("KV_VALUE_BYTES") or "64"))
local classes = 16
local threads = 0
function setup(thread)
  threads = threads + 1
  assert(threads <= classes, "put.lua partitions the keys among at most 16 threads")
  thread:set("class", threads - 1)
end
local counter = 0
function request()
  counter = counter + 1
  local slot = counter % math.floor(keys / classes)
  return wrk.format("PUT", "/kv/key" .. (slot * classes + class), nil, value)
end
