-- wrk script: each request pays a different prepared trade.
--
--   wrk -t2 -c64 -d10s --latency -s bench/pay.lua http://127.0.0.1:PORT -- LINES_FILE THREADS
--
-- LINES_FILE holds "<scheme> <access token> <trade_no> <DPoP proof or -> [<txn signature>]"
-- lines (scheme Bearer or DPoP; a DPoP line's proof is used once, for that one request, as a
-- phone would sign a fresh one for every request; the optional last field is the
-- Anfu-Txn-Signature header, written without spaces, of a phone signing the payment). Thread k of THREADS takes lines
-- k, k+THREADS, ... and builds each request once, up front. A thread that runs out of
-- trades stops (it never pays a trade twice) and reports itself as exhausted; the figures
-- are then a lower bound, and run.py says so. done() prints one BENCH-JSON line.

dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "report.lua")

function init(args)
   local path, count = args[1], tonumber(args[2])
   requests, pos, exhausted = {}, 0, 0
   local i = 0
   for line in io.lines(path) do
      if i % count == id then
         local scheme, token, trade_no, proof, signed =
            line:match("^(%S+) (%S+) (%S+) (%S+) ?(%S*)$")
         local headers = {
            ["Authorization"] = scheme .. " " .. token,
            ["Idempotency-Key"] = "bench-pay-" .. trade_no,
         }
         if proof ~= "-" then
            headers["DPoP"] = proof
         end
         if signed ~= "" then
            headers["Anfu-Txn-Signature"] = signed
         end
         requests[#requests + 1] = wrk.format("POST", "/v1/trades/" .. trade_no .. "/pay",
                                              headers, "")
      end
      i = i + 1
   end
   prepared = #requests
end

request = prepared_request

function done(summary, latency, _requests)
   bench_json(summary, latency, prepared_json(threads))
end
