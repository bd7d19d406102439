"""``rota.KubernetesPodTask`` (and its ``PodVolume`` and ``Toleration``) are public names of
``rota``, loaded only when used: ``import rota`` (every flow file) imports neither the pod task's
modules nor the ``kubernetes`` client."""

from __future__ import annotations

import subprocess
import sys

import rota

PROBE = """
import sys
import rota
loaded = sorted(m for m in sys.modules if m == "kubernetes" or m.startswith(("kubernetes.",
                "rota.operators.kubernetes", "rota.operators.k8s")))
print(loaded)
rota.KubernetesPodTask
print("kubernetes" in sys.modules)
"""


def test_import_rota_loads_no_pod_task_and_no_kubernetes_client() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.split("\n")[:2] == ["[]", "False"]  # nor does naming the class


def test_the_pod_task_s_names_are_public_names_of_rota() -> None:
    from rota.operators.k8smanifest import PodVolume, Toleration
    from rota.operators.kubernetes import KubernetesPodTask

    assert rota.KubernetesPodTask is KubernetesPodTask
    assert (rota.PodVolume, rota.Toleration) == (PodVolume, Toleration)
    assert {"KubernetesPodTask", "PodVolume", "Toleration"} <= set(rota.__all__)
