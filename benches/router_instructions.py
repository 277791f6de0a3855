#!/usr/bin/env python3
"""Router instructions per request: a repeatable measure of the router's user-space cost.

Runs `wharf serve` (one router worker, plain HTTP) under valgrind's callgrind in front of the same
nginx backend as benches/router.py, warms it up for 3 s with wrk, zeroes the counters, drives it
for `--seconds` more, and prints the instructions executed per request served. Unlike requests per
second, the count does not drift with the machine's speed or load, so two builds compare exactly;
kernel time is not counted.

    python3 benches/router_instructions.py [--binary target/release/wharf] [--seconds 10] [--browser]
    python3 benches/router_instructions.py --http2 [--binary ...] [--seconds 10]

wrk's requests carry only a Host field; `--browser` adds the ten fields a browser sends with a
page request (user agent, accepts, cookie, referer, ...), about 600 bytes of head in all.

`--http2` drives the router's HTTPS listener with h2load instead (HTTP/2 by ALPN, 50 connections
of 10 concurrent streams, one thread, as benches/router.py's HTTP/2 scenario), 500 requests per
`--seconds` (a fixed count, not a duration): the count then includes TLS (rustls record
protection) and the HTTP/2 server (the `h2` crate). Each h2load run opens its 50 connections anew, so their
TLS handshakes are measured alone (50 connections, one request each) and taken out.

`--haproxy` measures HAProxy instead, in router.py's configuration (one thread) and with a P-256
certificate as Wharf's own, so that Wharf's count has a yardstick that the machine's load does not
move either (OpenSSL in place of rustls and ring; HAProxy writes no access line):

    python3 benches/router_instructions.py --haproxy [--http2]

`--cache-sim` has callgrind simulate the caches as well (valgrind's model of this machine's L1
instruction and data caches and last level), and prints each kind of miss per request (`I1mr`:
instruction fetches missing L1, `D1mr`/`D1mw`: data reads/writes missing L1, `ILmr`, `DLmr`,
`DLmw`: the same missing the last level): where hardware counters are not available (this
machine's VM exposes none to `perf`), the nearest measure of why two builds with alike
instruction counts take unlike CPU time.

Needs valgrind, nginx and wrk (h2load for `--http2`; Debian packages, installed when missing) and
a release build of Wharf (`cargo build --release`); `--haproxy` needs haproxy and openssl.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import router as bench  # noqa: E402  (the router benchmark's helpers)

TOKEN = "benchmark-admin-token-0123456789"

# What a browser sends beside Host when it asks for a page.
BROWSER_FIELDS = [
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",
    "Accept-Language: en-US,en;q=0.9",
    "Accept-Encoding: gzip, deflate, br",
    "Cookie: session=3f2a9c1e7b6d4e8fa0b1c2d3e4f5a6b7; theme=dark; _ga=GA1.1.123456789.1700000000",
    "Referer: https://bench-default.localhost/home",
    "Sec-Fetch-Mode: navigate",
    "Sec-Fetch-Site: same-origin",
    "Upgrade-Insecure-Requests: 1",
    "Cache-Control: max-age=0",
]


def start_wharf(tmp, backend, callgrind, binary, host):
    """`wharf serve` (one router worker) under callgrind, routing `host` to the backend; its
    process and its plain and TLS ports."""
    plain, api, tls = bench.free_port(), bench.free_port(), bench.free_port()
    env = {**os.environ,
           "WHARF_CONTROL_API__LISTEN": f"127.0.0.1:{api}",
           "WHARF_ROUTER__HTTP_LISTEN": f"127.0.0.1:{plain}",
           "WHARF_ROUTER__HTTPS_LISTEN": f"127.0.0.1:{tls}",
           "WHARF_ROUTER__INTERNAL_LISTEN": f"127.0.0.1:{bench.free_port()}",
           "WHARF_ROUTER__ADMIN_LISTEN": f"127.0.0.1:{bench.free_port()}",
           "WHARF_ROUTER__HTTP_REDIRECT": "false",
           "WHARF_ROUTER__WORKERS": "1",
           "WHARF_ADMIN_TOKEN": TOKEN,
           "WHARF_LOG": "warn"}
    proc = bench.spawn(callgrind + [binary, "serve", "--data-dir", os.path.join(tmp, "wharf")],
                       env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    bench.wait_port(api, 120)

    def call(method, path, body):
        req = urllib.request.Request(f"http://127.0.0.1:{api}{path}", method=method, data=json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {TOKEN}"})
        urllib.request.urlopen(req).read()

    call("POST", "/apps", {"name": "bench", "space": "default"})
    call("PUT", "/apps/bench-default/dynos/web.1", {"type": "web", "host": "127.0.0.1", "port": backend})
    return proc, plain, tls


def start_haproxy(tmp, backend, callgrind):
    """HAProxy (one thread, benches/router.py's configuration) under callgrind, with a P-256
    certificate like the one Wharf makes for itself; its process and its plain and TLS ports."""
    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-subj", "/CN=bench-default.localhost", "-days", "1", "-keyout", key, "-out", cert],
                   capture_output=True, check=True)
    proxy = bench.start_haproxy(tmp, backend, 1, cert, key, False, callgrind)
    return proxy.proc, proxy.plain, proxy.tls


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", default=os.path.join(bench.ROOT, "target", "release", "wharf"))
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--browser", action="store_true", help="send a browser's request fields too")
    parser.add_argument("--http2", action="store_true", help="HTTP/2 over TLS with h2load instead of wrk")
    parser.add_argument("--haproxy", action="store_true", help="measure HAProxy (router.py's configuration) instead")
    parser.add_argument("--cache-sim", action="store_true",
                        help="simulate the caches too (valgrind's model of this machine's): misses per request")
    args = parser.parse_args()
    bench.ensure_tools("valgrind")

    tmp = tempfile.mkdtemp()
    _, backend = bench.start_backend(tmp, False)
    out = os.path.join(tmp, "callgrind.out")
    callgrind = ["valgrind", "--tool=callgrind", "--compress-strings=no", f"--callgrind-out-file={out}"]
    if args.cache_sim:
        callgrind.insert(2, "--cache-sim=yes")
    host = "bench-default.localhost"
    if args.haproxy:
        proc, plain, tls = start_haproxy(tmp, backend, callgrind)
    else:
        proc, plain, tls = start_wharf(tmp, backend, callgrind, args.binary, host)
    url = f"http://127.0.0.1:{plain}/"
    deadline = time.time() + 60
    while time.time() < deadline:
        r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", f"Host: {host}", url],
                           capture_output=True, text=True)
        if r.stdout == "200":
            break
        time.sleep(0.2)

    fields = [f"Host: {host}"] + (BROWSER_FIELDS if args.browser else [])

    def load(seconds):
        if args.http2:
            # A fixed number of requests rather than a duration: the router's work per second
            # (timers, the snapshot's heartbeat) would otherwise be shared by however many
            # requests a loaded machine let valgrind serve.
            extra = [a for f in fields[1:] for a in ("-H", f)]
            r = subprocess.run([bench.tool("h2load"), "-t1", "-c50", "-m10", "-n", str(seconds * 500),
                                "-H", f":authority: {host}"] + extra + [f"https://127.0.0.1:{tls}/"],
                               capture_output=True, text=True, check=True).stdout
            m = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", r)
            if m.group(1) != m.group(2):
                sys.exit(f"h2load: not every request succeeded:\n{r}")
            return int(m.group(2))
        r = subprocess.run(["wrk", "-t1", "-c50", f"-d{seconds}s"] + [a for f in fields for a in ("-H", f)] + [url],
                           capture_output=True, text=True, check=True).stdout
        return int(re.search(r"(\d+) requests in", r).group(1))

    def measured(run, n):
        """Instructions the router executed during `run`, from the n-th callgrind dump."""
        subprocess.run(["callgrind_control", "-z", str(proc.pid)], capture_output=True, check=True)
        result = run()
        subprocess.run(["callgrind_control", "-d", str(proc.pid)], capture_output=True, check=True)
        dump = os.path.join(tmp, f"callgrind.out.{n}")
        deadline = time.time() + 30
        while not os.path.exists(dump) and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(1)
        text = open(dump).read()
        events = re.search(r"^events: (.*)$", text, re.M).group(1).split()
        counts = dict(zip(events, map(int, re.search(r"^summary: (.*)$", text, re.M).group(1).split())))
        measured.counts.append(counts)
        return result, counts["Ir"], dump

    measured.counts = []

    load(3)
    requests, total, dump = measured(lambda: load(args.seconds), 1)
    if args.haproxy:
        args.binary = "haproxy"
    kind = ("browser-like " if args.browser else "") + ("HTTP/2 requests" if args.http2 else "requests")
    if args.http2:
        # Each h2load run opens its 50 connections anew: their TLS handshakes are measured alone
        # (50 connections, one request each) and taken out, so the figure is a request's cost on
        # an open connection, as wrk's is.
        def handshakes():
            subprocess.run([bench.tool("h2load"), "-t1", "-c50", "-n50", "-H", f":authority: {host}",
                            f"https://127.0.0.1:{tls}/"], capture_output=True, text=True, check=True)
            return 50
        _, opening, _ = measured(handshakes, 2)
        print(f"{args.binary}: {requests} {kind}, {total} instructions, of which {opening} for 50 connections "
              f"with one request each; {(total - opening) // (requests - 50)} per request (callgrind output {dump})")
        if args.cache_sim:
            run, opening = measured.counts
            print("misses per request (simulated): " + ", ".join(
                f"{e} {(run[e] - opening[e]) / (requests - 50):.1f}" for e in run if e not in ("Ir", "Dr", "Dw")))
        return
    print(f"{args.binary}: {requests} {kind}, {total} instructions, {total // requests} per request")
    if args.cache_sim:
        run = measured.counts[0]
        print("misses per request (simulated): " + ", ".join(
            f"{e} {run[e] / requests:.1f}" for e in run if e not in ("Ir", "Dr", "Dw")))


if __name__ == "__main__":
    try:
        main()
    finally:
        bench.stop_all()
