-- wrk script for scripts/bench-ingest.sh: POSTs unique messages to /api/v1/messages.
-- Each wrk thread numbers its own messages. Texts are the test corpus, cycled (about 40 % chatter). 20,000
-- drivers in 40 chats take turns, each writing again every 20,000 messages: a driver's first appeal opens a
-- ticket and what they write next within the follow-up window attaches to it.

local texts = {}
for line in io.lines(os.getenv("SUQIU_BENCH_TEXTS")) do
  texts[#texts + 1] = line -- each line is already a JSON string literal
end
local key = os.getenv("SUQIU_BENCH_KEY")

local threads = {}
local next_thread = 0

function setup(thread)
  thread:set("thread_id", next_thread)
  next_thread = next_thread + 1
  table.insert(threads, thread)
end

local n = 0

function init(args)
  wrk.method = "POST"
  wrk.path = "/api/v1/messages"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. key
end

function request()
  n = n + 1
  local id = thread_id .. "-" .. n
  local driver = (n * 7919) % 20000
  local text = texts[(n * 7 + thread_id) % #texts + 1]
  local body = '{"channel":"bench","chat":"group-' .. (driver % 40) .. '","message_id":"' .. id ..
    '","sender":"driver-' .. thread_id .. '-' .. driver .. '","text":' .. text ..
    ',"sent_at":"2026-11-02T08:00:00Z"}'
  return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
  io.write(string.format("RESULT requests=%d errors=%d non2xx=%d duration_s=%.3f p50_ms=%.2f p99_ms=%.2f max_ms=%.2f\n",
    summary.requests, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, summary.duration / 1e6,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
