"""``python -m kara_core.cli``: the same as the ``kara`` script."""

from kara_core.cli import main

main()
