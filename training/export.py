"""Export a trained classifier as a TorchScript artifact with its metadata.

This is the only module that writes the artifact format; ``app.artifact`` is the
only one that reads it. Supporting another format means changing these two.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from training.model import WaveformClassifier, standardize

ARTIFACT_NAME = "wavecls.pt"
METADATA_NAME = "wavecls.json"
FORMAT = "torchscript"

# torch 2.13 marks torch.jit.script/save/load/freeze deprecated with a
# DeprecationWarning on every call. TorchScript is still the artifact format
# (it loads without the training code and on any device), so exactly these
# warnings are silenced around the calls that trigger them, and nothing else.
JIT_DEPRECATION = r"`torch\.jit\.\w+` is deprecated"


@contextmanager
def quiet_jit_deprecation() -> Iterator[None]:
    """Silence torch's TorchScript deprecation warnings inside the block."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=JIT_DEPRECATION, category=DeprecationWarning
        )
        yield


class ExportedClassifier(nn.Module):
    """The trained classifier rebuilt for inference on ``torch.nn.LSTM``'s fused kernel.

    The hand-written cell uses PyTorch's gate order (i, f, g, o) and the same
    two weight matrices and two bias vectors, so its weights copy into
    ``nn.LSTM`` unchanged and the outputs agree to float rounding. The fused
    kernel runs the 100 steps in C++ instead of one interpreted step at a time.
    """

    def __init__(self, model: WaveformClassifier) -> None:
        super().__init__()
        hidden_size = model.hidden_size
        self.num_classes = model.head.out_features
        self.lstm = nn.LSTM(1, hidden_size, batch_first=True)
        # Class logits and the outlier score from one matrix product: rows
        # 0 to C-1 are ``head``, row C is ``outlier_head``.
        self.heads = nn.Linear(hidden_size, self.num_classes + 1)
        cell = model.cell
        self.lstm.load_state_dict(
            {
                "weight_ih_l0": cell.input_to_gates.weight,
                "bias_ih_l0": cell.input_to_gates.bias,
                "weight_hh_l0": cell.hidden_to_gates.weight,
                "bias_hh_l0": cell.hidden_to_gates.bias,
            }
        )
        with torch.no_grad():
            self.heads.weight.copy_(
                torch.cat([model.head.weight, model.outlier_head.weight])
            )
            self.heads.bias.copy_(torch.cat([model.head.bias, model.outlier_head.bias]))

    def features(self, waveforms: torch.Tensor) -> torch.Tensor:
        """Return the last hidden state (B, H) for waveforms (B, T) or (B, T, 1)."""
        if waveforms.dim() == 3:
            waveforms = waveforms.squeeze(2)
        x = standardize(waveforms).unsqueeze(2)  # (B, T, 1)
        _, (hidden, _) = self.lstm(x)  # hidden: (1, B, H)
        last: torch.Tensor = hidden[0]
        return last

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        """Return class probabilities (B, C)."""
        return self.classify(waveforms)[0]

    @torch.jit.export
    def classify(self, waveforms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return class probabilities (B, C) and out-of-distribution scores (B,)."""
        outputs = self.heads(self.features(waveforms))  # (B, C + 1)
        probabilities = torch.softmax(outputs[:, : self.num_classes], dim=1)
        return probabilities, outputs[:, self.num_classes]


def script(model: WaveformClassifier) -> torch.jit.ScriptModule:
    """Compile the inference module for ``model`` with TorchScript."""
    exported = ExportedClassifier(model).eval()
    with quiet_jit_deprecation():
        return torch.jit.script(exported)


def sha256_of(path: Path) -> str:
    """Return the hex SHA-256 of the file at ``path``."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_atomically(path: Path, write: Any) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(handle)
    try:
        write(temporary)
        # mkstemp creates the file readable by its owner only; the artifact must
        # be readable by the (often different) user that serves it.
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def save_artifact(
    module: torch.jit.ScriptModule, output_dir: Path, metadata: dict[str, Any]
) -> dict[str, Any]:
    """Write the TorchScript file and its metadata JSON into ``output_dir``.

    The metadata is completed with the format, file name, SHA-256, torch version
    and creation time, and returned as written.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    artifact = output_dir / ARTIFACT_NAME

    def write_module(temporary: str) -> None:
        with quiet_jit_deprecation():
            torch.jit.save(module, temporary)

    _write_atomically(artifact, write_module)
    sha256 = sha256_of(artifact)
    complete = {
        "format": FORMAT,
        "file": ARTIFACT_NAME,
        "sha256": sha256,
        "version": sha256[:12],
        "torch_version": torch.__version__,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        **metadata,
    }
    write_metadata(output_dir, complete)
    return complete


def write_metadata(output_dir: Path, metadata: dict[str, Any]) -> None:
    """Write ``metadata`` as the artifact's JSON file, replacing any earlier one."""
    text = json.dumps(metadata, indent=2) + "\n"
    _write_atomically(
        output_dir / METADATA_NAME, lambda temporary: Path(temporary).write_text(text)
    )
