"""The device process and the microcontroller footprint of the edge bundle.

Device process (``edgecnn stream`` in a fresh interpreter, edge int8 bundle on LiteRT): peak
resident memory (``ru_maxrss``, reported by the command), start-up time (process start to the
first block processed), and whether TensorFlow was imported, for three sources: raw int16 samples
on stdin (the sensor), a 16-bit PCM WAV recording (what recorders and ADC loggers write; read with
the standard library) and the built-in synthetic sensor (rendered segment by segment); a 32-bit
float WAV (read through scipy.io) is printed for information. Baseline, same run: a process that
only imports TensorFlow.

Footprint (from the bundle's manifest; the arena is the one tflite-micro really allocated):
int8 model bytes, tensor arena, MACs, and the ESTIMATED latency and load on the built-in device
profiles (``firmware_sim.profiles.estimate_latency``: MACs x cycles per MAC at the clock plus
the DSP per frame; assumptions printed). Baseline: the seed bundle's figures.

    python benchmarks/bench_device.py [--bundle DIR] [--seed-bundle DIR] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import ROOT, figure

from edgecnn.synth import render_stream
from export.bundle import load_bundle
from firmware_sim.profiles import BUILTIN, estimate_latency

WAV_LABEL = "WAV recording (16-bit PCM), 60 s"
FLOAT_WAV_LABEL = "WAV recording (32-bit float, scipy.io), 60 s"
RUN_CLI = ("import sys; from edgecnn.cli import main; rc = main(sys.argv[1:]); "
           "print('TENSORFLOW_IMPORTED', 'tensorflow' in sys.modules, file=sys.stderr); sys.exit(rc)")


def stream_process(bundle: Path, source: str, stdin_path: Path | None, out: Path) -> dict:
    cmd = [sys.executable, "-c", RUN_CLI, "stream", str(bundle), "--source", source, "--quiet",
           "--json", str(out)]
    if source == "-":
        cmd += ["--source-fs", "12800"]
    started = time.time()
    with open(stdin_path, "rb") if stdin_path else open("/dev/null", "rb") as stdin:
        proc = subprocess.run(cmd, stdin=stdin, capture_output=True, text=True, cwd=ROOT,
                              env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    if proc.returncode != 0:
        raise SystemExit(f"edgecnn stream failed: {proc.stderr[-2000:]}")
    result = json.loads(out.read_text())
    # peak_rss_mb is ru_maxrss / 1024 (kB -> MiB).
    return {"peak_mib": result["peak_rss_mb"],
            "first_block_s": result["first_block_done_unix_s"] - started,
            "tensorflow": "TENSORFLOW_IMPORTED True" in proc.stderr,
            "realtime_factor": result["timing"]["realtime_factor"]}


def tensorflow_baseline() -> dict:
    code = ("import resource, time; t = time.perf_counter(); import tensorflow; "
            "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    started = time.time()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    took = time.time() - started
    _, maxrss_kb = proc.stdout.split()
    return {"peak_mib": int(maxrss_kb) / 1024, "process_s": took}


def footprint(path: Path) -> dict:
    bundle = load_bundle(path)
    entry = bundle.model(format="tflite", dtype="int8")
    arena = entry.arena_bytes or bundle.footprint.get("arena_bytes_tflm")
    return {"bytes": entry.bytes, "arena": arena, "macs": entry.macs, "cfg": bundle.cfg}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", help="edge bundle (default: train one with benchmarks/bundles.py)")
    parser.add_argument("--seed-bundle", help="seed bundle (default: train one)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions; medians are printed (3)")
    args = parser.parse_args(argv)
    from bundles import ensure_bundle

    edge = Path(args.bundle or ensure_bundle("edge"))
    seed = Path(args.seed_bundle or ensure_bundle("seed"))

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        signal = render_stream(60.0, seed=0, fault_onset_s=30.0)
        raw = tmp / "sensor.i16"
        pcm = (np.clip(signal / (1.05 * np.abs(signal).max()), -1, 1) * 32767).astype("<i2")
        pcm.tofile(raw)
        from scipy.io import wavfile

        wavfile.write(tmp / "recording.wav", 12800, pcm)
        wavfile.write(tmp / "float.wav", 12800, signal)
        sources = (("raw int16 on stdin (the sensor), 60 s", "-", raw),
                   (WAV_LABEL, str(tmp / "recording.wav"), None),
                   ("synthetic sensor (default synth, 60 s)", "synth", None),
                   (FLOAT_WAV_LABEL, str(tmp / "float.wav"), None))
        rows = {}
        for label, source, stdin in sources:
            runs = [stream_process(edge, source, stdin, tmp / "out.json") for _ in range(args.repeat)]
            rows[label] = {k: statistics.median(r[k] for r in runs) for k in ("peak_mib", "first_block_s",
                                                                             "realtime_factor")}
            rows[label]["tensorflow"] = any(r["tensorflow"] for r in runs)
            r = rows[label]
            print(f"edgecnn stream, {label:46s}: peak {r['peak_mib']:6.1f} MiB, start to first block "
                  f"{r['first_block_s']:.3f} s, TensorFlow imported: {r['tensorflow']}, "
                  f"{r['realtime_factor']:.0f}x real time")
    tf = tensorflow_baseline()
    print(f"baseline, a process importing tensorflow only: peak {tf['peak_mib']:.0f} MiB, {tf['process_s']:.1f} s")
    sensor = rows["raw int16 on stdin (the sensor), 60 s"]
    figure("device process: peak memory, edgecnn stream (sensor on stdin)", f"{sensor['peak_mib']:.1f} MiB",
           "<= 60 MiB", f"import tensorflow {tf['peak_mib']:.0f} MiB",
           f"{tf['peak_mib'] / sensor['peak_mib']:.0f}x less",
           sensor["peak_mib"] <= 60)
    for label in (WAV_LABEL, "synthetic sensor (default synth, 60 s)"):
        r = rows[label]
        figure(f"device process: peak memory, {label}", f"{r['peak_mib']:.1f} MiB", "<= 60 MiB", "", "",
               r["peak_mib"] <= 60)
    # The float WAV (scipy.io's fallback) is informative: it counts in "TensorFlow imported" only.
    worst_start = max(r["first_block_s"] for label, r in rows.items() if label != FLOAT_WAV_LABEL)
    figure("device process: start to first block (worst source)", f"{worst_start:.2f} s", "< 0.5 s",
           f"import tensorflow {tf['process_s']:.1f} s", f"{tf['process_s'] / worst_start:.0f}x faster",
           worst_start < 0.5)
    imported = any(r["tensorflow"] for r in rows.values())
    figure("device process: TensorFlow imported", str(imported), "never", "", "", not imported)

    fe, fs = footprint(edge), footprint(seed)
    print(f"edge int8: {fe['bytes']:,} bytes, arena {fe['arena']:,} bytes, {fe['macs']:,} MACs; "
          f"seed int8: {fs['bytes']:,} bytes, arena {fs['arena']:,} bytes, {fs['macs']:,} MACs")
    figure("edge int8 model size", f"{fe['bytes'] / 1024:.1f} KB", "<= 32 KB", f"seed {fs['bytes'] / 1024:.0f} KB",
           f"{fs['bytes'] / fe['bytes']:.0f}x smaller", fe["bytes"] <= 32 * 1024)
    figure("edge int8 tensor arena (tflite-micro)", f"{fe['arena'] / 1024:.1f} KB", "<= 32 KB",
           f"seed {fs['arena'] / 1024:.0f} KB", f"{fs['arena'] / fe['arena']:.0f}x smaller", fe["arena"] <= 32 * 1024)
    figure("edge int8 MACs per inference", f"{fe['macs'] / 1e6:.2f} M", "<= 2 M", f"seed {fs['macs'] / 1e6:.1f} M",
           f"{fs['macs'] / fe['macs']:.0f}x fewer", fe["macs"] <= 2e6)
    for profile in BUILTIN.values():
        est = estimate_latency(profile, fe["cfg"], macs=fe["macs"])
        est_seed = estimate_latency(profile, fs["cfg"], macs=fs["macs"])
        a = est["assumptions"]
        print(f"ESTIMATE on {profile.name}: edge inference {est['inference_ms']:.2f} ms, DSP "
              f"{est['dsp_ms_per_frame']:.3f} ms per frame, load at 4 decisions/s {100 * est['cpu_load']:.2f} % "
              f"(assumes {a['cycles_per_mac']} cycles/MAC, {a['dsp_cycles_per_frame']:,} cycles/frame at "
              f"{a['clock_hz'] / 1e6:.0f} MHz); seed inference {est_seed['inference_ms']:.1f} ms")
        figure(f"ESTIMATED edge int8 latency on {profile.name} ({a['cycles_per_mac']} cycles/MAC)",
               f"{est['inference_ms']:.2f} ms, load {100 * est['cpu_load']:.1f} %", "(estimate, reported)",
               f"seed {est_seed['inference_ms']:.1f} ms", f"{est_seed['inference_ms'] / est['inference_ms']:.0f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
