"""``python -m countenance``: the same as the ``countenance`` command."""

from countenance.cli import main

main()
