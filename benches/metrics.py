#!/usr/bin/env python3
"""Dyno metrics benchmark: what sampling 100 dynos every second costs `wharf serve`.

Starts `wharf serve` in a temporary data directory with one app whose worker formation runs
100 sleeping dynos (`exec sleep 100000`; each its own process group, so each is sampled: one
`/proc/PID/stat` of every process on the machine per second, plus `status` and `io` of each
dyno's process), and measures Wharf's CPU time (utime + stime of every thread, from
`/proc/PID/stat`) over a window. It then scales the worker to 0 and measures the same window
again: the difference is what 100 idle dynos cost, which is the sampler (the dynos write
nothing, and their health needs no check). The result is that difference in percent of one core,
and the time `GET /apps/bench-default/metrics` takes to answer an hour-long query for them.

    python3 benches/metrics.py [--dynos 100] [--window 60] [--wharf target/debug/wharf]

The machine is shared with other builds while it runs, so the two windows are measured one
after the other in one run, and the difference is reported with both figures. A debug build of
Wharf is the upper bound (unoptimised code); a release build can only be cheaper.
"""

import argparse
import json
import os
import sys
import time
import urllib.request

from wharf_process import WharfProcess

HZ = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / HZ


class Wharf:
    def __init__(self, binary):
        started = WharfProcess(binary, {"WHARF_SUPERVISOR__STOP_GRACE": "1s"}, prefix="wharf-bench-metrics-")
        self.proc, self.api, self.token = started.proc, started.api, started.token
        self.call("POST", "/apps", {"name": "bench", "space": "default"})

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.api + path, method=method, data=data,
                                     headers={"Authorization": "Bearer " + self.token,
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req) as r:
            text = r.read()
            return json.loads(text) if text else None

    def scale(self, n):
        self.call("PATCH", "/apps/bench-default/formation",
                  {"updates": [{"type": "worker", "quantity": n, "command": "exec sleep 100000"}]})
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            dynos = self.call("GET", "/apps/bench-default/dynos")
            if len([d for d in dynos if d["state"] == "up"]) == n and len(dynos) == n:
                return
            time.sleep(0.5)
        sys.exit(f"the formation did not reach {n} dynos")

    def window(self, seconds):
        before = cpu_seconds(self.proc.pid)
        start = time.monotonic()
        time.sleep(seconds)
        return (cpu_seconds(self.proc.pid) - before) / (time.monotonic() - start) * 100

    def stop(self):
        self.proc.terminate()
        self.proc.wait(60)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dynos", type=int, default=100)
    ap.add_argument("--window", type=float, default=60)
    ap.add_argument("--wharf", default="target/debug/wharf")
    args = ap.parse_args()
    wharf = Wharf(args.wharf)
    try:
        wharf.scale(args.dynos)
        time.sleep(3)  # past the dynos' first samples
        with_dynos = wharf.window(args.window)
        start = time.monotonic()
        answer = wharf.call("GET", "/apps/bench-default/metrics")
        query_ms = (time.monotonic() - start) * 1000
        sampled = len(answer["dynos"])
        wharf.scale(0)
        time.sleep(3)
        without = wharf.window(args.window)
    finally:
        wharf.stop()
    print(f"dynos sampled: {sampled}")
    print(f"wharf CPU with {args.dynos} sleeping dynos: {with_dynos:.2f}% of a core")
    print(f"wharf CPU with none:                 {without:.2f}% of a core")
    print(f"sampling {args.dynos} dynos each second: {with_dynos - without:.2f}% of a core")
    print(f"GET /apps/bench-default/metrics (last hour, {sampled} dynos): {query_ms:.0f} ms")


if __name__ == "__main__":
    main()
