import subprocess
import sys

import pytest

from tests.util import run_cli, subprocess_env


@pytest.mark.parametrize("args,message", [
    (["synth", "--out", "data.txt"], "edgecnn synth: error: --out 'data.txt': the reference format is a pickle"),
    (["synth", "--out", "d.pkl", "--n", "1"], "edgecnn synth: error: synth: n=1 must be an integer >= 2 windows"),
    (["synth", "--out", "d.pkl", "--difficulty", "-1"], "edgecnn synth: error: synth: difficulty=-1.0 must be"),
])
def test_bad_input_is_one_line_exit_2_no_traceback(tmp_path, args, message):
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith(message)
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "d.pkl").exists()


def test_usage_errors_exit_2_and_help_works():
    assert run_cli().returncode == 2
    assert run_cli("nosuchcommand").returncode == 2
    proc = run_cli("--help")
    assert proc.returncode == 0 and "synth" in proc.stdout


def test_cli_does_not_import_tensorflow_for_light_commands(tmp_path):
    code = ("import sys; from edgecnn.cli import main; main(['synth', '--out', 'x.pkl', '--n', '4', '--quiet']);"
            "bad = [m for m in ('tensorflow', 'keras', 'tf2onnx') if m in sys.modules]; print(bad)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                          env=subprocess_env())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
