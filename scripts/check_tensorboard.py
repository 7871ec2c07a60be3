#!/usr/bin/env python3
"""Reads a rho output folder with TensorBoard's own loader (EventAccumulator, what
`tensorboard --logdir` uses) and checks that every scalar tag appears with each step once.

Usage: .venv/bin/python scripts/check_tensorboard.py OUT [--expect-tags train/loss,train/lr]
Prints one line per tag (count, first and last step) and exits 1 on a problem.
"""
import argparse
import collections
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

ap = argparse.ArgumentParser()
ap.add_argument("logdir")
ap.add_argument("--expect-tags", default="train/loss,train/lr")
a = ap.parse_args()

acc = EventAccumulator(a.logdir, size_guidance={"scalars": 0})
acc.Reload()
tags = acc.Tags()["scalars"]
problems = []
for tag in sorted(tags):
    events = acc.Scalars(tag)
    steps = [e.step for e in events]
    dup = [s for s, n in collections.Counter(steps).items() if n > 1]
    print(f"{tag:28s} {len(events):5d} scalars, steps {steps[0]}..{steps[-1]}")
    if dup:
        problems.append(f"{tag}: steps {dup[:5]} appear more than once")
for t in a.expect_tags.split(","):
    if t and t not in tags:
        problems.append(f"tag {t} missing (have {sorted(tags)})")
for p in problems:
    print("problem:", p)
sys.exit(1 if problems else 0)
