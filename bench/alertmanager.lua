-- wrk script: realistic ~2 KB Alertmanager v4 notifications, each a new alert group
-- with two new alerts (unique fingerprints per thread and request), so every request
-- is a real insert rather than a cheap duplicate. Prints one summary line at the end.
local threads = {}
local token = os.getenv("BENCH_TOKEN") or ""
-- Distinct per wrk run, so a run never re-sends an earlier run's notifications.
local run = tonumber(os.getenv("BENCH_RUN") or "0")
-- Services the alerts are spread over (targets the engine evaluates); 0: every
-- notification is about a service of its own.
local targets = tonumber(os.getenv("BENCH_TARGETS") or "50")

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  counter = 0
  headers = {
    ["Content-Type"] = "application/json",
    ["User-Agent"] = "Alertmanager/0.25.0",
  }
  if token ~= "" then headers["Authorization"] = "Bearer " .. token end
  if tid == 1 and os.getenv("BENCH_PRINT_SIZE") then io.stderr:write(size_line()) end
end

local template = [[{"receiver":"rollwarden","status":"firing","alerts":[%s,%s],"notification_reason":"first notification","groupLabels":{"alertname":"HighErrorRate","namespace":"prod","service":"svc-%s"},"commonLabels":{"alertname":"HighErrorRate","namespace":"prod","service":"svc-%s","severity":"critical","team":"payments"},"commonAnnotations":{"runbook_url":"https://runbooks.example.com/checkout/high-error-rate","summary":"checkout is returning too many 5xx responses"},"routeLabels":{},"externalURL":"http://alertmanager-main.monitoring.svc:9093","version":"4","groupKey":"{}/{severity=\"critical\"}:{alertname=\"HighErrorRate\", namespace=\"prod\", service=\"svc-%s\"}","truncatedAlerts":0}
]]

local alert = [[{"status":"firing","labels":{"alertname":"HighErrorRate","namespace":"prod","pod":"checkout-69c9cdb879-%s","service":"svc-%s","severity":"critical","team":"payments"},"annotations":{"description":"Pod checkout-69c9cdb879-%s in prod answers 12.4%% of requests with 5xx (threshold 5%%).","runbook_url":"https://runbooks.example.com/checkout/high-error-rate","summary":"checkout is returning too many 5xx responses"},"startsAt":"2026-08-22T14:01:47.318Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://prometheus-k8s-0:9090/graph?g0.expr=sum+by+%%28pod%%29+%%28rate%%28http_requests_total%%7Bcode%%3D~%%225..%%22%%7D%%5B5m%%5D%%29%%29+%%3E+0.05\u0026g0.tab=1","fingerprint":"%s"}]]

function size_line()
  counter = 0
  local r = request()
  counter = 0
  return string.format("BODY %d bytes\n", #r)
end

function request()
  counter = counter + 1
  local id = string.format("%d-%d-%d", run, tid, counter)
  local service = id
  if targets > 0 then service = tostring((tid * 7919 + counter) % targets) end
  local a = string.format(alert, id .. "a", service, id .. "a", string.format("%04x%04x%08x", run, tid, counter * 2))
  local b = string.format(alert, id .. "b", service, id .. "b", string.format("%04x%04x%08x", run, tid, counter * 2 + 1))
  local body = string.format(template, a, b, id, service, id)
  return wrk.format("POST", "/webhooks/alertmanager", headers, body)
end

function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  local non2xx = summary.errors.status
  local sockerr = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  io.write(string.format(
    "RESULT requests=%d ok=%d rps=%.0f p50_ms=%.2f p99_ms=%.2f max_ms=%.2f non2xx=%d socket_errors=%d\n",
    summary.requests, summary.requests - non2xx, summary.requests / secs,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    non2xx, sockerr))
end
