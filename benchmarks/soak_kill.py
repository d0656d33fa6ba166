"""Kill-anywhere soak: every long-running command is killed with SIGKILL at random moments, run
again, and must then finish with complete outputs that load, leave the user's files as they
were, and (training and pre-training, whose resume is promised bit-exact) end with the very
weights of a run that was never interrupted.

    .venv/bin/python benchmarks/soak_kill.py --kills 60 --seed 1 --out /tmp/soak.json

On a tiny dataset (3D, 8x16x16 voxels, 6 training, 2 test and 2 unlabeled cases) it runs
preprocessing, training, pre-training, prediction and a small experiment grid. Each command
gets episodes: a clean start, 1 to 3 kills (each rerun killed again), then a rerun to the end,
then the checks. A kill lands at a random moment in (0, 1.1 x the command's uninterrupted
duration), measured once per command; kills that land after the command ended are counted as
such, not as kills. The rerun is the same command; selfconfig_train's rerun carries
``--continue``, as a re-submitted job does (where the kill came before the first checkpoint it
warns and starts a new run, as nnU-Net's ``--c``). Outcomes, seeds and every failure go to ``--out``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

BIN = Path(sys.executable).parent
DATASET = "SOAK"
NO_CHECKPOINT = "no checkpoint found in"  # the warning of a rerun that starts anew


# ------------------------------------------------------------------------------------------ data

def write_tiny_dataset(raw: Path, seed: int = 0) -> Path:
    """A 3D segmentation dataset small enough that every command takes seconds."""
    from selfconfig.dataset.geometry import Geometry
    from selfconfig.dataset.io import write_image, write_segmentation

    rng = np.random.default_rng(seed)
    out = raw / DATASET
    shape = (8, 16, 16)
    geom = Geometry(spacing=(2.0, 1.0, 1.0), shape=shape, dim=3)
    idx = 0
    for split, n in (("Tr", 6), ("Ts", 2), ("Un", 2)):
        (out / f"images{split}").mkdir(parents=True, exist_ok=True)
        if split != "Un":
            (out / f"labels{split}").mkdir(parents=True, exist_ok=True)
        for _ in range(n):
            cid = f"soak_{idx:03d}"
            idx += 1
            grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")).astype(np.float32)
            centre = np.array([rng.uniform(0.3, 0.7) * s for s in shape]).reshape(3, 1, 1, 1)
            seg = (np.sqrt((((grid - centre) / np.array([2.0, 4, 4]).reshape(3, 1, 1, 1)) ** 2).sum(0)) < 1.0)
            image = (rng.normal(0, 0.3, shape) + 2 * seg).astype(np.float32) * 100
            write_image(image, geom, out / f"images{split}" / f"{cid}_0000.nii.gz")
            if split != "Un":
                write_segmentation(seg.astype(np.uint8), geom, out / f"labels{split}" / f"{cid}.nii.gz")
    (out / "dataset.json").write_text(json.dumps({
        "name": DATASET, "task": "segmentation", "dimensionality": 3, "channel_names": {"0": "CT"},
        "labels": {"background": 0, "blob": 1}, "file_ending": ".nii.gz", "numTraining": 6}, indent=2))
    return out


def tree_hashes(*folders: Path) -> dict[str, str]:
    """sha1 of every file under ``folders`` (the user's inputs: they must never change)."""
    out = {}
    for folder in folders:
        for p in sorted(Path(folder).rglob("*")):
            if p.is_file():
                out[str(p)] = hashlib.sha1(p.read_bytes()).hexdigest()
    return out


def leftovers(*folders: Path) -> list[str]:
    """Temporary files a finished command must not leave behind (an interrupted one's are
    cleaned up or overwritten by the rerun)."""
    return sorted(str(p) for f in folders if Path(f).exists() for p in Path(f).rglob(".partial-*"))


# -------------------------------------------------------------------------------------- commands

@dataclass
class Command:
    name: str
    argv: list[str]
    reset: list[str]  # paths (relative to the workdir) removed for a clean episode
    check: str  # the name of the check function
    resume_flag: str | None = None  # what a rerun after a kill carries (selfconfig_train: --continue)


def commands(work: Path) -> list[Command]:
    common = ["--no-progress", "--device", "cpu"]
    # fp32: bit-exact resume is promised in fp32 (bfloat16 autocast rounds differently run to run)
    train = ["-d", DATASET, "-c", "3d", "-f", "0", "--epochs", "4", "--iters-per-epoch", "3", "--val-iters", "1",
             "--num-workers", "0", "--checkpoint-every", "1", "--checkpoint-minutes", "0.005", "--precision", "fp32",
             *common]
    res = "results/" + DATASET
    return [
        Command("plan_and_preprocess", [str(BIN / "selfconfig_plan_and_preprocess"), "-d", DATASET, "-np", "1",
                                        "--cpu-gflops", "20", "--cpu-seconds", "0.3", "-c", "3d", "--no-progress"],
                ["preprocessed"], "check_plan"),
        Command("train", [str(BIN / "selfconfig_train"), "-tr", "Scratch", *train],
                [f"{res}/Scratch__selfconfigPlans__3d"], "check_train", resume_flag="--continue"),
        Command("pretrain", [str(BIN / "selfconfig_pretrain"), "-tr", "SurrogateFlip", "-d", DATASET, "-c", "3d",
                             "--epochs", "3", "--iters-per-epoch", "3", "--val-iters", "1", "--num-workers", "0",
                             "--checkpoint-minutes", "0.005", "--precision", "fp32", *common],
                [f"{res}/pretrain"], "check_pretrain"),
        Command("predict", [str(BIN / "selfconfig_predict"), "-i", str(work / "scans"), "-o", str(work / "pred"),
                            "-d", DATASET, "-c", "3d", "-tr", "Scratch", "-f", "0", "--no-tta", *common],
                ["pred"], "check_predict"),
        Command("grid", [str(BIN / "selfconfig_experiment"), "-d", DATASET, "-tr", "Scratch", "-frac", "0.5", "1.0",
                         "-f", "0", "--budget", "quick", "--epochs", "2", "--iters-per-epoch", "2", "-c", "3d",
                         *common], [f"{res}/Scratch__selfconfigPlans__3d__quick", f"{res}/experiment"], "check_grid"),
    ]


def env_for(work: Path) -> dict[str, str]:
    return {**os.environ, "SELFCONFIG_RAW": str(work / "raw"), "SELFCONFIG_PREPROCESSED": str(work / "preprocessed"),
            "SELFCONFIG_RESULTS": str(work / "results"), "PYTHONUNBUFFERED": "1"}


def run_to_end(cmd: list[str], work: Path, log: Path) -> tuple[int, str]:
    with open(log, "ab") as f:
        f.write(f"\n$ {' '.join(cmd)}\n".encode())
        p = subprocess.run(cmd, cwd=work, env=env_for(work), stdout=f, stderr=subprocess.PIPE)
        f.write(p.stderr)
    return p.returncode, p.stderr.decode(errors="replace")


def run_and_kill(cmd: list[str], work: Path, log: Path, after: float) -> bool:
    """Start ``cmd``, SIGKILL its whole process group after ``after`` s. True: it was killed
    while running; False: it had ended before."""
    with open(log, "ab") as f:
        f.write(f"\n$ {' '.join(cmd)}   # kill -9 after {after:.2f} s\n".encode())
        p = subprocess.Popen(cmd, cwd=work, env=env_for(work), stdout=f, stderr=f, start_new_session=True)
        try:
            p.wait(timeout=after)
            return False
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            return True


# ---------------------------------------------------------------------------------------- checks

def _load_weights(path: Path) -> dict:
    from selfconfig.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)
    if "pretrained" in ckpt:
        return ckpt["pretrained"]["state_dict"]
    return ckpt["module"]["network"]


def same_weights(a: Path, b: Path) -> bool:
    import torch

    wa, wb = _load_weights(a), _load_weights(b)
    flat_a = {k: v for k, v in wa.items() if isinstance(v, torch.Tensor)}
    flat_b = {k: v for k, v in wb.items() if isinstance(v, torch.Tensor)}
    return flat_a.keys() == flat_b.keys() and len(flat_a) > 0 and all(torch.equal(flat_a[k], flat_b[k]) for k in flat_a)


def check_plan(work: Path, ref: Path | None) -> list[str]:
    from selfconfig.plans import Plans
    from selfconfig.preprocessing import storage

    pre = work / "preprocessed" / DATASET
    if not (pre / "plans.json").is_file():
        return ["no plans.json"]
    problems = []
    try:
        Plans.load(pre / "plans.json")
        if (pre / "splits.json").exists():  # written by the first training, not by preprocessing
            json.loads((pre / "splits.json").read_text())
        json.loads((pre / "fingerprint.json").read_text())
    except Exception as e:  # noqa: BLE001 - any failure to load is a finding
        return [f"an output does not load: {type(e).__name__}: {e}"]
    cases = sorted(p.name.replace(".nii.gz", "") for p in (work / "raw" / DATASET / "labelsTr").glob("*.nii.gz"))
    folders = [f for f in pre.glob("*/train") if f.is_dir()]
    if not folders:
        problems.append("no preprocessed training folder")
    for folder in folders:
        if sorted(storage.list_cases(folder)) != cases:
            problems.append(f"{folder} holds {sorted(storage.list_cases(folder))}, not {cases}")
        for c in storage.list_cases(folder):
            try:
                storage.load_properties(folder, c)
                np.asarray(storage.load_data(folder, c, mmap=False)).sum()
                storage.load_seg(folder, c, mmap=False)
            except Exception as e:  # noqa: BLE001
                problems.append(f"preprocessed case {c} does not load: {type(e).__name__}: {e}")
            if ref is not None:
                other = ref / "preprocessed" / DATASET / folder.relative_to(pre)
                if not np.array_equal(storage.load_data(folder, c, mmap=False), storage.load_data(other, c, mmap=False)):
                    problems.append(f"preprocessed case {c} differs from an uninterrupted run's")
    if ref is not None and Plans.load(pre / "plans.json").to_dict() != \
            Plans.load(ref / "preprocessed" / DATASET / "plans.json").to_dict():
        problems.append("plans differ from an uninterrupted run's")
    return problems


def _run_dir(work: Path, tag: str = "") -> Path:
    return work / "results" / DATASET / f"Scratch__selfconfigPlans__3d{tag}" / "frac_1.0" / "fold_0"


def check_train(work: Path, ref: Path | None) -> list[str]:
    run = _run_dir(work)
    problems = []
    if not (run / "checkpoint_final.pt").is_file():
        return ["no checkpoint_final.pt"]
    try:
        _load_weights(run / "checkpoint_final.pt")
        json.loads((run / "validation" / "summary.json").read_text())
    except Exception as e:  # noqa: BLE001
        problems.append(f"an output does not load: {type(e).__name__}: {e}")
    if ref is not None and not same_weights(run / "checkpoint_final.pt", _run_dir(ref) / "checkpoint_final.pt"):
        problems.append("the resumed training's final weights differ from an uninterrupted run's")
    return problems


def check_pretrain(work: Path, ref: Path | None) -> list[str]:
    folder = work / "results" / DATASET / "pretrain" / "SurrogateFlip__selfconfigPlans__3d"
    if not (folder / "checkpoint.pt").is_file():
        return ["no pre-training checkpoint.pt"]
    problems = []
    try:
        from selfconfig.pretext.run import load_pretrained

        load_pretrained(folder / "checkpoint.pt")
        json.loads((folder / "pretrain_summary.json").read_text())
    except Exception as e:  # noqa: BLE001
        problems.append(f"an output does not load: {type(e).__name__}: {e}")
    if ref is not None:
        other = ref / "results" / DATASET / "pretrain" / "SurrogateFlip__selfconfigPlans__3d" / "checkpoint.pt"
        if not same_weights(folder / "checkpoint.pt", other):
            problems.append("the resumed pre-training's weights differ from an uninterrupted run's")
    return problems


def check_predict(work: Path, ref: Path | None) -> list[str]:
    from selfconfig.dataset.io import read_image, read_label

    problems = []
    for scan in sorted((work / "scans").glob("*.nii.gz")):
        out = work / "pred" / scan.name
        try:
            seg, g = read_label(out)
            _, gi = read_image(scan)
            if tuple(g.shape) != tuple(gi.shape):
                problems.append(f"{out.name}: shape {g.shape}, scan {gi.shape}")
            if ref is not None and not np.array_equal(seg, read_label(ref / "pred" / scan.name)[0]):
                problems.append(f"{out.name} differs from an uninterrupted run's prediction")
        except Exception as e:  # noqa: BLE001
            problems.append(f"{out.name} does not load: {type(e).__name__}: {e}")
    try:
        json.loads((work / "pred" / "prediction_info.json").read_text())
    except Exception as e:  # noqa: BLE001
        problems.append(f"prediction_info.json does not load: {type(e).__name__}: {e}")
    return problems


def check_grid(work: Path, ref: Path | None) -> list[str]:
    import pandas as pd

    folder = work / "results" / DATASET / "experiment"
    problems = []
    try:
        rows = pd.read_csv(folder / "results.csv")
        if len(rows) != 4:  # 2 fractions x (validation, test)
            problems.append(f"results.csv has {len(rows)} rows, not 4")
        (folder / "summary.md").read_text()
    except Exception as e:  # noqa: BLE001
        problems.append(f"an experiment output does not load: {type(e).__name__}: {e}")
    for frac in ("0.5", "1.0"):
        run = work / "results" / DATASET / "Scratch__selfconfigPlans__3d__quick" / f"frac_{frac}" / "fold_0"
        try:
            json.loads((run / "scores.json").read_text())
            _load_weights(run / "checkpoint_final.pt")
        except Exception as e:  # noqa: BLE001
            problems.append(f"cell frac {frac}: {type(e).__name__}: {e}")
    return problems


CHECKS = {"check_plan": check_plan, "check_train": check_train, "check_pretrain": check_pretrain,
          "check_predict": check_predict, "check_grid": check_grid}


# ----------------------------------------------------------------------------------------- soak

@dataclass
class Episode:
    command: str
    kill_times: list[float] = field(default_factory=list)
    kills: int = 0  # landed while the command ran
    ended_first: int = 0  # the command had ended before its kill time
    continue_added: int = 0  # reruns given the command's resume flag after a kill
    new_starts: int = 0  # runs after a kill that found no checkpoint (killed before the first): warned, started anew
    rerun_exit: int | None = None
    problems: list[str] = field(default_factory=list)


def prepare(work: Path, seed: int = 0) -> None:
    """The raw dataset and the scans to predict (copies of the test images)."""
    write_tiny_dataset(work / "raw", seed)
    scans = work / "scans"
    scans.mkdir(parents=True, exist_ok=True)
    for p in sorted((work / "raw" / DATASET / "imagesTs").iterdir()):
        shutil.copy(p, scans / p.name.replace("_0000", ""))


def reference(work: Path, cmds: list[Command], log: Path) -> dict[str, float]:
    """Run every command once, uninterrupted (the reference outputs and the kill-time scale)."""
    durations = {}
    for c in cmds:
        t0 = time.monotonic()
        code, err = run_to_end(c.argv, work, log)
        if code != 0:
            raise SystemExit(f"reference run of {c.name} failed ({code}): {err.strip()[-400:]}")
        durations[c.name] = time.monotonic() - t0
    return durations


def episode(c: Command, work: Path, ref: Path, duration: float, rng: random.Random, log: Path,
            kills: int) -> Episode:
    ep = Episode(c.name)
    start = log.stat().st_size if log.is_file() else 0
    for rel in c.reset:
        shutil.rmtree(work / rel, ignore_errors=True)
    before = tree_hashes(work / "raw", work / "scans")
    argv = list(c.argv)
    for _ in range(kills):
        t = rng.uniform(0.05, 1.1) * duration
        ep.kill_times.append(round(t, 3))
        if run_and_kill(argv, work, log, t):
            ep.kills += 1
        else:
            ep.ended_first += 1
        argv = _rerun_argv(c, argv, ep)
    code, err = run_to_end(argv, work, log)
    ep.rerun_exit = code
    with open(log, "rb") as f:
        f.seek(start)
        ep.new_starts = f.read().decode(errors="replace").count(NO_CHECKPOINT)
    if code != 0:
        ep.problems.append(f"the rerun exited {code}: {err.strip().splitlines()[-1] if err.strip() else ''}")
        return ep
    ep.problems += CHECKS[c.check](work, ref)
    if tree_hashes(work / "raw", work / "scans") != before:
        ep.problems.append("a file the user gave (raw dataset or scans) changed")
    left = leftovers(work / "results", work / "preprocessed", work / "pred")
    if left:
        ep.problems.append(f"temporary files left: {left[:3]}")
    locks = sorted(str(p) for f in (work / "results", work / "pred") if f.exists() for p in f.rglob(".lock"))
    if locks:
        ep.problems.append(f"run-folder locks left after a finished run: {locks[:3]}")
    return ep


def _rerun_argv(c: Command, argv: list[str], ep: Episode) -> list[str]:
    """The command to run after a kill: the same, with the command's resume flag (selfconfig_train's
    --continue; with no checkpoint yet it warns and starts a new run)."""
    if c.resume_flag and c.resume_flag not in argv:
        ep.continue_added += 1
        return argv + [c.resume_flag]
    return argv


def totals(record: dict, log: Path) -> dict:
    eps = record["episodes"]
    text = log.read_text(errors="replace") if log.is_file() else ""
    return {"kills": sum(e["kills"] for e in eps), "ended_before_kill": sum(e["ended_first"] for e in eps),
            "locks_taken_over": text.count("taking over the lock of"), "episodes": len(eps),
            "episodes_with_problems": sum(1 for e in eps if e["problems"]),
            "reruns_with_continue": sum(e["continue_added"] for e in eps),
            "new_starts_without_checkpoint": sum(e["new_starts"] for e in eps)}


def soak(work: Path, kills: int, seed: int, only: list[str] | None = None, log: Path | None = None,
         out: Path | None = None) -> dict:
    """Run the soak in ``work`` (emptied first); ``kills``: the total to aim for, spread over the
    commands. Returns the record; ``out`` receives it after every episode (a soak cut short
    keeps what it did)."""
    rng = random.Random(seed)
    if work.exists():
        shutil.rmtree(work)
    ref, live = work / "reference", work / "live"
    log = log or work / "soak.log"
    for w in (ref, live):
        prepare(w)
    wanted = [c.name for c in commands(live) if not only or c.name in only]
    needed = set(wanted) | {"plan_and_preprocess"} | ({"train"} if "predict" in wanted else set())
    durations = reference(ref, [c for c in commands(ref) if c.name in needed], log)  # plan, train, ... in order
    for c in commands(live):  # the live folder gets each command's inputs the same way
        if c.name in needed:
            run_to_end(c.argv, live, log)
    record = {"seed": seed, "durations_s": {k: round(v, 2) for k, v in durations.items()}, "episodes": []}
    cmds = [c for c in commands(live) if c.name in wanted]
    per_command = max(1, kills // len(cmds))
    for c in cmds:
        done = 0
        while done < per_command:
            k = min(rng.randint(1, 3), per_command - done)
            ep = episode(c, live, ref, durations[c.name], rng, log, k)
            done += k
            record["episodes"].append(ep.__dict__)
            record["totals"] = totals(record, log)
            if out:
                out.write_text(json.dumps(record, indent=2) + "\n")
            print(f"{c.name}: killed {ep.kills}, ended first {ep.ended_first}, --continue {ep.continue_added}, "
                  f"rerun exit {ep.rerun_exit}, problems {ep.problems or 'none'}", flush=True)
    record["totals"] = totals(record, log)
    return record


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=60, help="kills to aim for over all commands (default 60)")
    p.add_argument("--seed", type=int, default=0, help="seed of the kill moments and episode lengths")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/selfconfig_soak"))
    p.add_argument("--only", nargs="+", choices=["plan_and_preprocess", "train", "pretrain", "predict", "grid"])
    p.add_argument("--out", type=Path, help="write the record (episodes, kill moments, outcomes) here as JSON")
    args = p.parse_args(argv)
    record = soak(args.workdir, args.kills, args.seed, args.only, out=args.out)
    text = json.dumps(record, indent=2) + "\n"
    if args.out:
        args.out.write_text(text)
    t = record["totals"]
    print(f"\n{t['kills']} kills ({t['ended_before_kill']} landed after the command ended) in {t['episodes']} "
          f"episodes; {t['episodes_with_problems']} episode(s) with problems")
    return 1 if t["episodes_with_problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
