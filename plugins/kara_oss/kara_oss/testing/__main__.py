"""``python -m kara_oss.testing``: run the OSS test server until stdin closes or Ctrl-C.

Prints one JSON line with ``endpoint``, ``bucket``, ``url``, ``app_key`` and
``app_secret`` so that a parent process (a benchmark, a shell script) can connect.
"""

from __future__ import annotations

import argparse
import json
import sys

from . import OSSTestServer


def main(argv: list[str] | None = None) -> None:
    """Parse the command line, start the server and serve until stdin reaches EOF."""
    parser = argparse.ArgumentParser(prog="python -m kara_oss.testing", description=__doc__)
    parser.add_argument("--bucket", default="kara-test")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: chosen by the OS)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every request")
    parser.add_argument(
        "--derived-etags",
        action="store_true",
        help="ETags from the CRC64 instead of the MD5 of uploads (no MD5 pass over every uploaded byte)",
    )
    args = parser.parse_args(argv)
    with OSSTestServer(args.bucket, port=args.port, latency=args.latency, md5_etags=not args.derived_etags) as server:
        info = {"endpoint": server.endpoint, "bucket": server.bucket, "url": server.url(), **server.options}
        print(json.dumps(info), flush=True)
        try:
            sys.stdin.read()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
