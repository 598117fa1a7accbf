"""Export to TorchScript and loading through the service's loader."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import pytest
import torch

from app.artifact import StartupError, load_model, resolve_device
from training.export import ARTIFACT_NAME, METADATA_NAME, save_artifact, script
from training.model import WaveformClassifier


def _tiny_model() -> WaveformClassifier:
    torch.manual_seed(1)
    return WaveformClassifier(hidden_size=6, num_classes=3).eval()


def _export(tmp_path: Path) -> Path:
    metadata = {
        "class_names": ["sine", "square", "sawtooth"],
        "input_length": 100,
        "hidden_size": 6,
        "ood_threshold": 0.0,
    }
    save_artifact(script(_tiny_model()), tmp_path, metadata)
    return tmp_path / ARTIFACT_NAME


def test_scripted_matches_eager() -> None:
    model = _tiny_model()
    scripted = script(model)
    x = torch.randn(9, 100) * 4 + 2
    with torch.no_grad():
        logits, outlier = model.logits_and_outlier_scores(x)
        probabilities, scores = scripted.classify(x)
        forward = scripted(x)
    assert torch.allclose(probabilities, torch.softmax(logits, dim=1), atol=1e-5)
    assert torch.allclose(scores, outlier, atol=1e-5)
    assert torch.allclose(forward, probabilities, atol=1e-7)


def test_scripted_accepts_column_shape() -> None:
    scripted = script(_tiny_model())
    x = torch.randn(2, 100)
    with torch.no_grad():
        assert torch.equal(scripted(x), scripted(x.unsqueeze(2)))


def test_export_writes_metadata(tmp_path: Path) -> None:
    artifact = _export(tmp_path)
    metadata = json.loads((tmp_path / METADATA_NAME).read_text())
    assert metadata["format"] == "torchscript"
    assert metadata["file"] == ARTIFACT_NAME
    assert metadata["torch_version"] == torch.__version__
    assert len(metadata["sha256"]) == 64
    assert "created_at" in metadata
    assert artifact.is_file()


def test_load_round_trip_without_warnings(tmp_path: Path) -> None:
    artifact = _export(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = load_model(artifact, "cpu")
    x = torch.randn(3, 100)
    with torch.no_grad():
        expected = script(_tiny_model())(x)
        assert torch.allclose(loaded.module(x), expected, atol=1e-6)
    assert loaded.device == torch.device("cpu")


def test_load_missing_file_names_path(tmp_path: Path) -> None:
    missing = tmp_path / "absent.pt"
    with pytest.raises(StartupError, match=str(missing)):
        load_model(missing, "cpu")


def test_load_hash_mismatch_names_path(tmp_path: Path) -> None:
    artifact = _export(tmp_path)
    artifact.write_bytes(artifact.read_bytes() + b"tampered")
    with pytest.raises(StartupError, match="SHA-256") as caught:
        load_model(artifact, "cpu")
    assert str(artifact) in str(caught.value)


def test_load_truncated_file_fails_cleanly(tmp_path: Path) -> None:
    artifact = _export(tmp_path)
    data = artifact.read_bytes()[:200]
    artifact.write_bytes(data)
    metadata_path = tmp_path / METADATA_NAME
    metadata = json.loads(metadata_path.read_text())
    metadata["sha256"] = hashlib.sha256(data).hexdigest()
    metadata_path.write_text(json.dumps(metadata))
    with pytest.raises(StartupError, match="could not be loaded") as caught:
        load_model(artifact, "cpu")
    assert str(artifact) in str(caught.value)


def test_load_missing_metadata_names_path(tmp_path: Path) -> None:
    artifact = _export(tmp_path)
    (tmp_path / METADATA_NAME).unlink()
    with pytest.raises(StartupError, match="metadata not found"):
        load_model(artifact, "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_unavailable_cuda_device_is_named() -> None:
    with pytest.raises(StartupError, match="'cuda:1' is not available"):
        resolve_device("cuda:1")


def test_auto_device_without_cuda_is_cpu() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
