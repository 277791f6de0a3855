#!/usr/bin/env python3
"""Router system calls per HTTP/2 request: what the kernel does for Wharf beside HAProxy.

`benches/router_instructions.py` counts the router's user-space instructions; this counts what
it asks of the kernel. Wharf (one or more builds) and HAProxy (benches/router.py's
configuration, one thread) run in front of the same nginx backend, unpinned, and each in turn
serves `--requests` HTTP/2 requests from h2load (50 connections of 10 streams, one thread, as
router.py's HTTP/2 scenario) while `perf stat` is attached to it. Printed per request: system
calls (the `raw_syscalls:sys_enter` tracepoint), the process's CPU time (`task-clock`: user and
kernel; and split into the two from /proc/PID/stat, in clock ticks of 10 ms), the waits
(`epoll_wait`), reads, writes and `futex` calls among the system calls (their `sys_enter_`
tracepoints), context switches, and for Wharf the new connections it opened to the dyno
(`wharf_router_upstream_connections_total{kind="new"}` from its admin listener).

    python3 benches/router_syscalls.py [--binary target/release/wharf[,OTHER,...]]
                                       [--requests 100000] [--repeat 1]

System calls, context switches and new connections are counts, so they compare across runs on
a loaded machine; CPU time does not (another process's work evicts the proxy's caches), so only
side by side in one run, and only roughly. Needs perf (Debian's linux-perf), run as root or with
kernel.perf_event_paranoid at most 1 for the tracepoint, and nginx, haproxy and h2load.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import router as bench  # noqa: E402  (the router benchmark's helpers)

EVENTS = "task-clock,raw_syscalls:sys_enter,context-switches,page-faults"

# The system calls that say how a proxy waits, reads and writes, counted one by one: a proxy
# that writes per stream where another coalesces, or wakes more often, shows here.
CALLS = {
    "waits": ("epoll_wait", "epoll_pwait"),
    "reads": ("read", "recvfrom", "recvmsg"),
    "writes": ("write", "writev", "sendto", "sendmsg"),
    "futex": ("futex",),
}
CALL_EVENTS = ",".join(f"syscalls:sys_enter_{c}" for calls in CALLS.values() for c in calls)


def cpu_ticks(pid):
    """The process's user and system CPU time so far (all its threads), in seconds."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def h2load(proxy, requests):
    """Drives `proxy` with `requests` HTTP/2 requests; its requests per second."""
    out = subprocess.run([bench.tool("h2load"), "-t1", "-c50", "-m10", "-n", str(requests),
                          "-H", f":authority: {proxy.host}", f"https://127.0.0.1:{proxy.tls}/"],
                         capture_output=True, text=True, check=True).stdout
    m = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out)
    if m.group(1) != m.group(2):
        sys.exit(f"h2load: not every request succeeded:\n{out}")
    return float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out).group(1))


def new_connections(proxy):
    """The dyno connections a Wharf opened so far; 0 for HAProxy."""
    if proxy.admin is None:
        return 0
    text = urllib.request.urlopen(f"http://127.0.0.1:{proxy.admin}/metrics").read().decode()
    return int(re.search(r'upstream_connections_total\{kind="new"\} (\d+)', text).group(1))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", default=os.path.join(bench.ROOT, "target", "release", "wharf"),
                        help="Wharf builds to measure, separated by commas")
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    bench.ensure_tools("perf")
    tmp = tempfile.mkdtemp(prefix="wharf-syscalls-")
    try:
        _, backend = bench.start_backend(tmp, False)
        proxies = []
        for i, binary in enumerate(args.binary.split(",")):
            # Each Wharf gets its own internal and admin listeners, so that several (and other
            # benchmarks' routers) can run at once.
            admin = bench.free_port()
            os.environ["WHARF_ROUTER__INTERNAL_LISTEN"] = f"127.0.0.1:{bench.free_port()}"
            os.environ["WHARF_ROUTER__ADMIN_LISTEN"] = f"127.0.0.1:{admin}"
            data = os.path.join(tmp, f"wharf-{i}")
            os.makedirs(data)
            proxy, tls_dir = bench.start_wharf(data, backend, 1, False, binary)
            proxy.name, proxy.admin = binary, admin
            proxies.append(proxy)
        cert, key = os.path.join(tls_dir, "localhost.pem"), os.path.join(tls_dir, "localhost.key")
        haproxy = bench.start_haproxy(tmp, backend, 1, cert, key, False)
        haproxy.admin = None
        proxies.append(haproxy)
        for p in proxies:
            h2load(p, 20_000)  # warm up: connections, pools, caches
        print(f"{args.requests} HTTP/2 requests each (h2load -t1 -c50 -m10), per request:")
        print("| proxy | req/s | CPU µs | user µs | system µs | system calls | "
              + " | ".join(CALLS) + " | context switches | page faults | new dyno connections |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in CALLS) + " | ---: | ---: | ---: |")
        for _ in range(args.repeat):
            for p in proxies:
                out = os.path.join(tmp, "perf-stat.csv")
                opened = new_connections(p)
                perf = subprocess.Popen(["perf", "stat", "-x,", "-o", out, "-e", f"{EVENTS},{CALL_EVENTS}",
                                         "-p", str(p.proc.pid)])
                time.sleep(0.5)  # perf attaches to every thread before the load starts
                user, system = cpu_ticks(p.proc.pid)
                rps = h2load(p, args.requests)
                user_after, system_after = cpu_ticks(p.proc.pid)
                perf.send_signal(2)
                perf.wait()
                counts = {}
                for line in open(out):
                    fields = line.strip().split(",")
                    if len(fields) > 2 and re.fullmatch(r"[\d.]+", fields[0]):
                        counts[fields[2]] = float(fields[0])
                n = args.requests
                calls = " | ".join(f"{sum(counts.get(f'syscalls:sys_enter_{c}', 0) for c in cs) / n:.3f}"
                                   for cs in CALLS.values())
                print(f"| {p.name} | {rps:.0f} | {counts['task-clock'] * 1000 / n:.2f} "
                      f"| {(user_after - user) * 1e6 / n:.2f} | {(system_after - system) * 1e6 / n:.2f} "
                      f"| {counts['raw_syscalls:sys_enter'] / n:.2f} | {calls} | {counts['context-switches'] / n:.3f} "
                      f"| {counts['page-faults'] / n:.3f} "
                      f"| {(new_connections(p) - opened) / n:.4f} |", flush=True)
    finally:
        bench.stop_all()


if __name__ == "__main__":
    main()
