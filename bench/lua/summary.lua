-- Shared wrk reporting: prints one JSON line with the run's figures after wrk's own report.
-- Loaded by the other scripts with dofile; wrk calls done() once at the end.
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'KV_WRK_SUMMARY {"requests":%d,"duration_us":%d,"rps":%.1f,"p50_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"socket_errors":%d,"non2xx":%d}\n',
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99), latency.max,
    e.connect + e.read + e.write + e.timeout, e.status))
end
