"""The other side of a Python task run in an image: ``python3 -m rota.operators.inimage FOLDER``.

It runs inside the container (or the pod). *FOLDER* (mounted from the worker, or a folder both
see, or an object store URL) holds :data:`JOB`, the function with its arguments as cloudpickle
made them on the worker; this writes :data:`RESULT`:
``("ok", value)`` or ``("error", type name, message)``. What the function prints goes to the
container's output, so to the attempt's log; a traceback too. The image needs Python, ``rota``
and whatever the function imports; nothing here opens the metadata store.
"""

from __future__ import annotations

import os
import pickle
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

JOB = "job.pickle"
RESULT = "result.pickle"


def run(place: str) -> int:
    """Run the job at *place* (a folder, or an object store URL when the job came from a pod
    worker through an S3 artifact store) and write its result there; the exit code (0 even
    when the function raised: the result says so)."""
    read, write = _io(place)
    job: Any = pickle.loads(read(JOB))  # the job the worker shipped for this attempt
    fn, args, kwargs = job
    try:
        result: tuple[Any, ...] = ("ok", fn(*args, **kwargs))
    except BaseException as err:  # the task's failure, told to the worker as text
        traceback.print_exc()
        result = ("error", type(err).__qualname__, str(err))
    import cloudpickle  # a class the function's module defines travels by value

    write(RESULT, cloudpickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
    return 0


def _io(place: str) -> tuple[Callable[[str], bytes], Callable[[str, bytes], None]]:
    """How to read and write a file of *place*: a folder's files, or an object store's keys
    (fsspec; ``ROTA_S3_ENDPOINT_URL`` as the worker's artifact store reads it)."""
    if "://" not in place:
        folder = Path(place)

        def write_file(name: str, data: bytes) -> None:
            staging = folder / f"{name}.tmp"
            staging.write_bytes(data)
            os.replace(staging, folder / name)  # the worker never reads half a result

        return (lambda name: (folder / name).read_bytes()), write_file
    import fsspec

    from rota.artifacts.store import storage_options

    fs, root = fsspec.core.url_to_fs(place, **storage_options(place))
    return (lambda name: bytes(fs.cat_file(f"{root}/{name}"))), (
        lambda name, data: fs.pipe_file(f"{root}/{name}", data)  # one atomic put
    )


if __name__ == "__main__":
    sys.exit(run(sys.argv[1]))
