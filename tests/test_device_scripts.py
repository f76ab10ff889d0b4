"""The device scripts (``benchmarks/device/*.sh``) run only on a lent GPU machine, from the payload folder that
``benchmarks/device/make_payload.py`` writes, where a failed start costs device time that is scarce. These checks
catch on the CPU what would fail there before any work: a script the payload does not carry, a ``.devpayload/`` path
it does not hold, or a shell syntax error."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DEVICE = Path(__file__).resolve().parents[1] / "benchmarks" / "device"
SCRIPTS = sorted(DEVICE.glob("*.sh"))


def _make_payload():
    spec = importlib.util.spec_from_file_location("make_payload", DEVICE / "make_payload.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_payload_carries_every_device_script():
    assert {p.name for p in SCRIPTS} == set(_make_payload().DEVICE_SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_use_only_what_the_payload_holds(script: Path):
    entries = set(_make_payload().PAYLOAD_ENTRIES)
    used = set(re.findall(r"\.devpayload/([A-Za-z0-9_.-]+)", script.read_text()))
    assert used, f"{script.name} names nothing in .devpayload/"
    assert used <= entries, f"{script.name} uses {sorted(used - entries)}, which make_payload.py does not write"


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_parse(script: Path):
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def _run_make_payload(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(DEVICE / "make_payload.py"), *args], capture_output=True, text=True, timeout=120
    )


def test_make_payload_never_deletes_a_folder_it_did_not_write(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    (out / "whl").mkdir()  # a payload entry beside the user's file does not make the folder a payload
    result = _run_make_payload("--kernels-only", "--out", str(out))
    assert result.returncode == 2
    assert "notes.txt" in result.stderr and "nothing was deleted" in result.stderr
    assert (out / "notes.txt").read_text() == "keep me" and (out / "whl").is_dir()


def test_make_payload_names_a_missing_data_folder_before_doing_anything(tmp_path):
    out = tmp_path / "payload"
    result = _run_make_payload("--datasets", "nope", "--data-dir", str(tmp_path), "--out", str(out))
    assert result.returncode == 2 and "no data folder nope" in result.stderr
    assert not out.exists()
