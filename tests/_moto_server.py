"""A real S3 API on loopback for the tests: moto's standalone server on a free port.

The server runs in a thread of the test process and keeps its buckets in
memory. Nothing here talks to AWS: the endpoint is ``http://127.0.0.1:<port>``
and the credentials are made-up test values.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

REGION = "us-east-1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


@contextmanager
def moto_s3() -> Iterator[str]:
    """Run moto's S3 server on a free loopback port; yield its endpoint URL.

    Werkzeug's one-line-per-request access log is turned down to warnings
    (it would flood captured output); it is restored afterwards.
    """
    from moto.server import ThreadedMotoServer

    access_log = logging.getLogger("werkzeug")
    level = access_log.level
    access_log.setLevel(logging.WARNING)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        _wait_listening(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        access_log.setLevel(level)


def s3_client(endpoint: str, key: str, secret: str):
    """A boto3 S3 client on ``endpoint`` (to make buckets and read raw objects)."""
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name=REGION,
                        aws_access_key_id=key, aws_secret_access_key=secret)


def raw_filesystem(endpoint: str, key: str, secret: str):
    """An s3fs instance of its own on ``endpoint``, with no listing cache.

    The tests read the bucket through it, so nothing the code under test
    cached (fsspec shares instances between equal ``storage_options``) is
    reused.
    """
    import s3fs

    return s3fs.S3FileSystem(key=key, secret=secret, skip_instance_cache=True,
                             use_listings_cache=False,
                             client_kwargs={"endpoint_url": endpoint, "region_name": REGION})


def all_objects(fs, bucket: str, keep=None) -> dict[str, bytes]:
    """Objects of ``bucket`` (key relative to the bucket) with their content.

    ``fs`` is a :func:`raw_filesystem`; ``keep(key) -> bool`` picks which
    objects are read (default all). The reads run concurrently.
    """
    paths = [p for p in fs.find(bucket)
             if keep is None or keep(p.removeprefix(f"{bucket}/"))]
    if not paths:
        return {}
    return {p.removeprefix(f"{bucket}/"): data for p, data in fs.cat(paths).items()}
