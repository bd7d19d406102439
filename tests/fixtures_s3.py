"""A real S3 API for tests: a moto server on 127.0.0.1, started once per session.

Not moto's in-process mock: requests go over HTTP to a server, as they would to S3, so s3fs,
aiobotocore and the artifact store run exactly as in production. Use it with
``from fixtures_s3 import s3_bucket, s3_server  # noqa: F401`` in a test module.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator

import pytest

# moto's fake credentials; the region must come from the environment: given to the client in
# client_kwargs instead, bucket creation fails.
_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
# Anything that could point botocore at a real account or another endpoint.
_AWS_UNSET = (
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_REGION",
)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """Start a moto S3 server on 127.0.0.1 (a free port); yield its endpoint URL.

    For the session, the AWS variables hold moto's fake credentials and region, and
    ``ROTA_S3_ENDPOINT_URL`` points at the server (for :func:`open_artifact_store` and
    subprocesses); everything is restored afterwards.
    """
    from moto.server import ThreadedMotoServer

    werkzeug_log = logging.getLogger("werkzeug")
    old_level = werkzeug_log.level
    werkzeug_log.setLevel(logging.WARNING)  # one INFO line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        with pytest.MonkeyPatch.context() as mp:
            for name in _AWS_UNSET:
                mp.delenv(name, raising=False)
            for name, value in _AWS_ENV.items():
                mp.setenv(name, value)
            mp.setenv("ROTA_S3_ENDPOINT_URL", endpoint)
            yield endpoint
    finally:
        server.stop()
        werkzeug_log.setLevel(old_level)


@pytest.fixture
def s3_bucket(s3_server: str) -> Iterator[str]:
    """A new, empty bucket on the session's S3 server; yields ``s3://<bucket>``; emptied after."""
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=s3_server)
    bucket = f"rota-test-{uuid.uuid4().hex[:16]}"
    fs.mkdir(bucket)
    try:
        yield f"s3://{bucket}"
    finally:
        fs.rm(bucket, recursive=True)  # frees the server's memory: it keeps objects in RAM
