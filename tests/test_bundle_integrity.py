"""Bundle integrity: the digest, the files that embed it, paths and symlinks, the models' own view of the
manifest, Ed25519 signatures, and where derived results go.

Each tampering is tried twice where it matters: as a careless edit (the digest catches it) and as a
forger would do it, recomputing the digest (the models' own tensors and settings, the header's embedded
digest or the signature catch it)."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgecnn.errors import BundleError, ConfigError
from export.bundle import (
    C_DIGEST_MACRO,
    DIGEST_FIELD,
    MANIFEST_FILE,
    SIGNATURE_FILE,
    bundle_digest,
    file_record,
    load_bundle,
    parity_results_path,
)
from export.signing import generate_key, load_public_key
from tests.util import REPO, reseal_manifest, run_cli, subprocess_env

DEVICE_PYTHON = REPO / ".venv-device" / "bin" / "python"


def _copy(bundle: Path, tmp_path: Path, name: str = "copy") -> Path:
    dest = tmp_path / name
    shutil.copytree(bundle, dest, symlinks=True)
    return dest


def _manifest(bundle: Path) -> dict:
    return json.loads((bundle / MANIFEST_FILE).read_text())


def _write_manifest(bundle: Path, manifest: dict) -> None:
    (bundle / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))


def _edit(bundle: Path, edit, *, reseal: bool) -> None:
    manifest = _manifest(bundle)
    edit(manifest)
    _write_manifest(bundle, reseal_manifest(manifest) if reseal else manifest)


def _one_line_exit_2(proc: subprocess.CompletedProcess, command: str, pattern: str) -> None:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert re.match(rf"edgecnn {command}: error: .*{pattern}", lines[0]), lines[0]


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("keys")
    signer, signer_pub, _ = generate_key(folder / "signer")
    other, other_pub, _ = generate_key(folder / "other")
    return {"signer": signer, "signer.pub": signer_pub, "other": other, "other.pub": other_pub}


@pytest.fixture(scope="module")
def signed_bundle(tiny_run_dir, keys, tmp_path_factory) -> Path:
    """The tiny run exported and signed through the CLI (`edgecnn export --sign`)."""
    out = tmp_path_factory.mktemp("signed_parent") / "bundle"
    proc = run_cli("export", str(tiny_run_dir), "--out", str(out), "--sign", str(keys["signer"]), "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


# --- the digest -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("what, edit, forged_message", [
    ("swapped classes", lambda m: m.update(classes=m["classes"][::-1]),
     r"model_int8.tflite: the model was exported with classes \[\"A\", \"B\"\], the manifest says \[\"B\", \"A\"\]"),
    ("changed input scale", lambda m: m["models"]["model_int8.tflite"]["input"].update(
        scale=m["models"]["model_int8.tflite"]["input"]["scale"] * 1.01),
     r"model_int8.tflite: the manifest gives the input as int8 \[1, 129, 44, 1\] scale [0-9.]+ zero point -?\d+, "
     r"the model file as int8 \[1, 129, 44, 1\] scale [0-9.]+"),
    ("changed output zero point", lambda m: m["models"]["model_int8.tflite"]["output"].update(zero_point=0),
     r"model_int8.tflite: the manifest gives the output as .* zero point 0, the model file as"),
    ("changed log floor", lambda m: m["dsp"].update(log_floor_db=m["dsp"]["log_floor_db"] - 10),
     r"model_int8.tflite: the model was exported with dsp"),
    ("changed float model's classes", lambda m: m.update(classes=["normal", "fault"]),
     r"model_.*.tflite: the model was exported with classes"),
])
def test_manifest_edits_are_refused_with_or_without_a_recomputed_digest(tiny_bundle, tmp_path, what, edit,
                                                                         forged_message):
    careless = _copy(tiny_bundle, tmp_path, "careless")
    _edit(careless, edit, reseal=False)
    with pytest.raises(BundleError, match=r"manifest.json: content does not match its bundle_digest .* modified after "
                                          r"export"):
        load_bundle(careless)
    forged = _copy(tiny_bundle, tmp_path, "forged")
    _edit(forged, edit, reseal=True)
    with pytest.raises(BundleError, match=forged_message) as info:
        load_bundle(forged)
    assert "\n" not in str(info.value)


def test_a_forged_edit_the_models_cannot_see_is_caught_by_the_headers_digest(tiny_bundle, tmp_path):
    bundle = _copy(tiny_bundle, tmp_path)
    _edit(bundle, lambda m: m["footprint"].update(arena_bytes_tflm=1), reseal=True)
    with pytest.raises(BundleError, match=r"model_int8_data.h: embeds bundle digest [0-9a-f]{16}\.\.\., the bundle's "
                                          r"is [0-9a-f]{16}\.\.\.; the header belongs to another bundle"):
        load_bundle(bundle)


def test_the_digest_covers_every_section_even_unknown_ones_but_not_formatting(tiny_bundle, tmp_path):
    manifest = _manifest(tiny_bundle)
    assert manifest[DIGEST_FIELD] == bundle_digest(manifest) == load_bundle(tiny_bundle).digest
    bundle = _copy(tiny_bundle, tmp_path)
    # re-indented, keys reordered: the same content, the same digest
    (bundle / MANIFEST_FILE).write_text(json.dumps(dict(reversed(list(manifest.items())))))
    assert load_bundle(bundle).digest == manifest[DIGEST_FIELD]
    # a section this edgecnn does not know (a later decision policy, say) is covered all the same
    _edit(bundle, lambda m: m.update(decision_policy={"smooth": 6}), reseal=False)
    with pytest.raises(BundleError, match="content does not match its bundle_digest"):
        load_bundle(bundle)
    # the generated section and the digest field are what it leaves out
    assert bundle_digest({**manifest, "generated": {}, DIGEST_FIELD: "x"}) == manifest[DIGEST_FIELD]


@pytest.mark.parametrize("text, message", [
    ('{"format": "edgecnn-bundle", "format": "edgecnn-bundle"}', r"key\(s\) \['format'\] appear twice"),
    ('{"format": "edgecnn-bundle", "schema_version": 2, "x": NaN}', "NaN is not a JSON number"),
])
def test_manifests_two_json_readers_could_read_differently_are_refused(tiny_bundle, tmp_path, text, message):
    bundle = _copy(tiny_bundle, tmp_path)
    (bundle / MANIFEST_FILE).write_text(text)
    with pytest.raises(BundleError, match=message):
        load_bundle(bundle)


def test_a_manifest_without_digest_or_of_schema_1_is_refused(tiny_bundle, tmp_path):
    bundle = _copy(tiny_bundle, tmp_path)
    _edit(bundle, lambda m: m.pop(DIGEST_FIELD), reseal=False)
    with pytest.raises(BundleError, match="bundle_digest 'None' is not a sha256 hex digest; the manifest was edited"):
        load_bundle(bundle)
    _edit(bundle, lambda m: m.update(schema_version=1), reseal=False)
    with pytest.raises(BundleError, match="schema_version 1 is not supported .*it carries no bundle digest"):
        load_bundle(bundle)


def test_the_c_header_embeds_the_digest_inspect_prints(tiny_bundle):
    proc = run_cli("inspect", str(tiny_bundle), "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    header = (tiny_bundle / "model_int8_data.h").read_text()
    embedded = re.search(rf'#define {C_DIGEST_MACRO} "([0-9a-f]{{64}})"', header).group(1)
    assert embedded == info["bundle_digest"] == _manifest(tiny_bundle)[DIGEST_FIELD]
    text = run_cli("inspect", str(tiny_bundle))
    assert f"digest   {embedded}" in text.stdout
    assert "signed   no (unsigned bundle" in text.stdout and info["signature"] is None
    generated = _manifest(tiny_bundle)["generated"]
    assert "model_int8_data.h" in generated and "model_int8_data.h" not in _manifest(tiny_bundle)["files"]
    assert all(name == "model_int8_data.h" or name.startswith("firmware/") for name in generated)
    firmware_header = (tiny_bundle / "firmware" / "edgecnn_config.h").read_text()
    assert f'#define {C_DIGEST_MACRO} "{embedded}"' in firmware_header


def test_the_header_compiles_and_firmware_can_print_the_digest(tiny_bundle, tmp_path):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    (tmp_path / "main.c").write_text('#include <stdio.h>\n#include "model_int8_data.h"\n'
                                     f'int main(void) {{ puts({C_DIGEST_MACRO}); return 0; }}\n')
    subprocess.run([cc, "-std=c99", "-Wall", "-Werror", "-I", str(tiny_bundle), "-o", str(tmp_path / "main"),
                    str(tmp_path / "main.c")], check=True, capture_output=True)
    out = subprocess.run([str(tmp_path / "main")], capture_output=True, text=True, check=True).stdout.strip()
    assert out == load_bundle(tiny_bundle).digest


# --- files: symlinks, paths, generated ---------------------------------------------------------------------
def test_a_symlinked_model_file_is_refused_even_when_its_target_is_identical(tiny_bundle, tmp_path):
    bundle = _copy(tiny_bundle, tmp_path)
    outside = tmp_path / "outside.tflite"
    shutil.copyfile(bundle / "model_int8.tflite", outside)  # same bytes, same hash: still refused
    (bundle / "model_int8.tflite").unlink()
    (bundle / "model_int8.tflite").symlink_to(outside)
    with pytest.raises(BundleError, match=r"model_int8.tflite: a symbolic link \(or under one\); a bundle holds "
                                          r"regular files only"):
        load_bundle(bundle)
    (bundle / "model_int8.tflite").unlink()
    (bundle / "model_int8.tflite").symlink_to("/etc/passwd")
    with pytest.raises(BundleError, match="a symbolic link"):
        load_bundle(bundle)


def test_a_symlinked_manifest_or_a_fifo_is_refused(tiny_bundle, tmp_path):
    bundle = _copy(tiny_bundle, tmp_path)
    (bundle / MANIFEST_FILE).rename(tmp_path / "m.json")
    (bundle / MANIFEST_FILE).symlink_to(tmp_path / "m.json")
    with pytest.raises(BundleError, match="manifest.json: a symbolic link"):
        load_bundle(bundle)
    (bundle / MANIFEST_FILE).unlink()
    (tmp_path / "m.json").rename(bundle / MANIFEST_FILE)
    (bundle / "golden.npz").unlink()
    os.mkfifo(bundle / "golden.npz")  # opening it for reading would block without O_NONBLOCK
    with pytest.raises(BundleError, match="golden.npz: not a regular file"):
        load_bundle(bundle)


def test_generated_files_in_subfolders_load_and_a_symlinked_folder_is_refused(tiny_bundle, tmp_path):
    """The firmware/ sources export writes are listed as generated/firmware/NAME."""
    bundle = _copy(tiny_bundle, tmp_path)
    generated = _manifest(bundle)["generated"]
    assert generated["firmware/edgecnn_dsp.c"]["role"] == "firmware"
    assert load_bundle(bundle).digest == _manifest(bundle)[DIGEST_FIELD]  # generated is outside the digest
    (bundle / "firmware" / "edgecnn_dsp.c").write_text("/* edited */\n")
    with pytest.raises(BundleError, match=r"firmware/edgecnn_dsp.c: \d+ bytes, the manifest says"):
        load_bundle(bundle)
    shutil.copy(tiny_bundle / "firmware" / "edgecnn_dsp.c", bundle / "firmware" / "edgecnn_dsp.c")
    load_bundle(bundle)
    shutil.move(bundle / "firmware", tmp_path / "real_firmware")
    (bundle / "firmware").symlink_to(tmp_path / "real_firmware")
    with pytest.raises(BundleError, match="firmware/edgecnn_[a-z_]+\\.[a-z]+: a symbolic link"):
        load_bundle(bundle)


@pytest.mark.parametrize("name", ["../model_int8.tflite", "/etc/passwd", "a/../../b", "./x", "a//b", "a\\b",
                                  "manifest.json", "signature.json", "a/b/c/d/e"])
def test_listed_names_never_leave_the_bundle(tiny_bundle, tmp_path, name):
    bundle = _copy(tiny_bundle, tmp_path)
    _edit(bundle, lambda m: m["generated"].update({name: {"sha256": "0" * 64, "bytes": 1}}), reseal=False)
    with pytest.raises(BundleError, match=r"is not a file name inside the bundle \(a relative path without '\.\.'"):
        load_bundle(bundle)


def test_unlisted_files_are_ignored_and_named_by_inspect(tiny_bundle, tmp_path):
    bundle = _copy(tiny_bundle, tmp_path)
    (bundle / "notes.txt").write_text("mine")
    assert load_bundle(bundle).unlisted_files() == ["notes.txt"]
    proc = run_cli("inspect", str(bundle))
    assert proc.returncode == 0 and "unlisted notes.txt (not in the manifest" in proc.stdout


# --- the TFLite reader ----------------------------------------------------------------------------------------
def test_the_tflite_reader_agrees_with_tensorflows_schema_and_litert(tiny_bundle):
    from tensorflow.lite.python import schema_py_generated as schema

    from export.tflite_export import tensor_specs
    from export.tflite_reader import read_tflite

    for name in ("model_int8.tflite", "model_float32.tflite"):
        data = (tiny_bundle / name).read_bytes()
        mine = read_tflite(data)
        ref = schema.Model.GetRootAsModel(data, 0)
        graph = ref.Subgraphs(0)
        for ours, index in ((mine.inputs[0], graph.Inputs(0)), (mine.outputs[0], graph.Outputs(0))):
            tensor = graph.Tensors(index)
            assert ours.name == tensor.Name().decode() and list(ours.shape) == tensor.ShapeAsNumpy().tolist()
            quant = tensor.Quantization()
            assert list(ours.scale) == (quant.ScaleAsNumpy().tolist() if quant and quant.ScaleLength() else [])
        assert {ref.Metadata(i).Name().decode() for i in range(ref.MetadataLength())} == set(mine.metadata)
        litert_in, litert_out = tensor_specs(tiny_bundle / name)
        assert (mine.inputs[0].dtype, mine.inputs[0].shape) == (litert_in.dtype, litert_in.shape)
        if litert_in.scale is not None:
            assert np.float32(mine.inputs[0].scale[0]) == np.float32(litert_in.scale)
            assert (mine.inputs[0].zero_point[0], mine.outputs[0].zero_point[0]) == (litert_in.zero_point,
                                                                                     litert_out.zero_point)


@pytest.mark.parametrize("cut", [0, 7, 100, 1000, 5000])
def test_the_tflite_reader_refuses_cut_files_with_value_error(tiny_bundle, cut):
    from export.tflite_reader import read_tflite

    data = (tiny_bundle / "model_int8.tflite").read_bytes()
    with pytest.raises(ValueError):
        read_tflite(data[:cut])


# --- signatures --------------------------------------------------------------------------------------------------
def test_keygen_writes_a_private_key_only_its_owner_reads_and_never_replaces_one(tmp_path):
    proc = run_cli("keygen", "--out", str(tmp_path / "k"))
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o600
    assert (tmp_path / "k.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    key_id = re.search(r"key id\s+([0-9a-f]{16})", proc.stdout).group(1)
    before = (tmp_path / "k").read_bytes()
    _one_line_exit_2(run_cli("keygen", "--out", str(tmp_path / "k")), "keygen", "k already exists; keygen never "
                                                                                 "replaces a key")
    assert (tmp_path / "k").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k", "k.pub"]  # no temporary file left
    from export.signing import _public_raw
    from export.signing import key_id as key_id_of

    assert key_id_of(_public_raw(load_public_key(tmp_path / "k.pub"))) == key_id


def test_a_signed_bundle_round_trips(signed_bundle, keys):
    bundle = load_bundle(signed_bundle, require_signature=keys["signer.pub"])
    assert bundle.signature.trusted and len(bundle.signature.key_id) == 16
    assert load_bundle(signed_bundle).signature.trusted is False  # valid, but no key was required
    proc = run_cli("inspect", str(signed_bundle), "--require-signature", str(keys["signer.pub"]))
    assert proc.returncode == 0, proc.stderr
    assert f"signed   yes, ed25519 key {bundle.signature.key_id}, verified against the required public key" \
        in proc.stdout
    assert f"digest   {bundle.digest}" in proc.stdout


def test_stream_records_the_digest_and_refuses_a_wrong_key(signed_bundle, keys, tmp_path):
    out = tmp_path / "s.json"
    proc = run_cli("stream", str(signed_bundle), "--source", "synth:duration=8,onset=4,seed=2", "--quiet",
                   "--json", str(out), "--require-signature", str(keys["signer.pub"]))
    assert proc.returncode == 0, proc.stderr[-2000:]
    digest = load_bundle(signed_bundle).digest
    result = json.loads(out.read_text())
    assert result["bundle_digest"] == digest and result["signature"]["trusted_key"] is True
    assert f"bundle digest {digest} (signed" in proc.stdout
    _one_line_exit_2(run_cli("stream", str(signed_bundle), "--source", "synth:duration=2", "--quiet",
                             "--require-signature", str(keys["other.pub"])), "stream",
                     r"signature.json: signed by key [0-9a-f]{16}, not by the required key [0-9a-f]{16}")


def test_every_event_line_names_the_bundle_that_raised_it(trained_bundle, tmp_path):
    events = tmp_path / "e.jsonl"
    proc = run_cli("stream", str(trained_bundle), "--source", "synth:duration=30,onset=15,seed=1,severity=3",
                   "--quiet", "--events", str(events), "--json", str(tmp_path / "s.json"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert lines, "the trained model raised no event on a fault onset"
    assert all(line["bundle_digest"] == load_bundle(trained_bundle).digest for line in lines)


def test_parity_requires_the_signature_and_writes_its_results_beside_the_bundle(signed_bundle, keys, tmp_path):
    from edgecnn import synth

    data = synth.write_pickle(tmp_path / "d.pkl", synth.generate(n=40, seed=4, n_recordings=4))
    before = sorted(p.name for p in signed_bundle.iterdir())
    args = ("parity", str(signed_bundle), "--data", str(data), "--runtimes", "litert", "--no-keras", "--stream",
            "none", "--quiet")
    _one_line_exit_2(run_cli(*args, "--require-signature", str(keys["other.pub"])), "parity",
                     "not by the required key")
    proc = run_cli(*args, "--require-signature", str(keys["signer.pub"]))
    assert proc.returncode in (0, 1), proc.stderr[-2000:]  # the gate's verdict does not matter here
    assert sorted(p.name for p in signed_bundle.iterdir()) == before  # nothing written into the bundle
    results = parity_results_path(signed_bundle)
    assert results == signed_bundle.parent / "bundle.parity.json"
    assert json.loads(results.read_text())["bundle_digest"] == load_bundle(signed_bundle).digest
    load_bundle(signed_bundle, require_signature=keys["signer.pub"])  # still verifies


@pytest.mark.parametrize("tamper, message", [
    ("manifest, digest recomputed", r"signature.json: signs bundle digest [0-9a-f]{64}, the manifest's is "
                                    r"[0-9a-f]{64}; the bundle was modified after signing"),
    ("manifest and signature's digest", r"the signature does not match manifest.json; the bundle was modified after "
                                        r"signing"),
    ("generated header, its hash updated", r"the signature does not match manifest.json"),
    ("a file's hash, digest recomputed", r"signature.json: signs bundle digest"),
    ("signature removed", r"unsigned bundle \(no signature.json\); a signature is required"),
    ("signature replaced by another key's", r"signed by key [0-9a-f]{16}, not by the required key"),
])
def test_a_bundle_modified_after_signing_is_refused(signed_bundle, keys, tmp_path, tamper, message):
    from export.signing import load_private_key, sign_manifest

    bundle = _copy(signed_bundle, tmp_path)
    manifest = _manifest(bundle)
    signature = json.loads((bundle / SIGNATURE_FILE).read_text())
    if tamper == "manifest, digest recomputed":
        manifest["training"]["arch"] = "edited"
        reseal_manifest(manifest)
    elif tamper == "manifest and signature's digest":
        manifest["training"]["arch"] = "edited"
        reseal_manifest(manifest)
        signature[DIGEST_FIELD] = manifest[DIGEST_FIELD]
    elif tamper == "generated header, its hash updated":
        header = bundle / "model_int8_data.h"
        header.write_text(header.read_text() + "// extra\n")
        manifest["generated"]["model_int8_data.h"].update(file_record(header))
    elif tamper == "a file's hash, digest recomputed":
        manifest["files"]["golden.npz"]["sha256"] = "0" * 64
        reseal_manifest(manifest)
    elif tamper == "signature removed":
        signature = None
    else:
        signature = sign_manifest(manifest, load_private_key(keys["other"]))
    _write_manifest(bundle, manifest)
    (bundle / SIGNATURE_FILE).unlink()
    if signature is not None:
        (bundle / SIGNATURE_FILE).write_text(json.dumps(signature))
    proc = run_cli("inspect", str(bundle), "--require-signature", str(keys["signer.pub"]))
    _one_line_exit_2(proc, "inspect", message)


def test_a_present_signature_is_checked_even_when_none_is_required(signed_bundle, tmp_path):
    bundle = _copy(signed_bundle, tmp_path)
    signature = json.loads((bundle / SIGNATURE_FILE).read_text())
    raw = bytearray(__import__("base64").b64decode(signature["signature"]))
    raw[0] ^= 1
    signature["signature"] = __import__("base64").b64encode(bytes(raw)).decode()
    (bundle / SIGNATURE_FILE).write_text(json.dumps(signature))
    with pytest.raises(BundleError, match="the signature does not match manifest.json"):
        load_bundle(bundle)


def test_bad_keys_are_refused_with_one_line(tiny_run_dir, tiny_bundle, keys, tmp_path):
    loose = tmp_path / "loose"
    shutil.copyfile(keys["signer"], loose)
    loose.chmod(0o644)
    _one_line_exit_2(run_cli("export", str(tiny_run_dir), "--out", str(tmp_path / "b"), "--sign", str(loose)),
                     "export", r"signing key .*loose: readable by others \(mode 0644\); chmod 600")
    assert not (tmp_path / "b").exists()
    _one_line_exit_2(run_cli("inspect", str(tiny_bundle), "--require-signature", str(keys["signer"])), "inspect",
                     r"public key .*signer: this is a private key; pass the public one")
    (tmp_path / "junk.pub").write_text("not a key")
    _one_line_exit_2(run_cli("inspect", str(tiny_bundle), "--require-signature", str(tmp_path / "junk.pub")),
                     "inspect", "not a PEM public key")
    with pytest.raises(ConfigError, match="no such file"):
        load_public_key(tmp_path / "absent.pub")


# --- device side ------------------------------------------------------------------------------------------------
def test_verifying_a_signed_bundle_never_imports_tensorflow(signed_bundle, keys):
    code = ("import sys\nfrom export.bundle import load_bundle\n"
            f"b = load_bundle({str(signed_bundle)!r}, require_signature={str(keys['signer.pub'])!r})\n"
            "assert b.signature.trusted\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf2onnx', 'onnx')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env(),
                          cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


@pytest.mark.skipif(not DEVICE_PYTHON.exists(), reason=".venv-device is absent: build it with `make device-env`")
def test_the_numpy_1_device_environment_verifies_signatures(signed_bundle, keys):
    proc = subprocess.run([str(DEVICE_PYTHON), "-m", "edgecnn", "inspect", str(signed_bundle), "--require-signature",
                           str(keys["signer.pub"]), "--json"], capture_output=True, text=True, timeout=120,
                          env=subprocess_env(), cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    info = json.loads(proc.stdout)
    assert info["bundle_digest"] == load_bundle(signed_bundle).digest and info["signature"]["trusted_key"]
    _one_line_exit_2(subprocess.run([str(DEVICE_PYTHON), "-m", "edgecnn", "inspect", str(signed_bundle),
                                     "--require-signature", str(keys["other.pub"])], capture_output=True, text=True,
                                    timeout=120, env=subprocess_env(), cwd=REPO), "inspect", "not by the required key")
