"""The other side of a Python task run in an image: ``python3 -m rota.operators.inimage FOLDER``.

It runs inside the container. *FOLDER* (mounted from the worker) holds :data:`JOB`, the
function with its arguments as cloudpickle made them on the worker; this writes :data:`RESULT`:
``("ok", value)`` or ``("error", type name, message)``. What the function prints goes to the
container's output, so to the attempt's log; a traceback too. The image needs Python, ``rota``
and whatever the function imports; nothing here opens the metadata store.
"""

from __future__ import annotations

import os
import pickle
import sys
import traceback
from pathlib import Path
from typing import Any

JOB = "job.pickle"
RESULT = "result.pickle"


def run(folder: Path) -> int:
    """Run the job in *folder* and write its result there; the exit code (0 even when the
    function raised: the result says so)."""
    job: Any = pickle.loads((folder / JOB).read_bytes())
    fn, args, kwargs = job
    try:
        result: tuple[Any, ...] = ("ok", fn(*args, **kwargs))
    except BaseException as err:  # the task's failure, told to the worker as text
        traceback.print_exc()
        result = ("error", type(err).__qualname__, str(err))
    staging = folder / f"{RESULT}.tmp"
    import cloudpickle  # a class the function's module defines travels by value

    staging.write_bytes(cloudpickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
    os.replace(staging, folder / RESULT)
    return 0


if __name__ == "__main__":
    sys.exit(run(Path(sys.argv[1])))
