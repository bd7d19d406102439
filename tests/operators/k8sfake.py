"""A small fake Kubernetes API server over HTTP on 127.0.0.1, for the pod task's tests.

It answers the endpoints the pod task uses the way a real API server does (JSON bodies in the
API's own shapes, ``Status`` objects with 404 and 409, a chunked log stream with ``follow``), and
its "kubelet" runs each pod's container command as a real subprocess on this machine (no shell:
the argv as it is, the env as given, in a scratch folder), so exit codes and logs are real.
An image named ``missing`` never pulls (the container waits in ``ErrImagePull``).
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

MISSING_IMAGE = "missing"


@dataclass
class FakePod:
    """One pod the fake holds: its manifest and, once started, its process."""

    body: dict[str, Any]
    reads: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log: bytearray = field(default_factory=bytearray)
    ended: threading.Event = field(default_factory=threading.Event)
    killed: bool = False
    started_at: float | None = None
    deadline_exceeded: bool = False

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])


class FakeKubernetes:
    """The server's state; ``requests`` records (method, path) in arrival order."""

    def __init__(self, workdir: Path, pending_reads: int = 1) -> None:
        self.workdir = workdir
        self.pending_reads = pending_reads
        self.pods: dict[tuple[str, str], FakePod] = {}
        self.deleted: list[FakePod] = []
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.pumps: list[threading.Thread] = []
        self.gone_logs = 0
        """Follows of a log to refuse with 410 Gone first, as an API server refuses a read it
        can no longer serve."""
        self.cut_log_after: int | None = None
        """Cut the next follow of a log (the connection dropped, the stream not ended) once it
        has sent this many bytes."""

    # the kubelet
    def _start(self, pod: FakePod) -> None:
        spec = pod.body["spec"]["containers"][0]
        env = {e["name"]: e.get("value", "") for e in spec.get("env", [])}
        env.setdefault("PATH", "/usr/bin:/bin")
        pod.started_at = time.monotonic()
        pod.proc = subprocess.Popen(
            spec["command"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=self.workdir,
        )
        pump = threading.Thread(target=self._pump, args=(pod,), daemon=True)
        pump.start()
        self.pumps.append(pump)

    @staticmethod
    def _pump(pod: FakePod) -> None:
        assert pod.proc is not None and pod.proc.stdout is not None
        for chunk in iter(lambda: pod.proc.stdout.read1(4096), b""):  # type: ignore[union-attr]
            pod.log.extend(chunk)
        pod.proc.stdout.close()
        pod.proc.wait()
        pod.ended.set()

    def status(self, pod: FakePod) -> dict[str, Any]:
        """The pod's status as the API shows it, starting its container when due."""
        image = pod.body["spec"]["containers"][0]["image"]
        pod.reads += 1
        if image == MISSING_IMAGE:
            waiting = {"reason": "ErrImagePull", "message": f"pull {image}: not found"}
            return {"phase": "Pending", "containerStatuses": [_cs(image, {"waiting": waiting})]}
        if pod.proc is None and pod.reads > self.pending_reads:
            self._start(pod)
        if pod.proc is None:
            waiting = {"reason": "ContainerCreating"}
            return {"phase": "Pending", "containerStatuses": [_cs(image, {"waiting": waiting})]}
        limit = pod.body["spec"].get("activeDeadlineSeconds")
        assert pod.started_at is not None
        past = limit is not None and time.monotonic() - pod.started_at > limit
        if past and not pod.ended.is_set():  # the kubelet enforces activeDeadlineSeconds
            pod.deadline_exceeded = True
            pod.proc.kill()
            pod.ended.wait(10)
        if not pod.ended.is_set():
            return {"phase": "Running", "containerStatuses": [_cs(image, {"running": {}})]}
        if pod.deadline_exceeded:
            term = {"exitCode": 137, "reason": "Error"}
            return {
                "phase": "Failed",
                "reason": "DeadlineExceeded",
                "message": "Pod was active on the node longer than the specified deadline",
                "containerStatuses": [_cs(image, {"terminated": term})],
            }
        code = pod.proc.returncode
        term = {"exitCode": code, "reason": "Completed" if code == 0 else "Error"}
        phase = "Succeeded" if code == 0 else "Failed"
        return {"phase": phase, "containerStatuses": [_cs(image, {"terminated": term})]}

    def delete(self, key: tuple[str, str]) -> FakePod | None:
        with self.lock:
            pod = self.pods.pop(key, None)
        if pod is None:
            return None
        if pod.proc is not None and pod.proc.poll() is None:
            pod.killed = True
            pod.proc.kill()
        self.deleted.append(pod)
        return pod

    def close(self) -> None:
        for key in list(self.pods):
            self.delete(key)
        for pump in self.pumps:
            pump.join(10)


def _cs(image: str, state: dict[str, Any]) -> dict[str, Any]:
    """A container status with the fields the API always sets (the client's models need them)."""
    started = "waiting" not in state
    return {
        "name": "task",
        "image": image,
        "imageID": f"fake://{image}" if started else "",
        "state": state,
        "ready": "running" in state,
        "restartCount": 0,
    }


def _status_body(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def _matches(labels: dict[str, str], selector: str) -> bool:
    wanted = dict(part.split("=", 1) for part in selector.split(",") if part)
    return all(labels.get(k) == v for k, v in wanted.items())


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        del format, args

    @property
    def fake(self) -> FakeKubernetes:
        return self.server.fake

    def _parts(self) -> tuple[list[str], dict[str, list[str]]]:
        url = urlsplit(self.path)
        self.fake.requests.append((self.command, url.path))
        parts = url.path.strip("/").split("/")
        # api v1 namespaces NS pods [NAME [status|log]]
        if parts[:3] != ["api", "v1", "namespaces"] or len(parts) < 5 or parts[4] != "pods":
            return [], {}
        return parts[3:], parse_qs(url.query)

    def _send(self, code: int, body: dict[str, Any]) -> None:
        raw = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _not_found(self, name: str) -> None:
        self._send(404, _status_body(404, "NotFound", f'pods "{name}" not found'))

    def _pod_json(self, pod: FakePod) -> dict[str, Any]:
        return {**pod.body, "status": self.fake.status(pod)}

    def do_POST(self) -> None:
        parts, _ = self._parts()
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        ns, name = parts[0], body["metadata"]["name"]
        body["metadata"]["namespace"] = ns
        with self.fake.lock:
            if (ns, name) in self.fake.pods:
                message = f'pods "{name}" already exists'
                self._send(409, _status_body(409, "AlreadyExists", message))
                return
            pod = FakePod(body)
            self.fake.pods[(ns, name)] = pod
        self._send(201, {**body, "status": {"phase": "Pending"}})

    def do_DELETE(self) -> None:
        parts, _ = self._parts()
        self.rfile.read(int(self.headers.get("Content-Length") or 0))  # the delete options
        pod = self.fake.delete((parts[0], parts[2]))
        if pod is None:
            self._not_found(parts[2])
            return
        self._send(200, pod.body)

    def do_GET(self) -> None:
        parts, query = self._parts()
        if len(parts) == 2:
            selector = query.get("labelSelector", [""])[0]
            items = [
                self._pod_json(p)
                for (ns, _), p in list(self.fake.pods.items())
                if ns == parts[0] and _matches(p.body["metadata"].get("labels", {}), selector)
            ]
            self._send(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items})
            return
        pod = self.fake.pods.get((parts[0], parts[2]))
        if pod is None:
            self._not_found(parts[2])
        elif parts[3:] == ["log"]:
            self._log(pod, follow=query.get("follow", ["false"])[0] == "true")
        else:
            self._send(200, self._pod_json(pod))

    def _log(self, pod: FakePod, *, follow: bool) -> None:
        if pod.proc is None:
            message = f'container "task" in pod "{pod.name}" is waiting to start'
            self._send(400, _status_body(400, "BadRequest", message))
            return
        if follow and self.fake.gone_logs > 0:
            self.fake.gone_logs -= 1
            self._send(410, _status_body(410, "Gone", "too old resource version"))
            return
        cut, self.fake.cut_log_after = (self.fake.cut_log_after, None) if follow else (None, None)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        sent = 0
        while True:
            done = pod.ended.is_set() or not follow or pod in self.fake.deleted
            if cut is not None and sent >= cut:  # drop the connection mid-stream
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if sent < len(pod.log):
                chunk = bytes(pod.log[sent : len(pod.log) if cut is None else max(cut, sent + 1)])
                sent += len(chunk)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            elif done:
                break
            else:
                time.sleep(0.02)
        self.wfile.write(b"0\r\n\r\n")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeKubernetes


@contextlib.contextmanager
def serve(workdir: Path, pending_reads: int = 1) -> Iterator[tuple[FakeKubernetes, Path]]:
    """Run the fake on a free port; yields it and a kubeconfig file that points at it."""
    fake = FakeKubernetes(workdir, pending_reads)
    server = _Server(("127.0.0.1", 0), _Handler)
    server.fake = fake
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    kubeconfig = workdir / "kubeconfig"
    kubeconfig.write_text(_KUBECONFIG.format(server=f"http://{host!s}:{port}"))
    try:
        yield fake, kubeconfig
    finally:
        fake.close()
        server.shutdown()
        server.server_close()


_KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: {server}
users:
- name: tester
  user:
    token: not-a-secret
contexts:
- name: fake
  context:
    cluster: fake
    user: tester
current-context: fake
"""
