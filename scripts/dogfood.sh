#!/usr/bin/env bash
# ciq runs its own test suite distributed: two `ciq run ... nextest` workers and a `ciq report`
# against a redis-server started here on a free port. The report's counts must equal those of
# a plain `cargo nextest run`. CI runs this after the README's test command.
set -euo pipefail
cd "$(dirname "$0")/.."

# The chaos runner is a harness-less binary with its own arguments; `cargo test` runs it.
filter=(-E 'not binary_id(ciq::chaos)')
cargo build --quiet
ciq="$PWD/target/debug/ciq"

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
scratch=$(mktemp -d)
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$scratch" >"$scratch/redis.log" &
redis_pid=$!
trap 'kill "$redis_pid" 2>/dev/null; rm -rf "$scratch"' EXIT
for _ in $(seq 100); do
  redis-cli -p "$port" ping >/dev/null 2>&1 && break
  sleep 0.1
done
url="redis://127.0.0.1:$port/0"

echo "dogfood: plain cargo nextest run"
cargo nextest run --no-fail-fast "${filter[@]}" 2>"$scratch/plain.log" || true
plain=$(grep -Eo '[0-9]+ tests? run: [0-9]+ passed[^)]*' "$scratch/plain.log" | tail -n 1 || true)
if [ -z "$plain" ]; then
  echo "dogfood: the plain nextest run printed no summary (did the build fail?); its output:" >&2
  tail -n 60 "$scratch/plain.log" >&2
  exit 1
fi
echo "dogfood: cargo nextest: $plain"
grep -E '^\s+(FAIL|SIGSEGV|SIGABRT|TIMEOUT)' "$scratch/plain.log" | sort -u || true

echo "dogfood: the same suite through ciq on 2 workers"
# Bounded waits: a stuck build fails this script in minutes, not after the 2 h default.
"$ciq" report --queue "$url" --build dogfood --queue-init-timeout 10m --report-timeout 20m \
  >"$scratch/report.out" 2>"$scratch/report.err" &
report_pid=$!
workers=()
for worker in w1 w2; do
  "$ciq" run --queue "$url" --build dogfood --worker "$worker" --test-timeout 5m \
    --queue-init-timeout 10m nextest -- "${filter[@]}" \
    >"$scratch/$worker.out" 2>"$scratch/$worker.err" &
  workers+=($!)
done
status=0
wait "$report_pid" || status=$?
for pid in "${workers[@]}"; do wait "$pid" || true; done
summary=$(grep -E '^[0-9]+ tests:' "$scratch/report.out" || true)
echo "dogfood: ciq report: $summary (exit $status)"
grep -E '^(FAILED|ERRORED) |^    [^|]' "$scratch/report.out" || true

run=$(echo "$plain" | grep -Eo '^[0-9]+')
passed=$(echo "$plain" | grep -Eo '[0-9]+ passed' | grep -Eo '[0-9]+')
skipped=$(echo "$plain" | grep -Eo '[0-9]+ skipped' | grep -Eo '[0-9]+' || echo 0)
failed=$(echo "$plain" | grep -Eo '[0-9]+ failed' | grep -Eo '[0-9]+' || echo 0)
expected="$((run + skipped)) tests: $passed passed"
[ "$skipped" -gt 0 ] && expected="$expected, $skipped skipped"
[ "$failed" -gt 0 ] && expected="$expected, $failed failed"
if [ "$summary" != "$expected" ]; then
  if [ "$failed" -gt 0 ]; then
    echo "dogfood: the plain run failed; its output:" >&2
    grep -E -A40 '^\s+(FAIL|SIGSEGV|SIGABRT|TIMEOUT) ' "$scratch/plain.log" | head -n 200 >&2 || true
  fi
  echo "dogfood: MISMATCH: expected \`$expected\`, ciq reported \`$summary\`" >&2
  exit 1
fi
expected_status=0
[ "$failed" -gt 0 ] && expected_status=1
if [ "$status" -ne "$expected_status" ]; then
  echo "dogfood: the report exited $status, expected $expected_status; its stderr:" >&2
  cat "$scratch/report.err" >&2
  exit 1
fi
echo "dogfood: counts equal"
