"""CI checks of the unit files as installed: `systemd-analyze verify` and `systemd-analyze security`."""
import os
import re

import nsystemd

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNIT_DIR = os.path.join(REPO, "systemd")
EXPOSURE_MAX = 4.0
SERVICES = ["kv-master.service", "kv-replica@r1.service"]


def repo_units():
    return sorted(name for name in os.listdir(UNIT_DIR) if not name.startswith("."))


def test_every_unit_is_installed_unchanged(kv):
    assert repo_units() == ["kv-master.service", "kv-master.socket", "kv-replica@.service", "kv.target"]
    for name in repo_units():
        with open(os.path.join(UNIT_DIR, name)) as f:
            assert kv.read_file(f"/etc/systemd/system/{name}") == f.read(), name


def test_systemd_analyze_verify(kv):
    """No errors and no warnings for any unit file, nor for a replica instance."""
    paths = [f"/etc/systemd/system/{name}" for name in repo_units()]
    for target in paths + ["kv-replica@r1.service"]:
        result = kv.run("systemd-analyze", "verify", target, check=False)
        output = (result.stdout + result.stderr).strip()
        assert result.returncode == 0 and output == "", f"systemd-analyze verify {target}:\n{output}"


def test_systemd_analyze_security_exposure_below_4(kv):
    scores = {}
    for unit in SERVICES:
        result = kv.run("systemd-analyze", "security", "--no-pager", unit, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        match = re.search(r"Overall exposure level for (\S+): (\d+\.\d+) (\w+)", result.stdout)
        assert match, result.stdout
        scores[unit] = float(match.group(2))
        nsystemd.REPORT.append(f"systemd-analyze security {unit}: exposure {match.group(2)} {match.group(3)}")
        issues = [line.strip() for line in result.stdout.splitlines() if line.startswith("✗")]
        print(f"{unit}: {match.group(2)} {match.group(3)}; remaining:\n  " + "\n  ".join(issues))
    too_exposed = {unit: score for unit, score in scores.items() if score >= EXPOSURE_MAX}
    assert not too_exposed, f"exposure must stay below {EXPOSURE_MAX}: {too_exposed}"
