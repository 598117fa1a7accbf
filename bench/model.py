"""In-process throughput of the exported model against its eager and scripted forms.

Four implementations of the same classifier run on the same weights, one torch
thread, interleaved round by round so that background load hits them alike:

- ``artifact``: the committed TorchScript artifact's ``classify``, as the service
  loads it (``torch.nn.LSTM``'s fused kernel, scripted);
- ``nn_lstm``: ``torch.nn.LSTM`` with the same weights and heads, eager;
- ``loop_scripted``: the hand-written per-step loop under ``torch.jit.script``;
- ``loop_eager``: the hand-written model as trained (the reference outputs).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from app.artifact import LoadedModel, load_model
from training.data import generate
from training.export import ExportedClassifier, quiet_jit_deprecation
from training.model import WaveformClassifier

Classify = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

IMPLEMENTATIONS = ("artifact", "nn_lstm", "loop_scripted", "loop_eager")
REFERENCE = "loop_eager"
INPUT_SEED = 20_241_204


@dataclass(frozen=True)
class ModelTiming:
    """Median time of one ``classify`` call of one implementation at one batch size."""

    implementation: str
    batch_size: int
    seconds_per_call: float
    max_abs_difference: float  # against the eager hand-written model

    @property
    def waveforms_per_s(self) -> float:
        """Throughput in waveforms per second."""
        return self.batch_size / self.seconds_per_call


class ScriptedLoopClassifier(nn.Module):
    """``classify`` built on the hand-written per-step ``features`` loop."""

    def __init__(self, model: WaveformClassifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, waveforms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return class probabilities (B, C) and outlier scores (B,)."""
        features = self.model.features(waveforms)
        probabilities = torch.softmax(self.model.head(features), dim=1)
        return probabilities, self.model.outlier_head(features).squeeze(1)


def eager_model_from(loaded: LoadedModel) -> WaveformClassifier:
    """Rebuild the hand-written model from the artifact's ``nn.LSTM`` weights.

    The export copies the cell's two linear layers into ``nn.LSTM`` unchanged
    (same gate order), so the copy back is exact.
    """
    state = loaded.module.state_dict()
    hidden_size = state["lstm.weight_hh_l0"].shape[1]
    classes = len(loaded.class_names)
    model = WaveformClassifier(hidden_size, classes)
    with torch.no_grad():
        model.cell.input_to_gates.weight.copy_(state["lstm.weight_ih_l0"])
        model.cell.input_to_gates.bias.copy_(state["lstm.bias_ih_l0"])
        model.cell.hidden_to_gates.weight.copy_(state["lstm.weight_hh_l0"])
        model.cell.hidden_to_gates.bias.copy_(state["lstm.bias_hh_l0"])
        # The export stacks the class head's rows over the outlier head's row.
        model.head.weight.copy_(state["heads.weight"][:classes])
        model.head.bias.copy_(state["heads.bias"][:classes])
        model.outlier_head.weight.copy_(state["heads.weight"][classes:])
        model.outlier_head.bias.copy_(state["heads.bias"][classes:])
    return model.eval()


def implementations(loaded: LoadedModel) -> dict[str, Classify]:
    """Return each implementation's ``classify``, keyed by the names above."""
    eager = eager_model_from(loaded)
    nn_lstm = ExportedClassifier(eager).eval()
    with quiet_jit_deprecation():
        scripted_loop = torch.jit.script(ScriptedLoopClassifier(eager))

    def loop_eager(waveforms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, scores = eager.logits_and_outlier_scores(waveforms)
        return torch.softmax(logits, dim=1), scores

    return {
        "artifact": loaded.module.classify,
        "nn_lstm": nn_lstm.classify,
        "loop_scripted": scripted_loop,
        "loop_eager": loop_eager,
    }


def max_difference(
    outputs: tuple[torch.Tensor, torch.Tensor],
    reference: tuple[torch.Tensor, torch.Tensor],
) -> float:
    """Return the largest absolute difference over probabilities and scores."""
    return max(
        float((output - expected).abs().max())
        for output, expected in zip(outputs, reference, strict=True)
    )


def _calls_per_round(classify: Classify, inputs: torch.Tensor, round_s: float) -> int:
    started = time.perf_counter()
    classify(inputs)
    elapsed = time.perf_counter() - started
    return max(1, int(round_s / max(elapsed, 1e-6)))


def _time_round(classify: Classify, inputs: torch.Tensor, calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        classify(inputs)
    return (time.perf_counter() - started) / calls


def time_batch(
    classifiers: dict[str, Classify], batch_size: int, rounds: int, round_s: float
) -> list[ModelTiming]:
    """Time every implementation at one batch size, interleaved over ``rounds``."""
    inputs = torch.from_numpy(generate(batch_size, INPUT_SEED).waveforms)
    with torch.inference_mode():
        reference = classifiers[REFERENCE](inputs)
        differences = {
            name: max_difference(classify(inputs), reference)
            for name, classify in classifiers.items()
        }
        # TorchScript's profiling executor optimises a method after its first
        # calls, so every implementation warms up before the clock starts.
        for classify in classifiers.values():
            for _ in range(3):
                classify(inputs)
        calls = {
            name: _calls_per_round(classify, inputs, round_s)
            for name, classify in classifiers.items()
        }
        samples: dict[str, list[float]] = {name: [] for name in classifiers}
        for _ in range(rounds):
            for name, classify in classifiers.items():
                samples[name].append(_time_round(classify, inputs, calls[name]))

    return [
        ModelTiming(
            name, batch_size, statistics.median(samples[name]), differences[name]
        )
        for name in classifiers
    ]


def run_model_benchmark(
    model_path: Path,
    batch_sizes: tuple[int, ...],
    rounds: int,
    round_s: float,
) -> list[ModelTiming]:
    """Time all implementations at each batch size on one torch thread.

    The process's torch thread count is restored afterwards.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        loaded = load_model(model_path, "cpu")
        classifiers = implementations(loaded)
        return [
            timing
            for batch_size in batch_sizes
            for timing in time_batch(classifiers, batch_size, rounds, round_s)
        ]
    finally:
        torch.set_num_threads(threads)
