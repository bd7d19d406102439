"""Two thread captures in one process (a thread executor and the engine's store-sensor threads):
each attempt's output goes to its own log, whichever capture began it."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from rota.executors.logs import ThreadCapture
from rota.model.secrets import Masker


def test_each_capture_routes_its_own_threads(tmp_path: Path) -> None:
    saved = sys.stdout, sys.stderr
    first, second = ThreadCapture(), ThreadCapture()
    first.install()
    second.install()
    logs = {name: tmp_path / f"{name}.log" for name in ("first", "second")}
    try:

        def attempt(capture: ThreadCapture, name: str) -> None:
            capture.begin(str(logs[name]), Masker())
            print(f"printed by the {name} attempt")
            capture.end()

        threads = [
            threading.Thread(target=attempt, args=(first, "first")),
            threading.Thread(target=attempt, args=(second, "second")),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        first.install()  # installing again does not stack another router
        second.install()
        routers, stream = 0, sys.stdout
        while hasattr(stream, "fallback"):
            routers, stream = routers + 1, stream.fallback
        assert routers == 2
    finally:
        second.uninstall()
        first.uninstall()
    assert (sys.stdout, sys.stderr) == saved
    assert logs["first"].read_text() == "printed by the first attempt\n"
    assert logs["second"].read_text() == "printed by the second attempt\n"
