"""``edgecnn keygen --out KEY``: an Ed25519 key pair for signing bundles (``export --sign KEY``).

Writes the private key to KEY (PEM PKCS#8, mode 0600) and the public key to KEY.pub (PEM), and never
replaces an existing file. Devices and CI verify with ``--require-signature KEY.pub``.
"""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "keygen", help="make an Ed25519 key pair for signing bundles",
        description="Write a new Ed25519 private key (PEM, mode 0600) to KEY and its public key to KEY.pub. "
                    "Sign bundles with `edgecnn export --sign KEY`; check them with "
                    "`--require-signature KEY.pub` on inspect, stream, parity and fidelity.")
    p.add_argument("--out", required=True, metavar="KEY", help="private key file to create (KEY.pub beside it)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from export.signing import generate_key

    private, public, key_id = generate_key(args.out)
    print(f"private key {private} (keep it secret; mode 0600)")
    print(f"public key  {public}")
    print(f"key id      {key_id}")
    return 0
