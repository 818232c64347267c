"""Summary lines for tools/gpu_verify.sh, read from the files its steps wrote (stdlib only).

    python tools/gpu_report.py train FILE.json [TARGET]   # epoch seconds, accuracy, training seconds to TARGET
    python tools/gpu_report.py bench FILE.json            # samples/s per contender (median, min-max)
    python tools/gpu_report.py junit FILE.xml [LOG]       # passed/failed/skipped and the failures' first lines

A missing or unreadable file is reported as such (exit 1), never as a traceback; for junit, a missing XML
(pytest killed before writing it) is summarised from the -v log instead.
"""
from __future__ import annotations

import json
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def train(path: str, target: str = "0.975") -> None:
    report = json.loads(Path(path).read_text())
    goal, spent, reached = float(target), 0.0, None
    for e in report["epochs"]:
        spent += e["seconds"]
        if reached is None and e.get("test_accuracy", 0) >= goal:
            reached = (spent, e["epoch"])
        print(f"  epoch {e['epoch']}: {e['seconds']:.3f} s, {e['samples_per_second']:,.0f} samples/s, "
              f"train_loss {e['train_loss']:.4f}, test_accuracy {e.get('test_accuracy', float('nan')):.2%}")
    print(f"  device {report.get('device')}, dtype {report.get('dtype')}, versions {report.get('versions')}")
    print(f"  training seconds to first reach {goal:.1%}: "
          + (f"{reached[0]:.2f} s (epoch {reached[1]})" if reached else "not reached"))


def bench(path: str) -> None:
    report = json.loads(Path(path).read_text())
    for r in report["rows"]:
        print(f"  {r['contender']:<22} batch {r['batch_size']:<5} {r['optimizer']:<5} "
              f"{r['samples_per_second']:>12,.0f} samples/s (min {r['min_samples_per_second']:,.0f}, "
              f"max {r['max_samples_per_second']:,.0f}; 60k epoch {60000 / r['samples_per_second'] * 1e3:.1f} ms)")
    for name, why in (report.get("skipped") or {}).items():
        print(f"  skipped {name}: {why}")
    if report.get("gemm_gflops"):
        print(f"  float32 GEMM rate: {report['gemm_gflops']}")


def junit(path: str, log: str = "") -> None:
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:  # pytest was killed before writing it: read its -v lines
        text = Path(log).read_text(errors="replace") if log and Path(log).exists() else ""
        ended = re.findall(r"^(\S+::.+?) (PASSED|FAILED|ERROR|SKIPPED)\b", text, re.M)  # ids may hold spaces
        failed = [name for name, how in ended if how in ("FAILED", "ERROR")]
        print(f"  no JUnit XML ({type(exc).__name__}); from the log: {len(ended)} tests ended, {len(failed)} "
              f"failed; the last to end: {ended[-1][0] if ended else 'none'}")
        for name in failed[:40]:
            print(f"    {name}")
        return
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    print(f"  {passed} passed, {counts['failures']} failed, {counts['errors']} errors, {counts['skipped']} skipped "
          f"in {float(suite.get('time', 0)):.0f} s")
    shown = 0
    for case in suite.iter("testcase"):
        for bad in list(case.findall("failure")) + list(case.findall("error")):
            if shown < 40:
                first = (bad.get("message") or "").strip().splitlines()[:1]
                print(f"    {case.get('classname')}::{case.get('name')}: {first[0][:300] if first else ''}")
            shown += 1
    if shown > 40:
        print(f"    ... and {shown - 40} more (see the XML)")


if __name__ == "__main__":
    kind, *args = sys.argv[1:]
    try:
        {"train": train, "bench": bench, "junit": junit}[kind](*args)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"  no result: {type(exc).__name__}: {exc}")
        sys.exit(1)
