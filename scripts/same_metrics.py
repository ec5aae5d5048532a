#!/usr/bin/env python3
"""Whether two sessions logged the same run: their metrics.jsonl lines equal
one by one, clock fields (`time`, `wall`) aside. For refactors that must not
change behaviour: run the same config with the binary before and after.

    meltr-tui-before run --headless -c configs/default.toml --steps 300 --sessions-dir /tmp/before
    meltr-tui-after  run --headless -c configs/default.toml --steps 300 --sessions-dir /tmp/after
    python3 scripts/same_metrics.py /tmp/before/<id> /tmp/after/<id>

Exit status 0 when identical, 1 otherwise (the first differing lines are
printed).
"""
import json
import sys


def lines(session):
    out = []
    with open(f"{session}/metrics.jsonl") as f:
        for text in f:
            record = json.loads(text)
            record.pop("time", None)
            record.pop("wall", None)
            out.append(json.dumps(record, sort_keys=True))
    return out


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    a, b = lines(sys.argv[1]), lines(sys.argv[2])
    differing = [(i, x, y) for i, (x, y) in enumerate(zip(a, b)) if x != y]
    print(f"{len(a)} and {len(b)} lines; {len(differing)} of the common ones differ")
    for i, x, y in differing[:5]:
        print(f"line {i + 1}:\n  {x}\n  {y}")
    return 0 if len(a) == len(b) and not differing else 1


if __name__ == "__main__":
    sys.exit(main())
