"""HTTP mirrors: kara against kara-storage 2.1.5 reading the same store from two servers.

A file:// store is written with kara: the 200,000-record dataset of bench/row.py
(``common.small_record``) and the folder of bench/objects.py (2,000 files of 4-64 KiB and
4 files of 64 MiB) saved as a directory version. Two static web servers with Range
support serve that folder on 127.0.0.1, each behind the same latency proxy
(bench/latency_proxy.py: every request reaches the server 5 ms late, like a server a few
network hops away):

- ``kara-static``: kara's own test server (``kara_http.testing``: the standard library's
  threaded ``http.server`` with sendfile), in its own process. It stands in for nginx or
  a CDN on another machine, whose CPU per request is tens of microseconds;
- ``nginx``: the Debian package's nginx, one worker process, started on a random port
  with a configuration in a temporary folder (``apt-get install nginx`` to run this).

Both libraries then read each server: the dataset in order, 500 random ``ds[i]``
(same indices), and a load of the folder into an empty directory (tmpfs when there is
one, so the timing is about the transfer, not this machine's disk). Every round of every
library and server is a fresh interpreter (bench/fresh.py); each row says which server
it used. The servers share the machine's 2 cores with the clients, as does the proxy.

    .venv/bin/python bench/http.py [ROUNDS]
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

# This file shares its name with the standard library's ``http`` package: keep bench/
# behind the standard library on sys.path, or ``import requests`` would import this file.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE] + [_HERE]

from common import k215_python, remove_workdir, small_record, workdir  # noqa: E402
from fresh import ROUNDS, Clock, Contender, Row, measure, print_table  # noqa: E402
from objects import make_folder  # noqa: E402

RECORDS = 200_000
#: 2.1.5 takes ~20 ms per random read here (a request per read, new connections).
RANDOM_READS = 500
LATENCY = 0.005
#: kara's load_directory(workers=...) for the informational row (2.1.5 has no such knob).
FOLDER_WORKERS = 32
SERVERS = ("kara-static", "nginx")


def prepare(store_dir: str, src: str) -> None:
    """Write the dataset and save the folder into a file:// store with kara."""
    from kara_core import KaraStorage

    store = KaraStorage("file://" + store_dir, fsync=False)
    with store.open_dataset("bench", "small", "w", version="1") as ds:
        ds.write_many(small_record(i) for i in range(RECORDS))
    make_folder(src)
    # A file:// store that is served over HTTP is saved with packs (docs/objects.md#packs):
    # kara's loads over HTTP read the small files a pack at a time; 2.1.5 reads the blobs.
    store.save_directory("bench", "dir", src, progress_bar=False, pack_small_files=True)


def _url(params: dict[str, Any]) -> str:
    return params["urls"][os.environ["BENCH_SERVER"]]


def _dst(params: dict[str, Any], who: str) -> str:
    return os.path.join(params["targets"], f"{who}-{os.environ['BENCH_SERVER']}-{os.getpid()}")


def _rows(store: Any, params: dict[str, Any], clock: Clock) -> None:
    with clock.step("sequential"):
        ds = store.open_dataset("bench", "small", "r")
        count = sum(1 for _ in ds)
        ds.close()
    assert count == RECORDS, count
    ds = store.open_dataset("bench", "small", "r")
    with clock.step("random"):
        for i in params["indices"]:
            ds[i]
    ds.close()


def kara_reads(params: dict[str, Any], clock: Clock) -> None:
    """kara over HTTP: the dataset in order, random ds[i], the folder (default and 32 workers)."""
    from kara_core import KaraStorage

    store = KaraStorage(_url(params))
    _rows(store, params, clock)
    dst = _dst(params, "kara")
    with clock.step("folder"):
        store.load_directory("bench", "dir", dst, progress_bar=False)
    shutil.rmtree(dst, ignore_errors=True)
    with clock.step("folder-workers"):
        store.load_directory("bench", "dir", dst, progress_bar=False, workers=FOLDER_WORKERS)
    shutil.rmtree(dst, ignore_errors=True)
    store.close()


def k215_reads(params: dict[str, Any], clock: Clock) -> None:
    """2.1.5 over HTTP: the dataset in order, random ds[i], the folder."""
    import kara_storage

    store = kara_storage.KaraStorage(_url(params))
    _rows(store, params, clock)
    dst = _dst(params, "k215")
    os.makedirs(dst)
    with clock.step("folder"):
        store.load_directory("bench", "dir", dst, progress_bar=False)
    shutil.rmtree(dst, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(port: int) -> None:
    deadline = time.time() + 30
    while time.time() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing answers on 127.0.0.1:{port}")


NGINX_CONF = """
user root;
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    keepalive_timeout 60s;
    default_type application/octet-stream;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location / {{ }}
    }}
}}
"""


def start_nginx(root: str, prefix: str) -> tuple[subprocess.Popen[bytes], int]:
    """nginx serving ``root`` on a random 127.0.0.1 port, configured in ``prefix``."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(nginx):
        sys.exit("nginx not found: apt-get install -y nginx")
    port = _free_port()
    conf = os.path.join(prefix, "nginx.conf")
    with open(conf, "w") as fh:
        fh.write(NGINX_CONF.format(prefix=prefix, port=port, root=root))
    server = subprocess.Popen([nginx, "-p", prefix, "-c", conf], stderr=subprocess.DEVNULL)
    _wait_for(port)
    return server, port


def start_kara_static(root: str) -> tuple[subprocess.Popen[str], int]:
    """kara's static test server (no latency of its own) in its own process."""
    server = subprocess.Popen([sys.executable, "-m", "kara_http.testing", root], stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    return server, int(server.stdout.readline().strip().rsplit(":", 1)[1].strip("/"))


def start_proxy(upstream: int) -> tuple[subprocess.Popen[str], str]:
    """The latency proxy in front of ``upstream``; returns it and its URL."""
    proxy = subprocess.Popen(
        [sys.executable, os.path.join(_HERE, "latency_proxy.py"), str(upstream), str(LATENCY)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proxy.stdout is not None
    return proxy, f"http://127.0.0.1:{int(proxy.stdout.readline())}"


def load_target_root(work: str) -> str:
    """Where the folder loads write: tmpfs when there is one (see the module docstring)."""
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        return tempfile.mkdtemp(prefix="kara-bench-http-", dir="/dev/shm")
    return work


CONTENDERS = [
    Contender(f"{library} @{server}", python, {"reads": function}, {"BENCH_SERVER": server})
    for server in SERVERS
    for library, python, function in (("kara", sys.executable, "kara_reads"), ("2.1.5", k215_python(), "k215_reads"))
]


def main() -> None:
    """Prepare the store, serve it twice behind the proxy, run both libraries, print the tables."""
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else ROUNDS
    work = workdir("http")
    targets = load_target_root(work)
    processes: list[subprocess.Popen[Any]] = []
    try:
        store_dir = os.path.join(work, "store")
        prepare(store_dir, os.path.join(work, "src"))
        os.environ["KARA_CACHE_DIR"] = os.path.join(work, "cache")
        static, static_port = start_kara_static(store_dir)
        processes.append(static)
        nginx_prefix = os.path.join(work, "nginx")
        os.makedirs(nginx_prefix)
        nginx, nginx_port = start_nginx(store_dir, nginx_prefix)
        processes.append(nginx)
        urls = {}
        for name, port in (("kara-static", static_port), ("nginx", nginx_port)):
            proxy, urls[name] = start_proxy(port)
            processes.append(proxy)
        indices = random.Random(5).choices(range(RECORDS), k=RANDOM_READS)
        params = {"urls": urls, "indices": indices, "targets": targets}
        results = measure("http", CONTENDERS, params, rounds)
    finally:
        for process in reversed(processes):
            process.terminate()
            process.wait(timeout=10)
        remove_workdir(work)
        shutil.rmtree(targets, ignore_errors=True)
    ms = int(LATENCY * 1000)
    where = " (tmpfs)" if targets != work else ""
    for server in SERVERS:
        print_table(
            f"HTTP static mirror: {server} on 127.0.0.1 behind the latency proxy (+{ms} ms per request)",
            results,
            [
                Row(f"sequential read, {RECORDS:,} records", "reads", "sequential", 1.5),
                Row(f"random ds[i], {RANDOM_READS:,} reads", "reads", "random", 3.0),
                Row(f"folder load, 2,000 small + 4 x 64 MiB{where}", "reads", "folder", 3.0),
            ],
            [f"kara @{server}", f"2.1.5 @{server}"],
            f"2.1.5 @{server}",
        )
        kara = results[f"kara @{server}", "reads"]
        base = results[f"2.1.5 @{server}", "reads"]
        workers = kara.median("folder-workers")
        print(
            f"  folder load, kara with workers={FOLDER_WORKERS} @{server}: median {workers:.3f} s "
            f"({base.median('folder') / workers:.2f}x 2.1.5's default load)"
        )


if __name__ == "__main__":
    main()
