"""Real recordings end in their own class, or ``unknown``, never silently in the other class.

For CWRU and MFPT (../shared/data), a bundle is trained with the command's defaults and exported
(its decision policy chosen from the run's validation data), then every recording the label map
names is streamed on its own through firmware_sim (int8 on LiteRT, the bundle's policy, resampled
as training resamples). Per recording: the share of decisions for its own class (the streamed
window accuracy), the final state, and the verdict: with a share of 90 % or more the final state
must be its own class; below, its own class or ``unknown``; never the other class.

    python benchmarks/decisions_real.py [--work DIR] [--datasets cwru,mfpt] [--out FILE]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import figure, write_results  # noqa: E402

DATA = REPO.parent / "shared" / "data"
DATASETS = {
    "cwru": {"label_map": "inner_race=A,outer_race=B", "extra": ["--test-where", "load_hp=1"]},
    "mfpt": {"label_map": "inner_race=A,outer_race=B", "extra": []},
}


def edgecnn(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "edgecnn", *args], check=True, cwd=REPO)


def stream_recordings(bundle_dir: Path, data: Path, label_map: str) -> list[dict]:
    from edgecnn.dataset import LabelMap
    from edgecnn.readers import read_recordings
    from export.bundle import load_bundle
    from firmware_sim.interpreters import open_interpreter
    from firmware_sim.runtime import StreamRuntime
    from firmware_sim.sources import ArraySource, _resample_keeping_dropouts

    bundle = load_bundle(bundle_dir)
    mapping = LabelMap.parse(label_map)
    # The run's held-out recordings (the others trained or validated the model).
    test_ids = set((bundle.manifest.get("training", {}).get("split") or {}).get("test") or [])
    rows = []
    for rec in read_recordings(data):
        own = mapping(rec.label)
        if own is None:
            continue
        signal = _resample_keeping_dropouts(rec.continuous(), float(rec.fs), bundle.cfg.fs)
        with open_interpreter("litert", bundle, dtype="int8") as interpreter:
            runtime = StreamRuntime(bundle.cfg, bundle.classes, interpreter, policy=bundle.decision_policy)
            summary = runtime.run(ArraySource(signal, bundle.cfg.fs).blocks())
        share = summary["decision_share"].get(own)
        final = summary["state"]
        ok = final == own if share is not None and share >= 0.9 else final in (own, "unknown")
        rows.append({"recording": str(rec.id) + (" (test)" if str(rec.id) in test_ids else ""), "class": own,
                     "share": share, "final": final, "ok": ok,
                     "decisions": summary["decisions"], "events": [f"{e['from']}->{e['to']}@{e['time_s']:.2f}s"
                                                                  for e in summary["events"]]})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=REPO / ".cache" / "decisions_real")
    ap.add_argument("--datasets", default="cwru,mfpt")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    lines: list[str] = []

    def say(text: str) -> None:
        print(text, flush=True)
        lines.append(text)

    failures = 0
    for name in args.datasets.split(","):
        spec, data = DATASETS[name], DATA / name
        run, bundle = args.work / f"run_{name}", args.work / f"bundle_{name}"
        start = time.perf_counter()
        if not (run / "model.keras").exists():
            edgecnn("train", "--data", str(data), "--label-map", spec["label_map"], *spec["extra"], "--out", str(run),
                    "--force", "--quiet")
        if not (bundle / "manifest.json").exists():
            edgecnn("export", str(run), "--out", str(bundle), "--force", "--quiet")
        from export.bundle import load_bundle

        policy = load_bundle(bundle).manifest.get("decision_policy", {})
        say(f"{name}: edgecnn train --data {data} --label-map {spec['label_map']} {' '.join(spec['extra'])} "
            f"(defaults), export; policy {({k: v for k, v in policy.items() if k != 'chosen_by'})}")
        rows = stream_recordings(bundle, data, spec["label_map"])
        for r in rows:
            share = "-" if r["share"] is None else f"{100 * r['share']:.1f} %"
            say(f"  {r['recording']:35s} class {r['class']}  own-class decisions {share:>8s} of {r['decisions']:3d}  "
                f"final {r['final']:8s} {'ok' if r['ok'] else 'WRONG'}  events {' '.join(r['events']) or '-'}")
        bad = sum(not r["ok"] for r in rows)
        failures += bad
        say(f"  {len(rows) - bad}/{len(rows)} recordings end in their own class (or unknown below 90 %); "
            f"{time.perf_counter() - start:.0f} s")
        figure(f"{name}: recordings ending right", f"{len(rows) - bad}/{len(rows)}", "all", met=bad == 0)
    if args.out:
        write_results(args.out, lines)
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
