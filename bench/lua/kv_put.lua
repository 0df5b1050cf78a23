-- kv: PUT BENCH_VALUE_BYTES-byte values to the keyspace (bench/compare.py). 2xx bodies must say "status":true.
dofile(os.getenv("BENCH_LUA_DIR") .. "/bench_common.lua")
bench.run(function()
  return wrk.format("PUT", "/kv/" .. bench.put_key(), nil, bench.value)
end, function(body)
  return body:find('"status":true', 1, true) ~= nil
end)
