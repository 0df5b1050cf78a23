-- etcd v3 JSON gateway: POST /v3/kv/range of one preloaded key (bench/compare.py). No "serializable" field,
-- so the read is linearizable (etcd's default: a ReadIndex round through the leader). A 2xx without "kvs"
-- means the key was missing and counts as a bad body, like kv's 404.
dofile(os.getenv("BENCH_LUA_DIR") .. "/bench_common.lua")
local headers = { ["Content-Type"] = "application/json" }
bench.run(function()
  return wrk.format("POST", "/v3/kv/range", headers, '{"key":"' .. bench.b64(bench.get_key()) .. '"}')
end, function(body)
  return body:find('"kvs"', 1, true) ~= nil and body:find('"error"', 1, true) == nil
end)
