"""Check a workflow run made through SLURM against a local run of the same images.

Usage: compare_slurm_run.py LOCAL_OUT SLURM_OUT SLURMD_LOG

Passes when every job that is not a local rule was submitted with sbatch and launched
by slurmd, and when these tables of both runs are equal: the per-image tile tables
(tables/tiles/*.parquet), the merged tile table (tables/tiles.parquet), images.tsv and
conditions.tsv. In the TSV files the timing column elapsed_s (of images.tsv) is left
out and the results folder in text is replaced by OUT. The tile tables contain no
timings or paths, so they are compared as they are.
Prints name: value lines and exits 1 on a mismatch.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pandas as pd

# Rules whose jobs must run on the cluster; the others are local rules.
CLUSTER_RULES = ("label_shard",)
TIMING_COLUMNS = ["elapsed_s"]
COMPARED_RUN_TABLES = ("images.tsv", "conditions.tsv", "tables/tiles.parquet")


def snakemake_log(out: Path) -> str:
    logs = sorted((out / ".snakemake" / "log").glob("*.snakemake.log"))
    if not logs:
        raise SystemExit(f"no snakemake log in {out / '.snakemake' / 'log'}")
    return logs[-1].read_text(encoding="utf-8")


def submitted_jobs(text: str) -> dict[str, str]:
    """Return {snakemake rule job description: SLURM job id} from a snakemake log."""
    pattern = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+)")
    return {match.group(1): match.group(2) for match in pattern.finditer(text)}


def count_rule_jobs(text: str) -> int:
    """Return how many jobs of the cluster rules the log lists."""
    return sum(len(re.findall(rf"^rule {name}:", text, flags=re.MULTILINE)) for name in CLUSTER_RULES)


def launched_job_ids(slurmd_log: Path) -> set[str]:
    text = slurmd_log.read_text(encoding="utf-8", errors="replace")
    ids = set(re.findall(r"Launching batch job (\d+)", text))
    ids |= set(re.findall(r"launch task StepId=(\d+)\.", text))
    ids |= set(re.findall(r"_run_prolog: prolog with lock for job (\d+)", text))
    return ids


def first_difference(name: str, left: pd.DataFrame, right: pd.DataFrame) -> list[str]:
    """Return [] when the frames are equal, else one problem line naming the table."""
    try:
        pd.testing.assert_frame_equal(left, right)
    except AssertionError as exc:
        return [f"{name} differs: {' '.join(str(exc).split())[:300]}"]
    return []


def read_tsv(out: Path, name: str) -> pd.DataFrame:
    """Read a run-level TSV without timings, with the results folder in text replaced by OUT."""
    table = pd.read_csv(out / name, sep="\t", keep_default_na=False).drop(columns=TIMING_COLUMNS, errors="ignore")
    for column in table.columns:
        table[column] = table[column].astype(str).str.replace(str(out), "OUT", regex=False)
    return table


def compare_tables(local: Path, slurm: Path) -> list[str]:
    problems = []
    local_tiles = sorted(p.name for p in (local / "tables" / "tiles").glob("*.parquet"))
    slurm_tiles = sorted(p.name for p in (slurm / "tables" / "tiles").glob("*.parquet"))
    if local_tiles != slurm_tiles:
        problems.append(f"tile tables differ in names: {local_tiles} vs {slurm_tiles}")
    for name in local_tiles:
        if name not in slurm_tiles:
            continue
        frames = [pd.read_parquet(out / "tables" / "tiles" / name) for out in (local, slurm)]
        problems += first_difference(f"tables/tiles/{name}", *frames)
    for name in COMPARED_RUN_TABLES:
        missing = [str(out / name) for out in (local, slurm) if not (out / name).is_file()]
        if missing:
            problems.append(f"{name} not found: {', '.join(missing)}")
            continue
        if name.endswith(".parquet"):
            frames = [pd.read_parquet(out / name) for out in (local, slurm)]
        else:
            frames = [read_tsv(out, name) for out in (local, slurm)]
        problems += first_difference(name, *frames)
    return problems


def main(argv: list[str]) -> int:
    local, slurm, slurmd_log = Path(argv[1]), Path(argv[2]), Path(argv[3])
    text = snakemake_log(slurm)
    submitted = submitted_jobs(text)
    expected = count_rule_jobs(text)
    launched = launched_job_ids(slurmd_log)
    not_launched = sorted(set(submitted.values()) - launched)
    problems = compare_tables(local, slurm)
    if len(submitted) != expected or expected == 0:
        problems.append(f"{len(submitted)} SLURM submissions for {expected} jobs of {', '.join(CLUSTER_RULES)}")
    if not_launched:
        problems.append(f"SLURM jobs not launched by slurmd: {', '.join(not_launched)}")
    print(f"slurm_jobs_submitted: {len(submitted)}")
    print(f"cluster_rule_jobs: {expected}")
    print(f"slurm_jobs_launched_by_slurmd: {len(set(submitted.values()) & launched)}")
    print(f"tile_tables_compared: {len(list((local / 'tables' / 'tiles').glob('*.parquet')))}")
    print(f"run_tables_compared: {', '.join(COMPARED_RUN_TABLES)}")
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
