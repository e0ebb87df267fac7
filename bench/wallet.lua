-- wrk script: GET /v1/wallet, every request with its own prepared authorization.
--
--   wrk -t2 -c64 -d10s --latency -s bench/wallet.lua http://127.0.0.1:PORT -- LINES_FILE THREADS
--
-- LINES_FILE holds "<scheme> <access token> <DPoP proof or ->" lines; each line is sent
-- once (a DPoP proof's jti may be used only once). Thread k of THREADS takes lines k,
-- k+THREADS, ... and builds each request up front, exactly as pay.lua does, so the Bearer
-- and the DPoP runs cost wrk the same. A thread that runs out stops and reports itself as
-- exhausted (the figure is then a lower bound). done() prints one BENCH-JSON line.

dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "report.lua")

function init(args)
   local path, count = args[1], tonumber(args[2])
   requests, pos, exhausted = {}, 0, 0
   local i = 0
   for line in io.lines(path) do
      if i % count == id then
         local scheme, token, proof = line:match("^(%S+) (%S+) (%S+)$")
         local headers = {["Authorization"] = scheme .. " " .. token}
         if proof ~= "-" then
            headers["DPoP"] = proof
         end
         requests[#requests + 1] = wrk.format("GET", "/v1/wallet", headers)
      end
      i = i + 1
   end
   prepared = #requests
end

request = prepared_request

function done(summary, latency, _requests)
   bench_json(summary, latency, prepared_json(threads))
end
