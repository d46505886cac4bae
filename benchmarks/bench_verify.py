"""What verifying a bundle costs on the device side: the digest, the TFLite cross-check, the signature.

Each measurement runs in a fresh interpreter (imports are what a device pays once per start), the
variants interleaved, medians of ``--repeat`` runs:

- ``import export.bundle`` (numpy, flatbuffers, edgecnn's config: what every load pays);
- ``load_bundle`` of the unsigned benchmark bundle;
- ``load_bundle(..., require_signature=KEY.pub)`` of the same bundle signed, with the time and
  resident memory that importing ``cryptography``'s Ed25519 and verifying add, measured inside
  that process (VmRSS before and after).

    python benchmarks/bench_verify.py [--bundle DIR] [--repeat 9]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import ROOT, figure

CHILD = r"""
import json, sys, time

def rss_kib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))

start = time.perf_counter()
rss0 = rss_kib()
from export.bundle import load_bundle
imported = time.perf_counter()
rss1 = rss_kib()
mode, bundle, key = sys.argv[1], sys.argv[2], sys.argv[3]
out = {"import_s": imported - start, "import_kib": rss1 - rss0}
if mode != "import":
    t = time.perf_counter()
    if mode == "signed":
        from export import signing
        signing._crypto()  # the verifier's import alone
        out["crypto_import_s"] = time.perf_counter() - t
        out["crypto_import_kib"] = rss_kib() - rss1
    loaded = load_bundle(bundle, require_signature=key if mode == "signed" else None)
    out["load_s"] = time.perf_counter() - t
    out["load_kib"] = rss_kib() - rss1
    assert (loaded.signature is not None) == (mode == "signed")
print(json.dumps(out))
"""


def child(mode: str, bundle: Path, key: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, mode, str(bundle), str(key)], cwd=ROOT, capture_output=True,
                          text=True, check=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    return json.loads(proc.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default=None, help="bundle to verify (default: the cached edge benchmark bundle)")
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args(argv)
    if args.bundle is None:
        from bundles import ensure_bundle

        source = ensure_bundle("edge")
    else:
        source = Path(args.bundle)
    from export import signing

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        unsigned = shutil.copytree(source, tmp / "unsigned", ignore=shutil.ignore_patterns("signature.json"))
        signed = shutil.copytree(unsigned, tmp / "signed")
        _, public, _ = signing.generate_key(tmp / "key")
        manifest = json.loads((signed / "manifest.json").read_text())
        signing.write_signature(signed, manifest, signing.load_private_key(tmp / "key"))
        runs: dict[str, list[dict]] = {"import": [], "unsigned": [], "signed": []}
        for _ in range(args.repeat):
            for mode in runs:
                runs[mode].append(child(mode, signed if mode == "signed" else unsigned, public))

    def med(mode: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[mode])

    size = sum(p.stat().st_size for p in Path(source).rglob("*") if p.is_file())
    print(f"bundle {source} ({size / 1024:.0f} KiB), {args.repeat} fresh interpreters per variant, medians")
    print(f"  import export.bundle             {1000 * med('import', 'import_s'):7.1f} ms  "
          f"{med('import', 'import_kib') / 1024:6.1f} MiB")
    print(f"  load_bundle, unsigned            {1000 * med('unsigned', 'load_s'):7.1f} ms  "
          f"{med('unsigned', 'load_kib') / 1024:6.1f} MiB more")
    print(f"  load_bundle, signed, key given   {1000 * med('signed', 'load_s'):7.1f} ms  "
          f"{med('signed', 'load_kib') / 1024:6.1f} MiB more")
    print(f"    of which import cryptography   {1000 * med('signed', 'crypto_import_s'):7.1f} ms  "
          f"{med('signed', 'crypto_import_kib') / 1024:6.1f} MiB")
    # Targets as ratios to what every load pays anyway (importing the loader: numpy, flatbuffers), so
    # they hold on a loaded shared machine; absolute times are informative.
    extra_ms = 1000 * (med("signed", "load_s") - med("unsigned", "load_s"))
    import_ms = 1000 * med("import", "import_s")
    figure("signature check: import + verify (ms)", f"{extra_ms:.1f}", "<= 0.5 x import export.bundle",
           f"{import_ms:.1f} (import export.bundle)", f"{extra_ms / import_ms:.2f}", extra_ms <= 0.5 * import_ms)
    crypto_mib, import_mib = med("signed", "crypto_import_kib") / 1024, med("import", "import_kib") / 1024
    figure("signature check: resident memory of the verifier (MiB)", f"{crypto_mib:.1f}",
           "<= 0.5 x import export.bundle", f"{import_mib:.1f} (import export.bundle)",
           f"{crypto_mib / import_mib:.2f}", crypto_mib <= 0.5 * import_mib)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
