-- The ceiling: GET /ping of kv-master through the same nginx; answered without touching the replicas.
dofile(os.getenv("BENCH_LUA_DIR") .. "/bench_common.lua")
bench.run(function()
  return wrk.format("GET", "/ping")
end, function(body)
  return body:find('"status":true', 1, true) ~= nil
end)
