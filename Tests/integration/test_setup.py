"""scripts/setup.sh on a machine whose python3 is Debian's (PEP 668: it refuses `pip install` outside a
virtualenv), and on one whose first python3 on PATH is something else: the Python test modules always go into a
.venv made with /usr/bin/python3, a second run changes nothing, and the script never calls the python3 it finds.
The system packages are the machine's (already installed by the real set-up, so apt is not run); `swift` is a
stand-in that records its calls and makes the binaries, so the test takes seconds, not a release build."""
import glob
import os
import shutil
import subprocess

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

SWIFT_SHIM = """#!/bin/sh
echo "swift $*" >> "$KV_TEST_CALLS"
case "$*" in
  *--show-bin-path*) echo "$KV_TEST_BIN" ;;
  "build -c release") mkdir -p "$KV_TEST_BIN" && printf '#!/bin/sh\\n' > "$KV_TEST_BIN/kv-master" \\
      && chmod +x "$KV_TEST_BIN/kv-master" ;;
  *) exit 2 ;;
esac
"""

FOREIGN_PYTHON = """#!/bin/sh
echo "python3 $*" >> "$KV_TEST_CALLS"
echo "not the python3 set-up may use" >&2
exit 1
"""


def tree(tmp_path):
    """The parts of the repository setup.sh reads, in a fresh directory."""
    root = tmp_path / "kv"
    (root / "scripts").mkdir(parents=True)
    (root / "Tests").mkdir()
    shutil.copy(os.path.join(REPO, "scripts", "setup.sh"), root / "scripts" / "setup.sh")
    shutil.copy(os.path.join(REPO, "Tests", "requirements.txt"), root / "Tests" / "requirements.txt")
    shims = tmp_path / "shims"
    shims.mkdir()
    (shims / "swift").write_text(SWIFT_SHIM)
    (shims / "swift").chmod(0o755)
    return root, shims


@pytest.mark.parametrize("first", ["debian", "foreign"])
def test_setup_makes_its_venv_with_debians_python3_whatever_comes_first_on_path(tmp_path, first):
    assert glob.glob("/usr/lib/python3*/EXTERNALLY-MANAGED"), "/usr/bin/python3 is not Debian's (PEP 668) one"
    root, shims = tree(tmp_path)
    calls = tmp_path / "calls"
    path = [str(shims), "/usr/bin", "/bin", "/usr/sbin", "/sbin"]
    if first == "foreign":
        foreign = tmp_path / "foreign"
        foreign.mkdir()
        (foreign / "python3").write_text(FOREIGN_PYTHON)
        (foreign / "python3").chmod(0o755)
        path.insert(0, str(foreign))
    env = {"PATH": ":".join(path), "HOME": str(tmp_path), "KV_TEST_CALLS": str(calls),
           "KV_TEST_BIN": str(tmp_path / "bin"), "LANG": "C.UTF-8"}
    for attempt in (1, 2):
        run = subprocess.run(["bash", str(root / "scripts" / "setup.sh")], env=env, capture_output=True, text=True,
                             timeout=600)
        assert run.returncode == 0, run.stdout + run.stderr
        assert ("creating .venv" in run.stdout) == (attempt == 1), (attempt, run.stdout)
        assert "installing" not in run.stdout, f"set-up found system packages missing: {run.stdout}"
    config = (root / ".venv" / "pyvenv.cfg").read_text()
    assert "home = /usr/bin" in config, config
    probe = subprocess.run([str(root / ".venv" / "bin" / "python"), "-c",
                            "import pytest, pytest_timeout, yaml, jsonschema, openapi_spec_validator, sys; "
                            "print(sys.prefix)"], capture_output=True, text=True, env=env)
    assert probe.returncode == 0 and probe.stdout.strip() == str(root / ".venv"), probe.stdout + probe.stderr
    recorded = calls.read_text().splitlines()
    assert not any(line.startswith("python3") for line in recorded), recorded
    assert "swift build -c release" in recorded, recorded
