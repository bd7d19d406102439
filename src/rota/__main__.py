"""``python -m rota``: the same as the ``rota`` command."""

from rota.cli.main import main

main()
