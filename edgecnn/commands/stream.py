"""``edgecnn stream``: run a bundle on a sensor stream with the device-side runtime (firmware_sim).

Loads and verifies the bundle (its DSP config, classes and normalisation are the only ones used),
optionally checks that it fits a device profile (exit 1 with the figures if not), opens the source
and the interpreter, and runs the loop with a live status line on stderr, events to a JSON-lines
file, a summary at the end, and optionally JSON figures and a plot.

Device side: imports no TensorFlow, not even inside run().
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import signal
import sys
import time

from edgecnn.commands import add_read_arguments, add_require_signature_argument, read_options
from edgecnn.errors import ConfigError

RUNTIME_CHOICES = ("litert", "tflm", "onnxruntime", "tflite-runtime")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "stream", help="run a bundle on a live or replayed sensor stream (device-side runtime)",
        description="Stream samples through the bundle's DSP and model as the device would: "
                    "ring buffer, streaming STFT, interpreter, smoothed decisions, events, timing.")
    p.add_argument("bundle", help="bundle folder written by `edgecnn export`")
    add_require_signature_argument(p)
    add_read_arguments(p)
    p.add_argument("--source", default="synth",
                   help="synth[:duration=60,onset=30,seed=0,...], a recording file/folder, or - for raw "
                        "samples on stdin (default: synth)")
    p.add_argument("--runtime", choices=RUNTIME_CHOICES, default="litert",
                   help="interpreter (default litert)")
    p.add_argument("--model-dtype", choices=("int8", "float32"), default="int8",
                   help="which model of the bundle to run (default int8)")
    p.add_argument("--dsp", choices=("numpy", "cmsis-f32", "cmsis-q15"), default=None,
                   help="per-frame DSP backend (firmware_sim.dsp_backends; default: the bundle's declared "
                        "device DSP and ADC, else numpy without an ADC)")
    p.add_argument("--block", type=int, default=256, help="samples per block (default 256)")
    p.add_argument("--decision-every", default=None,
                   help="decision cadence: 0.25s, 250ms or 14f (frames); default: the bundle's policy")
    p.add_argument("--smooth", type=int, default=None, help="n: decisions in the ring (default: the bundle's)")
    p.add_argument("--agree", type=int, default=None,
                   help="k: votes of the last n decisions a class needs (default: the bundle's)")
    p.add_argument("--threshold", type=float, default=None,
                   help="mean probability over the last n decisions a class needs (default: the bundle's)")
    p.add_argument("--min-dwell", type=int, default=None,
                   help="decisions a state lasts before another class replaces it (default: the bundle's)")
    p.add_argument("--unknown-after", type=int, default=None,
                   help="decisions without support before the state falls back to unknown "
                        "(default: the bundle's)")
    p.add_argument("--profile", help="device profile to check first: cortex-m4, cortex-m7, raspberry-pi-4 "
                                     "or a JSON file")
    p.add_argument("--resample", action="store_true", help="resample recordings at another rate")
    p.add_argument("--raw-dtype", choices=("int16", "float32"), default="int16", help="stdin sample type")
    p.add_argument("--scale", type=float, default=1.0 / 32768, help="int16 stdin: units per count")
    p.add_argument("--source-fs", type=float, help="stdin sample rate (must equal the bundle's)")
    p.add_argument("--events", metavar="OUT.jsonl", help="write state-change events, one JSON per line")
    p.add_argument("--decisions", metavar="OUT.jsonl",
                   help="write every decision (time, window, probabilities, argmax, valid, state), one JSON "
                        "per line (with --sensors N: each with its sensor)")
    p.add_argument("--plot", metavar="OUT.png", help="plot signal, p(B), smoothed state and events")
    p.add_argument("--json", metavar="OUT", help="write the summary figures as JSON")
    p.add_argument("--realtime", action="store_true", help="pace blocks at the sensor rate")
    p.add_argument("--quiet", action="store_true", help="no status line")
    p.add_argument("--sensors", type=int, default=1,
                   help="serve N synchronised sensors with one model (StreamRuntime(n_sensors=N)): with a synth "
                        "source each sensor is its own machine (seed + i; with onset=T the even sensors "
                        "develop a fault at their own onset in [T/2, 3T/2], the odd ones stay healthy); "
                        "a recording is replayed to sensor i rotated by i/N of its length (default 1)")
    p.add_argument("--max-batch", type=int, default=8,
                   help="with --sensors: images per interpreter invoke (default 8, the fastest for "
                        "the edge int8 model on LiteRT in benchmarks/bench_multi.py)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edgecnn.fileio import write_json
    from export import firmware_measure
    from export.bundle import load_bundle
    from firmware_sim import profiles
    from firmware_sim.dsp_backends import DeviceDSP
    from firmware_sim.interpreters import RUNTIME_FORMATS, open_interpreter
    from firmware_sim.report import DecisionLog, EventLog, Trace, format_summary, plot_stream
    from firmware_sim.runtime import StreamRuntime
    from firmware_sim.sources import open_source, paced

    bundle = load_bundle(args.bundle, require_signature=args.require_signature)
    cfg, classes = bundle.cfg, bundle.classes
    policy = stream_policy(bundle, args)
    if args.block < 1:
        raise ConfigError(f"--block {args.block} must be >= 1 sample")
    entry = bundle.model(format=RUNTIME_FORMATS[args.runtime], dtype=args.model_dtype)
    device = DeviceDSP.resolve(bundle.device, args.dsp)
    if not args.quiet:
        print(device.describe(), file=sys.stderr)
        print(f"policy ({policy_origin(bundle, args)}): {policy.describe(cfg)}", file=sys.stderr)

    fit = None
    if args.profile:
        part = profiles.load_profile(args.profile)
        arena = entry.arena_bytes or bundle.footprint.get("arena_bytes_tflm") or 0
        itemsize = 1 if entry.input.dtype in ("int8", "uint8") else 4
        buffers = profiles.runtime_buffer_bytes(cfg, block=args.block, input_itemsize=itemsize,
                                                n_classes=len(classes), smooth=policy.smooth, dsp=device.name)
        fit = profiles.check_fit(part, flash_bytes=entry.bytes, arena_bytes=arena, buffers=buffers,
                                 tables=profiles.dsp_flash_bytes(cfg, device.name))
        print(f"profile {fit.describe()}", file=sys.stderr)
        measured = firmware_measure.read_results(bundle)
        if measured:  # the generated firmware measured on an emulated Cortex-M4 (edgecnn firmware --measure)
            print(f"measured firmware: flash {measured['flash_bytes']:,} B, RAM {measured['ram_bytes']:,} B, "
                  f"{measured['instructions_per_inference']:,} instructions per inference, "
                  f"{measured['instructions_per_dsp_frame']:,} per DSP frame ({measured['target']}; "
                  "instructions, not cycles)", file=sys.stderr)
        if not fit.fits:
            if args.json:
                write_json(args.json, {"bundle": str(bundle.path), **_identity(bundle), "model": entry.file,
                                       "dsp": device.name,
                                       "device": device.to_dict(), "fit": fit.to_json()})
            return 1

    if args.sensors != 1:
        return _run_multi(args, bundle, policy, entry, fit, device)
    source = open_source(args.source, cfg.fs, block=args.block, resample=args.resample,
                         raw_dtype=args.raw_dtype, raw_scale=args.scale, source_fs=args.source_fs,
                         options=read_options(args))
    interpreter = open_interpreter(args.runtime, bundle, dtype=args.model_dtype)
    log = EventLog(args.events, fields={"bundle_digest": bundle.digest}) if args.events else None
    decision_log = DecisionLog(args.decisions, classes, cfg.fs) if args.decisions else None
    target = 1 if len(classes) > 1 else 0
    trace = Trace() if args.plot else None
    status = _Status(enabled=not args.quiet, classes=classes, target=target)

    def on_event(event):
        if log is not None:
            log(event)
        status.event(event)

    def on_recording(name, first):
        if log is not None:
            log.write({"event": "recording", "recording": name, "sample_index": first,
                       "time_s": round(first / cfg.fs, 6)})
        status.recording(name, first / cfg.fs)

    backend = device.backend()
    runtime = StreamRuntime(cfg, classes, interpreter, policy=policy, magnitude_fn=backend,
                            full_scale=getattr(source, "full_scale", None), on_event=on_event,
                            adc=getattr(backend, "adc", None), on_recording=on_recording)

    def on_decision(decision):
        if trace is not None:
            trace.add_decision(decision, target)
        if decision_log is not None:
            decision_log(decision, runtime.recording)
        status.decision(decision, runtime)

    first_block: list[float] = []
    blocks = _time_first_block(source.blocks(), first_block)
    if args.realtime:
        blocks = paced(blocks, cfg.fs)
    if trace is not None:
        blocks = trace.watch(blocks)
    stopped: list[str] = []
    wall = time.perf_counter()
    try:
        with _stop_on_signals(stopped):
            # Arrival times matter when blocks come at the sensor's pace (live stdin or --realtime).
            runtime.run(blocks, on_decision, watch_stalls=args.realtime or args.source == "-")
    except _Stop:
        pass  # SIGINT/SIGTERM: the figures up to now are reported below
    finally:
        wall = time.perf_counter() - wall
        interpreter.close()
        for opened in (log, decision_log):
            if opened is not None:
                opened.close()
        status.close()
    result = {"bundle": str(bundle.path), **_identity(bundle), "model": entry.file, "runtime": args.runtime,
              "dsp": device.name, "device": device.to_dict(),
              "source": args.source, "block": args.block, "decision_every_frames": policy.every_frames,
              "policy": policy.to_dict(), "policy_from": policy_origin(bundle, args),
              "interrupted": stopped[0] if stopped else None,
              "wall_s": round(wall, 4),
              "peak_rss_mb": peak_rss_mb(),
              # Wall-clock time (Unix seconds) when the first block had been processed: a caller
              # that noted when it started the process gets the start-up time (benchmarks).
              "first_block_done_unix_s": first_block[0] if first_block else None,
              **runtime.summary()}
    if fit is not None:
        result["fit"] = fit.to_json()
        result["firmware_measured"] = firmware_measure.read_results(bundle)
    print(format_summary(result))
    print(_identity_line(bundle))
    print(device.describe())
    print(f"peak resident memory: {result['peak_rss_mb']} MiB")
    if args.json:
        write_json(args.json, result)
    if args.plot:
        plot_stream(args.plot, trace, runtime.events, fs=cfg.fs, classes=classes, target=target,
                    title=f"{bundle.path.name}: {entry.file} on {args.runtime}, source {args.source}",
                    onset_s=getattr(getattr(source, "spec", None), "onset", None))  # known for synth sources
    return 0


class _Stop(Exception):
    """Raised by the SIGINT/SIGTERM handler to end the stream loop (the summary is still written)."""


@contextlib.contextmanager
def _stop_on_signals(stopped: list[str]):
    """SIGINT and SIGTERM end the stream cleanly: the handler notes the signal's name in
    ``stopped`` and raises :class:`_Stop` once; a second signal is ignored. The previous handlers
    come back on leaving the block."""

    def handler(signum, frame):
        if stopped:
            return
        stopped.append(signal.Signals(signum).name)
        raise _Stop

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def stream_policy(bundle, args: argparse.Namespace):
    """The bundle's decision policy (manifest ``decision_policy``; the built-in default for a
    bundle without one) with the fields the command line gives."""
    from firmware_sim.decisions import parse_cadence

    every = None if args.decision_every is None else parse_cadence(args.decision_every, bundle.cfg)
    return bundle.decision_policy.replace(every_frames=every, smooth=args.smooth, agree=args.agree,
                                          threshold=args.threshold, min_dwell=args.min_dwell,
                                          unknown_after=args.unknown_after)


def policy_origin(bundle, args: argparse.Namespace) -> str:
    """Where the policy came from: the bundle, the built-in default, and which flags changed it."""
    base = "bundle" if bundle.manifest.get("decision_policy") else "built-in default"
    flags = [flag for flag, value in (("--decision-every", args.decision_every), ("--smooth", args.smooth),
                                      ("--agree", args.agree), ("--threshold", args.threshold),
                                      ("--min-dwell", args.min_dwell), ("--unknown-after", args.unknown_after))
             if value is not None]
    return base + (f", changed by {' '.join(flags)}" if flags else "")


def _identity(bundle) -> dict:
    """Which bundle produced a result (--json; every event line carries the digest)."""
    return {"bundle_digest": bundle.digest,
            "signature": bundle.signature.to_json() if bundle.signature else None}


def _identity_line(bundle) -> str:
    return f"bundle digest {bundle.digest} ({bundle.signature.describe() if bundle.signature else 'unsigned'})"


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB: VmHWM of /proc/self/status (this program's
    own peak; ``ru_maxrss`` also counts the parent's memory when the process was forked from a
    large one), else ``ru_maxrss``."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _time_first_block(blocks, stamp: list[float]):
    """Yield the blocks; note the wall-clock time when the first one has been processed (when
    the loop asks for the second block, or the stream ends after one)."""
    for block in blocks:
        yield block
        if not stamp:
            stamp.append(time.time())


def _run_multi(args: argparse.Namespace, bundle, policy, entry, fit, device) -> int:
    """``--sensors N``: N synchronised sensors through one interpreter, batched."""
    import json

    import numpy as np

    from edgecnn.fileio import write_json
    from export import firmware_measure
    from firmware_sim.interpreters import open_interpreter
    from firmware_sim.report import DecisionLog
    from firmware_sim.runtime import StreamRuntime
    from firmware_sim.sources import SynthSource, open_source, rotated_blocks, synth_fleet

    if args.sensors < 1:
        raise ConfigError(f"--sensors {args.sensors} must be >= 1")
    if args.max_batch is not None and args.max_batch < 1:
        raise ConfigError(f"--max-batch {args.max_batch} must be >= 1")
    if args.source == "-" or args.realtime or args.plot:
        raise ConfigError("--sensors N replays a synthetic source or a recording; it does not take "
                          "stdin (-), --realtime or --plot")
    cfg, classes = bundle.cfg, bundle.classes
    source = open_source(args.source, cfg.fs, block=args.block, resample=args.resample, options=read_options(args))
    fleet = None
    if isinstance(source, SynthSource):  # a fleet: every sensor its own machine (own seed, own onset or none)
        fleet, blocks = synth_fleet(source.spec, args.sensors, cfg.fs, block=args.block)
    else:  # a recording: sensor i replays it rotated by i/N of its length
        signal = np.concatenate([b.samples for b in source.blocks()])
        blocks = rotated_blocks(signal, args.sensors, block=args.block)
    log = open(args.events, "w", encoding="utf-8") if args.events else None  # noqa: SIM115

    def on_event(event):
        if log is not None:
            log.write(json.dumps({**event.to_json(), "bundle_digest": bundle.digest}) + "\n")
            log.flush()
        if not args.quiet:
            print(f"sensor {event.sensor}: event t={event.time_s:.3f}s: {event.previous} -> {event.state}",
                  file=sys.stderr)

    interpreter = open_interpreter(args.runtime, bundle, dtype=args.model_dtype)
    decision_log = DecisionLog(args.decisions, classes, cfg.fs) if args.decisions else None
    backend = device.backend()
    runtime = StreamRuntime(cfg, classes, interpreter, n_sensors=args.sensors, policy=policy, magnitude_fn=backend,
                            full_scale=getattr(source, "full_scale", None), adc=getattr(backend, "adc", None),
                            max_batch=args.max_batch, on_event=on_event, stagger=True)
    wall = time.perf_counter()
    try:
        result = runtime.run(blocks, decision_log)
    finally:
        wall = time.perf_counter() - wall
        interpreter.close()
        for opened in (log, decision_log):
            if opened is not None:
                opened.close()
    result = {"bundle": str(bundle.path), **_identity(bundle), "model": entry.file, "runtime": args.runtime,
              "dsp": device.name, "device": device.to_dict(), "source": args.source, "block": args.block,
              "decision_every_frames": policy.every_frames,
              "wall_s": round(wall, 4),
              "peak_rss_mb": peak_rss_mb(), **result}
    if fleet is not None:
        result["fleet"] = [{"sensor": i, "seed": s.seed, "onset_s": s.onset, "faulty": s.faulty}
                           for i, s in enumerate(fleet)]
    if fit is not None:
        result["fit"] = fit.to_json()
        result["firmware_measured"] = firmware_measure.read_results(bundle)
    t = result["timing"]
    states = ", ".join(f"{result['states'].count(c)} {c}" for c in [*classes, "unknown"])
    print(f"sensors: {args.sensors} x {t['stream_s']:.2f} s of signal in {t['processing_s']:.3f} s of "
          f"processing: {result['sensor_realtime_factor']:.1f} sensor-seconds per second "
          f"(real-time factor {t['realtime_factor']:.1f}x for all {args.sensors} together)")
    print(f"blocks of {args.sensors} x {args.block}: p50 {t['block_ms_p50']} ms, p99 {t['block_ms_p99']} ms, "
          f"deadline misses {t['deadline_misses']}")
    if fleet is not None:
        with_onset = sum(s.onset is not None for s in fleet)
        print(f"fleet: {args.sensors} synthetic machines (seeds {fleet[0].seed}-{fleet[-1].seed}), {with_onset} "
              f"develop a fault at their own onset, {args.sensors - with_onset} do not")
    print(f"decisions: {result['decisions']} ({result['invalid_decisions']} invalid); "
          f"events: {len(result['events'])}; final states: {states}")
    print(f"peak resident memory: {result['peak_rss_mb']} MiB")
    print(_identity_line(bundle))
    if args.json:
        write_json(args.json, result)
    return 0


class _Status:
    """The live status line on stderr: rewritten in place on a terminal, a line every 5 s otherwise."""

    def __init__(self, *, enabled: bool, classes: list[str], target: int) -> None:
        self.enabled = enabled
        self.classes = classes
        self.target = target
        self.tty = sys.stderr.isatty()
        self.interval = 0.25 if self.tty else 5.0
        self.last = 0.0
        self.shown = False

    def decision(self, decision, runtime) -> None:
        now = time.perf_counter()
        if not self.enabled or now - self.last < self.interval:
            return
        self.last = now
        timing = runtime.timing
        p = decision.probabilities[self.target]
        text = (f"t={decision.sample_index / runtime.cfg.fs:8.2f}s decisions={runtime.decider.decisions} "
                f"invalid={runtime.decider.invalid} p({self.classes[self.target]})={p:.2f} "
                f"state={runtime.decider.state_name} events={len(runtime.events)} "
                f"load={100 * timing.cpu_load:.2f}%")
        sys.stderr.write(("\r" + text + "\033[K") if self.tty else text + "\n")
        sys.stderr.flush()
        self.shown = True

    def recording(self, name: str, time_s: float) -> None:
        if self.enabled:
            prefix = "\r\033[K" if self.tty else ""
            sys.stderr.write(f"{prefix}recording {name} starts at t={time_s:.3f}s\n")
            sys.stderr.flush()

    def event(self, event) -> None:
        if self.enabled:
            prefix = "\r\033[K" if self.tty else ""
            sys.stderr.write(f"{prefix}event t={event.time_s:.3f}s: {event.previous} -> {event.state}\n")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.tty and self.shown:
            sys.stderr.write("\n")
