"""A real S3 API on localhost (moto's server mode) and the ``AWS_*`` variables that point s3fs at it."""

from __future__ import annotations

import contextlib
import os

from tests.helpers.servers import free_port

# moto accepts any credentials; these only keep botocore from looking for real ones.
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@contextlib.contextmanager
def moto_s3():
    """Start moto's S3 server on a free port and point this process (and what it starts) at it; yields the
    variables, for subprocesses that get an environment of their own."""
    import s3fs
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    s3fs.S3FileSystem.clear_instance_cache()  # a cached file system would still talk to an earlier server
    try:
        yield env
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        s3fs.S3FileSystem.clear_instance_cache()
        server.stop()


def make_bucket(name: str) -> str:
    """A new empty bucket on the server the environment points at; its URL."""
    import s3fs

    s3fs.S3FileSystem(skip_instance_cache=True).mkdir(name)
    return f"s3://{name}"
