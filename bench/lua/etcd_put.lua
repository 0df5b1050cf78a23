-- etcd v3 JSON gateway: POST /v3/kv/put with base64 key and value (bench/compare.py). The gateway maps gRPC
-- errors to non-2xx statuses with {"error":...}; a 2xx body naming an error counts as bad too.
dofile(os.getenv("BENCH_LUA_DIR") .. "/bench_common.lua")
local headers = { ["Content-Type"] = "application/json" }
local value64 = bench.b64(bench.value)
bench.run(function()
  return wrk.format("POST", "/v3/kv/put", headers,
    '{"key":"' .. bench.b64(bench.put_key()) .. '","value":"' .. value64 .. '"}')
end, function(body)
  return body:find('"header"', 1, true) ~= nil and body:find('"error"', 1, true) == nil
end)
