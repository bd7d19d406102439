"""A real podman with a busybox image built here (no registry is reachable).

podman's default OCI runtime (crun) fails on these machines: the tests point podman at a
``containers.conf`` choosing runc and explicit ulimits through ``CONTAINERS_CONF`` (nothing in
/etc changes). The busybox image is imported from the ``busybox-static`` package's binary into
podman's own image store, which keeps it between test runs. When podman cannot run a container
here, the tests that need it are skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

BUSYBOX_IMAGE = "localhost/rota-test-busybox:1"
_APPLETS = ("sh", "echo", "cat", "sleep", "touch", "ls", "test", "true", "printf", "mkdir")
_CONF = """[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
"""


def podman(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run ``podman ARGS`` with the tests' configuration."""
    return subprocess.run(
        ["podman", *args], capture_output=True, text=True, check=check, timeout=120
    )


def containers_with(label: str) -> list[str]:
    """Names of the containers (running or not) that carry *label* (``key=value``)."""
    done = podman("ps", "-a", "--filter", f"label={label}", "--format", "{{.Names}}", check=True)
    return done.stdout.split()


def _build_busybox(folder: Path) -> None:
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("busybox is not installed (apt-get install busybox-static)")
    root = folder / "rootfs"
    (root / "bin").mkdir(parents=True)
    (root / "tmp").mkdir()
    shutil.copy(busybox, root / "bin" / "busybox")
    for applet in _APPLETS:
        (root / "bin" / applet).symlink_to("busybox")
    with subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE) as tar:
        done = subprocess.run(
            ["podman", "import", "--change", "ENV PATH=/bin", "-", BUSYBOX_IMAGE],
            stdin=tar.stdout,
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode != 0:
        pytest.skip(f"podman cannot import an image here: {done.stderr.strip()[:300]}")


@pytest.fixture(scope="session")
def busybox_image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The busybox image's name, with podman configured for this machine (``CONTAINERS_CONF``
    set for the whole session, so ``rota`` subprocesses see it too)."""
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (apt-get install podman runc)")
    folder = tmp_path_factory.mktemp("podman")
    conf = folder / "containers.conf"
    conf.write_text(_CONF)
    before = os.environ.get("CONTAINERS_CONF")
    os.environ["CONTAINERS_CONF"] = str(conf)
    try:
        if podman("image", "exists", BUSYBOX_IMAGE).returncode != 0:
            _build_busybox(folder)
        probe = podman("run", "--rm", BUSYBOX_IMAGE, "echo", "ok")
        if probe.returncode != 0 or probe.stdout.strip() != "ok":
            pytest.skip(f"podman cannot run a container here: {probe.stderr.strip()[:300]}")
        yield BUSYBOX_IMAGE
    finally:
        if before is None:
            os.environ.pop("CONTAINERS_CONF", None)
        else:
            os.environ["CONTAINERS_CONF"] = before


PYTHON_IMAGE = "localhost/rota-test-python:1"
REPO = Path(__file__).resolve().parents[1]


def _mirror() -> str | None:
    """The Debian mirror this machine's apt uses (none is written in the repository)."""
    texts = [p.read_text() for p in Path("/etc/apt").glob("sources.list*/*.sources")]
    for text in texts:
        for line in text.splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    listing = Path("/etc/apt/sources.list")
    for line in listing.read_text().splitlines() if listing.exists() else []:
        if line.startswith("deb ") and "security" not in line:
            return line.split()[1]
    return None


def _build_python(folder: Path) -> None:
    mirror = _mirror()
    if shutil.which("debootstrap") is None or mirror is None:
        pytest.skip("an image with Python needs debootstrap and an apt mirror")
    root = folder / "python-rootfs"
    done = subprocess.run(
        ["debootstrap", "--variant=minbase", "--include=python3", "bookworm", str(root), mirror],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if done.returncode != 0:
        pytest.skip(f"debootstrap failed: {done.stderr.strip()[-300:]}")
    path = "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    with subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE) as tar:
        imported = subprocess.run(
            ["podman", "import", "--change", path, "-", PYTHON_IMAGE],
            stdin=tar.stdout,
            capture_output=True,
            text=True,
            check=False,
        )
    shutil.rmtree(root, ignore_errors=True)
    if imported.returncode != 0:
        pytest.skip(f"podman cannot import the Python image: {imported.stderr.strip()[:300]}")


@pytest.fixture(scope="session")
def python_image(busybox_image: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """An image with Debian's Python 3 (debootstrap, once: podman's image store keeps it)."""
    del busybox_image  # podman is configured and works
    if podman("image", "exists", PYTHON_IMAGE).returncode != 0:
        _build_python(tmp_path_factory.mktemp("python-image"))
    return PYTHON_IMAGE


def rota_in_image() -> dict[str, object]:
    """Container options that give the Python image this checkout's ``rota`` and its
    dependencies, read-only (a real image would ``pip install rota``: see the docs)."""
    import cloudpickle

    site = Path(cloudpickle.__file__).resolve().parents[1]
    return {
        "mounts": {str(REPO / "src"): "/opt/rota/src:ro", str(site): "/opt/rota/site:ro"},
        "env": {"PYTHONPATH": "/opt/rota/src:/opt/rota/site"},
    }
