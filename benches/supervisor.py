#!/usr/bin/env python3
"""Supervisor output benchmark: a dyno writing as fast as it can through `wharf serve` into one
TCP syslog drain, beside `python3 writer.py | nc` into the same receiver.

The writer prints N numbered lines of 40 bytes and exits. The receiver, a Python TCP server,
counts the lines that reach it (each carries `line ` once, framed or not) and records when the
last one arrived. The baseline pipes the writer into `nc 127.0.0.1 PORT`; the Wharf run gives a
worker of quantity 1 that command, with the receiver as the app's drain, so each line goes
through the dyno's pipe, the supervisor, the embedded bus, the logshuttle and RFC 5424
octet-counted framing. Lines per second is N over the time from starting the writer until every
line has arrived or been announced as dropped (`Error L10/L12 ... N messages dropped`), and
delivered lines per second counts the arrived ones only. During the Wharf run the script samples
Wharf's resident memory (`VmRSS`) every 50 ms: before, peak and after.

    python3 benches/supervisor.py [--lines 200000] [--repeat 3] [--drain-buffer-lines N]
                                  [--wharf target/release/wharf]

Each measurement is repeated and the median is reported. Needs `nc` (Debian's
netcat-openbsd) and a built `wharf` (`cargo build --release` by default, or --wharf PATH).
"""

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from wharf_process import WharfProcess

WRITER = """import sys
n = int(sys.argv[1])
w = sys.stdout.write
pad = 'x' * 26
for i in range(n):
    w('line %07d %s\\n' % (i, pad))
sys.stdout.flush()
"""

MARK = b"line "
DROPPED = re.compile(rb"Error L1[02] \([^)]*\): (\d+) messages dropped")


class Receiver:
    """A TCP server counting the lines (occurrences of `line `) that reach it."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.reset()
        threading.Thread(target=self._accept, daemon=True).start()

    def reset(self):
        with self.lock:
            self.count = 0
            self.dropped = 0
            self.last = None

    def _accept(self):
        while True:
            conn, _ = self.sock.accept()
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn):
        tail = b""
        while True:
            data = conn.recv(1 << 20)
            if not data:
                return
            # Count what ends in the new data only: the tail was counted with the last read.
            buf = tail + data
            n = buf.count(MARK) - tail.count(MARK)
            dropped = sum(int(m.group(1)) for m in DROPPED.finditer(buf) if m.end() > len(tail))
            tail = buf[-200:]
            with self.lock:
                self.count += n
                self.dropped += dropped
                self.last = time.monotonic()

    def wait(self, n, timeout):
        """Waits until n lines arrived or were announced as dropped; returns when the last came."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if self.count + self.dropped >= n:
                    return self.last
            time.sleep(0.005)
        return None


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def baseline(receiver, writer, n):
    receiver.reset()
    start = time.monotonic()
    proc = subprocess.Popen(f"python3 {writer} {n} | nc -N 127.0.0.1 {receiver.port}", shell=True,
                            start_new_session=True)
    last = receiver.wait(n, 120)
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    proc.wait()
    if last is None:
        sys.exit(f"baseline: only {receiver.count} of {n} lines arrived")
    return n / (last - start)


class Wharf:
    """`wharf serve` in a temporary data directory, with app bench-default draining to the receiver."""

    def __init__(self, binary, receiver, drain_buffer_lines):
        env = {"WHARF_ROUTER__HTTP_REDIRECT": "false"}
        if drain_buffer_lines:
            env["WHARF_LOGSHUTTLE__DRAIN_BUFFER_LINES"] = str(drain_buffer_lines)
            env["WHARF_LOGSHUTTLE__DRAIN_BUFFER_BYTES"] = str(drain_buffer_lines * 200)
        started = WharfProcess(binary, env)
        self.dir, self.proc, self.api, self.admin, self.token = (started.dir, started.proc, started.api,
                                                                 started.admin, started.token)
        self.call("POST", "/apps", {"name": "bench", "space": "default"})
        drain = self.call("POST", "/apps/bench-default/log-drains",
                          {"url": f"syslog+tcp://127.0.0.1:{receiver.port}"})
        label = f'drain="{drain["id"]}"'
        for _ in range(600):
            with urllib.request.urlopen(self.admin + "/metrics") as r:
                if label in r.read().decode():
                    break
            time.sleep(0.05)

    def call(self, method, path, body):
        req = urllib.request.Request(self.api + path, method=method, data=json.dumps(body).encode(),
                                     headers={"Authorization": "Bearer " + self.token,
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req) as r:
            text = r.read()
            return json.loads(text) if text else None

    def run(self, receiver, writer, n):
        self.call("PATCH", "/apps/bench-default/formation",
                  {"updates": [{"type": "worker", "quantity": 0}]})
        time.sleep(0.5)
        receiver.reset()
        before = rss_kib(self.proc.pid)
        peak = [before]
        done = threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], rss_kib(self.proc.pid))
                time.sleep(0.05)

        threading.Thread(target=sample, daemon=True).start()
        start = time.monotonic()
        command = f"python3 {writer} {n}; exec sleep 600"
        self.call("PATCH", "/apps/bench-default/formation",
                  {"updates": [{"type": "worker", "quantity": 1, "command": command}]})
        last = receiver.wait(n, 120)
        done.set()
        after = rss_kib(self.proc.pid)
        elapsed = (last - start) if last else None
        return elapsed, receiver.count, receiver.dropped, before, peak[0], after

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lines", type=int, default=200_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--drain-buffer-lines", type=int, default=0,
                   help="the logshuttle's drain buffer (default: Wharf's, 10,000 lines)")
    p.add_argument("--wharf", default=None, help="the wharf binary (default: build target/release/wharf)")
    args = p.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    binary = args.wharf
    if binary is None:
        subprocess.run(["cargo", "build", "--release", "--bin", "wharf"], cwd=root, check=True)
        binary = os.path.join(root, "target", "release", "wharf")
    work = tempfile.mkdtemp(prefix="wharf-bench-writer-")
    writer = os.path.join(work, "writer.py")
    with open(writer, "w") as f:
        f.write(WRITER)
    receiver = Receiver()
    wharf = Wharf(binary, receiver, args.drain_buffer_lines)
    base, through, delivered = [], [], []
    try:
        for i in range(args.repeat):
            base.append(baseline(receiver, writer, args.lines))
            elapsed, got, dropped, before, peak, after = wharf.run(receiver, writer, args.lines)
            if elapsed is None:
                print(f"run {i + 1}: wharf incomplete: {got} arrived, {dropped} announced dropped", flush=True)
                continue
            through.append((got + dropped) / elapsed)
            delivered.append(got / elapsed)
            print(f"run {i + 1}: pipe|nc {base[-1]:,.0f} lines/s; wharf {got:,} delivered + {dropped:,} announced "
                  f"dropped in {elapsed:.2f} s ({delivered[-1]:,.0f} delivered lines/s); "
                  f"RSS {before} -> peak {peak} -> {after} KiB", flush=True)
    finally:
        wharf.stop()
    b = statistics.median(base)
    print(f"\n{args.lines} lines of 40 bytes, median of {args.repeat}:")
    print(f"  python3 writer.py | nc : {b:,.0f} lines/s")
    if through:
        w, d = statistics.median(through), statistics.median(delivered)
        print(f"  through wharf serve     : {w:,.0f} lines/s written ({w / b:.2f}x), "
              f"{d:,.0f} lines/s delivered ({d / b:.2f}x)")


if __name__ == "__main__":
    main()
