"""The API against its own OpenAPI description, with schemathesis, on a live server.

A real ``imagemesh serve`` process on loopback; schemathesis runs every check it has
(server errors, status codes, content types, headers, response schemas, schema-valid
requests accepted, schema-violating requests rejected) over the examples, coverage,
fuzzing and stateful phases, at least 200 examples per operation. Parameters and their
validation come from one set of pydantic models (``imagemesh.web.params``), so a
failure here means the two drifted or a request found a bug.

Two collections: a synthetic one (jsonl source, exact backend) and the real arXiv
figures (arXiv schema: list fields, years, keyword index; FAISS backend).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from imagemesh.ingest.build import BuildOptions, build_collection
from imagemesh.testing import build_tiny_collection

from .conftest import make_subset, require_shared

EXAMPLES = 200


def _serve(root: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "imagemesh.cli", "serve", str(root), "--port", str(port), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    t0 = time.monotonic()
    while time.monotonic() - t0 < 120:
        try:
            if httpx.get(url + "/api/info", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGTERM)
    pytest.fail("server did not start: " + (proc.stdout.read().decode() if proc.stdout else ""))


@pytest.fixture(scope="module", params=["synthetic", "arxiv"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp(f"st-{request.param}")
    if request.param == "synthetic":
        root = build_tiny_collection(base, n=48)
    else:
        require_shared()
        root = base / "coll"
        build_collection(make_subset(base / "src", 40), root, BuildOptions(backend="faiss", embeddings=["raw"], pca_dim=16, progress=False))
    proc, url = _serve(root)
    yield url
    os.killpg(proc.pid, signal.SIGTERM)
    proc.communicate(timeout=30)


#: One exception, for one operation: /api/concepts takes two lists of figures that must not
#: share a figure (a figure cannot be both an example and a counter-example), which JSON
#: Schema cannot say; such a request is a 400 although each list is valid on its own.
CONFIG = """
[[operations]]
include-path = "/api/concepts"
checks.positive_data_acceptance.expected-statuses = ["2XX", "400", "404"]
"""


def test_api_conforms_to_its_openapi_description(server: str, tmp_path: Path) -> None:
    exe = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or shutil.which("schemathesis")
    assert exe, "schemathesis is a test dependency (pip install -e '.[test]')"
    (tmp_path / "schemathesis.toml").write_text(CONFIG)
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "", "NO_COLOR": "1"}
    run = subprocess.run(
        [exe, "run", f"{server}/api/openapi.json", "--checks", "all", "--max-examples", str(EXAMPLES),
         "--phases", "examples,coverage,fuzzing,stateful", "--seed", "20261202", "--no-color"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200,
    )
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-6000:]
    # every operation was tested, and the run says so
    assert "Tested: 16" in out, out[-3000:]
    assert " passed" in out and "failures" not in out.split("SUMMARY")[-1], out[-3000:]
