"""One writer at a time (issue 12): a second writer fails at once naming the holder, the CLI
says so in one line (exit 1), a killed writer leaves no stale lock, and writers nest."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from imagemesh.cli import cli
from imagemesh.store.lock import CollectionLocked, writer_lock
from imagemesh.testing import build_tiny_collection, make_image_folder

HOLD = """
import sys, time
from imagemesh.store.lock import writer_lock
with writer_lock(sys.argv[1], "a test writer"):
    print("held", flush=True)
    time.sleep(60)
"""


def _hold(root: Path) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(root)], stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "held"
    return p


def test_second_writer_fails_at_once_naming_the_holder(tmp_path: Path) -> None:
    root = build_tiny_collection(tmp_path, n=12)
    holder = _hold(root)
    try:
        t0 = time.monotonic()
        with pytest.raises(CollectionLocked, match=rf"a test writer \(pid {holder.pid} on "):
            with writer_lock(root, "me"):
                pass
        assert time.monotonic() - t0 < 5
        # the CLI: one line, exit 1, no traceback; the collection is untouched
        before = (root / "manifest.json").read_bytes()
        r = CliRunner().invoke(cli, ["build", str(make_image_folder(tmp_path / "src2", n=6)), "--out", str(root), "--embeddings", "raw", "--quiet"])
        assert r.exit_code == 1 and "Traceback" not in r.output and "is being written by a test writer" in r.output, r.output
        assert (root / "manifest.json").read_bytes() == before
        # waiting a little is not enough either
        with pytest.raises(CollectionLocked):
            with writer_lock(root, "me", wait=0.5):
                pass
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait(10)
        assert holder.stdout is not None
        holder.stdout.close()
    # the holder was killed: its lock went with it, no stale lock to clear
    with writer_lock(root, "me"):
        with writer_lock(root, "me too"):  # re-entrant within a process
            pass
