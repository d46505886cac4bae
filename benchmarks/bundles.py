"""Real trained bundles for the benchmarks: edge and seed CNNs trained by the real pipeline.

``ensure_bundle(arch)`` trains ``arch`` with ``edgecnn.train.train_run`` on a small synthetic set
(``edgecnn.synth``), exports it with ``export.writer.export_bundle`` and caches the bundle under
``benchmarks/.cache/<arch>-bundle`` (git-ignored; rebuilt when it no longer loads, e.g. after a
schema change) so every benchmark of a ``make bench`` run uses
the same model. ``--bundle DIR`` on a benchmark skips this. This module imports TensorFlow only
inside ``ensure_bundle`` when it has to train, and it runs training in a subprocess so the calling
benchmark's process (and its memory figures) never holds TensorFlow.

    python benchmarks/bundles.py [--if-missing] edge seed     # train and cache both
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(__file__).resolve().parent / ".cache"
#: Training set: the synthetic set tests/test_stream_detection.py trains its detector on.
N_WINDOWS, N_RECORDINGS, DIFFICULTY, SEED = 800, 200, 1.0, 11
EPOCHS = {"edge": 20, "seed": 3}


def bundle_path(arch: str) -> Path:
    return CACHE / f"{arch}-bundle"


def is_current(path: Path) -> bool:
    """Whether a cached bundle loads with this edgecnn (an older schema's cache is rebuilt)."""
    from edgecnn.errors import BundleError
    from export.bundle import load_bundle

    try:
        load_bundle(path)
    except BundleError:
        return False
    return True


def ensure_bundle(arch: str) -> Path:
    """The cached bundle of ``arch``, trained and exported (in a subprocess) when absent or stale."""
    path = bundle_path(arch)
    if not is_current(path):
        subprocess.run([sys.executable, __file__, arch], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return path


def _train_and_export(arch: str) -> Path:
    import shutil

    from edgecnn import synth
    from edgecnn.dataset import load_windows
    from edgecnn.train import train_run
    from export.writer import export_bundle

    CACHE.mkdir(exist_ok=True)
    data = synth.write_pickle(CACHE / "train.pkl", synth.generate(n=N_WINDOWS, seed=SEED,
                                                                  n_recordings=N_RECORDINGS,
                                                                  difficulty=DIFFICULTY))
    run = CACHE / f"{arch}-run"
    train_run(load_windows(data), out=run, arch=arch, epochs=EPOCHS[arch], seed=0, quiet=True,
              use_cache=False, force=True, data_source=str(data))
    target = bundle_path(arch)
    tmp = CACHE / f".{arch}-bundle.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    export_bundle(run, tmp, quiet=True)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    from edgecnn.quiet import import_tensorflow, quiet_tensorflow_environment

    quiet_tensorflow_environment()
    import_tensorflow()  # TensorFlow's start-up lines kept off the terminal, as the CLI does
    names = [a for a in sys.argv[1:] if not a.startswith("--")] or ["edge"]
    for name in names:
        if "--if-missing" in sys.argv and is_current(bundle_path(name)):
            continue
        print(_train_and_export(name))
