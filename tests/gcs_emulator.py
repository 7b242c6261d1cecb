"""A local Google Cloud Storage emulator for the tests (gcp-storage-emulator, in memory), with every client the
package uses pointed at it: gcsfs (through etils.epath) by STORAGE_EMULATOR_HOST and an anonymous token,
tensorstore (orbax's checkpoints) by TENSORSTORE_GCS_HTTP_URL and a test token. Nothing reaches real GCS."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def client_environment(endpoint: str) -> dict[str, str]:
    return {
        "STORAGE_EMULATOR_HOST": endpoint,  # gcsfs (and google-cloud-storage)
        "FSSPEC_GCS_TOKEN": "anon",  # gcsfs: no credentials looked up
        # gcsfs's zonal-bucket probe goes through a gRPC client that ignores the emulator and waits 60 s per bucket
        "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
        "TENSORSTORE_GCS_HTTP_URL": endpoint,  # orbax's array writes
        "GOOGLE_AUTH_TOKEN_FOR_TESTING": "emulator",  # tensorstore: a fixed bearer token instead of a credentials lookup
    }


def _point_this_process_at_the_emulator() -> None:
    """gcsfs and fsspec read their settings when first imported; in this process either may be imported already."""
    import fsspec
    import gcsfs

    for protocol in ("gs", "gcs"):  # the plain client: the environment variable only acts at gcsfs's import
        fsspec.register_implementation(protocol, gcsfs.GCSFileSystem, clobber=True)
        fsspec.config.conf.setdefault(protocol, {})["token"] = "anon"
    gcsfs.GCSFileSystem.clear_instance_cache()


class GcsEmulator:
    """`start()` runs the emulator on a free port and sets the client environment in this process (subprocesses
    inherit it); `stop()` ends it and restores the environment."""

    def __init__(self, buckets: tuple[str, ...]) -> None:
        self.buckets = buckets
        self.endpoint = f"http://127.0.0.1:{_free_port()}"
        self._process = None
        self._saved: dict[str, str | None] = {}

    def start(self) -> "GcsEmulator":
        executable = Path(sys.executable).with_name("gcp-storage-emulator")
        port = self.endpoint.rsplit(":", 1)[1]
        self._process = subprocess.Popen([str(executable), "start", "--host", "127.0.0.1", "--port", port,
                                          "--in-memory", "--quiet"], stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{self.endpoint}/storage/v1/b", timeout=1).read()
                break
            except OSError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"gcp-storage-emulator did not start on {self.endpoint}")
                time.sleep(0.1)
        for name, value in client_environment(self.endpoint).items():
            self._saved[name] = os.environ.get(name)
            os.environ[name] = value
        _point_this_process_at_the_emulator()
        for bucket in self.buckets:
            request = urllib.request.Request(f"{self.endpoint}/storage/v1/b?project=test", method="POST",
                                             data=f'{{"name": "{bucket}"}}'.encode(),
                                             headers={"Content-Type": "application/json"})
            urllib.request.urlopen(request, timeout=10).read()
        return self

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved.clear()
