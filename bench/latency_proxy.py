"""A TCP proxy on 127.0.0.1 that delays what clients send, standing in for a network.

Every chunk a client sends reaches the server ``latency`` seconds after it arrived (in
order, without limiting throughput: a chunk waits for its own due time only), so each
request pays the latency once, whichever server answers it; answers flow back at once.
Both HTTP servers of bench/http.py (kara's static server and nginx) sit behind it.

    python bench/latency_proxy.py UPSTREAM_PORT LATENCY_SECONDS   (prints its own port)
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

CHUNK = 256 * 1024


async def _forward_now(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _forward_late(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, latency: float) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def send() -> None:
        while True:
            due, data = await queue.get()
            if not data:
                break
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            writer.write(data)
            await writer.drain()

    sender = asyncio.create_task(send())
    try:
        while data := await reader.read(CHUNK):
            queue.put_nowait((loop.time() + latency, data))
    except ConnectionError:
        pass
    queue.put_nowait((0.0, b""))
    with contextlib.suppress(ConnectionError):
        await sender
    with contextlib.suppress(Exception):
        writer.close()


async def _serve(upstream_port: int, latency: float) -> None:
    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(
            _forward_late(client_reader, server_writer, latency),
            _forward_now(server_reader, client_writer),
        )

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(_serve(int(sys.argv[1]), float(sys.argv[2])))
