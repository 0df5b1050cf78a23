-- kv: GET keys of the preloaded keyspace (bench/compare.py). 2xx bodies must say "status":true; a missing key
-- is a 404 and counts as non-2xx.
dofile(os.getenv("BENCH_LUA_DIR") .. "/bench_common.lua")
bench.run(function()
  return wrk.format("GET", "/kv/" .. bench.get_key())
end, function(body)
  return body:find('"status":true', 1, true) ~= nil
end)
