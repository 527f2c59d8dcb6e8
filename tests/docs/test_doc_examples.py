"""Every ```python block of README.md and docs/*.md runs, so no example can rot.

The blocks of one file run in order in one fresh process (a shared namespace, as a
reader goes through the page), in an empty temporary folder, so relative store URLs
(``file://my-store``) land there. The line right before a block may say how to run it:

- ``<!-- doc-test: skip: REASON -->``: illustrative only (kept to a very few);
- ``<!-- doc-test: KIND=URL ... -->``: the block talks to a server; the test starts it
  (``oss``: the OSS test server; ``http-gateway``: ``kara serve``; ``http-mirror``: a
  static web server of the same folder) and puts its URL (and credentials: ``app_key=``,
  ``app_secret=``, ``token=``) in place of ``URL``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from contextlib import ExitStack
from pathlib import Path

import pytest
from kara_http.testing import GatewayServer, StaticServer
from kara_oss.testing import OSSTestServer

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"(?:<!-- doc-test: (?P<how>[^\n]*?) -->\n)?```python\n(?P<code>.*?)```", re.S)
TOKEN = "doc-test-token"
MAX_SKIPPED = 2

# The blocks run in the namespace of __main__ itself, so what they define can be pickled
# by reference (a function handed to a process pool, as a script would).
RUNNER = """
import json as _json, sys as _sys, traceback as _traceback
for _n, _code in enumerate(_json.loads(_sys.stdin.read())):
    try:
        exec(compile(_code, f"<block {_n}>", "exec"), globals())
    except BaseException:
        print(f"block {_n} failed:", file=_sys.stderr)
        _traceback.print_exc()
        _sys.exit(1)
"""


def _blocks(page: Path) -> list[tuple[str, str]]:
    # A block inside a list item is indented like the item; it runs dedented.
    return [(m.group("how") or "", textwrap.dedent(m.group("code"))) for m in BLOCK.finditer(page.read_text())]


def _with_servers(how: str, code: str, folder: Path, stack: ExitStack) -> str:
    for kind, url in (pair.split("=", 1) for pair in how.split()):
        if kind == "oss":
            server = stack.enter_context(OSSTestServer())
            code = code.replace(url, f"oss://{server.endpoint}/{server.bucket}")
            code = re.sub(r'app_key="[^"]*"', f'app_key="{server.access_key_id}"', code)
            code = re.sub(r'app_secret="[^"]*"', f'app_secret="{server.access_key_secret}"', code)
        elif kind == "http-gateway":
            gateway = stack.enter_context(GatewayServer(f"file://{folder / 'served'}", token=TOKEN))
            code = code.replace(url, gateway.url).replace('token="..."', f'token="{TOKEN}"')
        elif kind == "http-mirror":
            (folder / "served").mkdir(exist_ok=True)
            code = code.replace(url, stack.enter_context(StaticServer(str(folder / "served"))).url)
        else:
            raise AssertionError(f"unknown doc-test server {kind!r}")
    return code


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_python_block_of_the_page_runs(page: Path, tmp_path: Path) -> None:
    with ExitStack() as stack:
        blocks = []
        for how, code in _blocks(page):
            if how.startswith("skip:"):
                continue
            blocks.append(_with_servers(how, code, tmp_path, stack) if how else code)
        if not blocks:
            return
        proc = subprocess.run(
            [sys.executable, "-c", RUNNER],
            input=json.dumps(blocks),
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=300,
            check=False,
        )
    assert proc.returncode == 0, f"{page.name}:\n{proc.stderr[-4000:]}"


def test_blocks_marked_illustrative_are_few_and_say_why() -> None:
    skipped = [(page.name, how) for page in PAGES for how, _ in _blocks(page) if how.startswith("skip:")]
    assert len(skipped) <= MAX_SKIPPED, skipped
    assert all(len(how) > len("skip: ") + 10 for _, how in skipped)
    assert sum(len(_blocks(page)) for page in PAGES) >= 10  # the pattern finds the blocks
