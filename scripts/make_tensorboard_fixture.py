#!/usr/bin/env python3
"""Writes tests/fixtures/tensorboard_scalars.tfevents with the `tensorboard` package's own
protobufs and record writer: the file-version event and three scalar events at fixed wall times.
rho's test (crates/rho-train/tests/tensorboard.rs) reads it back and encodes the same events
byte for byte, so rho's hand-written event format is checked against TensorBoard's in CI.

Usage: .venv/bin/python scripts/make_tensorboard_fixture.py
"""
import os

from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.record_writer import RecordWriter

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "tensorboard_scalars.tfevents")

with open(OUT, "wb") as f:
    w = RecordWriter(f)
    w.write(event_pb2.Event(wall_time=1764547200.25, step=0, file_version="brain.Event:2").SerializeToString())
    for wall, step, tag, value in [
        (1764547201.5, 0, "train/loss", 2.75),
        (1764547202.0, 1, "train/loss", 2.5),
        (1764547202.0, 300, "train/lr", 0.125),
    ]:
        v = summary_pb2.Summary.Value(tag=tag, simple_value=value)
        e = event_pb2.Event(wall_time=wall, step=step, summary=summary_pb2.Summary(value=[v]))
        w.write(e.SerializeToString())
print("wrote", OUT)
