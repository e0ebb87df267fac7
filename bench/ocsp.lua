-- wrk script for the OCSP responder: the same DER request POSTed every time (what relying
-- parties send between two nextUpdates), answered from the pre-signed cache.
--
--   wrk -t2 -c64 -d10s --latency -s bench/ocsp.lua http://127.0.0.1:PORT -- FILE
--
-- FILE holds the DER OCSPRequest. done() prints one BENCH-JSON line.

dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "report.lua")

function init(args)
   local fh = assert(io.open(args[1], "rb"))
   local body = fh:read("*a")
   fh:close()
   req = wrk.format("POST", "/pki/ocsp", {
      ["Content-Type"] = "application/ocsp-request",
   }, body)
end

function request()
   return req
end

function done(summary, latency, _requests)
   bench_json(summary, latency, '"exhausted_threads": 0, "prepared": 0')
end
