#!/usr/bin/env python3
"""`wharf serve` as a benchmark's child process: a temporary data directory, every listener on a
free loopback port, no token from the caller's environment, and its addresses read from the
`addresses.json` it writes when ready (never from its banner). Shared by benches/supervisor.py
and benches/metrics.py.
"""

import json
import os
import subprocess
import sys
import tempfile
import time


class WharfProcess:
    """A started `wharf serve`: `proc`, `dir` (the temporary directory), `api` and `admin` (base
    URLs) and the admin `token`. `env` adds `WHARF_*` settings."""

    def __init__(self, binary, env=None, prefix="wharf-bench-"):
        self.dir = tempfile.mkdtemp(prefix=prefix)
        data = os.path.join(self.dir, "data")
        child_env = dict(os.environ)
        for key in ("WHARF_ADMIN_TOKEN", "WHARF_ROUTER_TOKEN", "WHARF_LOGSHUTTLE_TOKEN", "WHARF_DATA_PLANE_TOKEN",
                    "WHARF_SESSION_SECRET"):
            child_env.pop(key, None)
        for key in ("CONTROL_API__LISTEN", "ROUTER__HTTP_LISTEN", "ROUTER__HTTPS_LISTEN",
                    "ROUTER__INTERNAL_LISTEN", "ROUTER__ADMIN_LISTEN"):
            child_env["WHARF_" + key] = "127.0.0.1:0"
        child_env["WHARF_LOG"] = "warn"
        child_env.update(env or {})
        self.proc = subprocess.Popen([binary, "serve", "--data-dir", data], env=child_env,
                                     stdout=subprocess.DEVNULL, stderr=open(data + ".stderr", "w"))
        addresses = os.path.join(data, "addresses.json")
        for _ in range(1200):
            try:
                with open(addresses) as f:
                    doc = json.load(f)
                if doc.get("pid") == self.proc.pid:
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        else:
            sys.exit("wharf did not start")
        self.api = "http://" + doc["control_api"]
        self.admin = "http://" + doc["admin"]
        with open(os.path.join(data, "admin-token")) as f:
            self.token = f.read().strip()
