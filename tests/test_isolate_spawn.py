"""A program read from stdin cannot spawn decoder workers (multiprocessing re-imports the main
program): the failure names the cause and the way out instead of "decoder process died"."""

from __future__ import annotations

import subprocess
import sys

from imagemesh.testing import make_image_folder

SCRIPT = """
from pathlib import Path
import sys
from imagemesh.media.isolate import IsolatedDecoder
from imagemesh.media.images import ImageLoadError
try:
    IsolatedDecoder().canonical(Path(sys.argv[1]))
except ImageLoadError as e:
    print("ERR", e)
else:
    print("OK")
"""


def test_stdin_program_gets_a_clear_error(tmp_path) -> None:
    folder = make_image_folder(tmp_path / "src", n=2)
    img = next(p for p in sorted(folder.rglob("*")) if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    r = subprocess.run([sys.executable, "-", str(img)], input=SCRIPT, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert "ERR" in r.stdout and "run it from a .py file" in r.stdout and "isolate_decoders=False" in r.stdout, r.stdout + r.stderr
    # from a file, the same code decodes in the worker
    script = tmp_path / "decode.py"
    script.write_text('if __name__ == "__main__":\n' + "\n".join("    " + line for line in SCRIPT.strip().splitlines()) + "\n")
    r = subprocess.run([sys.executable, str(script), str(img)], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.stdout.strip() == "OK", r.stdout + r.stderr
