-- Shared by the kv-vs-etcd scripts run by bench/compare.py (kv_put, kv_get, etcd_put, etcd_get, ping).
-- Loaded with dofile from BENCH_LUA_DIR; each script then calls bench.run(make_request, body_ok).
--
-- Environment (set by bench/compare.py):
--   BENCH_KEYS          keyspace: keys are key0 .. key<BENCH_KEYS-1> (default 10000)
--   BENCH_VALUE_BYTES   value size for puts, the byte 'v' repeated (default 64)
--   BENCH_THREADS       wrk's -t, so every thread can own a slice of the keyspace (default 1)
--   BENCH_MAX_REQUESTS  0 = run for wrk's -d; N = stop once N responses arrived (split over the threads)
--
-- Puts: thread t of T writes only keys congruent to t mod T and walks its slice with a stride, so the
-- requests in flight at one moment never name the same key (kv answers 409 to a concurrent write of one key,
-- etcd would just serialise them; neither is what we want to measure).
-- Checks: every response that is not 2xx is counted (non2xx), and every 2xx whose body does not look like a
-- success for that system (body_ok) is counted (bad_body); the first of each kind is kept as a sample.
-- Output: one line `KV_WRK_SUMMARY {json}` after wrk's own report, like bench/lua/summary.lua, with more fields.
local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } bench_timespec_t;
  int clock_gettime(int clk_id, bench_timespec_t *tp);
]]
local ts = ffi.new("bench_timespec_t")
local function now_us()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000000 + math.floor(tonumber(ts.tv_nsec) / 1000)
end

bench = {}
bench.keys = tonumber(os.getenv("BENCH_KEYS") or "10000")
bench.value_bytes = tonumber(os.getenv("BENCH_VALUE_BYTES") or "64")
bench.nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")
bench.max_requests = tonumber(os.getenv("BENCH_MAX_REQUESTS") or "0")
bench.value = string.rep("v", bench.value_bytes)

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local b64digits = {}
for i = 1, 64 do b64digits[i - 1] = B64:sub(i, i) end
function bench.b64(s)
  local out, n = {}, #s
  for i = 1, n, 3 do
    local a, b, c = s:byte(i, i + 2)
    local v = a * 65536 + (b or 0) * 256 + (c or 0)
    out[#out + 1] = b64digits[math.floor(v / 262144) % 64] .. b64digits[math.floor(v / 4096) % 64] ..
        (b and b64digits[math.floor(v / 64) % 64] or "=") .. (c and b64digits[v % 64] or "=")
  end
  return table.concat(out)
end

local function json_string(s)
  s = s:sub(1, 300)
  s = s:gsub('[%c"\\]', function(ch)
    if ch == '"' then return '\\"' elseif ch == "\\" then return "\\\\" end
    return string.format("\\u%04x", ch:byte())
  end)
  return '"' .. s .. '"'
end

-- ----- main-thread side: remember the threads so done() can add up their counters -------------------------
local threads = {}
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

-- ----- per-thread side (globals, so done() can read them with thread:get) -------------------------------------
responses, non2xx, bad_body, first_non2xx, first_bad_body, start_us, stop_us = 0, 0, 0, "", "", 0, 0
local counter, slice, stride, cap = 0, 1, 1, 0

function init(args)
  local n = math.max(1, bench.nthreads)
  slice = math.max(1, math.floor(bench.keys / n))
  stride = (slice % 7919 == 0) and 1 or 7919
  counter = ((tid or 0) * 104729) % slice
  if bench.max_requests > 0 then cap = math.ceil(bench.max_requests / n) end
  start_us = now_us()
end

-- The next key for a write: only this thread's slice, distinct for `slice` consecutive calls.
function bench.put_key()
  counter = counter + 1
  return "key" .. ((tid or 0) + bench.nthreads * ((counter * stride) % slice))
end

-- The next key for a read: anywhere in the keyspace.
function bench.get_key()
  counter = counter + 1
  return "key" .. ((counter * 7919 + (tid or 0) * 104729) % bench.keys)
end

function bench.run(make_request, body_ok)
  request = make_request
  response = function(status, headers, body)
    responses = responses + 1
    if status < 200 or status > 299 then
      non2xx = non2xx + 1
      if first_non2xx == "" then first_non2xx = status .. " " .. (body or "") end
    elseif body_ok and not body_ok(body or "") then
      bad_body = bad_body + 1
      if first_bad_body == "" then first_bad_body = status .. " " .. (body or "") end
    end
    if cap > 0 and responses >= cap then
      cap = 0
      stop_us = now_us()
      wrk.thread:stop()
    end
  end
end

function done(summary, latency, requests)
  local tot, n2, bad, s1, s2 = 0, 0, 0, "", ""
  local first_start, last_stop, all_stopped = nil, 0, #threads > 0
  for _, t in ipairs(threads) do
    tot = tot + (t:get("responses") or 0)
    n2 = n2 + (t:get("non2xx") or 0)
    bad = bad + (t:get("bad_body") or 0)
    if s1 == "" then s1 = t:get("first_non2xx") or "" end
    if s2 == "" then s2 = t:get("first_bad_body") or "" end
    local st, sp = t:get("start_us"), t:get("stop_us")
    if st and (first_start == nil or st < first_start) then first_start = st end
    if sp and sp > 0 then last_stop = math.max(last_stop, sp) else all_stopped = false end
  end
  -- wrk sleeps for the whole -d even when every thread stopped at its request cap; then the real duration is
  -- from the first thread's start to the last thread's stop.
  local duration = summary.duration
  local capped = false
  if bench.max_requests > 0 and all_stopped and first_start then
    duration = last_stop - first_start
    capped = true
  end
  local e = summary.errors
  io.write(string.format(
    'KV_WRK_SUMMARY {"requests":%d,"duration_us":%d,"rps":%.1f,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"max_us":%d,"socket_errors":%d,"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d,' ..
    '"wrk_status_errors":%d,"non2xx":%d,"bad_body":%d,"checked":%d,"capped":%s,"bytes":%d,' ..
    '"first_non2xx":%s,"first_bad_body":%s}\n',
    summary.requests, duration, summary.requests / math.max(duration, 1) * 1e6,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.connect + e.read + e.write + e.timeout, e.connect, e.read, e.write, e.timeout, e.status, n2, bad, tot,
    tostring(capped), summary.bytes, json_string(s1), json_string(s2)))
end
