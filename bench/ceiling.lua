-- wrk script for the ceiling: the same signed POST every time.
--
--   wrk -t2 -c64 -d10s --latency -s bench/ceiling.lua http://127.0.0.1:PORT -- PATH B64SIG BODY
--
-- The endpoint verifies the Ed25519 signature over BODY and inserts one row.
-- done() prints one BENCH-JSON line, as pay.lua does.

dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "report.lua")

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
   bench_json(summary, latency, '"exhausted_threads": 0, "prepared": 0')
end
