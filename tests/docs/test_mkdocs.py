"""`make docs` works: MkDocs builds the site strictly (any warning fails), offline, with the API
reference generated from the docstrings."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_site_builds_strictly_with_no_warning_and_loads_nothing_from_outside(
    tmp_path: Path,
) -> None:
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "WARNING" not in done.stdout + done.stderr

    api = (site / "reference" / "api" / "index.html").read_text()
    documented = set(re.findall(r'id="(rota\.[\w.]+)"', api))
    wanted = {
        "rota.flow", "rota.Flow.run", "rota.resume", "rota.task", "rota.ShellTask",
        "rota.Secret", "rota.FileSensor", "rota.KeySensor", "rota.engine.result.RunResult.output",
        "rota.testing.run_flow", "rota.testing.run_task", "rota.pytest_plugin.rota_home",
        "rota.SlackNotifier", "rota.EmailNotifier", "rota.WebhookNotifier",
    }  # fmt: skip
    assert wanted <= documented, sorted(wanted - documented)
    pages = list(site.rglob("*.html"))
    assert len(pages) >= 20
    outside = re.compile(r"<(?:script|link|img)[^>]+(?:src|href)=\"(?:https?:)?//", re.I)
    loaded = [p.name for p in pages if outside.search(p.read_text())]
    assert not loaded, f"pages that load something from another host: {loaded}"
