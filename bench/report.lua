-- The one BENCH-JSON line every wrk script prints from done(): wrk's own figures plus the
-- script's extra fields (a JSON fragment such as '"expected": 3'). Loaded by each script
-- from its own folder, so wrk may be started from anywhere.

function bench_json(summary, latency, extra)
   local e = summary.errors
   io.write(string.format(
      'BENCH-JSON {"requests": %d, "duration_us": %d, "bytes": %d, "status_errors": %d,'
      .. ' "connect_errors": %d, "read_errors": %d, "write_errors": %d, "timeouts": %d,'
      .. ' "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f, %s}\n',
      summary.requests, summary.duration, summary.bytes, e.status, e.connect, e.read,
      e.write, e.timeout, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency.max, latency.mean, extra))
end

-- Summed over threads: how many ran out of prepared requests, and how many were prepared.
function prepared_json(threads)
   local exhausted_threads, prepared_total = 0, 0
   for _, thread in ipairs(threads) do
      exhausted_threads = exhausted_threads + thread:get("exhausted")
      prepared_total = prepared_total + thread:get("prepared")
   end
   return string.format('"exhausted_threads": %d, "prepared": %d', exhausted_threads,
                        prepared_total)
end
