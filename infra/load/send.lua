-- wrk script: POST /v1/notifications, each request an email to a different address, so the
-- pipeline behind the API works on many keys at once (one user would be handled in order).
--
--   export HERALD_KEY=hrld_...   # the key `herald dev` printed
--   wrk -t2 -c64 -d20s --latency -s infra/load/send.lua http://127.0.0.1:8080/v1/notifications
--
-- With HERALD_PAUSE_MS, each connection waits that long after an answer before its next
-- request: a paced load of about connections / (pause + latency) requests a second (wrk
-- prints the rate it reached).

local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("thread_id", threads)
end

local pause = tonumber(os.getenv("HERALD_PAUSE_MS") or "0")

function delay()
  return pause
end

function init(args)
  counter = 0
  local key = os.getenv("HERALD_KEY")
  if key == nil or key == "" then
    error("set HERALD_KEY to the API key herald dev printed")
  end
  wrk.method = "POST"
  wrk.headers["Authorization"] = "Bearer " .. key
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"to":[{"email":"user%d.%d@example.com"}],"from":{"email":"noreply@example.com"},'
      .. '"subject":"Hello from Herald","content":[{"type":"text/plain","value":"It works."}]}',
    thread_id, counter)
  return wrk.format(nil, nil, nil, body)
end
