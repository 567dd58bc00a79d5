"""Regenerate grpc_predict_v2_pb2.py and .pyi from grpc_predict_v2.proto (needs grpcio-tools).

The generated module is committed, so a device needs only grpcio and protobuf, never a protoc;
tests/agent/serving/test_grpc_server.py checks it matches the .proto.

One change to protoc's output: the descriptors go in a pool of their own, not protobuf's
default one. tritonclient and KServe register the same ``inference.*`` messages (from Triton's
grpc_service.proto) in the default pool, and two files defining one symbol there cannot both
be imported: with a private pool the agent's module and theirs live in one process."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO = "grpc_predict_v2.proto"
DEFAULT_POOL = "DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile("
PRIVATE_POOL = "DESCRIPTOR = _descriptor_pool.DescriptorPool().AddSerializedFile("


def generate(out: Path) -> None:
    from grpc_tools import protoc  # the dev extra; not needed to serve

    code = protoc.main(
        ["protoc", f"-I{HERE}", f"--python_out={out}", f"--pyi_out={out}", str(HERE / PROTO)]
    )
    if code != 0:
        raise SystemExit(f"protoc failed on {HERE / PROTO} (exit {code})")
    module = out / "grpc_predict_v2_pb2.py"
    text = module.read_text()
    if DEFAULT_POOL not in text:
        raise SystemExit(f"{module}: protoc's output changed; update generate.py")
    module.write_text(text.replace(DEFAULT_POOL, PRIVATE_POOL))


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
