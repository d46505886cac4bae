"""``edgecnn export RUN_DIR --out BUNDLE_DIR``: write the deployable bundle of a training run.

Light at import: TensorFlow is imported by ``export.writer`` inside the call.
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
    from export.writer import ALL_FORMATS, DEFAULT_FORMATS

    parser = subparsers.add_parser(
        "export", help="write the deployable bundle (TFLite, ONNX, C array, manifest) of a run",
        description="Convert a training run into a bundle folder, written atomically.")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run directory written by `edgecnn train`")
    parser.add_argument("--out", required=True, metavar="BUNDLE_DIR", help="bundle folder to create")
    parser.add_argument("--formats", default=None, metavar="LIST",
                        help=f"comma list of {', '.join(ALL_FORMATS)}, or 'default' / 'all' "
                             f"(default: {','.join(DEFAULT_FORMATS)}; tflite_int8 is always written)")
    parser.add_argument("--calibration", type=int, default=200, metavar="N",
                        help="training windows (stratified) that calibrate the int8 models (default 200)")
    parser.add_argument("--dsp", choices=("numpy", "cmsis-f32", "cmsis-q15"), default=None,
                        help="declare the device's DSP backend in the manifest (the device side uses it by "
                             "default; cmsis-q15 adds q15 golden vectors)")
    parser.add_argument("--adc-full-scale", type=float, default=None, metavar="UNITS",
                        help="declare the device's ADC: full scale in physical units, e.g. 16 for +/-16 g "
                             "(default with --dsp cmsis-q15: 16)")
    parser.add_argument("--adc-bits", type=int, default=16, help="ADC resolution in bits (default 16)")
    parser.add_argument("--adc-units", default="g", help="ADC physical units (default g)")
    parser.add_argument("--adc-noise-lsb", type=float, default=0.0, help="ADC input noise, RMS counts (default 0)")
    parser.add_argument("--sign", default=None, metavar="KEY",
                        help="sign the bundle with this Ed25519 private key (edgecnn keygen): signature.json")
    parser.add_argument("--force", action="store_true", help="replace an existing bundle at --out")
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from export.bundle import load_bundle
    from export.writer import export_bundle

    def say(message: str) -> None:
        print(f"export: {message}", file=sys.stderr, flush=True)

    adc = None
    if args.adc_full_scale is not None or args.dsp == "cmsis-q15":
        from firmware_sim.adc import ADC

        adc = ADC(full_scale=16.0 if args.adc_full_scale is None else args.adc_full_scale, bits=args.adc_bits,
                  units=args.adc_units, noise_lsb=args.adc_noise_lsb)
    out = export_bundle(args.run_dir, args.out, formats=args.formats, calibration=args.calibration,
                        force=args.force, progress=None if args.quiet else say, quiet=args.quiet,
                        dsp=args.dsp, adc=adc, sign=args.sign)
    bundle = load_bundle(out)  # read back: what was written verifies
    calibration = bundle.manifest.get("calibration") or {}
    if calibration.get("windows", args.calibration) < args.calibration:  # shown with --quiet too
        print(f"edgecnn export: note: --calibration {args.calibration} asked for more windows than the run "
              f"stores ({calibration.get('available')} in its calibration.npz); calibrated on "
              f"{calibration['windows']}", file=sys.stderr)
    if not args.quiet:
        for entry in bundle.models.values():
            print(f"{entry.file:24s} {entry.bytes:>10,d} bytes")
        print(f"tensor arena (tflite-micro): {bundle.footprint['arena_bytes_tflm']:,d} bytes")
        if bundle.device:
            from firmware_sim.dsp_backends import DeviceDSP

            print(f"device: {DeviceDSP.resolve(bundle.device).describe()}")
        print(f"bundle: {out}")
        print(f"bundle digest: {bundle.digest}")
        print(f"signature: ed25519 key {bundle.signature.key_id} (signature.json)" if bundle.signature
              else "signature: none (unsigned; sign with --sign KEY)")
    return 0
