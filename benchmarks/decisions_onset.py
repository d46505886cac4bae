"""Do the stream's decisions mean what they say? Synthetic onset and healthy streams through a bundle.

For each seed, a 60 s synthetic machine that develops a fault at 30 s (class A until the onset,
then the bundle's last class, as ``edgecnn.synth`` labels them) and a healthy-only machine are
streamed through firmware_sim's ``StreamRuntime`` (int8 model on LiteRT, the bundle's decision
policy or ``--policy`` overrides). Figures: onsets detected (the state enters the fault class
after the onset), false alarms (a state entered that the signal is not in: the fault class
before the onset, or any class but the fault after it; falling back to ``unknown`` is none),
events after the first detection, detection delay (median, worst), and events on the healthy
streams. The probabilities of every decision are kept (``--cache``), so ``--sweep`` re-decides
the same streams under many policies without running the model again (the Decider is the one
in firmware_sim; only the policy changes).

    python benchmarks/decisions_onset.py BUNDLE [--seeds 0-49] [--healthy-s 120] [--policy smooth=8,agree=6]
        [--sweep] [--cache DIR] [--out benchmarks/results/decisions_onset.txt]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import figure, write_results  # noqa: E402
from export.bundle import load_bundle  # noqa: E402
from firmware_sim.decisions import POLICY_FIELDS, Decider, DecisionPolicy  # noqa: E402
from firmware_sim.interpreters import open_interpreter  # noqa: E402
from firmware_sim.runtime import StreamRuntime  # noqa: E402
from firmware_sim.sources import SynthSource  # noqa: E402


def parse_seeds(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def parse_policy(text: str | None, base: DecisionPolicy) -> DecisionPolicy:
    if not text:
        return base
    kinds = {name: (float if name == "threshold" else int) for name in POLICY_FIELDS}
    changes = {}
    for item in text.split(","):
        key, _, value = item.partition("=")
        changes[key.strip()] = kinds[key.strip()](value)
    return base.replace(**changes)


def record(bundle, spec: str, every: int, cache: Path | None) -> dict[str, np.ndarray]:
    """Every decision's window and probabilities of one synthetic stream (cached by digest, spec, cadence)."""
    path = None
    if cache is not None:
        path = cache / f"{bundle.digest[:16]}_{spec.replace(':', '_').replace(',', '_').replace('=', '')}_{every}.npz"
        if path.exists():
            with np.load(path) as data:
                return {k: data[k] for k in data.files}
    rows = []
    with open_interpreter("litert", bundle, dtype="int8") as interpreter:
        runtime = StreamRuntime(bundle.cfg, bundle.classes, interpreter, policy=DecisionPolicy(every_frames=every))
        runtime.run(SynthSource(spec, bundle.cfg.fs).blocks(), rows.append)
    out = {"window_start": np.array([d.window_start for d in rows], dtype=np.int64),
           "sample_index": np.array([d.sample_index for d in rows], dtype=np.int64),
           "probabilities": np.array([d.probabilities for d in rows], dtype=np.float32),
           "valid": np.array([d.valid for d in rows], dtype=bool)}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **out)
    return out


def decide(rows: dict[str, np.ndarray], classes: list[str], fs: float, policy: DecisionPolicy) -> list:
    decider = Decider(classes, fs, policy)
    events = []
    for start, end, p, ok in zip(rows["window_start"], rows["sample_index"], rows["probabilities"], rows["valid"]):
        _, event = decider.update(p, window_start=int(start), sample_index=int(end), valid=bool(ok))
        if event is not None:
            events.append(event)
    return events


def onset_figures(events, classes: list[str], onset: int, fs: float) -> dict:
    """Detection, false alarms and events after detection of one onset stream (A, then the last class)."""
    healthy, fault = classes[0], classes[-1]
    false_alarms = [e for e in events if e.state != "unknown" and (
        (e.sample_index < onset and e.state != healthy) or (e.sample_index >= onset and e.state != fault))]
    hit = next((e for e in events if e.sample_index >= onset and e.state == fault), None)
    after = [e for e in events if hit is not None and e.decision > hit.decision]
    return {"detected": hit is not None, "delay_s": None if hit is None else (hit.sample_index - onset) / fs,
            "false_alarms": len(false_alarms), "after_detection": len(after),
            "first_state_s": events[0].time_s if events else None}


def evaluate(onset_rows, healthy_rows, classes, fs, onset_s, policy) -> dict:
    onset = int(round(onset_s * fs))
    per = [onset_figures(decide(rows, classes, fs, policy), classes, onset, fs) for rows in onset_rows]
    delays = [p["delay_s"] for p in per if p["delay_s"] is not None]
    healthy_events = [decide(rows, classes, fs, policy) for rows in healthy_rows]
    healthy_alarms = sum(1 for evs in healthy_events for e in evs if e.state not in ("unknown", classes[0]))
    return {"streams": len(per), "detected": sum(p["detected"] for p in per),
            "false_alarms": sum(p["false_alarms"] for p in per),
            "streams_with_false_alarm": sum(p["false_alarms"] > 0 for p in per),
            "after_detection": sum(p["after_detection"] for p in per),
            "median_delay_s": statistics.median(delays) if delays else None,
            "worst_delay_s": max(delays) if delays else None,
            "missed_seeds": [i for i, p in enumerate(per) if not p["detected"]],
            "healthy_events": sum(len(evs) for evs in healthy_events), "healthy_alarms": healthy_alarms,
            "healthy_unknown_falls": sum(1 for evs in healthy_events for e in evs if e.state == "unknown")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle")
    ap.add_argument("--seeds", default="0-49")
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--onset", type=float, default=30.0)
    ap.add_argument("--healthy-s", type=float, default=120.0, help="seconds of each healthy-only stream")
    ap.add_argument("--policy", help="overrides of the bundle's policy: smooth=8,agree=6,...")
    ap.add_argument("--sweep", action="store_true", help="also re-decide under a grid of policies")
    ap.add_argument("--cache", type=Path, default=REPO / ".cache" / "decisions_onset")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    bundle = load_bundle(args.bundle)
    policy = parse_policy(args.policy, bundle.decision_policy)
    seeds = parse_seeds(args.seeds)
    fs, classes = bundle.cfg.fs, bundle.classes
    lines: list[str] = []

    def say(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    start = time.perf_counter()
    onset_rows = [record(bundle, f"synth:duration={args.duration:g},onset={args.onset:g},seed={s}",
                         policy.every_frames, args.cache) for s in seeds]
    healthy_rows = [record(bundle, f"synth:duration={args.healthy_s:g},seed={s}", policy.every_frames, args.cache)
                    for s in seeds]
    say(f"bundle {args.bundle} (digest {bundle.digest[:16]}), classes {classes}; int8 on LiteRT")
    say(f"streams: {len(seeds)} onset streams (seeds {args.seeds}, {args.duration:g} s, onset {args.onset:g} s) and "
        f"{len(seeds)} healthy streams of {args.healthy_s:g} s ({len(seeds) * args.healthy_s / 3600:.2f} h); "
        f"recorded in {time.perf_counter() - start:.0f} s (probabilities cached by earlier runs are reused)")
    say(f"policy ({'bundle' if bundle.manifest.get('decision_policy') else 'built-in default'}"
        f"{', ' + args.policy if args.policy else ''}): {policy.describe(bundle.cfg)}")
    r = evaluate(onset_rows, healthy_rows, classes, fs, args.onset, policy)
    say(f"onsets detected {r['detected']}/{r['streams']} (missed seeds {[seeds[i] for i in r['missed_seeds']]}); "
        f"false alarms {r['false_alarms']} on {r['streams_with_false_alarm']} streams; events after the first "
        f"detection {r['after_detection']}")
    say(f"detection delay: median {r['median_delay_s']:.2f} s, worst {r['worst_delay_s']:.2f} s")
    say(f"healthy streams: {r['healthy_events']} events, of which {r['healthy_alarms']} into a class other than "
        f"{classes[0]} and {r['healthy_unknown_falls']} back to unknown")
    say("per seed, where the figures fall short: share of valid decisions voting for the fault class before and "
        "after the onset (what the model said), and on the healthy stream")
    onset = int(round(args.onset * fs))
    for i, s in enumerate(seeds):
        events = decide(onset_rows[i], classes, fs, policy)
        f = onset_figures(events, classes, onset, fs)
        healthy = decide(healthy_rows[i], classes, fs, policy)
        alarms = sum(e.state not in ("unknown", classes[0]) for e in healthy)
        if f["detected"] and not f["false_alarms"] and not f["after_detection"] and not alarms:
            continue
        rows, h = onset_rows[i], healthy_rows[i]
        votes = rows["probabilities"].argmax(axis=1) == len(classes) - 1
        pre, post = votes[rows["sample_index"] <= onset], votes[rows["window_start"] >= onset]
        say(f"  seed {s:2d}: fault votes before {100 * pre.mean():5.1f} %, after {100 * post.mean():5.1f} %, healthy "
            f"stream {100 * (h['probabilities'].argmax(axis=1) == len(classes) - 1).mean():5.1f} %; detected "
            f"{f['detected']}, false alarms {f['false_alarms']}, events after detection {f['after_detection']}, "
            f"healthy alarms {alarms}; events {' '.join(f'{e.previous}->{e.state}@{e.time_s:.1f}' for e in events)}")
    figure(f"onsets detected (seeds {args.seeds})", f"{r['detected']}/{r['streams']}", f">= {len(seeds) - 1}",
           met=r["detected"] >= len(seeds) - 1)
    figure("false alarms before/after onset", str(r["false_alarms"]), "0", met=r["false_alarms"] == 0)
    figure("events after first detection", str(r["after_detection"]), "0", met=r["after_detection"] == 0)
    figure("detection delay median / worst (s)", f"{r['median_delay_s']:.2f} / {r['worst_delay_s']:.2f}", "")
    figure(f"healthy alarms ({len(seeds) * args.healthy_s / 3600:.2f} h)", str(r["healthy_alarms"]), "0",
           met=r["healthy_alarms"] == 0)
    if args.sweep:
        say("")
        say("sweep (same decisions, other policies): n k threshold dwell unknown_after -> detected, false alarms, "
            "after detection, median/worst delay, healthy alarms")
        for n, thr, unknown_after in itertools.product((4, 6, 8, 10, 12), (0.6, 0.7, 0.8), (12, 24)):
            for k in sorted({n // 2 + 1, (3 * n + 3) // 4, n}):
                cand = policy.replace(smooth=n, agree=k, threshold=thr, unknown_after=unknown_after)
                c = evaluate(onset_rows, healthy_rows, classes, fs, args.onset, cand)
                worst = "-" if c["worst_delay_s"] is None else f"{c['median_delay_s']:.2f}/{c['worst_delay_s']:.2f}"
                say(f"  {n:2d} {k:2d} {thr:.1f} {cand.min_dwell} {unknown_after:2d} -> {c['detected']:2d} "
                    f"{c['false_alarms']:2d} {c['after_detection']:2d} {worst} {c['healthy_alarms']}")
    if args.out:
        write_results(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
