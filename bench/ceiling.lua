-- wrk script for the ceiling: the same signed POST every time.
--
--   wrk -t2 -c64 -d10s --latency -s bench/ceiling.lua http://127.0.0.1:PORT -- PATH B64SIG BODY
--
-- The endpoint verifies the Ed25519 signature over BODY and inserts one row.
-- done() prints one BENCH-JSON line, as pay.lua does.

function init(args)
   req = wrk.format("POST", args[1], {
      ["X-Signature"] = args[2],
      ["Content-Type"] = "application/octet-stream",
   }, args[3])
end

function request()
   return req
end

function done(summary, latency, _requests)
   local e = summary.errors
   io.write(string.format(
      'BENCH-JSON {"requests": %d, "duration_us": %d, "bytes": %d, "status_errors": %d,'
      .. ' "connect_errors": %d, "read_errors": %d, "write_errors": %d, "timeouts": %d,'
      .. ' "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f,'
      .. ' "exhausted_threads": 0, "prepared": 0}\n',
      summary.requests, summary.duration, summary.bytes, e.status, e.connect, e.read,
      e.write, e.timeout, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency.max, latency.mean))
end
