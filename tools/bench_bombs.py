"""Peak memory of the client against compression bombs on loopback (issue 13 figures).

    python tools/bench_bombs.py [--gib 1]

Serves a gzip listing that expands to --gib GiB and a gzip "PNG" of zeros, asks the client
for both, and prints what was refused, how fast, and the peak RSS of this process.
"""
from __future__ import annotations

import argparse
import resource
import tempfile
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def gzip_of(head: bytes, fill: bytes, mib: int, tail: bytes) -> bytes:
    c = zlib.compressobj(1, zlib.DEFLATED, 31)
    block = fill * ((1 << 20) // len(fill))
    return c.compress(head) + b"".join(c.compress(block) for _ in range(mib)) + c.compress(tail) + c.flush()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gib", type=int, default=1)
    a = ap.parse_args()
    mib = a.gib * 1024
    bodies = {"/api/objects": gzip_of(b'{"total":1,"objectIDs":[1', b" ", mib, b"]}"),
              "/img/bomb.png": gzip_of(b"\x89PNG\r\n\x1a\n", b"\0", mib, b"")}

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):  # noqa: N802
            body = bodies[self.path.split("?")[0]]
            self.send_response(200)
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                self.wfile.write(body)
            except OSError:
                pass

        def log_message(self, *args):
            pass

    class S(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, *args):
            pass

    srv = S(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    api = f"http://127.0.0.1:{srv.server_address[1]}/api"
    from metfaces_build.met.client import ClientConfig, FetchFailure, MetClient
    client = MetClient(ClientConfig(api_root=api, retries=0))
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for what, call in (("listing", lambda: client.object_ids([], "2020-01-01")),
                       ("image", lambda: client.download(f"{api[:-4]}/img/bomb.png",
                                                         Path(tempfile.mkdtemp()), "1"))):
        t0 = time.monotonic()
        try:
            call()
            outcome = "ACCEPTED"
        except FetchFailure as e:
            outcome = f"{e.status}: {e.reason}"
        print(f"{what}: {len(bodies['/api/objects' if what == 'listing' else '/img/bomb.png']) / 1e6:.1f} MB "
              f"gzip -> {a.gib} GiB: {outcome} ({time.monotonic() - t0:.2f} s)")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB "
          f"(after imports {rss0:.0f} MB)")
    client.close()
    srv.shutdown()


if __name__ == "__main__":
    main()
