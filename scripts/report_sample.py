#!/usr/bin/env python3
"""Sample data for `ciq report --html`: a simulated build as the HTML page's data document
(docs/report-html.md), and the page filled exactly as the producer fills it.

The build: N tests on W workers pulling from one queue (batch size B). The first worker leads:
it wins the election, lists, stages and commits; one follower loses an election on joining. One
worker is SIGKILLed mid-test (its test is cut off and taken over once its heartbeat lapses), one
test is flaky (fails, is requeued, passes elsewhere), one fails twice (its output holds
`<script>` and `</script><!--`), one errors, one quarantined test fails, and a few long tests at
the end of the queue make a tail. Ids with `<script>`, `<img onerror>`, `&` and quotes are among
the tests. Durations come from a seeded random draw, so a seed gives the same document.

    python3 scripts/report_sample.py [--tests 200] [--workers 4] [--batch-size 1] [--seed 1]
        [--running] [--partial] [--leader-dies] [--breaker] [--detail auto|full|aggregated]
        [--data FILE.json] [--html FILE.html] [--template src/report/html/template.html]

`--running` cuts the build off while it runs (`running: true`, attempts in flight); `--partial`
drops a worker's records from some moment on and says so in `partial`; `--leader-dies` kills
the first leader while it lists (another is elected once its lock lapses); `--breaker` stops a
worker with a breaker. `--detail` forces the
full or the aggregated form; `auto` applies the producer's rule (more than AGGREGATE_ATTEMPTS
attempts, or more than AGGREGATE_ID_BYTES of test ids: aggregated). This file is the reference
for the producer: `fill` is the escaping the producer must apply, `document` the facts it
precomputes.
"""
import argparse
import bisect
import collections
import datetime
import heapq
import json
import os
import random
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATE = os.path.join(ROOT, "src", "report", "html", "template.html")
PLACEHOLDER = "/*CIQ_REPORT_DATA*/null"

FORMAT = "ciq-report-html"
VERSION = 1
OUTCOMES = ["passed", "failed", "errored", "skipped", "requeued", "lost", "hedged", "running"]
CODE = {name: code for code, name in enumerate(OUTCOMES)}
QUIET = {CODE["passed"], CODE["skipped"]}

# The producer's rule: above either bound the attempts are aggregated (docs/report-html.md).
AGGREGATE_ATTEMPTS = 150_000
AGGREGATE_ID_BYTES = 8_000_000
# Bounds on what the page holds whatever the build's size.
OUTPUTS_MAX = 1_000
OUTPUTS_BYTES = 4_000_000
LISTED = 200
NOT_RUN_LISTED = 20
TOP = 20

HEARTBEAT_INTERVAL_MS = 5_000
LOCK_TTL_MS = 30_000
HEARTBEAT_TIMEOUT_MS = 30_000
POLL_MS = 1_000

HOSTILE = [
    'xss/<script>document.title="pwned-by-id"</script>',
    "xss/<img src=x onerror=\"document.title='pwned-by-img'\">",
    "quotes/\"double\" & 'single' &amp; <b>bold</b>",
    "xss/</script><!--<script>document.title='pwned-by-comment'</script>",
]
FAILING = "math/divide_by_zero"
FLAKY = "net/retry_backoff"
ERRORED = "io/read_timeout"
QUARANTINED = HOSTILE[0]
HOSTILE_OUTPUT = (
    "math/divide_by_zero: expected 'division by zero' error, got 'inf'\n"
    "  at examples/demo/math.rs:42\n"
    "  left: <script>document.title='pwned-by-output'</script>\n"
    "  got: <img src=x onerror=\"document.title='pwned-by-img-output'\">\n"
    "  right: </script><!-- <img src=x onerror=\"document.body.dataset.pwned=1\"> & more\n"
    "[ciq: exit code 1]"
)


def test_ids(n, rng):
    """N ids: a few named ones for the scenario, the hostile ones, the rest generated."""
    named = [FAILING, FLAKY, ERRORED] + HOSTILE
    modules = ["api", "billing", "auth", "db", "search", "ui", "jobs", "mail"]
    ids = list(named[:n])
    k = 0
    while len(ids) < n:
        module = modules[k % len(modules)]
        ids.append(f"tests/{module}/test_{module}_{k // len(modules):06d}.py::test_case_{k % 97}")
        k += 1
    return ids


def duration_ms(rng, scale):
    return max(1, int(rng.lognormvariate(0, 0.9) * scale))


class Sim:
    """Workers pulling batches from one queue, in server milliseconds from the first election."""

    def __init__(self, args):
        self.rng = random.Random(args.seed)
        self.args = args
        n, w = args.tests, args.workers
        self.ids = test_ids(n, self.rng)
        self.index = {t: i for i, t in enumerate(self.ids)}
        scale = args.scale_ms
        self.dur = [duration_ms(self.rng, scale) for _ in range(n)]
        # A long tail: a few slow tests at the end of the queue.
        self.order = list(range(n))
        self.rng.shuffle(self.order)
        named = {self.index[x] for x in (FAILING, FLAKY, ERRORED) + tuple(HOSTILE) if x in self.index}
        slow = [t for t in self.order if t not in named][-min(3, n):]
        for k, t in enumerate(slow):
            self.dur[t] = int(scale * (40 + 15 * k))
        self.workers = [f"ci-{k + 1}" for k in range(w)]
        self.hosts = [f"runner-{(k // 2) + 1}" for k in range(w)]
        # Attempts, columnar.
        self.a_test, self.a_worker, self.a_start, self.a_end = [], [], [], []
        self.a_outcome, self.a_batch = [], []
        self.outputs = {}
        self.events = []
        self.final = {}
        self.requeues = collections.Counter()
        self.batches = 0
        self.queue_empty_ms = None
        self.stopped = []

    def attempt(self, t, w, start, end, outcome, batch):
        self.a_test.append(t)
        self.a_worker.append(w)
        self.a_start.append(start)
        self.a_end.append(end)
        self.a_outcome.append(CODE[outcome])
        self.a_batch.append(batch)
        return len(self.a_test) - 1

    def emit_takeovers(self, takeovers, tests, t, k):
        """The take-over events of `tests`, which worker `k` took over at `t`; the next attempt
        recorded is the taker's."""
        for item in takeovers:
            if item[1] not in tests:
                continue
            self.events.append({"t": t, "kind": "takeover", "worker": k, "from": item[3],
                                "test": item[1], "attempt": item[2], "next": len(self.a_test)})
            if self.leave[item[3]] != "silent":
                self.left[item[3]] = t
                self.leave[item[3]] = "silent"
                self.events.append({"t": t, "kind": "leave", "worker": item[3], "how": "silent"})

    def run(self):
        args, rng = self.args, self.rng
        n, w = len(self.ids), len(self.workers)
        joined = [0] + [rng.randint(300, 2500) for _ in range(w - 1)]
        self.joined = joined
        self.left = [None] * w
        self.leave = [None] * w
        self.last_seen = [None] * w
        for k in range(w):
            self.events.append({"t": joined[k], "kind": "join", "worker": k})
        # The leader: worker 0, or, when it dies while listing, worker 1 once its lock lapsed.
        lead, t_lead = 0, 0
        if args.leader_dies and w >= 2:
            died = 1500
            self.events.append({"t": 0, "kind": "election", "worker": 0, "result": "won",
                                "generation": "0b1e55ed"})
            self.events.append({"t": 40, "end": None, "kind": "listing", "worker": 0, "count": None})
            lead, t_lead = 1, died + LOCK_TTL_MS
            self.last_seen[0], self.left[0], self.leave[0] = died, t_lead, "silent"
            self.events.append({"t": t_lead, "kind": "leave", "worker": 0, "how": "silent"})
            self.events.append({"t": t_lead, "kind": "election", "worker": 1, "result": "leader-died"})
        self.lead = lead
        listing_end = t_lead + 40 + max(200, n // 50)
        staging_end = listing_end + 20 + n // 400
        commit = staging_end + 5
        self.events.extend([
            {"t": t_lead, "kind": "election", "worker": lead, "result": "won", "generation": "3f2a9c0e"},
            {"t": t_lead + 40, "end": listing_end, "kind": "listing", "worker": lead, "count": n},
            {"t": listing_end + 20, "end": staging_end, "kind": "staging", "worker": lead, "count": n},
            {"t": commit, "kind": "commit", "worker": lead, "count": n},
        ])
        follower = lead + 1
        if follower < w:
            self.events.append({"t": max(joined[follower], t_lead), "kind": "election",
                                "worker": follower, "result": "lost"})
        killed = w - 1 if w >= 3 and w - 1 > lead else None
        # A breaker stops the worker after the killed one's neighbour at a third of its share.
        breaker = w - 2 if args.breaker and w - 2 > lead else None
        breaker_after = max(1, int(n / w * 0.3))
        done_by = collections.Counter()
        total_work = sum(self.dur) / max(1, w)
        # The killed worker dies in the middle of its m-th test.
        self.kill_nth = max(1, int(n / w * 0.4)) if killed is not None else None
        self.kill_at = None
        done_by_killed = 0
        self.killed = killed
        cut_at = None
        if args.running:
            cut_at = int(commit + total_work * 0.6)
        self.cut_at = cut_at

        queue = collections.deque(self.order)
        failing = {self.index[x] for x in (FAILING, QUARANTINED) if x in self.index}
        flaky = self.index.get(FLAKY)
        errored = self.index.get(ERRORED)
        attempts_of = collections.Counter()
        lost = []  # (available at, test, cut attempt, from worker)
        running = {}  # worker -> end of its current batch
        heap = [(max(joined[k], commit), k) for k in range(w) if not (k == 0 and lead == 1)]
        heapq.heapify(heap)
        just_requeued = {}
        while heap:
            t, k = heapq.heappop(heap)
            if cut_at is not None and t >= cut_at:
                continue
            running.pop(k, None)
            if k == breaker and done_by[k] >= breaker_after:
                self.events.append({"t": t, "kind": "breaker", "worker": k,
                                    "reason": "5 failures in a row outside the test (the runner "
                                              "could not start)"})
                self.events.append({"t": t, "kind": "leave", "worker": k, "how": "breaker"})
                self.left[k], self.leave[k], self.last_seen[k] = t, "breaker", t
                self.stopped.append(f"worker {self.workers[k]}: a breaker tripped after 5 "
                                    "failures in a row outside the test (the runner could not start)")
                continue
            batch = []
            takeovers = []
            for item in sorted(lost):
                if item[0] <= t and len(batch) < args.batch_size:
                    lost.remove(item)
                    batch.append(item[1])
                    takeovers.append(item)
            while queue and len(batch) < args.batch_size:
                # A worker does not take back a test it just requeued while others can.
                if just_requeued.get(queue[0]) == k and w > 1 and len(queue) > 1:
                    test = queue[1]
                    del queue[1]
                else:
                    test = queue.popleft()
                batch.append(test)
            if not queue and self.queue_empty_ms is None and batch:
                self.queue_empty_ms = t
            if not batch:
                if lost or running:
                    heapq.heappush(heap, (t + POLL_MS, k))
                else:
                    self.left[k] = t
                    self.leave[k] = "drained"
                    self.last_seen[k] = t
                continue
            self.batches += 1
            b = self.batches
            clock = t + rng.randint(1, 3)
            batch_end = clock + sum(self.dur[test] for test in batch)
            # A batch is acknowledged at its end: one cut short (its worker killed, or the build
            # still running) has only its reservation recorded, the same start for every test.
            if k == killed and self.kill_at is None and done_by_killed + len(batch) >= self.kill_nth:
                at = self.kill_nth - done_by_killed - 1
                self.kill_at = clock + sum(self.dur[x] for x in batch[:at]) + self.dur[batch[at]] // 2
                seen = clock + ((self.kill_at - clock) // HEARTBEAT_INTERVAL_MS) * HEARTBEAT_INTERVAL_MS
                self.last_seen[k] = seen
                for test in batch:
                    attempts_of[test] += 1
                    self.emit_takeovers(takeovers, [test], t, k)
                    a = self.attempt(test, k, clock, None, "lost", b)
                    lost.append((seen + HEARTBEAT_TIMEOUT_MS, test, a, k))
                continue
            if cut_at is not None and batch_end > cut_at:
                for test in batch:
                    self.emit_takeovers(takeovers, [test], t, k)
                    self.attempt(test, k, clock, None, "running", b)
                continue
            if k == killed:
                done_by_killed += len(batch)
            done_by[k] += len(batch)
            for test in batch:
                start = clock
                end = start + self.dur[test]
                attempts_of[test] += 1
                nth = attempts_of[test]
                self.emit_takeovers(takeovers, [test], t, k)
                if test in failing or (test == flaky and nth == 1):
                    requeue = nth == 1
                    outcome = "requeued" if requeue else "failed"
                    a = self.attempt(test, k, start, end, outcome, b)
                    self.outputs[a] = (HOSTILE_OUTPUT if self.ids[test] == FAILING
                                       else f"{self.ids[test]}: assertion failed (attempt {nth})\n"
                                            f"  expected <ok>, got <{self.ids[test]}>")
                    if requeue:
                        self.requeues[test] += 1
                        self.events.append({"t": end, "kind": "requeue", "worker": k, "test": test,
                                            "attempt": a})
                        queue.appendleft(test)
                        just_requeued[test] = k
                    else:
                        self.final[test] = ("failed", a)
                elif test == errored:
                    a = self.attempt(test, k, start, end, "errored", b)
                    self.outputs[a] = f"{self.ids[test]}: timed out after {self.dur[test]} ms\n[ciq: killed the process group]"
                    self.final[test] = ("errored", a)
                else:
                    a = self.attempt(test, k, start, end, "passed", b)
                    self.final[test] = ("flaky" if test == flaky else "passed", a)
                clock = end
            running[k] = clock
            heapq.heappush(heap, (clock + rng.randint(0, 2), k))
        self.pending_lost = lost
        self.remaining = list(queue) + [item[1] for item in lost]


def span_union(starts_ends):
    total, cur_s, cur_e = 0, None, None
    for s, e in sorted(starts_ends):
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                total += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None:
        total += cur_e - cur_s
    return total


def document(sim, args):
    """The data document, every fact precomputed as the producer will."""
    n_att = len(sim.a_test)
    w = len(sim.workers)
    now = sim.cut_at
    ends = [e for e in sim.a_end if e is not None]
    end_of_build = max(ends + [x for x in sim.left if x is not None] + [0])
    if now is not None:
        end_of_build = now
    makespan = end_of_build

    # Cut attempts end, for the facts, at their take-over (or the worker's last heartbeat).
    cut_at = {}
    for ev in sim.events:
        if ev["kind"] == "takeover":
            cut_at[ev["attempt"]] = ev["t"]

    def effective_end(a):
        e = sim.a_end[a]
        if e is not None:
            return e
        if a in cut_at:
            return cut_at[a]
        if sim.a_outcome[a] == CODE["running"]:
            return now
        return sim.last_seen[sim.a_worker[a]] or sim.a_start[a]

    # Partial: worker 2's attempt records from 70% of the build on were lost.
    partial = []
    dropped = set()
    if args.partial and w >= 2:
        victim = 1
        from_ms = int(makespan * 0.7)
        dropped = {a for a in range(n_att) if sim.a_worker[a] == victim and sim.a_start[a] >= from_ms}
        partial.append({
            "part": "attempts", "worker": victim, "from_ms": from_ms,
            "detail": f"attempt records of worker {sim.workers[victim]} from "
                      f"{from_ms // 60000}:{from_ms // 1000 % 60:02d} on were lost "
                      "(evicted from Redis before the report read them)",
        })

    # Counts and the summary, from final outcomes.
    counts = collections.Counter(o for o, _ in sim.final.values())
    total = len(sim.ids)
    not_run = [sim.ids[t] for t in range(total) if t not in sim.final]
    quarantined_ids = {QUARANTINED}
    failing, quarantined, flaky = [], [], []
    for t, (outcome, a) in sorted(sim.final.items(), key=lambda kv: sim.ids[kv[0]]):
        if outcome not in ("failed", "errored", "flaky"):
            continue
        fail_a = a
        if outcome == "flaky":
            fail_a = max(x for x in range(n_att) if sim.a_test[x] == t and sim.a_outcome[x] == CODE["requeued"])
        entry = {
            "id": sim.ids[t], "outcome": outcome, "worker": sim.workers[sim.a_worker[fail_a]],
            "duration_ms": effective_end(fail_a) - sim.a_start[fail_a],
            "requeues": sim.requeues[t], "attempt": None if fail_a in dropped else fail_a,
        }
        if outcome == "flaky":
            flaky.append(entry)
            continue
        entry["output"] = sim.outputs.get(fail_a)
        entry["often_flaky"] = "3 of the last 20 builds" if sim.ids[t] == FAILING else None
        (quarantined if sim.ids[t] in quarantined_ids else failing).append(entry)
    failed_count = counts["failed"] + counts["errored"]
    if now is not None:
        verdict = "failed" if failing else ("incomplete" if not_run else "green")
    elif failed_count > len(quarantined):
        verdict = "failed"
    elif not_run:
        verdict = "incomplete"
    else:
        verdict = "green"
    verdict_line = {"green": "green", "failed": "failed",
                    "incomplete": "incomplete (tests not run)"}[verdict]
    taken_over = sum(1 for ev in sim.events if ev["kind"] == "takeover")
    requeued = sum(sim.requeues.values())
    line = f"{total} tests:"
    first = True
    for name in ("passed", "flaky", "skipped", "failed", "errored"):
        if counts[name] or name == "passed":
            line += f"{'' if first else ','} {counts[name]} {name}"
            first = False
    if not_run:
        line += f", {len(not_run)} not run"
    if requeued:
        line += f"; {requeued} requeued"
    if taken_over:
        line += f"; {taken_over} taken over from lost workers"
    if quarantined:
        line += f"; {len(quarantined)} of the failures quarantined"
    warnings = []
    if quarantined and not failing:
        warnings.append("every failure of this build is quarantined: it is green only because "
                        "of --quarantine")
    if taken_over:
        warnings.append(f"{taken_over} test(s) were taken over from a worker that went silent "
                        f"(heartbeat timeout {HEARTBEAT_TIMEOUT_MS // 1000}s)")
    summary = {
        "verdict": verdict, "verdict_line": verdict_line,
        "counts": {"total": total, "passed": counts["passed"], "flaky": counts["flaky"],
                   "skipped": counts["skipped"], "failed": counts["failed"],
                   "errored": counts["errored"], "not_run": len(not_run),
                   "requeued": requeued, "taken_over": taken_over},
        "counts_line": line,
        "failing": failing[:LISTED], "failing_more": max(0, len(failing) - LISTED),
        "quarantined": quarantined, "ready_to_leave": [], "ready_after": 20,
        "flaky": flaky[:LISTED], "flaky_more": max(0, len(flaky) - LISTED),
        "not_run": not_run[:NOT_RUN_LISTED], "not_run_count": len(not_run),
        "stopped": sim.stopped, "mismatches": [], "warnings": warnings,
    }

    # Why it took this long.
    live = [a for a in range(n_att) if a not in dropped]
    by_worker = [[] for _ in range(w)]
    for a in live:
        by_worker[sim.a_worker[a]].append(a)
    durations = {a: effective_end(a) - sim.a_start[a] for a in live}
    # The work: attempts that ended (a cut-off attempt's time is waste, not work).
    ended = [a for a in live if sim.a_end[a] is not None]
    test_time = sum(durations[a] for a in ended)
    busy_workers = len({sim.a_worker[a] for a in live})
    longest_a = max(ended, key=lambda a: durations[a]) if ended else None
    longest = durations[longest_a] if ended else 0
    average_bound = test_time // max(1, busy_workers)
    qe = sim.queue_empty_ms
    tail_attempts = [a for a in live if qe is not None and effective_end(a) > qe]
    tail_attempts.sort(key=lambda a: -(effective_end(a) - max(sim.a_start[a], qe)))
    rng = random.Random(args.seed + 1)
    per_test = {}
    for a in live:
        t = sim.a_test[a]
        if sim.a_end[a] is not None and durations[a] >= per_test.get(t, (0, None))[0]:
            per_test[t] = (durations[a], a)
    slowest = sorted(per_test.items(), key=lambda kv: -kv[1][0])[:TOP]
    usual = {}
    for t, (ms, a) in per_test.items():
        if rng.random() < 0.9:
            usual[t] = int(ms / (rng.choice([1, 1, 1, 1.6, 2.5]) * rng.uniform(0.9, 1.1)))

    def timed(t, ms, a):
        u = usual.get(t)
        return {"id": sim.ids[t], "ms": ms, "usual_ms": u,
                "drift": None if not u else round((ms - u) / u, 3), "attempt": a}

    drifted = [timed(t, ms, a) for t, (ms, a) in per_test.items()
               if usual.get(t) and ms - usual[t] >= 1000 and (ms - usual[t]) / usual[t] >= 0.25]
    drifted.sort(key=lambda x: -(x["ms"] - x["usual_ms"]))
    idle = []
    for k in range(w):
        # A worker is there from its join until it left, or until its last heartbeat when it
        # went silent; busy while it held a test.
        there = sim.left[k] if sim.left[k] is not None else makespan
        if sim.leave[k] == "silent" and sim.last_seen[k] is not None:
            there = sim.last_seen[k]
        spans = [(sim.a_start[a], min(effective_end(a), there)) for a in by_worker[k]]
        spans = [(s, e) for s, e in spans if e > s]
        busy = span_union(spans)
        joined = sim.joined[k]
        left = there
        gone = joined + max(0, makespan - left)
        idle_ms = max(0, makespan - busy - gone)
        after = 0
        if qe is not None:
            after_window = max(0, min(left, makespan) - max(qe, joined))
            after = max(0, after_window - span_union([(max(s, qe), e) for s, e in spans if e > qe]))
        idle.append({"worker": k, "busy_ms": busy, "idle_ms": idle_ms, "gone_ms": gone,
                     "idle_after_queue_empty_ms": after,
                     "share": round(idle_ms / makespan, 4) if makespan else 0})
    first_test = min((sim.a_start[a] for a in live), default=None)
    analysis = {
        "makespan_ms": makespan, "test_time_ms": test_time, "workers": busy_workers,
        "average_bound_ms": average_bound, "longest_ms": longest,
        "longest_test": sim.ids[sim.a_test[longest_a]] if ended else None,
        "lower_bound_ms": max(average_bound, longest),
        "first_test_ms": first_test, "queue_empty_ms": qe,
        "tail_ms": max(0, makespan - qe) if qe is not None else 0,
        "tail_count": len(tail_attempts),
        "tail": [{"id": sim.ids[sim.a_test[a]], "worker": sim.a_worker[a], "attempt": a,
                  "start_ms": sim.a_start[a], "end_ms": sim.a_end[a],
                  "ms": effective_end(a) - sim.a_start[a]} for a in tail_attempts[:TOP]],
        "idle": idle,
        "slowest": [timed(t, ms, a) for t, (ms, a) in slowest],
        "drifted": drifted[:TOP],
    }

    # Histogram of attempt durations, 1-2-5 buckets.
    bounds = []
    b = 1
    top = max([durations[a] for a in ended] + [1])
    while b <= top:
        for m in (1, 2, 5):
            bounds.append(b * m)
        b *= 10
    hist = [0] * (len(bounds) + 1)
    for a in ended:
        hist[bisect.bisect_right(bounds, durations[a])] += 1

    # Which attempts stay single: everything that is not a quiet pass, what events, the summary
    # and the analysis name; the rest may be merged into runs.
    id_bytes = sum(len(json.dumps(t, ensure_ascii=False)) + 1 for t in sim.ids)
    if args.detail == "auto":
        aggregated = len(live) > AGGREGATE_ATTEMPTS or id_bytes > AGGREGATE_ID_BYTES
    else:
        aggregated = args.detail == "aggregated"
    named = set()
    for ev in sim.events:
        for key in ("attempt", "next"):
            if ev.get(key) is not None:
                named.add(ev[key])
    for entry in summary["failing"] + summary["quarantined"] + summary["flaky"]:
        if entry["attempt"] is not None:
            named.add(entry["attempt"])
    for entry in analysis["tail"] + analysis["slowest"] + analysis["drifted"]:
        named.add(entry["attempt"])
    keep = [a for a in live if not aggregated or a in named or sim.a_outcome[a] not in QUIET]
    runs = None
    merge_gap = max(1, makespan // 10_000)
    max_run = max(1, makespan // 1_000)
    if aggregated:
        keep_set = set(keep)
        runs = {"worker": [], "start": [], "end": [], "count": [], "busy": []}
        for k in range(w):
            mine = sorted(by_worker[k], key=lambda a: sim.a_start[a])
            cur = None
            for a in mine:
                if a in keep_set:
                    cur = None
                    continue
                s, e = sim.a_start[a], sim.a_end[a]
                if cur is not None and s - runs["end"][cur] <= merge_gap and e - runs["start"][cur] <= max_run:
                    runs["end"][cur] = e
                    runs["count"][cur] += 1
                    runs["busy"][cur] += e - s
                else:
                    for key, v in (("worker", k), ("start", s), ("end", e), ("count", 1), ("busy", e - s)):
                        runs[key].append(v)
                    cur = len(runs["worker"]) - 1
    # Renumber the kept attempts, and the test table to the tests they name.
    keep.sort(key=lambda a: (sim.a_start[a], sim.a_worker[a]))
    new_index = {a: i for i, a in enumerate(keep)}
    tests_used = sorted({sim.a_test[a] for a in keep} | {ev["test"] for ev in sim.events if "test" in ev})
    test_index = {t: i for i, t in enumerate(tests_used)}
    attempts = {
        "test": [test_index[sim.a_test[a]] for a in keep],
        "worker": [sim.a_worker[a] for a in keep],
        "start": [sim.a_start[a] for a in keep],
        "end": [sim.a_end[a] for a in keep],
        "outcome": [sim.a_outcome[a] for a in keep],
        "batch": [sim.a_batch[a] for a in keep],
    }

    def renumber(a):
        return new_index.get(a) if a is not None else None

    outputs, outputs_bytes, omitted = {}, 0, 0
    for a in sorted(sim.outputs, key=lambda a: (a not in named, a)):
        if a not in new_index:
            continue
        text = sim.outputs[a]
        if len(outputs) >= OUTPUTS_MAX or outputs_bytes + len(text) > OUTPUTS_BYTES:
            omitted += 1
            continue
        outputs[str(new_index[a])] = text
        outputs_bytes += len(text)
    events = []
    for ev in sorted(sim.events, key=lambda ev: ev["t"]):
        if now is not None and ev["t"] > now:
            continue
        ev = dict(ev)
        for key in ("attempt", "next"):
            if key in ev:
                ev[key] = renumber(ev[key])
        if "test" in ev:
            ev["test"] = test_index[ev["test"]]
        events.append(ev)
    for entry in summary["failing"] + summary["quarantined"] + summary["flaky"]:
        entry["attempt"] = renumber(entry["attempt"])
    for entry in analysis["tail"] + analysis["slowest"] + analysis["drifted"]:
        entry["attempt"] = renumber(entry["attempt"])
    per_worker = collections.Counter(sim.a_worker[a] for a in live)
    workers = [{
        "id": sim.workers[k], "host": sim.hosts[k], "leader": k == sim.lead,
        "joined_ms": sim.joined[k], "left_ms": sim.left[k], "leave": sim.leave[k],
        "last_seen_ms": sim.last_seen[k], "attempts": per_worker[k],
    } for k in range(w)]
    t0 = datetime.datetime(2025, 1, 7, 10, 12, 3, 120000, tzinfo=datetime.timezone.utc)
    generated = t0 + datetime.timedelta(milliseconds=now if now is not None else makespan + 900)
    iso = lambda d: d.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {
        "format": FORMAT, "version": VERSION,
        "build": "7421", "namespace": "sample",
        "started_at": iso(t0), "generated_at": iso(generated),
        "generated_ms": now if now is not None else makespan,
        "running": now is not None, "partial": partial,
        "settings": {"heartbeat_timeout_ms": HEARTBEAT_TIMEOUT_MS, "batch_size": args.batch_size},
        "summary": summary, "analysis": analysis,
        "workers": workers, "tests": [sim.ids[t] for t in tests_used],
        "outcomes": OUTCOMES,
        "detail": "aggregated" if aggregated else "full",
        "aggregation": {"attempts_total": len(live), "merge_gap_ms": merge_gap,
                        "max_run_ms": max_run} if aggregated else None,
        "attempts": attempts, "runs": runs,
        "outputs": outputs, "outputs_omitted": omitted,
        "histogram": {"bounds_ms": bounds, "counts": hist},
        "events": events,
    }


def escape(text):
    """The JSON text as it may stand inside <script type="application/json">: `<`, `>` and `&`
    as \\u escapes (so `</script>` and `<!--` can never occur), and the two line separators
    some parsers treat as newlines."""
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def fill(template, data):
    """The page: the template with its one placeholder replaced by the escaped JSON."""
    if template.count(PLACEHOLDER) != 1:
        sys.exit(f"the template must hold the placeholder {PLACEHOLDER} exactly once")
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return template.replace(PLACEHOLDER, escape(text), 1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tests", type=int, default=200)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--scale-ms", type=int, default=300,
                        help="median test duration in ms (default 300)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--running", action="store_true")
    parser.add_argument("--partial", action="store_true")
    parser.add_argument("--leader-dies", action="store_true",
                        help="the first leader dies while listing; another is elected")
    parser.add_argument("--breaker", action="store_true",
                        help="a breaker stops one worker a third of the way through")
    parser.add_argument("--detail", choices=["auto", "full", "aggregated"], default="auto")
    parser.add_argument("--data", help="write the data document here")
    parser.add_argument("--html", help="write the filled page here")
    parser.add_argument("--template", default=TEMPLATE)
    args = parser.parse_args()
    if args.tests < 10 or args.workers < 1 or args.batch_size < 1:
        sys.exit("report_sample.py: need --tests >= 10, --workers >= 1, --batch-size >= 1")
    sim = Sim(args)
    sim.run()
    data = document(sim, args)
    if args.data:
        with open(args.data, "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False, separators=(",", ":"))
    if args.html:
        with open(args.template, encoding="utf-8") as f:
            template = f.read()
        with open(args.html, "w", encoding="utf-8") as f:
            f.write(fill(template, data))
    if not args.data and not args.html:
        json.dump(data, sys.stdout, ensure_ascii=False, indent=1)


if __name__ == "__main__":
    main()
