"""Load the TorchScript artifact and its metadata onto a device.

This is the only module that reads the artifact format; ``training.export`` is
the only one that writes it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from training.export import FORMAT, quiet_jit_deprecation, sha256_of

METADATA_SUFFIX = ".json"
REQUIRED_METADATA = (
    "format",
    "sha256",
    "class_names",
    "input_length",
    "ood_threshold",
    "version",
)


class StartupError(RuntimeError):
    """A problem that stops the service from starting; the message states the fix."""


@dataclass(frozen=True)
class LoadedModel:
    """A verified artifact on its device, with the metadata the service uses."""

    module: torch.jit.ScriptModule
    metadata: dict[str, Any]
    path: Path
    device: torch.device
    class_names: tuple[str, ...]
    input_length: int
    ood_threshold: float
    version: str
    sha256: str


def resolve_device(name: str) -> torch.device:
    """Return the torch device for ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

    Raises:
        StartupError: the requested CUDA device does not exist here.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type != "cuda":
        return device

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = device.index or 0
    if index >= count:
        raise StartupError(
            f"device {name!r} is not available: torch {torch.__version__} sees "
            f"{count} CUDA device(s). Set WAVECLS_DEVICE=cpu or auto, or run on a "
            "machine with that GPU and a CUDA build of torch."
        )
    return device


def metadata_path_for(model_path: Path) -> Path:
    """Return where the metadata JSON of the artifact at ``model_path`` lies."""
    return model_path.with_suffix(METADATA_SUFFIX)


def read_metadata(model_path: Path) -> dict[str, Any]:
    """Read and check the metadata JSON next to ``model_path``."""
    path = metadata_path_for(model_path)
    try:
        metadata = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise StartupError(
            f"model metadata not found at {path}; it must lie next to the artifact. "
            "Restore model_artifacts/ from git or run `python -m training`."
        ) from exc
    except (OSError, ValueError) as exc:
        raise StartupError(
            f"model metadata at {path} is not valid JSON: {exc}"
        ) from exc

    missing = [key for key in REQUIRED_METADATA if key not in metadata]
    if not isinstance(metadata, dict) or missing:
        raise StartupError(
            f"model metadata at {path} lacks the fields {missing}; "
            "re-export the artifact with `python -m training`."
        )
    if metadata["format"] != FORMAT:
        raise StartupError(
            f"model metadata at {path} names format {metadata['format']!r}; "
            f"this service loads only {FORMAT!r}."
        )
    return metadata


def load_model(model_path: Path, device_name: str) -> LoadedModel:
    """Verify the artifact at ``model_path`` against its metadata and load it.

    Raises:
        StartupError: the file is missing, unreadable, corrupt, does not match
            the SHA-256 in its metadata, or the device is unavailable.
    """
    device = resolve_device(device_name)
    if not model_path.is_file():
        raise StartupError(
            f"model artifact not found at {model_path}. Set WAVECLS_MODEL_PATH to "
            "the .pt file, restore model_artifacts/ from git, or run "
            "`python -m training` to train one."
        )
    metadata = read_metadata(model_path)

    sha256 = sha256_of(model_path)
    if sha256 != metadata["sha256"]:
        raise StartupError(
            f"model artifact at {model_path} has SHA-256 {sha256}, but its metadata "
            f"expects {metadata['sha256']}: the file is corrupt or belongs to another "
            "export. Restore both files from the same export."
        )

    try:
        with quiet_jit_deprecation():
            # torch.jit.load has no type annotations in torch 2.13.
            module = torch.jit.load(  # type: ignore[no-untyped-call]
                str(model_path), map_location=device
            )
    except (RuntimeError, ValueError, OSError) as exc:
        raise StartupError(
            f"model artifact at {model_path} could not be loaded by torch "
            f"{torch.__version__}: {exc}"
        ) from exc
    module.eval()

    return LoadedModel(
        module=module,
        metadata=metadata,
        path=model_path,
        device=device,
        class_names=tuple(metadata["class_names"]),
        input_length=int(metadata["input_length"]),
        ood_threshold=float(metadata["ood_threshold"]),
        version=str(metadata["version"]),
        sha256=sha256,
    )
