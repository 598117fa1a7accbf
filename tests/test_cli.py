"""The wavecls command line on WAV, CSV and .npy files, direct and via the service."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.cli import main
from app.config import DEFAULT_MODEL_PATH
from tests.conftest import ROOT, Server, free_port
from training.data import CLASS_NAMES, INPUT_LENGTH, generate

RATE = 8000
TONE_HZ = 440.0


def _tone(kind: str, frequency: float, rate: int, seconds: float) -> np.ndarray:
    phase = frequency * np.arange(int(rate * seconds)) / rate
    shapes = {
        "sine": np.sin(2 * np.pi * phase),
        "square": np.where(np.mod(phase, 1.0) < 0.5, 1.0, -1.0),
        "sawtooth": 2 * np.mod(phase, 1.0) - 1,
    }
    return shapes[kind]


def _write_pcm_wav(path: Path, samples: np.ndarray, rate: int) -> Path:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes((samples * 0.5 * 32767).astype("<i2").tobytes())
    return path


def _write_float_wav(path: Path, channels: np.ndarray, rate: int) -> Path:
    # wave cannot write IEEE float, so the RIFF chunks are packed here.
    frames = channels.T.astype("<f4").tobytes()
    count = channels.shape[0]
    fmt = struct.pack("<HHIIHH", 3, count, rate, rate * 4 * count, 4 * count, 32)
    body = (
        b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"data"
        + struct.pack("<I", len(frames))
        + frames
    )
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


def _run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    status = main(["classify", *map(str, args)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _run_json(capsys: pytest.CaptureFixture[str], *args: str | Path) -> dict[str, Any]:
    status, out, err = _run(capsys, *args, "--format", "json")
    assert status == 0, err
    report: dict[str, Any] = json.loads(out)
    return report


@pytest.fixture(scope="module")
def square_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One second of a 440 Hz square tone at 8 kHz, 16-bit PCM."""
    path = tmp_path_factory.mktemp("wav") / "square-440.wav"
    return _write_pcm_wav(path, _tone("square", TONE_HZ, RATE, 1.0), RATE)


def _assert_square_tone_report(report: dict[str, Any]) -> None:
    (recording,) = report["recordings"]
    period = RATE / TONE_HZ
    windows = recording["windows"]
    assert recording["samples"] == RATE
    assert recording["sample_rate_hz"] == RATE
    assert recording["f0_hz"] == pytest.approx(TONE_HZ, rel=0.01)
    assert recording["window_length"] == pytest.approx(8 * period, abs=2)
    assert recording["cycles_per_window"] == pytest.approx(8, abs=0.15)
    assert len(windows) == RATE // recording["window_length"]
    assert windows[1]["start"] == recording["window_length"]
    assert (
        recording["leftover_samples"]
        == RATE - len(windows) * recording["window_length"]
    )
    assert recording["vote"]["label"] == "square"
    assert recording["vote"]["agreeing"] == len(windows)
    assert recording["vote"]["out_of_distribution"] == 0


def test_cli_classifies_square_wav_with_model(
    capsys: pytest.CaptureFixture[str], square_wav: Path
) -> None:
    report = _run_json(capsys, square_wav, "--model", DEFAULT_MODEL_PATH)
    assert report["source"].startswith(f"model {DEFAULT_MODEL_PATH}")
    _assert_square_tone_report(report)


def test_cli_classifies_square_wav_with_url(
    capsys: pytest.CaptureFixture[str], square_wav: Path, server: Server
) -> None:
    report = _run_json(capsys, square_wav, "--url", server.url)
    assert report["source"].startswith(f"service {server.url}")
    _assert_square_tone_report(report)


def test_cli_table_reports_windowing(
    capsys: pytest.CaptureFixture[str], square_wav: Path
) -> None:
    report = _run_json(capsys, square_wav)
    recording = report["recordings"][0]
    status, out, err = _run(capsys, square_wav)

    assert status == 0, err
    assert "square-440.wav: 8000 samples at 8000 Hz" in out
    assert f"estimated f0: {recording['f0_hz']:.1f} Hz" in out
    windows = len(recording["windows"])
    assert f"{windows} windows of {recording['window_length']} samples" in out
    assert f"vote: square ({windows} of {windows} windows" in out
    rows = [line.split() for line in out.splitlines()]
    labels = [row[2] for row in rows if len(row) == 8 and row[0].isdigit()]
    assert labels == ["square"] * windows


def test_cli_module_entry_point_uses_service(square_wav: Path, server: Server) -> None:
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "app.cli",
            "classify",
            str(square_wav),
            "--url",
            server.url,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "vote: square" in completed.stdout


def test_cli_console_script_is_installed() -> None:
    script = Path(sys.executable).with_name("wavecls")
    completed = subprocess.run(
        [str(script), "classify", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "--model" in completed.stdout


@pytest.mark.parametrize("kind", CLASS_NAMES)
def test_cli_reads_float_stereo_wav(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, kind: str
) -> None:
    first = _tone(kind, 250.0, 16000, 0.5)
    noise = np.random.default_rng(0).normal(0, 1, first.shape)
    path = _write_float_wav(tmp_path / f"{kind}.wav", np.stack([first, noise]), 16000)

    (recording,) = _run_json(capsys, path)["recordings"]

    assert recording["sample_rate_hz"] == 16000
    assert recording["f0_hz"] == pytest.approx(250.0, rel=0.01)
    assert recording["vote"]["label"] == kind


def test_cli_classifies_csv_rows_as_is(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    batch = generate(6, seed=31)
    path = tmp_path / "rows.csv"
    lines = ["," * (INPUT_LENGTH - 1)]  # an empty header row is skipped
    lines += [",".join(f"{value:.6f}" for value in row) for row in batch.waveforms]
    path.write_text("\n".join(lines) + "\n")

    recordings = _run_json(capsys, path)["recordings"]

    assert [r["vote"]["label"] for r in recordings] == [
        CLASS_NAMES[label] for label in batch.labels
    ]
    for recording in recordings:
        assert recording["period_samples"] is None
        assert recording["window_length"] == INPUT_LENGTH
        assert len(recording["windows"]) == 1


def test_cli_classifies_csv_column(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # 2000 samples of a sawtooth with a period of 25 samples, one per line.
    samples = 2 * np.mod(np.arange(2000) / 25, 1.0) - 1
    path = tmp_path / "column.csv"
    path.write_text("value\n" + "\n".join(f"{value:.6f}" for value in samples))

    (recording,) = _run_json(capsys, path)["recordings"]

    assert recording["name"] == "column.csv (column)"
    assert recording["sample_rate_hz"] is None
    assert recording["period_samples"] == pytest.approx(25, abs=0.3)
    assert recording["window_length"] == 200
    assert len(recording["windows"]) == 10
    assert recording["vote"]["label"] == "sawtooth"


def test_cli_classifies_npy_one_and_two_dimensional(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    batch = generate(4, seed=17)
    rows = tmp_path / "rows.npy"
    np.save(rows, batch.waveforms)
    long = tmp_path / "long.npy"
    np.save(long, 0.3 * _tone("sine", 100.0, 4000, 1.0) + 2.0)

    row_recordings = _run_json(capsys, rows)["recordings"]
    (long_recording,) = _run_json(capsys, long)["recordings"]

    assert [r["vote"]["label"] for r in row_recordings] == [
        CLASS_NAMES[label] for label in batch.labels
    ]
    assert [r["name"] for r in row_recordings] == [
        f"rows.npy row {i}" for i in range(4)
    ]
    assert long_recording["period_samples"] == pytest.approx(40, abs=0.3)
    assert long_recording["vote"]["label"] == "sine"


def test_cli_classifies_short_row_as_is(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    waveform = generate(1, seed=5, kinds=[1]).waveforms[0]
    path = tmp_path / "one.csv"
    path.write_text(" ".join(f"{value:.6f}," for value in waveform))

    status, out, err = _run(capsys, path)

    assert status == 0, err
    assert "one.csv line 1: 100 samples" in out
    assert "100 samples: classified as is" in out
    assert "vote: square (1 of 1 windows" in out
    assert "estimated f0" not in out


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.wav", None, "cannot read"),
        ("broken.wav", b"not a wav file at all", "is not a WAV file"),
        ("notes.xlsx", b"PK", "unknown file type '.xlsx'"),
        ("broken.npy", b"\x93NUMPY garbage", "is not a NumPy array file"),
        ("binary.csv", b"\xff\xfe\x00", "is not UTF-8 text"),
        ("words.csv", b"1,2,3\n4,five,6\n", "line 2"),
        ("short.csv", ",".join(["0.5"] * 50).encode(), "fewer than the model's 100"),
        ("flat.csv", b"\n".join([b"0.25"] * 400), "constant"),
        ("nan.csv", b"\n".join([b"0.5"] * 200 + [b"nan"]), "not a finite number"),
        ("empty.csv", b"", "contains no samples"),
    ],
)
def test_cli_unreadable_input_fails_clearly(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    name: str,
    content: bytes | None,
    message: str,
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)

    status, out, err = _run(capsys, path)

    assert status == 1, out
    assert err.startswith("wavecls: error: "), err
    assert message in err, err
    assert out == ""


def test_cli_noise_has_no_period(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "noise.npy"
    np.save(path, np.random.default_rng(3).normal(size=4000))
    status, _, err = _run(capsys, path)
    assert status == 1
    assert "noise.npy: the signal shows no clear period" in err, err


def test_cli_unreachable_service_fails_clearly(
    capsys: pytest.CaptureFixture[str], square_wav: Path
) -> None:
    status, _, err = _run(
        capsys, square_wav, "--url", f"http://127.0.0.1:{free_port()}", "--timeout", "2"
    )
    assert status == 1
    assert "check that the service is running" in err, err


def test_cli_rejects_cycles_out_of_range(
    capsys: pytest.CaptureFixture[str], square_wav: Path
) -> None:
    status, _, err = _run(capsys, square_wav, "--cycles", "40")
    assert status == 1
    assert "--cycles 40 is outside 3 to 15" in err, err


def test_cli_warns_when_window_has_few_cycles(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # 240 samples with a period of 100: one window of all of them, 2.4 cycles.
    path = tmp_path / "slow.npy"
    np.save(path, np.sin(2 * np.pi * np.arange(240) / 100))

    status, out, err = _run(capsys, path)

    assert status == 0, err
    assert "1 windows of 240 samples (2.4 cycles)" in out
    assert "warning: 2.4 cycles per window is outside the 3-15" in out
