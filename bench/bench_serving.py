"""Serving benchmark: the agent against the Python serving stacks a user would pick, driven by
load generators written in C (wrk for HTTP/1.1, h2load for gRPC), in one run, rounds
interleaved, on a cheap model (a 64x10 linear layer: serving dominates) and on the digits CNN.

Servers, each its own process, every model run with one intra-op thread:

- bare ASGI: uvicorn + httptools, read the body, ``frombuffer``, ``run``, write bytes (the
  limit of Python serving);
- the agent (a real ``edge-agent run`` process): ``/v1`` with an ``.npy`` body, Open Inference
  Protocol v2 over HTTP with the binary extension and with JSON, and v2 over gRPC;
- KServe's Python ModelServer (v2 JSON) and LitServe (JSON), installed in the benchmark's own
  virtual environment (``--venv``, made by ``--setup``), never as product dependencies;
- the tutorial Flask + JSON app.

Each (server, connections) cell runs ``--rounds`` times for ``--seconds``, cells interleaved
within a round; the table shows medians and ratios, because this machine is shared.

    apt-get install -y wrk nghttp2-client mosquitto         # the load generators, the broker
    python -m bench.bench_serving --setup                   # once: /tmp/bench-serving-venv
    python -m bench.bench_serving                           # ~6 minutes
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from agent.protos import grpc_predict_v2_pb2 as pb
from edge_sdk.core import npy
from edge_sdk.signing.keys import init_keys
from testing.agents import (
    DIGITS,
    Operator,
    committed,
    make_bundle,
    matmul_model,
    start_process,
    wait_for,
    write_config,
)
from testing.mosquitto import Broker, free_port

REPO = Path(__file__).resolve().parent.parent

VENV = Path("/tmp/bench-serving-venv")
VENV_PACKAGES = ["kserve", "litserve", "onnxruntime", "numpy"]
READY = ".bench-ready"  # written once the packages are in

BARE_APP = """
import sys
import numpy as np, onnxruntime as ort, uvicorn
path, name, shape, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
shape = tuple(int(d) for d in shape.split(","))
options = ort.SessionOptions()
options.intra_op_num_threads = 1
session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
HEADERS = [(b"content-type", b"application/octet-stream")]

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    y = session.run(None, {name: np.frombuffer(body, np.float32).reshape(shape)})[0]
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": y.tobytes()})

uvicorn.run(app, host="127.0.0.1", port=port, http="httptools", access_log=False,
            log_level="warning", lifespan="off")
"""

# The limit of Python gRPC serving, as the bare ASGI app is HTTP's: grpcio's asyncio server, a
# handler that takes the request's bytes (the tensor is their tail), runs, and answers bytes.
BARE_GRPC_APP = """
import asyncio, sys
import grpc, numpy as np, onnxruntime as ort
path, name, shape, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
shape = tuple(int(d) for d in shape.split(","))
nbytes = 4 * int(np.prod(shape))
options = ort.SessionOptions()
options.intra_op_num_threads = 1
session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

async def infer(data, context):
    x = np.frombuffer(data[-nbytes:], np.float32).reshape(shape)
    return session.run(None, {name: x})[0].tobytes()

async def main():
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "inference.GRPCInferenceService",
        {"ModelInfer": grpc.unary_unary_rpc_method_handler(infer)}),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()

asyncio.run(main())
"""

FLASK_APP = """
import sys
import numpy as np, onnxruntime as ort
from flask import Flask, jsonify, request
path, name, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
app = Flask(__name__)
options = ort.SessionOptions()
options.intra_op_num_threads = 1
session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
@app.post("/predict")
def predict():
    x = np.array(request.get_json()["input"], dtype=np.float32)
    return jsonify({"output": session.run(None, {name: x})[0].tolist()})
app.run(host="127.0.0.1", port=port, threaded=True)
"""

KSERVE_APP = """
import sys
import onnxruntime as ort
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer
path, name, port, grpc_port = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

class Onnx(Model):
    def __init__(self):
        super().__init__("m")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.ready = True

    def predict(self, payload: InferRequest, headers=None):
        y = self.session.run(None, {name: payload.inputs[0].as_numpy()})[0]
        out = InferOutput(name="output", shape=list(y.shape), datatype="FP32")
        out.set_data_from_numpy(y, binary_data=False)
        return InferResponse(model_name="m", infer_outputs=[out], response_id=payload.id or "0")

if __name__ == "__main__":
    ModelServer(http_port=port, grpc_port=grpc_port, workers=1, enable_grpc=False).start(
        [Onnx()]
    )
"""

LITSERVE_APP = """
import sys
import numpy as np, onnxruntime as ort
import litserve as ls
path, name, port = sys.argv[1], sys.argv[2], int(sys.argv[3])

class Api(ls.LitAPI):
    def setup(self, device):
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def decode_request(self, request):
        return np.asarray(request["input"], dtype=np.float32)

    def predict(self, x):
        return self.session.run(None, {name: x})[0]

    def encode_response(self, y):
        return {"output": y.tolist()}

if __name__ == "__main__":
    ls.LitServer(Api(), accelerator="cpu", workers_per_device=1).run(
        host="127.0.0.1", port=port, generate_client_file=False
    )
"""


@dataclass
class Target:
    """One way to ask for one inference: where, with what body, and how."""

    name: str
    url: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    grpc: bool = False
    pid: int = 0  # the server process: its CPU (and its children's) per request is measured


@dataclass
class Model:
    key: str
    title: str
    path: Path
    sample: np.ndarray
    input: str = "input"
    output: str = "output"


def setup_venv() -> None:
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, *VENV_PACKAGES], check=True)
    (VENV / READY).write_text("ok\n")
    print(f"benchmark environment ready: {VENV}")


def wait_port(port: int, process: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server for port {port} exited with {process.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {port}")


def v2_binary(model: Model) -> tuple[bytes, dict[str, str]]:
    raw = model.sample.tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": model.input,
                    "shape": list(model.sample.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "outputs": [{"name": model.output, "parameters": {"binary_data": True}}],
        }
    ).encode()
    return header + raw, {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(header)),
    }


def v2_json(model: Model, name: str) -> bytes:
    tensor = {
        "name": name,
        "shape": list(model.sample.shape),
        "datatype": "FP32",
        "data": model.sample.ravel().tolist(),
    }
    return json.dumps({"inputs": [tensor]}).encode()


def grpc_frame(model: Model) -> bytes:
    request = pb.ModelInferRequest(model_name="digits", raw_input_contents=[model.sample.tobytes()])
    request.inputs.add(name=model.input, datatype="FP32", shape=list(model.sample.shape))
    message = request.SerializeToString()
    return b"\0" + struct.pack(">I", len(message)) + message


def check(target: Target) -> str:
    """ "" if the target answers its body with a success, else why not."""
    if target.grpc:
        import grpc

        host = target.url.removeprefix("http://").split("/")[0]
        with grpc.insecure_channel(host) as channel:
            call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
            try:
                call(target.body[5:], timeout=30)
            except grpc.RpcError as e:
                return f"gRPC {e}"
        return ""
    host, _, path = target.url.removeprefix("http://").partition("/")
    address, port = host.split(":")
    connection = http.client.HTTPConnection(address, int(port), timeout=30)
    try:
        connection.request("POST", "/" + path, target.body, target.headers)
        response = connection.getresponse()
        data = response.read()
    finally:
        connection.close()
    return "" if response.status == 200 else f"HTTP {response.status}: {data[:200]!r}"


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def run_wrk(target: Target, connections: int, seconds: float, work: Path) -> tuple[float, float]:
    body = work / f"{abs(hash(target.name))}.body"
    body.write_bytes(target.body)
    script = work / f"{abs(hash(target.name))}.lua"
    lines = ['wrk.method = "POST"', f'local f = io.open("{body}", "rb")']
    lines += ["wrk.body = f:read('*a')", "f:close()"]
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in target.headers.items()]
    script.write_text("\n".join(lines) + "\n")
    out = subprocess.run(
        [
            *("wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency"),
            *("-s", str(script), target.url),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"{target.name}: failed requests under load:\n{out}")
    rps = float(_find(r"Requests/sec:\s+([\d.]+)", out)[0])
    value, unit = _find(r"\s50%\s+([\d.]+)(us|ms|s)", out)
    return rps, float(value) * _UNITS[unit]


def _find(pattern: str, text: str) -> tuple[str, ...]:
    found = re.search(pattern, text)
    if found is None:
        raise RuntimeError(f"no {pattern!r} in the load generator's output:\n{text}")
    return found.groups()


def run_h2load(target: Target, connections: int, seconds: float, work: Path) -> tuple[float, float]:
    body, log = work / "grpc.body", work / "h2load.log"
    body.write_bytes(target.body)
    log.unlink(missing_ok=True)
    out = subprocess.run(
        [
            *("h2load", f"-c{connections}", "-m1", "-t1", "-D", f"{seconds:g}", "-d", str(body)),
            *("-H", "content-type: application/grpc", "-H", "te: trailers"),
            *(f"--log-file={log}", target.url),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out)
    if done is None or done.group(1) != done.group(2):
        raise RuntimeError(f"{target.name}: failed requests under load:\n{out}")
    rps = float(_find(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)[0])
    times = [int(line.split("\t")[2]) / 1e3 for line in log.read_text().splitlines() if line]
    return rps, float(np.percentile(times, 50))


def start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    """A server in a process group of its own, so that ``stop`` ends the workers it spawns
    too (LitServe's outlive their parent)."""
    handle = log.open("ab")
    return subprocess.Popen(
        argv, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True
    )


def serve(
    model: Model, work: Path, keyring: Path, operator: Operator, broker: Broker, version: int
) -> tuple[list[subprocess.Popen[bytes]], list[Target]]:
    """Start every server for ``model``; the processes and the targets that reach them."""
    processes: list[subprocess.Popen[bytes]] = []
    shape = ",".join(str(d) for d in model.sample.shape)
    py = sys.executable
    venv_py = str(VENV / "bin" / "python")
    scripts = work / "scripts"
    scripts.mkdir(exist_ok=True)
    for name, text in (("kserve_app.py", KSERVE_APP), ("litserve_app.py", LITSERVE_APP)):
        (scripts / name).write_text(text)
    ports = {
        k: free_port()
        for k in ("bare", "bare_grpc", "http", "grpc", "kserve", "kgrpc", "lit", "flask")
    }
    m = str(model.path)
    processes.append(
        start([py, "-c", BARE_APP, m, model.input, shape, str(ports["bare"])], work / "bare.log")
    )
    processes.append(
        start([py, "-c", FLASK_APP, m, model.input, str(ports["flask"])], work / "flask.log")
    )
    bare_grpc = [py, "-c", BARE_GRPC_APP, m, model.input, shape, str(ports["bare_grpc"])]
    processes.append(start(bare_grpc, work / "bare_grpc.log"))
    have_venv = (VENV / READY).exists()
    if have_venv:
        kserve_args = [m, model.input, str(ports["kserve"]), str(ports["kgrpc"])]
        processes.append(
            start([venv_py, str(scripts / "kserve_app.py"), *kserve_args], work / "kserve.log")
        )
        lit_args = [m, model.input, str(ports["lit"])]
        processes.append(
            start([venv_py, str(scripts / "litserve_app.py"), *lit_args], work / "litserve.log")
        )
    else:
        print(f"(no {VENV}: KServe and LitServe skipped; run with --setup first)")
    device = f"dev-{model.key}"
    config = write_config(
        work / device,
        broker,
        keyring / "root.json",
        device=device,
        probation_s=1.0,
        serving={
            "listen": f"127.0.0.1:{ports['http']}",
            "grpc_listen": f"127.0.0.1:{ports['grpc']}",
            "threads": 2,
        },
    )
    agent = start_process(config, work / f"{device}.log")
    processes.append(agent)
    try:
        targets = _ready(model, processes, ports, have_venv, operator, config, version, device)
    except BaseException:
        stop(processes)  # nothing left running behind a failed start
        raise
    return processes, targets


def _ready(
    model: Model,
    processes: list[subprocess.Popen[bytes]],
    ports: dict[str, int],
    have_venv: bool,
    operator: Operator,
    config: Path,
    version: int,
    device: str,
) -> list[Target]:
    agent = processes[-1]
    operator.assign(version, device=device)
    done = committed(config, version)

    def installed() -> bool:  # an agent that died says so at once, not after the timeout
        if agent.poll() is not None:
            raise RuntimeError(f"the agent exited with {agent.returncode}: see its log in {config}")
        return done()

    wait_for(installed, timeout=600)  # a shared machine can be slow
    for process, port in zip(
        processes, [ports["bare"], ports["flask"], ports["bare_grpc"]], strict=False
    ):
        wait_port(port, process)
    if have_venv:
        wait_port(ports["kserve"], processes[3])
        wait_port(ports["lit"], processes[4])
    wait_port(ports["grpc"], agent)

    base = f"http://127.0.0.1:{ports['http']}"
    binary, binary_headers = v2_binary(model)
    json_headers = {"Content-Type": "application/json"}
    lit_body = json.dumps({"input": model.sample.tolist()}).encode()
    targets = [
        Target(
            "bare ASGI app",
            f"http://127.0.0.1:{ports['bare']}/",
            model.sample.tobytes(),
            {"Content-Type": "application/octet-stream"},
        ),
        Target(
            "agent /v1 (.npy)",
            f"{base}/v1/models/digits/predict",
            npy.dumps(model.sample),
            {"Content-Type": npy_type(), "Accept": npy_type()},
        ),
        Target("agent v2 binary", f"{base}/v2/models/digits/infer", binary, binary_headers),
        Target(
            "agent v2 JSON",
            f"{base}/v2/models/digits/infer",
            v2_json(model, model.input),
            json_headers,
        ),
        Target(
            "bare grpcio app",
            f"http://127.0.0.1:{ports['bare_grpc']}/inference.GRPCInferenceService/ModelInfer",
            grpc_frame(model),
            grpc=True,
        ),
        Target(
            "agent gRPC",
            f"http://127.0.0.1:{ports['grpc']}/inference.GRPCInferenceService/ModelInfer",
            grpc_frame(model),
            grpc=True,
        ),
    ]
    if have_venv:
        targets += [
            Target(
                "KServe ModelServer (v2 JSON)",
                f"http://127.0.0.1:{ports['kserve']}/v2/models/m/infer",
                v2_json(model, model.input),
                json_headers,
            ),
            Target(
                "LitServe (JSON)",
                f"http://127.0.0.1:{ports['lit']}/predict",
                lit_body,
                json_headers,
            ),
        ]
    targets.append(
        Target("Flask + JSON", f"http://127.0.0.1:{ports['flask']}/predict", lit_body, json_headers)
    )
    owners = {"bare ASGI app": processes[0], "Flask + JSON": processes[1]}
    owners["bare grpcio app"] = processes[2]
    if have_venv:
        owners["KServe ModelServer (v2 JSON)"] = processes[3]
        owners["LitServe (JSON)"] = processes[4]
    for target in targets:
        target.pid = owners.get(target.name, agent).pid
    return targets


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and every process under it (LitServe and KServe serve from
    worker processes), from ``/proc``: what serving cost, whatever else shares the machine."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        parents[int(entry.name)] = int(fields[1])
        ticks[int(entry.name)] = int(fields[11]) + int(fields[12])
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [p for p, pp in parents.items() if pp == parent and p not in tree]
        tree.update(children)
        frontier.extend(children)
    return sum(ticks.get(p, 0) for p in tree) / os.sysconf("SC_CLK_TCK")


def measured(
    run: Callable[[Target, int, float, Path], tuple[float, float]],
    target: Target,
    connections: int,
    seconds: float,
    work: Path,
) -> tuple[float, float, float]:
    """req/s, p50 ms, and the server's CPU microseconds per request over the run."""
    before, start = tree_cpu_seconds(target.pid), time.monotonic()
    rps, p50 = run(target, connections, seconds, work)
    cpu, elapsed = tree_cpu_seconds(target.pid) - before, time.monotonic() - start
    return rps, p50, cpu * 1e6 / max(rps * elapsed, 1.0)


def npy_type() -> str:
    from agent.serving.codec import NPY

    return NPY


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM to each server's process group (the agent: to the agent), then SIGKILL."""
    for process in processes:
        _signal_group(process, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        _signal_group(process, signal.SIGKILL)  # what its workers left behind


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    try:
        if os.getpgid(process.pid) == process.pid:  # a group start() made
            os.killpg(process.pid, sig)
        elif process.poll() is None:
            process.send_signal(sig)
    except (ProcessLookupError, PermissionError):
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, nargs="+", default=[8, 1])
    parser.add_argument("--models", nargs="+", default=["cheap", "digits"])
    parser.add_argument("--setup", action="store_true", help=f"make {VENV} and exit")
    parser.add_argument(
        "--only",
        nargs="+",
        default=[],
        metavar="SERVER",
        help="run only the servers whose name contains one of these (e.g. 'v2 binary' bare)",
    )
    args = parser.parse_args()
    if args.setup:
        setup_venv()
        return
    for tool in ("wrk", "h2load"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed: apt-get install -y wrk nghttp2-client")
    work = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    keyring = work / "keys"
    init_keys(keyring, online_keys=1, threshold=1)
    broker = Broker(work / "broker")
    broker.start()
    operator = Operator(keyring, work / "repo", broker)
    cheap_path = work / "cheap.onnx"
    cheap_path.write_bytes(matmul_model(64, 10, seed=1))
    rng = np.random.default_rng(0)
    models = {
        "cheap": Model(
            "cheap",
            "cheap model (64x10 linear)",
            cheap_path,
            rng.standard_normal((1, 64)).astype(np.float32),
        ),
        "digits": Model(
            "digits",
            "digits CNN (examples/digits)",
            DIGITS / "model.onnx",
            np.load(DIGITS / "validation.npz")["input"][:1].astype(np.float32),
            output="logits",
        ),
    }
    operator.publish(make_bundle(keyring, 1, artifact=cheap_path.read_bytes()))
    operator.publish(make_bundle(keyring, 2))
    versions = {"cheap": 1, "digits": 2}
    results: dict[str, dict[tuple[str, int], list[tuple[float, float, float]]]] = {}
    try:
        for key in args.models:
            model = models[key]
            processes, targets = serve(model, work, keyring, operator, broker, versions[key])
            try:
                live = []
                for target in targets:
                    problem = check(target)
                    if problem:
                        print(f"{model.key}: {target.name} skipped: {problem}")
                    elif args.only and not any(o in target.name for o in args.only):
                        continue
                    else:
                        live.append(target)
                cells = results.setdefault(model.title, {})
                for round_ in range(args.rounds):
                    for target in live:
                        for connections in args.connections:
                            run = run_h2load if target.grpc else run_wrk
                            figures = measured(run, target, connections, args.seconds, work)
                            cells.setdefault((target.name, connections), []).append(figures)
                    print(f"{model.key}: round {round_ + 1}/{args.rounds} done", flush=True)
            finally:
                stop(processes)
    finally:
        broker.close()
    report(results, args)


def report(
    results: dict[str, dict[tuple[str, int], list[tuple[float, float, float]]]],
    args: argparse.Namespace,
) -> None:
    many, one = max(args.connections), min(args.connections)
    print(f"\n# Serving, {args.rounds} rounds of {args.seconds:g} s (medians), wrk / h2load\n")
    nan = float("nan")
    for title, cells in results.items():
        med = {
            k: tuple(statistics.median(cell[i] for cell in v) for i in range(3))
            for k, v in cells.items()
        }
        names = list(dict.fromkeys(name for name, _ in cells))
        bare, _, bare_cpu = med.get(("bare ASGI app", many), (nan, 0.0, nan))
        bare_p50 = med.get(("bare ASGI app", one), (0.0, nan, nan))[1]
        print(f"## {title}\n")
        print(
            f"| server | req/s ({many} conns) | x bare | server CPU µs/req ({many} conns) "
            f"| x bare CPU | req/s ({one} conn) | p50 ms ({one} conn) | p50 over bare |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for name in names:
            rps_many, _, cpu = med.get((name, many), (nan, nan, nan))
            rps_one, p50, _ = med.get((name, one), (nan, nan, nan))
            print(
                f"| {name} | {rps_many:,.0f} | {rps_many / bare:.2f} | {cpu:,.0f} "
                f"| {bare_cpu / cpu:.2f} | {rps_one:,.0f} | {p50:.3f} | {p50 - bare_p50:+.3f} |"
            )
        kserve = med.get(("KServe ModelServer (v2 JSON)", many))
        binary = med.get(("agent v2 binary", many))
        grpc = med.get(("agent gRPC", many))
        bare_grpc = med.get(("bare grpcio app", many))
        print()
        if binary is not None:
            print(
                f"- agent v2 binary / bare ASGI, {many} conns: {binary[0] / bare:.2f}x (goal 0.75x)"
            )
            if kserve is not None:
                print(
                    f"- agent v2 binary / KServe, {many} conns: "
                    f"{binary[0] / kserve[0]:.2f}x (goal 3x)"
                )
            overhead = med[("agent v2 binary", one)][1] - bare_p50
            print(f"- agent v2 binary p50 overhead, {one} conn: {overhead:.3f} ms (goal < 0.15)")
            print(
                f"- bare ASGI server CPU per request / agent v2 binary, {many} conns: "
                f"{bare_cpu / binary[2]:.2f}x (the throughput ratio on an idle host)"
            )
            if grpc is not None:
                print(
                    f"- agent gRPC / v2 binary, {many} conns: "
                    f"{grpc[0] / binary[0]:.2f}x (goal >= 1)"
                )
            if grpc is not None and bare_grpc is not None:
                print(
                    f"- agent gRPC / bare grpcio app, {many} conns: {grpc[0] / bare_grpc[0]:.2f}x"
                )
        print()


if __name__ == "__main__":
    main()
