"""What a bundle holds: the names of its files and the cap on each one's size.

    manifest.json   what the artifact is (``edge_sdk.core.bundle.manifest``)
    model.onnx      the artifact (model.tflite for TFLite profiles)
    golden.npz      golden test vectors: inputs and the artifact's reference outputs
    targets.json    TUF targets metadata signing the three files above (absent when unsigned)

The reader (``edge_sdk.core.bundle.reader``) refuses any other member, and any member over its
cap, before it reads a byte of it; the agent fetches the same files by the same names.
"""

from __future__ import annotations

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
GOLDEN = "golden.npz"
SIGNATURES = "targets.json"
SUFFIX = ".edgebundle"
MAX_METADATA_BYTES = 16 << 20  # what the agent fetches for any non-artifact file
# Each member is capped by what it may be. ONNX (protobuf) and TFLite (flatbuffers) files cannot
# address more than 2 GiB; a manifest and TUF targets metadata are a few KiB; golden vectors are
# 8 samples (their arrays have their own caps in edge_sdk.core.golden).
MAX_ARTIFACT_BYTES = 2 << 30
MAX_MANIFEST_BYTES = 1 << 20
MAX_SIGNATURES_BYTES = 1 << 20
MAX_GOLDEN_BYTES = MAX_METADATA_BYTES
ARTIFACT_NAMES = {"onnx": "model.onnx", "tflite": "model.tflite"}
MEMBER_CAPS = {
    MANIFEST: MAX_MANIFEST_BYTES,
    GOLDEN: MAX_GOLDEN_BYTES,
    SIGNATURES: MAX_SIGNATURES_BYTES,
    **{artifact: MAX_ARTIFACT_BYTES for artifact in ARTIFACT_NAMES.values()},
}
