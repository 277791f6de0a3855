#!/usr/bin/env python3
"""A build of a 50 MB source archive: Wharf's fetch and unpack against `curl | tar xz` on the
same file from the same server, in one run, interleaved.

    python3 benches/build.py --wharf target/release/wharf --repeat 3

The archive is a tar.gz of files of random bytes (so gzip cannot shrink it: 50 MB on the wire)
with a Procfile. The test serves it with Python's http.server on loopback. For Wharf, the time
is from `POST /apps/{app}/builds` to the build's end, read off its output: the steps up to
"Unpacked" (fetch, checksum, unpack) are the comparison with curl | tar; the whole build also
packs the slug and releases it, reported beside. Medians of `--repeat` rounds.
"""
import argparse
import http.server
import json
import os
import shutil
import statistics
import subprocess
import tarfile
import tempfile
import threading
import time
import urllib.request


def make_archive(path, megabytes):
    src = tempfile.mkdtemp(prefix="wharf-bench-src-")
    with open(os.path.join(src, "Procfile"), "w") as f:
        f.write("web: exec python3 -m http.server $PORT\n")
    for i in range(megabytes * 10):
        with open(os.path.join(src, f"blob-{i:04}.bin"), "wb") as f:
            f.write(os.urandom(100 * 1024))
    with tarfile.open(path, "w:gz", compresslevel=1) as t:
        for name in sorted(os.listdir(src)):
            t.add(os.path.join(src, name), arcname=name)
    shutil.rmtree(src)


def serve(directory):
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=directory)
    http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def api(base, token, method, path, body=None):
    req = urllib.request.Request(base + path, method=method, data=None if body is None else json.dumps(body).encode())
    req.add_header("Authorization", f"Bearer {token}")
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read() or b"null")


def curl_tar(url):
    out = tempfile.mkdtemp(prefix="wharf-bench-tar-")
    start = time.monotonic()
    subprocess.run(f"curl -sf {url} | tar xz -C {out}", shell=True, check=True)
    elapsed = time.monotonic() - start
    shutil.rmtree(out)
    return elapsed


def wharf_build(base, token, url, app):
    start = time.monotonic()
    build = api(base, token, "POST", f"/apps/{app}/builds", {"source_blob": {"url": url}})
    unpacked = None
    # Follow the output stream: it ends with the build; note when "Unpacked" arrives.
    with urllib.request.urlopen(build["output_stream_url"]) as r:
        for line in r:
            if b"Unpacked" in line and unpacked is None:
                unpacked = time.monotonic() - start
    total = time.monotonic() - start
    status = api(base, token, "GET", f"/apps/{app}/builds/{build['id']}")["status"]
    assert status == "succeeded", status
    return unpacked, total


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--wharf", default="target/release/wharf")
    p.add_argument("--megabytes", type=int, default=50)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="wharf-bench-build-")
    archive = os.path.join(work, "source.tgz")
    make_archive(archive, args.megabytes)
    size = os.path.getsize(archive)
    server = serve(work)
    url = f"http://127.0.0.1:{server.server_port}/source.tgz"
    data = os.path.join(work, "data")
    env = dict(os.environ, WHARF_CONTROL_API__LISTEN="127.0.0.1:0", WHARF_ROUTER__HTTP_LISTEN="127.0.0.1:0",
               WHARF_ROUTER__HTTPS_LISTEN="127.0.0.1:0", WHARF_ROUTER__INTERNAL_LISTEN="127.0.0.1:0",
               WHARF_ROUTER__ADMIN_LISTEN="127.0.0.1:0", WHARF_SUPERVISOR__KEEP_RELEASES="1")
    wharf = subprocess.Popen([args.wharf, "serve", "--data-dir", data], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        addresses = os.path.join(data, "addresses.json")
        for _ in range(300):
            if os.path.exists(addresses):
                break
            time.sleep(0.1)
        base = json.load(open(addresses))["control_api"]
        if "://" not in base:
            base = "http://" + base
        token = open(os.path.join(data, "admin-token")).read().strip()
        api(base, token, "POST", "/apps", {"name": "bench"})
        curls, unpacks, totals = [], [], []
        for _ in range(args.repeat):
            curls.append(curl_tar(url))
            unpacked, total = wharf_build(base, token, url, "bench")
            unpacks.append(unpacked)
            totals.append(total)
        c, u, t = statistics.median(curls), statistics.median(unpacks), statistics.median(totals)
        print(f"archive: {size / 1e6:.1f} MB, {args.repeat} rounds, medians")
        print(f"curl | tar xz:                      {c:.2f} s")
        print(f"wharf fetch + checksum + unpack:    {u:.2f} s  (speed {c / u:.2f}x of curl | tar)")
        print(f"wharf whole build (+ pack, release): {t:.2f} s")
    finally:
        wharf.terminate()
        wharf.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
