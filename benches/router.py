#!/usr/bin/env python3
"""Router benchmark: Wharf's router beside nginx and HAProxy, in one run.

A small nginx backend answers every request with a short body. Wharf, nginx and HAProxy each
proxy to it with the same number of worker threads, and wrk drives each in turn:

  - HTTP/1.1 keep-alive, 50 connections, plain HTTP;
  - the same over TLS;
  - new TLS connections (every request on a fresh connection: handshake rate);
  - HTTP/2 over TLS, driven by h2load instead: 50 connections of 10 concurrent streams, one
    thread (its latency columns are the mean and the maximum, h2load printing no percentiles).

It prints requests per second, p50 and p99 latency, and the proxy's CPU seconds per 100k requests
(user + system time of all its processes, read from /proc) and how often per request its threads
went to sleep waiting for work (voluntary context switches), with the ratios Wharf/nginx and
Wharf/HAProxy. By default the proxy runs on CPU 1 and wrk and the backend on CPU 0, so that the
proxy under test has a core of its own; a sleeping proxy is then woken, at a cost, by wrk or the
backend on CPU 0, which bounds the new-connection rate.

    python3 benches/router.py [--duration 10] [--repeat 3] [--workers 1] [--no-pin]
                              [--only http2,https-keep-alive] [--binary PATH[,PATH...]]

Each measurement is repeated and the run with the median requests per second is reported; the
proxies take turns within each repetition so that drifts in the machine's speed hit all alike,
in the opposite order every other repetition so that none is always measured first. Below the
table, each Wharf build's ratios to HAProxy are also taken round by round (its requests per
second and CPU per request over HAProxy's in the same repetition) and printed as their median
and range: paired this way, a drift in the machine's speed between rounds (this VM's rate moves
by 10-15% from one minute to the next) cancels out, where the table's medians of each proxy
taken apart do not.

Needs nginx, haproxy, wrk and h2load (Debian packages, h2load in nghttp2-client; installed when
missing) and builds Wharf in release mode unless `--binary` names a build. Wharf writes an access line per request into the app's log stream; nginx and HAProxy
run with logging off, their fastest configuration. Several builds given to `--binary`, comma-separated,
are measured side by side in the same rounds (each `wharf serve` with a data directory and ports of its
own), so that a before-and-after comparison is not moved by what else the machine does between runs.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICK = os.sysconf("SC_CLK_TCK")


HANDED_OUT = set()


def free_port():
    """A port nothing listens on, never one handed out before in this run: the kernel may offer
    a port again as soon as the probing socket closes, and two listeners given the same port
    would keep one proxy from starting."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in HANDED_OUT:
            HANDED_OUT.add(port)
            return port


def wait_port(port, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listens on port {port} after {timeout}s")


PACKAGES = {"h2load": "nghttp2-client", "perf": "linux-perf"}


def ensure_tools(*extra):
    """Installs nginx, haproxy, wrk, h2load and the `extra` tools (Debian packages of the same
    name, but those in PACKAGES) when missing."""
    missing = [PACKAGES.get(t, t) for t in ("nginx", "haproxy", "wrk", "h2load", *extra)
               if not shutil.which(t) and not os.path.exists(f"/usr/sbin/{t}")]
    if missing:
        print(f"installing {' '.join(missing)} from Debian", file=sys.stderr)
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        subprocess.run(sudo + ["apt-get", "update", "-qq"], check=True)
        subprocess.run(sudo + ["apt-get", "install", "-y", "-qq", *missing], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def tool(name):
    return shutil.which(name) or f"/usr/sbin/{name}"


def process_tree(pid):
    """A process and its children (nginx's workers)."""
    pids = {pid}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    pids.add(int(entry))
            except OSError:
                pass
    return pids


def cpu_seconds(pid):
    """User + system CPU time of a process and its children."""
    total = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / TICK


def sleeps(pid):
    """Times the threads of a process and its children went to sleep waiting for something
    (voluntary context switches). On one machine, waking a sleeping proxy costs the process whose
    packet wakes it: wrk or the backend, which share the other CPU."""
    total = 0
    for p in process_tree(pid):
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/status") as f:
                    total += sum(int(line.split()[1]) for line in f if line.startswith("voluntary_ctxt_switches"))
        except OSError:
            pass
    return total


PROCS = []


def stop_all():
    """Stops every child the harness started: asks first, then kills what has not gone in 30 s."""
    for p in PROCS:
        p.send_signal(signal.SIGTERM)
    for p in PROCS:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()


def spawn(cmd, **kw):
    """Starts a child process that the harness stops at exit, whatever happens."""
    proc = subprocess.Popen(cmd, **kw)
    PROCS.append(proc)
    return proc


def pinned(cmd, cpu, pin):
    return (["taskset", "-c", str(cpu)] + cmd) if pin else cmd


def wrk(url, host, duration, pin, close=False):
    cmd = [tool("wrk"), "-t1", "-c50", f"-d{duration}s", "--latency", "-H", f"Host: {host}"]
    if close:
        cmd += ["-H", "Connection: close"]
    out = subprocess.run(pinned(cmd + [url], 0, pin), capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))

    def pct(p):
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return value * {"us": 0.001, "ms": 1, "s": 1000}[unit]

    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "requests": total, "p50": pct(50), "p99": pct(99),
            "non2xx": int(bad.group(1)) if bad else 0, "errors": errors.group(1) if errors else ""}


def h2load(url, host, duration, pin):
    """HTTP/2 over TLS: 50 connections, 10 concurrent streams each, one thread."""
    cmd = [tool("h2load"), "-t1", "-c50", "-m10", "-D", str(duration), "--warm-up-time=1",
           "-H", f":authority: {host}", url]
    out = subprocess.run(pinned(cmd, 0, pin), capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out).group(1))
    m = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
    done, failed, errored = int(m.group(2)), int(m.group(4)), int(m.group(5))
    codes = re.search(r"status codes: (\d+) 2xx", out)

    def ms(text):
        value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
        return float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]

    t = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)", out)
    return {"rps": rps, "requests": done, "p50": ms(t.group(3)), "p99": ms(t.group(2)),
            "non2xx": done - int(codes.group(1)) if codes else 0,
            "errors": f"{failed} failed, {errored} errored" if failed or errored else ""}


class Proxy:
    def __init__(self, name, proc, plain, tls, host):
        self.name, self.proc, self.plain, self.tls, self.host = name, proc, plain, tls, host


def start_backend(tmp, pin):
    port = free_port()
    conf = os.path.join(tmp, "backend.conf")
    with open(conf, "w") as f:
        f.write(f"""
worker_processes 1; daemon off; pid {tmp}/backend.pid; error_log stderr error;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  server {{ listen 127.0.0.1:{port}; location / {{ return 200 "hello, world\\n"; }} }}
}}
""")
    proc = spawn(pinned([tool("nginx"), "-c", conf, "-p", tmp], 0, pin))
    wait_port(port)
    return proc, port


def start_wharf(tmp, backend, workers, pin, binary, name="wharf"):
    """`wharf serve` from `binary`, in a data directory of its own under `tmp` and on free ports
    only, so that several builds can run side by side; shown as `name`."""
    plain, tls, api = free_port(), free_port(), free_port()
    data = os.path.join(tmp, name.replace(" ", "-").replace("/", "_"))
    env = {**os.environ,
           "WHARF_CONTROL_API__LISTEN": f"127.0.0.1:{api}",
           "WHARF_ROUTER__HTTP_LISTEN": f"127.0.0.1:{plain}",
           "WHARF_ROUTER__HTTPS_LISTEN": f"127.0.0.1:{tls}",
           "WHARF_ROUTER__INTERNAL_LISTEN": f"127.0.0.1:{free_port()}",
           "WHARF_ROUTER__ADMIN_LISTEN": f"127.0.0.1:{free_port()}",
           "WHARF_LOGSHUTTLE__LISTEN": f"127.0.0.1:{free_port()}",
           "WHARF_ROUTER__HTTP_REDIRECT": "false",
           "WHARF_ROUTER__WORKERS": str(workers),
           "WHARF_ADMIN_TOKEN": "benchmark-admin-token-0123456789",
           "WHARF_LOG": "warn"}
    proc = spawn(pinned([binary, "serve", "--data-dir", data], 1, pin),
                            env=env, stdout=subprocess.DEVNULL)
    wait_port(api)

    def call(method, path, body):
        req = urllib.request.Request(f"http://127.0.0.1:{api}{path}", method=method, data=json.dumps(body).encode(),
                                     headers={"Authorization": "Bearer benchmark-admin-token-0123456789"})
        urllib.request.urlopen(req).read()

    call("POST", "/apps", {"name": "bench", "space": "default"})
    call("PUT", "/apps/bench-default/dynos/web.1", {"type": "web", "host": "127.0.0.1", "port": backend})
    host = "bench-default.localhost"
    # The router follows the snapshot on its own; wait until it routes.
    deadline = time.time() + 10
    while time.time() < deadline:
        r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", f"Host: {host}",
                            f"http://127.0.0.1:{plain}/"], capture_output=True, text=True)
        if r.stdout == "200":
            break
        time.sleep(0.05)
    return Proxy(name, proc, plain, tls, host), os.path.join(data, "tls")


def start_nginx(tmp, backend, workers, cert, key, pin):
    plain, tls = free_port(), free_port()
    d = os.path.join(tmp, "nginx")
    os.makedirs(d, exist_ok=True)
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""
worker_processes {workers}; daemon off; pid {d}/nginx.pid; error_log stderr error;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  upstream backend {{ server 127.0.0.1:{backend}; keepalive 128; }}
  server {{
    listen 127.0.0.1:{plain};
    listen 127.0.0.1:{tls} ssl http2;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    ssl_protocols TLSv1.2 TLSv1.3;
    location / {{
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }}
  }}
}}
""")
    proc = spawn(pinned([tool("nginx"), "-c", conf, "-p", d], 1, pin))
    wait_port(plain)
    return Proxy("nginx", proc, plain, tls, "bench-default.localhost")


def start_haproxy(tmp, backend, workers, cert, key, pin, wrap=()):
    """HAProxy in front of the backend, HTTP/2 by ALPN on its TLS port; `wrap` goes before its
    command (benches/router_instructions.py runs it under callgrind)."""
    plain, tls = free_port(), free_port()
    d = os.path.join(tmp, "haproxy")
    os.makedirs(d, exist_ok=True)
    pem = os.path.join(d, "combined.pem")
    with open(pem, "w") as f:
        f.write(open(cert).read() + open(key).read())
    conf = os.path.join(d, "haproxy.cfg")
    with open(conf, "w") as f:
        f.write(f"""
global
  nbthread {workers}
  maxconn 4000
  ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
  option forwardfor
frontend web
  bind 127.0.0.1:{plain}
  bind 127.0.0.1:{tls} ssl crt {pem} alpn h2,http/1.1
  default_backend dynos
backend dynos
  http-reuse always
  server web1 127.0.0.1:{backend}
""")
    proc = spawn(pinned([*wrap, tool("haproxy"), "-f", conf, "-db"], 1, pin), stderr=subprocess.DEVNULL if wrap else None)
    wait_port(plain, 120 if wrap else 30)
    return Proxy("haproxy", proc, plain, tls, "bench-default.localhost")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-pin", dest="pin", action="store_false")
    ap.add_argument("--only", default="", help="comma-separated scenarios, spaces as dashes (http2, https-keep-alive, ...)")
    ap.add_argument("--binary", default=None,
                    help="a Wharf build to measure instead of building target/release/wharf; several, comma-separated, "
                         "are measured side by side in the same rounds")
    args = ap.parse_args()
    ensure_tools()
    binary = args.binary
    if binary is None:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
        binary = os.path.join(ROOT, "target", "release", "wharf")
    tmp = tempfile.mkdtemp(prefix="wharf-bench-")
    try:
        _, backend_port = start_backend(tmp, args.pin)
        binaries = binary.split(",")
        wharfs = []
        for b in binaries:
            name = "wharf" if len(binaries) == 1 else f"wharf {b}"
            wharfs.append(start_wharf(tmp, backend_port, args.workers, args.pin, b, name))
        tls_dir = wharfs[0][1]
        cert, key = os.path.join(tls_dir, "localhost.pem"), os.path.join(tls_dir, "localhost.key")
        proxies = [w for w, _ in wharfs] + [start_nginx(tmp, backend_port, args.workers, cert, key, args.pin),
                                           start_haproxy(tmp, backend_port, args.workers, cert, key, args.pin)]
        scenarios = [("http keep-alive", lambda p: (f"http://127.0.0.1:{p.plain}/", False)),
                     ("https keep-alive", lambda p: (f"https://127.0.0.1:{p.tls}/", False)),
                     ("https new connections", lambda p: (f"https://127.0.0.1:{p.tls}/", True)),
                     ("http2", lambda p: (f"https://127.0.0.1:{p.tls}/", "h2"))]
        if args.only:
            wanted = args.only.split(",")
            scenarios = [s for s in scenarios if s[0].replace(" ", "-") in wanted]
        runs = {}
        for scenario, target in scenarios:
            def drive(p, duration):
                url, mode = target(p)
                if mode == "h2":
                    return h2load(url, p.host, duration, args.pin)
                return wrk(url, p.host, duration, args.pin, mode)

            for p in proxies:
                drive(p, 2)  # warm up: connections, pools, caches
            for round_ in range(args.repeat):
                for p in (proxies if round_ % 2 == 0 else proxies[::-1]):
                    before, slept = cpu_seconds(p.proc.pid), sleeps(p.proc.pid)
                    r = drive(p, args.duration)
                    r["cpu_per_100k"] = (cpu_seconds(p.proc.pid) - before) / r["requests"] * 100_000
                    r["sleeps"] = (sleeps(p.proc.pid) - slept) / r["requests"]
                    runs.setdefault((scenario, p.name), []).append(r)
                    if r["non2xx"] or r["errors"]:
                        print(f"warning: {p.name} {scenario}: {r['non2xx']} non-2xx, errors: {r['errors']}",
                              file=sys.stderr)
        results = {k: sorted(v, key=lambda r: r["rps"])[len(v) // 2] for k, v in runs.items()}
        print(f"\nrouter benchmark: {args.workers} worker(s) per proxy, wrk -t1 -c50 -d{args.duration}s "
              f"(HTTP/2: h2load -t1 -c50 -m10 -D {args.duration}, mean and max latency), "
              f"median of {args.repeat}, "
              f"{'proxy pinned to CPU 1, wrk and backend to CPU 0' if args.pin else 'unpinned'}\n")
        print("| scenario | proxy | req/s | p50 ms | p99 ms | CPU s/100k req | sleeps/req "
              "| req/s vs nginx | req/s vs HAProxy | CPU vs nginx | CPU vs HAProxy |")
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for scenario, _ in scenarios:
            n, h = results[(scenario, "nginx")], results[(scenario, "haproxy")]
            for p in proxies:
                r = results[(scenario, p.name)]
                ratios = ""
                if p.name.startswith("wharf"):
                    ratios = (f"{r['rps'] / n['rps']:.2f}x | {r['rps'] / h['rps']:.2f}x | "
                              f"{r['cpu_per_100k'] / n['cpu_per_100k']:.2f}x | {r['cpu_per_100k'] / h['cpu_per_100k']:.2f}x")
                else:
                    ratios = " | | | "
                print(f"| {scenario} | {p.name} | {r['rps']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | "
                      f"{r['cpu_per_100k']:.2f} | {r['sleeps']:.2f} | {ratios} |")
        print("\nround by round against HAProxy (median, range):\n")
        for scenario, _ in scenarios:
            h = runs[(scenario, "haproxy")]
            for p in proxies:
                if not p.name.startswith("wharf"):
                    continue
                w = runs[(scenario, p.name)]
                rate = sorted(a["rps"] / b["rps"] for a, b in zip(w, h))
                cpu = sorted(a["cpu_per_100k"] / b["cpu_per_100k"] for a, b in zip(w, h))
                print(f"- {scenario}, {p.name}: req/s {rate[len(rate) // 2]:.2f}x ({rate[0]:.2f}-{rate[-1]:.2f}), "
                      f"CPU per request {cpu[len(cpu) // 2]:.2f}x ({cpu[0]:.2f}-{cpu[-1]:.2f}), {len(rate)} rounds")
    finally:
        stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
