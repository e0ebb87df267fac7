-- wrk script: the password step of a login, POST /v1/sessions, over and over.
--
--   wrk -t2 -c50 -d10s --latency -s bench/login.lua http://127.0.0.1:PORT -- LINES_FILE THREADS PASSWORD
--
-- LINES_FILE holds "<phone> <device_id>" lines, one per customer; requests go round-robin
-- over them with the right password. The answer the platform must give is 401
-- step_up_required (the password is right; the device must now sign the challenge), after
-- one Argon2id verify. response() counts those answers as "expected" and anything else as
-- "unexpected" (wrk itself counts every 401 as a status error). done() prints one
-- BENCH-JSON line.

dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "report.lua")

function init(args)
   local path, count, password = args[1], tonumber(args[2]), args[3]
   requests, pos, expected, unexpected = {}, 0, 0, 0
   local i = 0
   for line in io.lines(path) do
      if i % count == id then
         local phone, device_id = line:match("^(%S+) (%S+)$")
         local body = string.format('{"phone":"%s","password":"%s","device_id":"%s"}',
                                    phone, password, device_id)
         requests[#requests + 1] = wrk.format("POST", "/v1/sessions",
                                              {["Content-Type"] = "application/json"}, body)
      end
      i = i + 1
   end
end

function request()
   pos = pos % #requests + 1
   return requests[pos]
end

function response(status, _headers, body)
   if status == 401 and body and body:find('"step_up_required"', 1, true) then
      expected = expected + 1
   else
      unexpected = unexpected + 1
   end
end

function done(summary, latency, _requests)
   local ok, bad = 0, 0
   for _, thread in ipairs(threads) do
      ok = ok + thread:get("expected")
      bad = bad + thread:get("unexpected")
   end
   bench_json(summary, latency, string.format(
      '"exhausted_threads": 0, "prepared": 0, "expected": %d, "unexpected": %d', ok, bad))
end
