"""One module per CLI command: ``register(subparsers)`` adds its parser, ``run(args)`` does the work.

These modules stay light at import time (no TensorFlow at module level) so that ``edgecnn --help``
and the device-side commands start fast and never load TensorFlow.
"""


def add_require_signature_argument(parser) -> None:
    """``--require-signature PUBKEY``, spelt once for every command that loads a bundle."""
    parser.add_argument("--require-signature", default=None, metavar="PUBKEY",
                        help="refuse the bundle unless it is signed by this Ed25519 public key (PEM, "
                             "KEY.pub from `edgecnn keygen`); without it a signature present is still checked")


def add_read_arguments(parser) -> None:
    """``--fs`` and ``--channel``: what a recording file may not say itself (edgecnn.readers.ReadOptions)."""
    parser.add_argument("--fs", type=float, default=None, metavar="HZ",
                        help="sample rate of one-column CSV files without a '# fs=' line (refused otherwise)")
    parser.add_argument("--channel", type=int, default=None, metavar="N",
                        help="WAV channel to read, 0 = first (required for a WAV with several channels)")


def read_options(args):
    """The ``edgecnn.readers.ReadOptions`` of ``add_read_arguments``' flags."""
    from edgecnn.readers import ReadOptions

    return ReadOptions(fs=args.fs, channel=args.channel)


def add_bundle_data_arguments(parser) -> None:
    """The arguments every command that evaluates a bundle on recordings takes, spelt once."""
    parser.add_argument("bundle", help="bundle folder (edgecnn export)")
    add_require_signature_argument(parser)
    parser.add_argument("--data", required=True, help="recordings: a file or folder in any supported format")
    parser.add_argument("--label-map", default=None,
                        help="recording label -> class, e.g. normal=A,*=B (default: the bundle's training map)")
    parser.add_argument("--overlap", type=float, default=None,
                        help="window overlap in [0, 1) (default: the overlap the model was trained with)")
    add_read_arguments(parser)
