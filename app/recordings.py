"""Read waveforms from CSV, NumPy .npy and WAV files for the command line.

- CSV: one waveform per row; a file whose rows all hold a single value is one
  waveform down the column. A first row that is not numeric is a header.
- .npy: a 1-D array is one waveform, a 2-D array one waveform per row.
- WAV: 8-, 16-, 24- and 32-bit PCM through the standard library's ``wave``
  module, and 32- and 64-bit IEEE float, which ``wave`` cannot read, from the
  RIFF chunks directly. Only the first channel is used.
"""

from __future__ import annotations

import csv
import io
import struct
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.validation import FLOAT32_MAX

WAVE_FORMAT_PCM = 1
WAVE_FORMAT_IEEE_FLOAT = 3
WAVE_FORMAT_EXTENSIBLE = 0xFFFE


class RecordingError(ValueError):
    """A file could not be read as waveforms; the message names the file and why."""


@dataclass(frozen=True)
class Recording:
    """One waveform read from a file."""

    name: str
    samples: np.ndarray  # (T,) float64
    sample_rate: float | None  # Hz; None when the file does not say


def read_recordings(path: Path) -> list[Recording]:
    """Read every waveform in ``path``, choosing the reader by its suffix.

    Raises:
        RecordingError: the file is missing, unreadable, of an unknown type, or
            contains something other than finite numbers within float32 range.
    """
    readers = {
        ".csv": _read_csv,
        ".txt": _read_csv,
        ".npy": _read_npy,
        ".wav": _read_wav,
    }
    reader = readers.get(path.suffix.lower())
    if reader is None:
        raise RecordingError(
            f"{path}: unknown file type {path.suffix!r}; use .csv, .npy or .wav"
        )
    try:
        recordings = reader(path)
    except OSError as exc:
        raise RecordingError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if not recordings:
        raise RecordingError(f"{path} contains no samples")
    for recording in recordings:
        _check_values(recording)
    return recordings


def _check_values(recording: Recording) -> None:
    samples = recording.samples
    if samples.size == 0:
        raise RecordingError(f"{recording.name} contains no samples")
    valid = np.abs(samples) <= FLOAT32_MAX  # also false for NaN
    if not valid.all():
        index = int(np.argmin(valid))
        raise RecordingError(
            f"{recording.name}, sample {index}: {samples[index]} is not a finite "
            "number within float32 range"
        )


def _read_csv(path: Path) -> list[Recording]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RecordingError(f"{path} is not UTF-8 text: {exc}") from exc

    rows: list[tuple[int, list[float]]] = []
    reader = csv.reader(io.StringIO(text))
    for cells in reader:
        values = [cell.strip() for cell in cells if cell.strip()]
        if not values:
            continue
        try:
            rows.append((reader.line_num, [float(value) for value in values]))
        except ValueError as exc:
            if not rows and reader.line_num == 1:
                continue  # a header row
            raise RecordingError(
                f"{path}, line {reader.line_num}: {exc}; every cell must be a number"
            ) from exc

    if len(rows) > 1 and all(len(values) == 1 for _, values in rows):
        column = np.array([values[0] for _, values in rows])
        return [Recording(f"{path.name} (column)", column, None)]
    return [
        Recording(f"{path.name} line {line}", np.array(values), None)
        for line, values in rows
    ]


def _read_npy(path: Path) -> list[Recording]:
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise RecordingError(f"{path} is not a NumPy array file: {exc}") from exc
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "biuf":
        kind = getattr(array, "dtype", type(array).__name__)
        raise RecordingError(f"{path} contains {kind} values; expected real numbers")
    values = array.astype(np.float64)
    if values.ndim == 1:
        return [Recording(path.name, values, None)]
    if values.ndim == 2:
        return [
            Recording(f"{path.name} row {index}", row, None)
            for index, row in enumerate(values)
        ]
    raise RecordingError(
        f"{path} contains an array of shape {array.shape}; expected 1-D (one "
        "waveform) or 2-D (one waveform per row)"
    )


def _read_wav(path: Path) -> list[Recording]:
    try:
        with wave.open(str(path), "rb") as wav:
            channels = wav.getnchannels()
            width = wav.getsampwidth()
            rate = wav.getframerate()
            frames = wav.readframes(wav.getnframes())
    except wave.Error as exc:
        # wave reads only integer PCM, so IEEE float files are parsed here.
        samples, rate = _read_float_wav(path, exc)
        return [Recording(path.name, samples, float(rate))]
    except EOFError as exc:
        raise RecordingError(f"{path} is not a complete WAV file") from exc

    samples = _decode_pcm(frames, width, path).reshape(-1, channels)[:, 0]
    return [Recording(path.name, samples, float(rate))]


def _decode_pcm(frames: bytes, width: int, path: Path) -> np.ndarray:
    if width == 1:  # unsigned, centred on 128
        return (np.frombuffer(frames, np.uint8).astype(np.float64) - 128) / 128
    if width == 2:
        return np.frombuffer(frames, "<i2").astype(np.float64) / 2**15
    if width == 3:
        raw = np.frombuffer(frames, np.uint8).reshape(-1, 3).astype(np.int32)
        values = raw[:, 0] | (raw[:, 1] << 8) | (raw[:, 2] << 16)
        values = np.where(values >= 2**23, values - 2**24, values)
        return values.astype(np.float64) / 2**23
    if width == 4:
        return np.frombuffer(frames, "<i4").astype(np.float64) / 2**31
    raise RecordingError(f"{path} has {8 * width}-bit samples; expected 8 to 32 bits")


def _read_float_wav(path: Path, cause: wave.Error) -> tuple[np.ndarray, int]:
    chunks = _riff_chunks(path.read_bytes(), path, cause)
    fmt = chunks.get(b"fmt ")
    data = chunks.get(b"data")
    if fmt is None or data is None or len(fmt) < 16:
        raise RecordingError(f"{path} has no fmt or data chunk: {cause}")

    tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", fmt[:16])
    if tag == WAVE_FORMAT_EXTENSIBLE and len(fmt) >= 26:
        # The sub-format GUID starts with the format tag it stands for.
        tag = struct.unpack("<H", fmt[24:26])[0]
    if tag != WAVE_FORMAT_IEEE_FLOAT or bits not in (32, 64) or channels < 1:
        raise RecordingError(
            f"{path} is a WAV file of format {tag} with {bits}-bit samples, which "
            f"is not supported ({cause}); use PCM or 32-bit float"
        )
    dtype = np.dtype("<f4") if bits == 32 else np.dtype("<f8")
    usable = len(data) - len(data) % (dtype.itemsize * channels)
    samples = np.frombuffer(data[:usable], dtype).reshape(-1, channels)[:, 0]
    return samples.astype(np.float64), rate


def _riff_chunks(content: bytes, path: Path, cause: wave.Error) -> dict[bytes, bytes]:
    if content[:4] != b"RIFF" or content[8:12] != b"WAVE":
        raise RecordingError(f"{path} is not a WAV file: {cause}")
    chunks: dict[bytes, bytes] = {}
    position = 12
    while position + 8 <= len(content):
        name = content[position : position + 4]
        size = struct.unpack("<I", content[position + 4 : position + 8])[0]
        chunks.setdefault(name, content[position + 8 : position + 8 + size])
        position += 8 + size + (size & 1)  # chunks are padded to even sizes
    return chunks
