#!/usr/bin/env python3
"""Lists the collapse watch's restores (and "carried" notes) in a folder of
sessions, with what the primary's training loss did over the watch's count
before each: the evidence for `CARRIED_LOSS_FALL` in src/engine/collapse.rs.

Usage: collapse_restores.py SESSIONS_DIR [--count 25]

For each event: the session, its step, why the primary's weight was low
("negative": below zero; "shrank": small and positive; "carried": the
watch's note that another loss carries the primary), and the mean primary
training loss of the first and last 5 train lines within the last COUNT meta
steps before it; for a restore, the ratio of that loss (averaged over meta
steps) to its value at the restore point, as the event says it: the
evidence for `MOVED_LOSS_FACTOR`, with the largest ratio at the end, and
"not put back" events (the factor's doing) listed with theirs. Python 3
standard library only."""

import argparse
import json
import os
import re
import statistics

# The restore event's "(the primary's training loss now 1.09× its value there)".
RATIO = re.compile(r"training loss now ([0-9.]+)× its value there")
# A "not put back" event's "climbed from 3.331 at step 66, the last healthy meta step, to 6.554".
CLIMB = re.compile(r"climbed from ([0-9.e+-]+) at step \d+, the last healthy meta step, to ([0-9.e+-]+)")


def lines_of(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sessions")
    parser.add_argument("--count", type=int, default=25, help="meta steps in the watch's count")
    args = parser.parse_args()
    found = 0
    ratios = []
    for name in sorted(os.listdir(args.sessions)):
        metrics = os.path.join(args.sessions, name, "metrics.jsonl")
        if name.startswith(".") or not os.path.isfile(metrics):
            continue
        with open(os.path.join(args.sessions, name, "session.json")) as f:
            primary = json.load(f)["primary"]
        lines = lines_of(metrics)
        train = [(l["step"], l["losses"][primary]) for l in lines if l["kind"] == "train"]
        metas = [l["step"] for l in lines if l["kind"] == "meta"]
        for l in lines:
            message = l.get("message", "") if l["kind"] == "event" else ""
            if "restored from the meta step" in message:
                why = "negative" if "weight is negative" in message else "shrank"
            elif "carries the primary's gradient" in message:
                why = "carried"
            elif "the model has moved on from that state" in message:
                why = "moved on"
            else:
                continue
            step = l["step"]
            window = [s for s in metas if s <= step][-args.count:]
            losses = [v for s, v in train if window and window[0] <= s <= step]
            if len(losses) < 2:
                continue
            first = statistics.fmean(losses[:5])
            last = statistics.fmean(losses[-5:])
            found += 1
            ratio = RATIO.search(message)
            climb = CLIMB.search(message)
            since = ""
            if climb:
                since = f"  {float(climb.group(2)) / float(climb.group(1)):.2f}x its value at the restore point"
            elif ratio:
                ratios.append(float(ratio.group(1)))
                since = f"  {ratio.group(1)}x its value at the restore point"
            print(f"{name}  step {step:5d}  {why:8s}  primary loss {first:.4g} -> {last:.4g} ({(last / first - 1) * 100:+.1f}%){since}")
    print(f"{found} events")
    if ratios:
        print(f"restores: the primary's loss at {min(ratios):.2f}x to {max(ratios):.2f}x its value at the restore point")


if __name__ == "__main__":
    main()
