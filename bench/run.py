"""`python -m bench.run`: run the scenarios, write bench/RESULTS.md and bench/latency.png.

    python -m bench.run                        # everything (make bench), under 10 minutes
    python -m bench.run --scenarios latency    # one scenario (into bench/out/: only a whole default run
                                               # replaces the committed bench/RESULTS.md)
    python -m bench.run --quick --out /tmp/b   # seconds: a smoke run of the harness (tests use it)

Every child process (fakes, gunicorn) is stopped when its scenario ends, failing or not; scratch
files (databases, logs) go to a temporary directory, kept with --keep-work.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from . import report
from .scenarios import SCENARIOS, Config, Outcome, Row

HERE = Path(__file__).resolve().parent


def quick(cfg: Config) -> Config:
    """A tiny run: a few handoffs, short bounds; proves the harness, measures nothing."""
    cfg.latency_ms = cfg.slow_latency_ms = 5.0
    cfg.clients, cfg.latency_requests, cfg.fanout_requests, cfg.warm_per_worker = 2, 10, 6, 4
    cfg.intake_clients, cfg.intake_seconds, cfg.intake_runs = 4, 2.0, 1
    cfg.burst_handoffs, cfg.burst_per_minute, cfg.burst_clients, cfg.burst_cap_s = 30, 20, 4, 60.0
    cfg.memory_early = 5
    cfg.databases = ("sqlite",)
    return cfg


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Benchmark the handoff connector against loopback vendor fakes.")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"comma list of {', '.join(SCENARIOS)}")
    parser.add_argument("--out", type=Path, default=None,
                        help="where RESULTS.md and latency.png go (default: bench/ for a whole run with the "
                             "default settings, which is what is committed; bench/out/ for any other run)")
    parser.add_argument("--latency-ms", type=float, default=80.0, help="latency of every fake vendor call")
    parser.add_argument("--burst-handoffs", type=int, default=Config.burst_handoffs)
    parser.add_argument("--burst-per-minute", type=int, default=Config.burst_per_minute,
                        help="the Zendesk fake's rate limit in the burst scenario")
    parser.add_argument("--burst-cap-s", type=float, default=Config.burst_cap_s)
    parser.add_argument("--quick", action="store_true", help="a smoke run: tiny counts, seconds")
    parser.add_argument("--keep-work", action="store_true", help="keep logs and databases")
    return parser


def _committed_kind(parser: argparse.ArgumentParser, args: argparse.Namespace) -> bool:
    """Whether this is the run `make bench` makes: every scenario, every setting at its default."""
    varied = [name for name in ("scenarios", "latency_ms", "burst_handoffs", "burst_per_minute", "burst_cap_s",
                                "quick") if getattr(args, name) != parser.get_default(name)]
    return not varied


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.scenarios.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; choose from {list(SCENARIOS)}")
    if args.out is None:  # a partial or re-tuned run must not overwrite the committed results
        args.out = HERE if _committed_kind(parser, args) else HERE / "out"

    work = Path(tempfile.mkdtemp(prefix="connector-bench-"))
    cfg = Config(work=work, latency_ms=args.latency_ms, burst_handoffs=args.burst_handoffs,
                 burst_per_minute=args.burst_per_minute, burst_cap_s=args.burst_cap_s,
                 log=lambda line: print(line, flush=True))
    if args.quick:
        quick(cfg)
    started, begin = dt.datetime.now(dt.UTC), time.perf_counter()
    cpu_before = report.cpu_snapshot()
    outcomes: dict[str, Outcome] = {}
    failed = False
    try:
        for name in chosen:
            print(f"[{time.perf_counter() - begin:5.0f} s] scenario {name} …", flush=True)
            try:
                outcomes[name] = SCENARIOS[name](cfg)
            except Exception as err:  # report it in RESULTS.md and go on with the next one
                failed = True
                traceback.print_exc()
                outcomes[name] = Outcome(rows=[Row(name, "scenario failed", "—", f"{type(err).__name__}: {err}"[:200],
                                                   "—", "—", "miss")])
            for row in outcomes[name].rows:
                print(f"    {row.measure}: {row.baseline} → {row.connector} ({row.ratio}) {row.verdict}", flush=True)
        args.out.mkdir(parents=True, exist_ok=True)
        series = {k: v for outcome in outcomes.values() for k, v in outcome.series.items()}
        png = args.out / "latency.png"
        plotted = report.plot(series, png)
        command = "make bench" if not args.quick and set(chosen) == set(SCENARIOS) else \
            "python -m bench.run " + " ".join(argv if argv is not None else sys.argv[1:])
        text = report.render(cfg, outcomes, started, time.perf_counter() - begin, png.name if plotted else None,
                             command, report.cpu_share(cpu_before, report.cpu_snapshot()))
        (args.out / "RESULTS.md").write_text(text, encoding="utf-8")
        (args.out / "results.json").write_text(json.dumps(report.facts(outcomes), indent=1, default=str))
        print(f"[{time.perf_counter() - begin:5.0f} s] wrote {args.out / 'RESULTS.md'}", flush=True)
    finally:
        if args.keep_work:
            print(f"scratch kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
