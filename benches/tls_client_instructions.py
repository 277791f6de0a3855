#!/usr/bin/env python3
"""TLS client instructions per new connection: what each proxy makes its clients spend.

Runs wrk (OpenSSL underneath, as curl and Python's ssl are on Debian) under valgrind's callgrind
against Wharf, nginx and HAProxy in turn, every request on a new TLS connection, and prints the
client's instructions per connection. The server decides part of the client's work: the key
exchange, the records it packs the handshake and the session tickets into, how the connection
ends. On this two-core machine the router benchmark's new-connection rate is bounded by the CPU
that wrk and the backend share, so this count explains differences in that rate that the
proxies' own CPU does not.

    python3 benches/tls_client_instructions.py [--seconds 15] [--wharf-tickets 1 2]

`--wharf-tickets` runs Wharf once per value of `router.tls13_tickets` (default: 1, Wharf's
default). Needs valgrind, nginx, haproxy and wrk (Debian packages; installed when missing) and a
release build of Wharf (`cargo build --release`).
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import router as bench  # noqa: E402  (the router benchmark's helpers)


def client_instructions(proxy, seconds):
    """Runs wrk under callgrind against `proxy`; returns (connections, instructions per one)."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/callgrind.out", bench.tool("wrk"),
               "-t1", "-c4", f"-d{seconds}s", "-H", f"Host: {proxy.host}", "-H", "Connection: close",
               f"https://127.0.0.1:{proxy.tls}/"]
        r = subprocess.run(bench.pinned(cmd, 0, True), capture_output=True, text=True, check=True)
    connections = int(re.search(r"(\d+) requests in", r.stdout).group(1))
    total = int(re.search(r"Collected : (\d+)", r.stderr).group(1))
    return connections, total // connections


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--wharf-tickets", type=int, nargs="+", default=[1])
    args = parser.parse_args()
    bench.ensure_tools("valgrind")
    tmp = tempfile.mkdtemp(prefix="wharf-tls-client-")
    _, backend = bench.start_backend(tmp, True)
    rows = []
    cert = key = None
    for tickets in args.wharf_tickets:
        os.environ["WHARF_ROUTER__TLS13_TICKETS"] = str(tickets)
        wharf, tls_dir = bench.start_wharf(os.path.join(tmp, f"tickets-{tickets}"), backend, 1, True)
        cert, key = os.path.join(tls_dir, "localhost.pem"), os.path.join(tls_dir, "localhost.key")
        rows.append((f"wharf, tls13_tickets = {tickets}", *client_instructions(wharf, args.seconds)))
        wharf.proc.terminate()
        wharf.proc.wait()
    for name, start in [("nginx", bench.start_nginx), ("haproxy", bench.start_haproxy)]:
        proxy = start(tmp, backend, 1, cert, key, True)
        rows.append((name, *client_instructions(proxy, args.seconds)))
    print(f"\nwrk -t1 -c4 -d{args.seconds}s under callgrind, every request on a new TLS connection\n")
    print("| server | connections | client instructions per connection |")
    print("| --- | ---: | ---: |")
    for name, connections, per in rows:
        print(f"| {name} | {connections} | {per:,} |")


if __name__ == "__main__":
    try:
        main()
    finally:
        bench.stop_all()
