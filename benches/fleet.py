#!/usr/bin/env python3
"""The fleet drill: a whole Wharf fleet on loopback, broken one part at a time under load.

It starts a tansu broker, a PostgreSQL server, two `wharf control-api` replicas on it, two
`wharf router`s and three `wharf logshuttle`s in one Kafka consumer group (each data plane
given both replicas' URLs, in a different order), a few web dynos (processes of this script,
registered through the API as external dynos) and one TCP syslog drain per app (threads of this
script). It drives HTTPS load across both routers (keep-alive clients, each request a unique
path, so that its access line is recognised at the app's drain), and then, one at a time:

  1. kill -9 a router (the load's clients take it out of rotation when a request fails, as a
     load balancer's health check would; it is restarted on the same port from its kept copy);
  2. kill -9 the logshuttle that delivered the most lines (its partitions move);
  3. kill -9 a control API (a change made through the other must reach every data plane);
  4. restart the broker (SIGTERM, then start on the same port);
  5. restart PostgreSQL (fast shutdown, then start; a write must then succeed and reach every
     data plane);
  6. add a fourth logshuttle (the group rebalances).

Per fault it prints: requests sent and failed (per router; only those in flight on a killed
router may fail), lines lost at the drains (every drain is healthy, so this must be 0, apart
from what a killed router had not yet handed to Kafka, counted on its own; "undelivered" is what
is not at its drain 60 s after the load stopped), lines delivered
more than once, the time to recover (what "recovered" means is printed beside it), and the
snapshot version each data plane serves (routers' `/metrics`, logshuttles' kept copy).

    python3 benches/fleet.py [--binary target/release/wharf] [--phase 8] [--clients 3] [--apps 4]
                             [--broker-storage postgres|memory|sqlite]

Needs tansu (./scripts/test installs it), Debian's PostgreSQL server, and a built `wharf`
(`cargo build --release`; `--binary target/debug/wharf` works too, slower). Exits non-zero when a
rule is broken. The broker keeps its data by default, as a Kafka keeps its logs on disk: tansu on
PostgreSQL (`--broker-storage postgres`, a PostgreSQL server of its own, apart from the fleet's
that the drill restarts; the tansu built with `--features dynostore,postgres` under
~/.cargo/tansu-postgres, which ./scripts/test installs; its schema is testkit/tansu/010-schema.sql). Then no line may be lost
at a healthy drain across the broker's restart either. With `--broker-storage memory` a restart
loses what the broker held (the topic included), and lines lost that way are counted on their
own line: lines of requests answered from 5 s before its stop until it has ended (a broker stopped
with SIGTERM acknowledges what it is sent until then). Lines answered while it is away,
or after its return but before its topic exists again, are held by their producers until the topic
is back, so losing one is a failure (tansu 0.6 in memory acknowledges a produce to a topic it does
not have and drops it when the topic is created; the time of the re-creation, the first `created
kafka topic` line in the Wharf logs, is printed). Every other line lost at a healthy drain is a failure.
`--broker-storage sqlite` keeps the data in an SQLite file (the tansu built with `--features
dynostore,libsql` under ~/.cargo/tansu-sqlite), but tansu 0.6's SQLite engine cannot hold a
consumer group of three (benches/RESULTS.md run 14: lines undelivered with no fault at all).
"""

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

# One port allocator for every bench in this folder (the script's folder is on sys.path).
from router import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PG_USER, PG_PASSWORD = "wharf", "drill-password"
PROCS = []


def until(what, check, timeout=60, every=0.02, fatal=True):
    """Polls `check` until it returns something true, and returns it; after `timeout`, exits
    (or, unless `fatal`, says so and returns None)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = check()
        if got:
            return got
        time.sleep(every)
    if fatal:
        sys.exit(f"timed out after {timeout}s waiting for {what}")
    print(f"  timed out after {timeout}s waiting for {what}", flush=True)
    return None


def listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def spawn(cmd, log, env=None, **kw):
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(log, "ab"), env=env, **kw)
    PROCS.append(proc)
    return proc


def stop_all():
    for p in PROCS:
        if p.poll() is None:
            p.kill()
    for p in PROCS:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


# ---------------------------------------------------------------------------------------------
# PostgreSQL and tansu


class Postgres:
    """Debian's server in a cluster of its own (as the `postgres` user when run as root)."""

    def __init__(self, tmp, name="postgres", database="wharf"):
        versions = sorted(
            (d for d in os.listdir("/usr/lib/postgresql") if d.isdigit()), key=int
        ) if os.path.isdir("/usr/lib/postgresql") else []
        if not versions:
            sys.exit("PostgreSQL's server is not installed (./scripts/test installs it)")
        self.bin = f"/usr/lib/postgresql/{versions[-1]}/bin"
        self.dir = os.path.join(tmp, name)
        os.makedirs(self.dir)
        pw = os.path.join(self.dir, "pw")
        with open(pw, "w") as f:
            f.write(PG_PASSWORD)
        if os.geteuid() == 0:
            subprocess.run(["chown", "-R", "postgres:postgres", self.dir], check=True)
        subprocess.run(self.as_user([f"{self.bin}/initdb", "-D", f"{self.dir}/data", "-U", PG_USER, "-A",
                                     "scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync", f"--pwfile={pw}"]),
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.port = free_port()
        self.proc = None
        self.start()
        self.psql(f"CREATE DATABASE {database}")
        self.url = f"postgres://{PG_USER}:{PG_PASSWORD}@127.0.0.1:{self.port}/{database}"

    def as_user(self, cmd):
        if os.geteuid() == 0:
            return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"] + cmd
        return cmd

    def start(self):
        self.proc = spawn(self.as_user([f"{self.bin}/postgres", "-D", f"{self.dir}/data", "-c",
                                        "listen_addresses=127.0.0.1", "-c", "fsync=off", "-k", self.dir,
                                        "-p", str(self.port)]), os.path.join(self.dir, "log"))
        until("postgres to accept logins", lambda: self.psql("SELECT 1", check=False) == 0)

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=30)

    def psql(self, sql, check=True, database="postgres"):
        env = dict(os.environ, PGPASSWORD=PG_PASSWORD)
        r = subprocess.run([f"{self.bin}/psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", PG_USER, "-d",
                            database, "-qAtc", sql], env=env, capture_output=True)
        if check and r.returncode != 0:
            sys.exit(f"psql {sql!r}: {r.stderr.decode()}")
        return r.returncode


class Tansu:
    """tansu with `storage` "postgres" (its data in a PostgreSQL server of its own, started here,
    kept across a restart as a Kafka keeps its logs on disk; the tansu ./scripts/test installs
    under ~/.cargo/tansu-postgres, given tansu's schema from testkit/tansu/010-schema.sql), "sqlite" (its data in a
    file under `tmp`; the tansu built with `--features dynostore,libsql`, if installed under
    ~/.cargo/tansu-sqlite) or "memory" (a restart loses the topic, the offsets and the group)."""

    def __init__(self, tmp, storage):
        self.port, self.cwd = free_port(), tmp
        self.log = os.path.join(tmp, "tansu.log")
        home = os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo"))
        if storage == "postgres":
            self.tansu = os.path.join(home, "tansu-postgres/bin/tansu")
            # tansu's PostgreSQL engine does not create its tables: the tree keeps its schema.
            schema = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "testkit", "tansu",
                                  "010-schema.sql")
            # Its own server: the drill restarts the fleet's PostgreSQL as a fault of its own.
            self.pg = Postgres(tmp, name="postgres-broker", database="tansu")
            with open(schema) as f:
                self.pg.psql(f.read(), database="tansu")
            self.engine = self.pg.url
        elif storage == "sqlite":
            self.tansu = os.path.join(home, "tansu-sqlite/bin/tansu")
            # tansu 0.6.0 takes the file's path relative to its working directory, even when
            # absolute (as testkit's Tansu::start_keeping does): it runs in `tmp`.
            self.engine = "sqlite://tansu.db"
        else:
            self.tansu = shutil.which("tansu") or os.path.expanduser("~/.cargo/bin/tansu")
            self.engine = "memory://tansu/"
        if not os.path.exists(self.tansu):
            sys.exit(f"{self.tansu} is missing (./scripts/test installs it)")
        self.start()

    def start(self):
        url = f"tcp://127.0.0.1:{self.port}"
        self.proc = spawn([self.tansu, "broker", "--listener-url", url, "--advertised-listener-url", url,
                           "--storage-engine", self.engine], self.log, cwd=self.cwd)
        until("tansu to listen", lambda: listening(self.port))

    def restart(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)
        # When it had ended: until then a stopping broker still acknowledges what it is sent.
        self.gone = time.time()
        until("tansu's port to be free", lambda: not listening(self.port))
        self.start()

    @property
    def brokers(self):
        return f"127.0.0.1:{self.port}"


# ---------------------------------------------------------------------------------------------
# Wharf processes


class Wharf:
    """One `wharf SUBCOMMAND`, ready once its addresses.json names its pid."""

    def __init__(self, binary, subcommand, args, data_dir, env):
        self.binary, self.subcommand, self.args, self.data_dir, self.env = binary, subcommand, args, data_dir, env
        self.start()

    def start(self):
        env = dict(os.environ)
        for k in ["WHARF_ADMIN_TOKEN", "WHARF_ROUTER_TOKEN", "WHARF_LOGSHUTTLE_TOKEN", "WHARF_RUNTIME_TOKEN", "WHARF_SESSION_SECRET"]:
            env.pop(k, None)
        env.update({"WHARF_LOG": "info"})
        env.update(self.env)
        self.proc = spawn([self.binary, self.subcommand, "--data-dir", self.data_dir, *self.args],
                          self.data_dir + ".log", env=env)
        path = os.path.join(self.data_dir, "addresses.json")

        def ready():
            if self.proc.poll() is not None:
                sys.exit(f"wharf {self.subcommand} exited; see {self.data_dir}.log")
            try:
                with open(path) as f:
                    doc = json.load(f)
            except (OSError, ValueError):
                return None
            return doc if doc.get("pid") == self.proc.pid else None

        self.addresses = until(f"wharf {self.subcommand} to be ready", ready)

    def kill9(self):
        self.proc.kill()
        self.proc.wait()

    def kept_version(self):
        """The snapshot version in the data plane's kept copy (`feed/snapshot.json`)."""
        try:
            with open(os.path.join(self.data_dir, "feed", "snapshot.json")) as f:
                return json.load(f)["version"]
        except (OSError, ValueError, KeyError):
            return 0

    def metric(self, name):
        """The sum of a metric's samples at the process's `/metrics`."""
        addr = self.addresses.get("admin") or self.addresses.get("logshuttle")
        try:
            text = urllib.request.urlopen(f"http://{addr}/metrics", timeout=5).read().decode()
        except OSError:
            return 0
        return sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines() if l.startswith(name + " ")
                   or l.startswith(name + "{"))


def topic_created_after(tmp, t):
    """The time of the first `created kafka topic` line after `t` in any Wharf log of the run
    (tracing's UTC timestamps), or None: when the topic existed again after a broker restart."""
    import datetime
    found = []
    for name in os.listdir(tmp):
        if not name.endswith(".log"):
            continue
        with open(os.path.join(tmp, name), errors="replace") as f:
            for line in f:
                if "created kafka topic" not in line:
                    continue
                try:
                    at = datetime.datetime.fromisoformat(line.split()[0].replace("Z", "+00:00")).timestamp()
                except (ValueError, IndexError):
                    continue
                if at > t:
                    found.append(at)
    return min(found) if found else None


def api_call(api_addr, token, method, path, body=None):
    req = urllib.request.Request(f"http://{api_addr}{path}", method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")
    except OSError as e:
        return 0, str(e)


# ---------------------------------------------------------------------------------------------
# Dynos, drains and load


def dyno_main(port, name):
    """A web dyno: HTTP/1.1 keep-alive, answers every request with its name."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            body = name.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


class Drain:
    """A TCP syslog receiver (RFC 6587 octet counting): the first arrival time of each access
    line's path, and how many times each arrived."""

    PATH = re.compile(rb" path=(\S+)")

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.first = {}
        self.count = {}
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            conn, _ = self.sock.accept()
            threading.Thread(target=self.read, args=(conn,), daemon=True).start()

    def read(self, conn):
        buf = b""
        while True:
            data = conn.recv(65536)
            if not data:
                return
            buf += data
            while True:
                sp = buf.find(b" ")
                if sp < 0:
                    break
                n = int(buf[:sp])
                if len(buf) < sp + 1 + n:
                    break
                msg, buf = buf[sp + 1:sp + 1 + n], buf[sp + 1 + n:]
                m = self.PATH.search(msg)
                if m:
                    path, now = m.group(1).decode(), time.time()
                    with self.lock:
                        self.first.setdefault(path, now)
                        self.count[path] = self.count.get(path, 0) + 1


class Load:
    """HTTPS keep-alive clients, `clients` per router, each request a unique path. A client that
    sees a request fail takes its router out of its rotation until the router accepts
    connections again (checked every 50 ms), as a load balancer's health check would."""

    def __init__(self, routers, cas, apps, clients):
        self.routers, self.apps = routers, apps
        # Each router made its own local CA (no default certificate is configured).
        self.ctxs = [ssl.create_default_context(cafile=ca) for ca in cas]
        self.phase = 0
        self.sent = []  # (phase, router, app, path, ok, t_done, error)
        self.lock = threading.Lock()
        self.stopped = False
        self.threads = [threading.Thread(target=self.client, args=(r, c), daemon=True)
                        for r in range(len(routers)) for c in range(clients)]
        for t in self.threads:
            t.start()

    def connect(self, r, host):
        conn = http.client.HTTPSConnection(host, self.routers[r], context=self.ctxs[r], timeout=10)
        sock = socket.create_connection(("127.0.0.1", self.routers[r]), timeout=10)
        conn.sock = self.ctxs[r].wrap_socket(sock, server_hostname=host)
        return conn

    def client(self, r, c):
        n, conns, up = 0, {}, True
        while not self.stopped:
            if not up:
                conns = {}
                time.sleep(0.05)
                up = listening(self.routers[r])
                continue
            app = self.apps[n % len(self.apps)]
            host, path, phase = f"{app}.localhost", f"/drill/r{r}/c{c}/{n}", self.phase
            n += 1
            ok, error = False, ""
            try:
                conn = conns.get(host) or self.connect(r, host)
                conns[host] = conn
                conn.request("GET", path, headers={"Host": host})
                resp = conn.getresponse()
                resp.read()
                ok = resp.status == 200
                error = "" if ok else f"status {resp.status}"
            except (OSError, http.client.HTTPException) as e:
                error = f"{type(e).__name__}: {e}"
                conns.pop(host, None)
                up = False
            with self.lock:
                self.sent.append((phase, r, app, path, ok, time.time(), error))

    def count(self):
        with self.lock:
            return len(self.sent)

    def stop(self):
        self.stopped = True
        for t in self.threads:
            t.join(timeout=15)


# ---------------------------------------------------------------------------------------------
# The drill


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(ROOT, "target/release/wharf"))
    ap.add_argument("--phase", type=float, default=8, help="seconds of load around each fault")
    ap.add_argument("--clients", type=int, default=3, help="keep-alive HTTPS clients per router")
    ap.add_argument("--apps", type=int, default=4)
    ap.add_argument("--keep", action="store_true", help="keep the data directories and logs")
    ap.add_argument("--broker-storage", choices=["postgres", "sqlite", "memory"], default="postgres",
                    help="the broker's storage: kept across its restart (postgres, sqlite) or lost (memory)")
    ap.add_argument("--dyno", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.dyno:
        return dyno_main(int(args.dyno[0]), args.dyno[1])
    if not os.path.exists(args.binary):
        sys.exit(f"{args.binary} is missing: cargo build --release (or pass --binary)")
    # A drill stopped by SIGTERM still stops what it started (PostgreSQL, tansu, Wharf).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tmp = tempfile.mkdtemp(prefix="wharf-fleet-")
    os.chmod(tmp, 0o711)  # the PostgreSQL server, run as `postgres`, goes through it
    try:
        return drill(args, tmp)
    finally:
        stop_all()
        if args.keep:
            print(f"logs and data kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def drill(args, tmp):
    secrets = {k: os.urandom(16).hex() for k in
               ["WHARF_ADMIN_TOKEN", "WHARF_ROUTER_TOKEN", "WHARF_LOGSHUTTLE_TOKEN", "WHARF_RUNTIME_TOKEN", "WHARF_SESSION_SECRET"]}
    admin = secrets["WHARF_ADMIN_TOKEN"]
    pg = Postgres(tmp)
    broker = Tansu(tmp, args.broker_storage)
    kafka = {"WHARF_KAFKA__BROKERS": broker.brokers}
    apis = []
    for i in range(2):
        env = dict(secrets, WHARF_CONTROL_API__LISTEN=f"127.0.0.1:{free_port()}")
        apis.append(Wharf(args.binary, "control-api", ["--database-url", pg.url], os.path.join(tmp, f"api{i}"), env))
    api_addrs = [a.addresses["control_api"] for a in apis]
    urls = [f"http://{a}" for a in api_addrs]
    follow = lambda i: ",".join(urls if i % 2 == 0 else urls[::-1])
    live_api = api_addrs[1]

    apps, drains = [], []
    for i in range(args.apps):
        name = f"app{i}"
        app = f"{name}-default"
        until("the app to be created", lambda: api_call(live_api, admin, "POST", "/apps",
                                                        {"name": name, "space": "default"})[0] in (201, 409))
        for d in range(2):
            port = free_port()
            spawn([sys.executable, os.path.abspath(__file__), "--dyno", str(port), f"{app} web.{d}"],
                  os.path.join(tmp, "dynos.log"))
            until("the dyno to listen", lambda: listening(port))
            status, out = api_call(live_api, admin, "PUT", f"/apps/{app}/dynos/web.{d}",
                                   {"type": "web", "host": "127.0.0.1", "port": port})
            assert status == 201, out
        drain = Drain()
        status, out = api_call(live_api, admin, "POST", f"/apps/{app}/log-drains",
                               {"url": f"syslog+tcp://127.0.0.1:{drain.port}"})
        assert status == 201, out
        apps.append(app)
        drains.append(drain)

    router_env = lambda: dict(kafka, WHARF_ROUTER_TOKEN=secrets["WHARF_ROUTER_TOKEN"],
                              WHARF_ROUTER__HTTPS_LISTEN=f"127.0.0.1:{free_port()}",
                              WHARF_ROUTER__HTTP_LISTEN="127.0.0.1:0", WHARF_ROUTER__INTERNAL_LISTEN="127.0.0.1:0",
                              WHARF_ROUTER__ADMIN_LISTEN="127.0.0.1:0")
    routers = [Wharf(args.binary, "router", ["--control-api", follow(i)], os.path.join(tmp, f"router{i}"),
                     router_env()) for i in range(2)]
    shuttle_env = dict(kafka, WHARF_LOGSHUTTLE_TOKEN=secrets["WHARF_LOGSHUTTLE_TOKEN"],
                       WHARF_SESSION_SECRET=secrets["WHARF_SESSION_SECRET"], WHARF_LOGSHUTTLE__LISTEN="127.0.0.1:0")
    shuttles = [Wharf(args.binary, "logshuttle", ["--control-api", follow(i), "--kafka", broker.brokers],
                      os.path.join(tmp, f"shuttle{i}"), shuttle_env) for i in range(3)]
    cas = [r.addresses["ca"] for r in routers]
    https_ports = [int(r.addresses["router_https"].rsplit(":", 1)[1]) for r in routers]

    def serves(r, app, want=None):
        ctx = ssl.create_default_context(cafile=r.addresses["ca"])
        port = int(r.addresses["router_https"].rsplit(":", 1)[1])
        try:
            conn = http.client.HTTPSConnection(f"{app}.localhost", port, context=ctx, timeout=5)
            conn.sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                                        server_hostname=f"{app}.localhost")
            conn.request("GET", "/", headers={"Host": f"{app}.localhost"})
            resp = conn.getresponse()
            body = resp.read().decode()
            return resp.status == 200 and (want is None or body.startswith(want))
        except (OSError, http.client.HTTPException):
            return False

    for r in routers:
        for app in apps:
            until("every router to serve every app", lambda: serves(r, app))
    load = Load(https_ports, cas, apps, args.clients)
    until("the load's lines at every drain", lambda: all(d.first for d in drains), timeout=120)
    print(f"fleet up: 2 control APIs, 2 routers, 3 logshuttles, {args.apps} apps x 2 dynos, "
          f"{args.clients} HTTPS clients per router; binary {os.path.relpath(args.binary, ROOT)}", flush=True)

    phases = []  # (name, recovered-what, seconds, t_fault)

    def settle(seconds):
        time.sleep(seconds)  # load runs meanwhile: the phase's traffic, not a wait for a condition

    expected_dead = set()

    def check_alive():
        for name, group in [("api", apis), ("router", routers), ("shuttle", shuttles)]:
            for i, w in enumerate(group):
                code = w.proc.poll()
                if code is not None and (name, i, w.proc.pid) not in expected_dead:
                    expected_dead.add((name, i, w.proc.pid))
                    print(f"  UNEXPECTED: {name}{i} (pid {w.proc.pid}) exited with {code}; see {w.data_dir}.log",
                          flush=True)
                    phases[-1].setdefault("died", []).append(f"{name}{i} exited {code}")

    deliberate = set()

    def killed(name, i, w):
        expected_dead.add((name, i, w.proc.pid))
        deliberate.add((name, i, w.proc.pid))

    def versions_now():
        """The snapshot version each live data plane serves now: routers' `/metrics`, logshuttles'
        kept copy ("-" for one that is not running)."""
        out = [str(int(r.metric("wharf_router_snapshot_version"))) if r.proc.poll() is None else "-" for r in routers]
        out += [str(s.kept_version()) if s.proc.poll() is None else "-" for s in shuttles]
        return ",".join(out)

    def begin(name):
        if phases:
            check_alive()
            phases[-1]["versions"] = versions_now()
        load.phase = len(phases)
        phases.append({"name": name, "recovery": None, "what": "", "killed_router": None})
        print(f"phase {len(phases) - 1}: {name}", flush=True)
        settle(args.phase / 2)
        return phases[-1]

    def first_line_after(t, timeout=60):
        """Seconds from `t` until every app's drain has the line of a request answered after `t`,
        or None when some drain had none within `timeout`."""
        def check():
            with load.lock:
                after = [s for s in load.sent if s[4] and s[5] > t]
            latest = {}
            for s in after:
                drain = drains[apps.index(s[2])]
                with drain.lock:
                    at = drain.first.get(s[3])
                if at is not None:
                    latest[s[2]] = min(latest.get(s[2], at), at)
            state["latest"] = latest
            return latest if len(latest) == len(apps) else None
        state = {}
        got = until("lines of requests answered after the fault at every drain", check, timeout=timeout,
                    every=0.05, fatal=False)
        if got is None:
            silent = sorted(set(apps) - set(state.get("latest", {})))
            print(f"  drains with no line of a request answered after the fault: {silent}", flush=True)
            return None
        return max(got.values()) - t

    def write_reaches_everyone(name):
        """Creates an app through the live API; seconds until every router serves it and every
        logshuttle keeps a snapshot at least that new."""
        t = time.time()
        until("the write to succeed", lambda: api_call(live_api, admin, "POST", "/apps",
                                                        {"name": name, "space": "default"})[0] in (201, 409),
              timeout=120, every=0.1)
        port = free_port()
        spawn([sys.executable, os.path.abspath(__file__), "--dyno", str(port), name], os.path.join(tmp, "dynos.log"))
        until("the dyno to listen", lambda: listening(port))
        status, out = api_call(live_api, admin, "PUT", f"/apps/{name}-default/dynos/web.0",
                               {"type": "web", "host": "127.0.0.1", "port": port})
        assert status == 201, out
        status, feed = api_call(live_api, secrets["WHARF_ROUTER_TOKEN"], "GET", "/v1/snapshot")
        version = feed["version"]
        for r in routers:
            until(f"{name} served by every router", lambda: serves(r, f"{name}-default", name), timeout=120)
        for s in shuttles:
            if s.proc.poll() is None:
                until("every logshuttle to keep the new snapshot", lambda: s.kept_version() >= version, timeout=120)
        return time.time() - t

    def restart_logshuttles(why):
        """Restarts every running logshuttle (SIGTERM, then start), as an operator would, so that
        the next fault starts from a fleet that delivers."""
        print(f"  restarting the logshuttles: {why}", flush=True)
        # A logshuttle that died by itself (librdkafka's SIGSEGV, finding 3) is started again too,
        # as systemd's Restart=always would; it is reported first. One killed on purpose stays dead.
        check_alive()
        for i, sh in enumerate(shuttles):
            if sh.proc.poll() is None:
                killed("shuttle", i, sh)
                sh.proc.terminate()
                sh.proc.wait(timeout=60)
                sh.start()
            elif ("shuttle", i, sh.proc.pid) not in deliberate:
                sh.start()
        return first_line_after(time.time())

    # 0: steady state.
    p = begin("steady state (no fault)")
    settle(args.phase / 2)

    # 1: kill -9 a router.
    p = begin("kill -9 router0")
    t = time.time()
    p["killed_router"] = 0
    p["killed_at"] = time.time()
    killed("router", 0, routers[0])
    routers[0].kill9()
    routers[0].start()
    until("router0 to serve again", lambda: serves(routers[0], apps[0]))
    p["recovery"], p["what"] = time.time() - t, "router0 restarted and serving (from its kept copy)"
    settle(args.phase / 2)

    # 2: kill -9 the busiest logshuttle.
    p = begin("kill -9 the busiest logshuttle")
    sent = [s.metric("wharf_drain_lines_sent_total") for s in shuttles]
    busiest = max(range(len(shuttles)), key=lambda i: sent[i])
    p["name"] += f" (shuttle{busiest}, {int(sent[busiest])} lines delivered)"
    t = time.time()
    killed("shuttle", busiest, shuttles[busiest])
    shuttles[busiest].kill9()
    p["recovery"] = first_line_after(t)
    p["what"] = "a line of a request answered after the kill at every drain"
    if p["recovery"] is None:
        p["repair"] = restart_logshuttles("the dead member's partitions were not taken over")
    settle(args.phase / 2)

    # 3: kill -9 a control API.
    p = begin("kill -9 api0")
    t = time.time()
    killed("api", 0, apis[0])
    apis[0].kill9()
    p["recovery"] = write_reaches_everyone("afterapi")
    p["what"] = "an app created through api1 served by every router, in every logshuttle's copy"
    settle(args.phase / 2)

    # 4: restart the broker.
    p = begin(f"restart the broker (tansu, {args.broker_storage} storage)")
    p["broker_stop"] = time.time()
    broker.restart()
    p["broker_gone"], p["broker_back"] = broker.gone, time.time()
    p["timeout"] = 30
    p["recovery"] = first_line_after(p["broker_back"], timeout=p["timeout"])
    p["what"] = "from the broker's return, a line of a request answered after it at every drain"
    if p["recovery"] is None:
        # A broker that came back without its data: if the topic was not created again, or a
        # logshuttle stopped, restarting them shows whether anything else was wrong.
        p["repair"] = restart_logshuttles("delivery did not resume after the broker's restart")
    settle(args.phase / 2)

    # 5: restart PostgreSQL.
    p = begin("restart PostgreSQL")
    t = time.time()
    pg.stop()
    settle(1)
    pg.start()
    write_reaches_everyone("afterpg")
    p["recovery"] = time.time() - t
    p["what"] = "from the stop: a write succeeds and reaches every data plane"
    settle(args.phase / 2)

    # 6: add a fourth logshuttle.
    p = begin("add shuttle3")
    t = time.time()
    shuttles.append(Wharf(args.binary, "logshuttle", ["--control-api", follow(3), "--kafka", broker.brokers],
                          os.path.join(tmp, "shuttle3"), shuttle_env))
    until("shuttle3 to deliver lines", lambda: shuttles[3].metric("wharf_drain_lines_sent_total") > 0,
          timeout=120, every=0.1)
    p["recovery"], p["what"] = time.time() - t, "shuttle3 delivering lines"
    settle(args.phase / 2)

    check_alive()
    phases[-1]["versions"] = versions_now()
    load.stop()
    sent = list(load.sent)
    ok = [s for s in sent if s[4]]

    # Every answered request's line, or the deadline: what is missing then is lost.
    def missing():
        out = []
        for s in ok:
            d = drains[apps.index(s[2])]
            with d.lock:
                if s[3] not in d.first:
                    out.append(s)
        return out
    deadline = time.time() + 60
    while missing() and time.time() < deadline:
        time.sleep(0.5)
    lost = {(s[0], s[1], s[3], s[5]) for s in missing()}
    for p in phases:
        if "broker_back" in p:
            p["topic_back"] = topic_created_after(tmp, p["broker_back"])

    versions = {f"router{i}": int(r.metric("wharf_router_snapshot_version")) for i, r in enumerate(routers)}
    versions.update({f"shuttle{i}": s.kept_version() for i, s in enumerate(shuttles) if s.proc.poll() is None})
    status, feed = api_call(live_api, secrets["WHARF_ROUTER_TOKEN"], "GET", "/v1/snapshot")

    # The in-memory broker's restart: the HELD seconds before its stop.
    HELD = 5.0
    restart = next((q for q in phases if "broker_back" in q), None)
    memory_window = (restart["broker_stop"] - HELD, restart["broker_back"]) \
        if restart and args.broker_storage == "memory" else None
    # Since every producer holds its lines while its brokers are away and until it has seen its
    # topic again (docs/fleet.md, "restart the broker"), only the lines the broker held when it
    # ended are its loss (it acknowledges produces until it has ended, after SIGTERM too): those
    # answered after that count as any other's.
    memory_until = restart["broker_gone"] if memory_window else 0
    broken = []
    print()
    print("lost: lines of answered requests not at their drain 60 s after the load stopped, at healthy drains;")
    print("unsent: those a killed router answered before its kill and the broker had not acknowledged (lost with its producer);")
    print("memory: those an in-memory broker held (answered from 5 s before its stop until it had ended);")
    print("versions: the snapshot version router0,router1,shuttle0..3 served at the end of the fault's phase")
    print(f"{'fault':58} {'requests':>9} {'failed r0/r1':>13} {'lost':>5} {'unsent':>6} {'memory':>6} {'dup':>5} "
          f"{'recovery':>9}  {'versions':17} recovered when")
    for i, p in enumerate(phases):
        mine = [s for s in sent if s[0] == i]
        failed = [sum(1 for s in mine if not s[4] and s[1] == r) for r in range(2)]
        dup = 0
        lost_here = [k for k in lost if k[0] == i]
        # Lines of requests answered shortly before the broker stopped (HELD seconds: not yet at
        # their drain when it stopped, whichever phase they belong to) were in its memory: its
        # storage's loss. Lines answered while it was away or after its return but before its
        # topic existed again are not: tansu 0.6 in memory acknowledges a produce to a topic it
        # does not have and drops it when the topic is created, so every producer holds its lines
        # until it has seen the topic again. A broker that keeps its data loses none: its lines
        # count as any other.
        broker_loss = [k for k in lost_here if memory_window and memory_window[0] <= k[3] < memory_until]
        # Only what the killed router answered before its kill: after its restart its lines count
        # as any other's.
        killed_loss = [k for k in lost_here if k[1] == p["killed_router"] and k[3] <= p["killed_at"]]
        healthy_loss = len(lost_here) - len(broker_loss) - len(killed_loss)
        for s in mine:
            if s[4]:
                d = drains[apps.index(s[2])]
                dup += max(0, d.count.get(s[3], 0) - 1)
        rec = "-" if p["recovery"] is None else f"{p['recovery']:.2f} s"
        if p["what"] and p["recovery"] is None:
            rec = "never"
            broken.append(f"{p['name']}: did not recover ({p['what']})")
        print(f"{p['name']:58} {len(mine):>9} {failed[0]:>6}/{failed[1]:<6} {healthy_loss:>5} {len(killed_loss):>6} "
              f"{len(broker_loss):>6} {dup:>5} {rec:>9}  {p.get('versions', ''):17} {p['what']}")
        for d in p.get("died", []):
            print(f"{'':58} UNEXPECTED: {d}")
            broken.append(f"{p['name']}: {d}")
        if "repair" in p:
            rep = "never" if p["repair"] is None else f"{p['repair']:.2f} s"
            print(f"{'':58} not recovered in {p.get('timeout', 60)} s; after the logshuttles were restarted by hand, "
                  f"lines flowed in {rep}")
        if "broker_back" in p and lost_here:
            # Where the lost lines fall around the restart, for the one who has to find out why.
            when = sorted(round(k[3] - p["broker_stop"], 2) for k in lost_here)
            print(f"{'':58} lost lines answered at (s from the SIGTERM; it had ended at "
                  f"{p['broker_gone'] - p['broker_stop']:.2f}, back at {p['broker_back'] - p['broker_stop']:.2f}): "
                  f"{when[:12]}{' ...' if len(when) > 12 else ''}")
        if "broker_back" in p and args.broker_storage == "memory":
            back = p.get("topic_back")
            print(f"{'':58} the topic existed again "
                  + (f"{back - p['broker_back']:.2f} s after the broker's return" if back else "(no process created it)"))
        errors = {}
        for s in mine:
            if not s[4]:
                errors[(s[1], s[6])] = errors.get((s[1], s[6]), 0) + 1
        for (r, e), n in sorted(errors.items()):
            print(f"{'':58} failed on router{r} ({n}x): {e[:120]}")
        for r in range(2):
            if failed[r] > (args.clients if p["killed_router"] == r else 0):
                broken.append(f"{p['name']}: router{r} failed {failed[r]} requests")
        if healthy_loss:
            broken.append(f"{p['name']}: {healthy_loss} lines of answered requests not delivered to healthy drains")
    print()
    print(f"requests {len(sent)}, answered {len(ok)}; snapshot version published {feed['version']}; "
          f"each data plane serves: {versions}")
    # The routers' Kafka producers: what the brokers took, what failed and was sent again, and
    # what was given up (router0's since its restart); and which partitions each live logshuttle owns.
    for i, r in enumerate(routers):
        counts = {k: int(r.metric(f"wharf_bus_kafka_events_{k}_total")) for k in ("produced", "failed", "retried", "dropped")}
        print(f"router{i} kafka producer: {counts}, waiting {int(r.metric('wharf_bus_kafka_events_waiting'))}")
        if counts["dropped"]:
            broken.append(f"router{i} dropped {counts['dropped']} log events after failed deliveries")
    owners = {f"shuttle{i}": int(s.metric("wharf_logshuttle_partitions_assigned"))
              for i, s in enumerate(shuttles) if s.proc.poll() is None}
    print(f"partitions each live logshuttle owns: {owners} (of {sum(owners.values())})")
    stale = {k: v for k, v in versions.items() if v != feed["version"]}
    if stale:
        broken.append(f"data planes behind the published version: {stale}")
    for b in broken:
        print("BROKEN:", b)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
