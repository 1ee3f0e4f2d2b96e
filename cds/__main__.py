"""``python -m cds``: the same command line as the ``cds`` script."""

from cds.apps.cli import main

main()
