"""The web UI and HTTP API (``rota ui``): FastAPI over the store, secure by default.

A face, like :mod:`rota.cli`: it reads the store, and its actions call the same engine functions
as the commands (those that need a flow's code run the same ``rota`` command in a child process,
so the server never imports user code). Nothing imports this package.
"""
