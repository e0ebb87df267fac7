-- What the wrk scripts share, loaded by each from its own folder (so wrk may be started
-- from anywhere): numbering the threads, handing out prepared requests, and the one
-- BENCH-JSON line every script prints from done().

threads = {}
local next_id = 0

function setup(thread)
   thread:set("id", next_id)
   next_id = next_id + 1
   table.insert(threads, thread)
end

-- request() of a script whose init() built ``requests``: each once, in order; a thread
-- that runs out stops and says so (the run's figure is then a lower bound).
function prepared_request()
   pos = pos + 1
   local req = requests[pos]
   if req == nil then
      exhausted = 1
      wrk.thread:stop()
      return wrk.format("GET", "/healthz")
   end
   return req
end

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
