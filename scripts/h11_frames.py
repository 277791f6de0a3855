#!/usr/bin/env python3
"""How h11, an independent strict HTTP/1.1 parser, frames raw requests: the differential half of
tests/conformance.rs.

Reads JSON lines from stdin, each {"id": N, "data": HEX}: the bytes a client sends on one
connection, which then closes its side. Writes one JSON line per input, in order:
{"id": N, "requests": [{"method": M, "target": T, "body": HEX}, ...], "error": null or TEXT},
the requests h11 read whole (pipelined ones included) and why it stopped, if it stopped on an
error. h11 is installed by scripts/test (pip, in a venv under target/).
"""

import json
import sys

import h11


def frames(data):
    conn = h11.Connection(our_role=h11.SERVER)
    conn.receive_data(data)
    conn.receive_data(b"")
    requests, current, error = [], None, None
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED or isinstance(event, h11.ConnectionClosed):
                break
            if isinstance(event, h11.Request):
                current = {"method": event.method.decode("latin-1"), "target": event.target.decode("latin-1"), "body": b""}
            elif isinstance(event, h11.Data):
                current["body"] += event.data
            elif isinstance(event, h11.EndOfMessage):
                current["body"] = current["body"].hex()
                requests.append(current)
                current = None
                # Answer, so that the next pipelined request may be read.
                conn.send(h11.Response(status_code=200, headers=[("Content-Length", "0")]))
                conn.send(h11.EndOfMessage())
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                    break
                conn.start_next_cycle()
    except h11.RemoteProtocolError as e:
        error = str(e) or "protocol error"
    except h11.LocalProtocolError as e:
        error = "local: " + (str(e) or "protocol error")
    return requests, error


def main():
    for line in sys.stdin:
        item = json.loads(line)
        requests, error = frames(bytes.fromhex(item["data"]))
        print(json.dumps({"id": item["id"], "requests": requests, "error": error}), flush=True)


if __name__ == "__main__":
    main()
