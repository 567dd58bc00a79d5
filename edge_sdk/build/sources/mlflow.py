"""MLflow models as build sources: ``models:/NAME/VERSION`` (or ``models:/NAME@ALIAS``) from the
model registry and ``runs:/RUN_ID/PATH`` from a run's artifacts, through mlflow-skinny.

MLflow finds its server the way it always does: ``MLFLOW_TRACKING_URI`` (and
``MLFLOW_REGISTRY_URI`` where the registry is elsewhere). Models of flavor ``onnx`` build as
they are; models of flavor ``sklearn`` go through skl2onnx (``sklearn_source``). Loading a
scikit-learn model runs code stored in it (pickle, cloudpickle, and skops too, whose allow-list
the model carries): build only from a registry you trust. MLflow's own switch,
``MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false``, refuses such models, here too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_sdk.build.sources import MLFLOW_SCHEMES, Converted, first_line, require
from edge_sdk.errors import InputError, ModelFileError, UnsupportedError

if TYPE_CHECKING:
    from edge_sdk.build.pipeline import BuildRequest

EXTRA = "mlflow"
WHAT = "MLflow sources"
FLAVORS = ("onnx", "sklearn")
MAX_MLMODEL = 1 << 20  # MLflow's own MLmodel files are a few KiB


def default_name(uri: str) -> str:
    """The bundle name a URI suggests: the registered model's name, or the run's artifact
    folder (``runs:/ID/classifier`` -> ``classifier``)."""
    if uri.startswith("models:/"):
        rest = uri[len("models:/") :]
        return rest.split("@", 1)[0].split("/", 1)[0]
    parts = [p for p in uri[len("runs:/") :].split("/") if p]
    return parts[-1] if len(parts) > 1 else "model"


def download(uri: str, dst: Path) -> Path:
    """The MLflow model at ``uri`` downloaded into ``dst``; its local folder."""
    # An offline build must not reach for the network on its own, nor draw progress bars over
    # our own progress line; the user's own settings win.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    require("mlflow", EXTRA, WHAT)
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    dst.mkdir(parents=True, exist_ok=True)
    try:
        local = Path(download_artifacts(artifact_uri=uri, dst_path=str(dst)))
    except (MlflowException, OSError, ValueError) as e:
        import mlflow

        raise ModelFileError(
            f"MLflow cannot fetch {uri} (tracking URI {mlflow.get_tracking_uri()}): {first_line(e)}"
        ) from e
    if not (local / "MLmodel").is_file():
        raise ModelFileError(f"{uri} is not an MLflow model (no MLmodel file in it)")
    return local


def flavors(local: Path, uri: str) -> dict[str, Any]:
    """The ``flavors`` table of the model's MLmodel file (YAML), read boundedly: a 1 MiB cap
    and a nesting check before the parser, which recurses once per level."""
    import yaml

    from edge_sdk.core.jsondepth import too_deep
    from edge_sdk.core.userfile import read_user_file

    raw = read_user_file(local / "MLmodel", f"{uri}: MLmodel file", MAX_MLMODEL, ModelFileError)
    if too_deep(raw):
        raise ModelFileError(f"{uri}: its MLmodel file nests too deep to be one")
    try:
        document = yaml.safe_load(raw.decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as e:
        first = first_line(e).rstrip(":")
        raise ModelFileError(f"{uri}: its MLmodel file is not readable YAML: {first}") from e
    found = document.get("flavors") if isinstance(document, dict) else None
    if not isinstance(found, dict) or not found:
        raise ModelFileError(f"{uri}: its MLmodel file lists no flavors")
    return found


def _onnx_file(local: Path, conf: Any, uri: str) -> Path:
    data = conf.get("data") if isinstance(conf, dict) else None
    if not isinstance(data, str):
        raise ModelFileError(f"{uri}: the onnx flavor names no model file")
    path = (local / data).resolve()
    if not path.is_relative_to(local.resolve()) or not path.is_file():
        raise ModelFileError(f"{uri}: the onnx flavor's file {data!r} is not in the model")
    return path


def _sklearn_model(local: Path, uri: str) -> Any:
    import mlflow.sklearn
    from mlflow.environment_variables import MLFLOW_ALLOW_PICKLE_DESERIALIZATION
    from mlflow.exceptions import MlflowException

    if not MLFLOW_ALLOW_PICKLE_DESERIALIZATION.get():  # type: ignore[no-untyped-call]
        raise InputError(
            f"{uri} is a scikit-learn model, and loading one runs code stored in it, which "
            "MLFLOW_ALLOW_PICKLE_DESERIALIZATION forbids here; set it to true if you trust "
            "where the model came from"
        )
    require("skl2onnx", "sklearn", "scikit-learn models")
    try:
        return mlflow.sklearn.load_model(str(local))
    except ModuleNotFoundError as e:
        # skops (MLflow 3's default format for scikit-learn) or what the model was made with.
        raise UnsupportedError(
            f"{uri} needs the module {e.name!r} to load; pip install {e.name}"
        ) from e
    except (MlflowException, Exception) as e:  # unpickling raises whatever the bytes ask for
        raise ModelFileError(f"{uri}: MLflow cannot load the model: {first_line(e)}") from e


def convert_mlflow(request: BuildRequest, workdir: Path) -> Converted:
    uri = str(request.model)
    if not uri.startswith(MLFLOW_SCHEMES):
        raise ModelFileError(f"{uri} is not an MLflow model URI (models:/... or runs:/...)")
    name = default_name(uri)
    local = download(uri, workdir / "mlflow")
    found = flavors(local, uri)
    if "onnx" in found:
        onnx = _onnx_file(local, found["onnx"], uri)
        return Converted(onnx, name, uri, (f"fetched from MLflow ({uri}, flavor onnx)",))
    if "sklearn" in found:
        from edge_sdk.build.sources.sklearn import check_estimator, convert_estimator

        estimator = _sklearn_model(local, uri)
        check_estimator(estimator, uri)
        converted = convert_estimator(
            estimator,
            request,
            workdir,
            name=name,
            source=uri,
            what="the MLflow scikit-learn model",
        )
        note = f"fetched from MLflow ({uri}, flavor sklearn)"
        return Converted(converted.onnx, name, uri, (note, *converted.notes))
    listed = ", ".join(sorted(str(f) for f in found)) or "none"
    raise UnsupportedError(
        f"{uri} has the MLflow flavors {listed}; edge-sdk builds flavors "
        f"{' and '.join(FLAVORS)} (export other models to ONNX and log them with mlflow.onnx)"
    )
