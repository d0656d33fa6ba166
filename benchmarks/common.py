"""Shared helpers for the side-by-side benchmarks (selfconfig vs nnU-Net v2).

Why a module of our own: both tools start worker processes (selfconfig's spawn pool, nnU-Net's
multiprocessing pools and its resource tracker), so the peak memory of a command is the peak of the
*sum* over its whole process tree, which ``/usr/bin/time -v`` (largest single process) does not give.
We sample the tree from ``/proc`` every 50 ms: no new dependency (no psutil), and no cgroup, because
this machine has only a cgroup-v1 memory controller owned by the sandbox.

Standard library only (plus selfconfig's dataset generator, imported lazily), so the scripts run
with the selfconfig virtualenv's python and call nnU-Net through its own virtualenv's executables.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
NNUNET_VENV = Path(os.environ.get("NNUNET_VENV", "/work/nnunet_venv"))
NNUNET_DATASET_ID = 501
NNUNET_DATASET_NAME = f"Dataset{NNUNET_DATASET_ID}_LungLobes"
SELFCONFIG_DATASET_NAME = "LUNG_LOBES"
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
MB = 1024 * 1024


# ----------------------------------------------------------------------------------- executables
def selfconfig_exe(name: str) -> str:
    """A selfconfig console script: next to the running python first (the .venv), else on PATH."""
    here = Path(sys.executable).parent / name
    if here.is_file():
        return str(here)
    found = shutil.which(name)
    if not found:
        sys.exit(f"{name} not found next to {sys.executable} or on PATH; run the benchmarks with the "
                 f"python of the virtualenv where selfconfig is installed (pip install -e .)")
    return found


def nnunet_exe(name: str) -> str:
    return str(NNUNET_VENV / "bin" / name)


def nnunet_missing_reason() -> str | None:
    """None when nnU-Net v2 is usable, else a one-line reason with the fix."""
    probe = NNUNET_VENV / "bin" / "nnUNetv2_plan_and_preprocess"
    if not probe.is_file():
        return (f"nnU-Net v2 not found at {NNUNET_VENV} (no {probe.name}); create it with "
                f"`bash benchmarks/nnunet_env.sh` or point NNUNET_VENV at an existing one")
    return None


def nnunet_env(raw: Path, preprocessed: Path, results: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(nnUNet_raw=str(raw), nnUNet_preprocessed=str(preprocessed), nnUNet_results=str(results))
    return env


def selfconfig_env(raw: Path, preprocessed: Path, results: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(SELFCONFIG_RAW=str(raw), SELFCONFIG_PREPROCESSED=str(preprocessed), SELFCONFIG_RESULTS=str(results))
    return env


# ----------------------------------------------------------------------------------- memory sampling
def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (all its threads), from /proc/PID/task/TID/children."""
    out: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out.extend(int(x) for x in f.read().split())
        except OSError:
            continue
    return out


def _children_by_scan(pid: int) -> list[int]:
    """Fallback for kernels without CONFIG_PROC_CHILDREN: scan every /proc/PID/stat for its parent."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # field 4 (ppid) comes after the ')' that closes the command name
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            out.append(int(name))
    return out


_HAS_CHILDREN_FILE = os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children")


def process_tree(root: int) -> list[int]:
    """``root`` and all its live descendants."""
    find = _children if _HAS_CHILDREN_FILE else _children_by_scan
    seen, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.append(pid)
        todo.extend(find(pid))
    return seen


def _rss_pss(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in bytes of one process; (0, 0) when it has gone. PSS from smaps_rollup shares
    each shared page between the processes that map it, so summed PSS does not double count."""
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/statm") as f:
            rss = int(f.read().split()[1]) * PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return 0, 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError):
        pss = rss
    return rss, pss


class TreeMemorySampler(threading.Thread):
    """Samples the summed RSS and PSS of a process tree every ``interval`` s; keeps the peaks."""

    def __init__(self, root_pid: int, interval: float = 0.05):
        super().__init__(daemon=True)
        self.root_pid = root_pid
        self.interval = interval
        self.peak_rss = 0
        self.peak_pss = 0
        self.max_processes = 0
        self.samples = 0
        self._stop_event = threading.Event()

    def sample(self) -> None:
        pids = process_tree(self.root_pid)
        rss = pss = 0
        for pid in pids:
            r, p = _rss_pss(pid)
            rss += r
            pss += p
        self.peak_rss = max(self.peak_rss, rss)
        self.peak_pss = max(self.peak_pss, pss)
        self.max_processes = max(self.max_processes, len(pids))
        self.samples += 1

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.sample()
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


# ----------------------------------------------------------------------------------- running commands
@dataclass
class Measurement:
    """One timed command. Memory in MB (2^20 bytes)."""

    label: str
    cmd: list[str]
    wall_s: float
    peak_tree_rss_mb: float
    peak_tree_pss_mb: float
    max_single_rss_mb: float  # largest single process (wait4 ru_maxrss): what /usr/bin/time -v reports
    max_processes: int
    returncode: int
    log: str
    extra: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def run_measured(label: str, cmd: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
                 log: Path, timeout: float | None = None, interval: float = 0.05) -> Measurement:
    """Run ``cmd`` in a fresh process (its own session), timing it and sampling its tree's memory.

    Output goes to ``log``. On timeout the whole process group is killed and returncode is -9.
    Sampling every ``interval`` s walks /proc and costs CPU (at 0.05 s about 40 % of a core with a
    multi-process training run): use a long interval for long runs whose memory is not the point.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        out.write("$ " + shlex.join(cmd) + "\n")
        out.flush()
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        sampler = TreeMemorySampler(proc.pid, interval)
        sampler.start()
        timer = None
        if timeout:
            timer = threading.Timer(timeout, _kill_group, args=(proc.pid,))
            timer.start()
        # wait4 instead of Popen.wait: it also gives the rusage (max RSS of the largest process)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if timer:
            timer.cancel()
        sampler.stop()
        if proc.returncode != 0:
            _kill_group(proc.pid)  # stray workers of a failed run must not run into the next measurement
    return Measurement(label=label, cmd=cmd, wall_s=wall, peak_tree_rss_mb=sampler.peak_rss / MB,
                       peak_tree_pss_mb=sampler.peak_pss / MB, max_single_rss_mb=usage.ru_maxrss / 1024,
                       max_processes=sampler.max_processes, returncode=proc.returncode, log=str(log))


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_checked(cmd: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None, log: Path,
                what: str) -> None:
    """Run a set-up step (not timed); on failure exit with the log's tail."""
    m = run_measured(what, cmd, env=env, cwd=cwd, log=log)
    if not m.ok:
        fail(what, m)


def fail(what: str, m: Measurement) -> None:
    tail = Path(m.log).read_text().splitlines()[-25:]
    sys.exit(f"{what} failed (exit {m.returncode}); see {m.log}:\n" + "\n".join(tail))


def run_step(step: str, cmd: list[str], env: dict, work: Path) -> float:
    """Run one step of a benchmark (its output in WORK/STEP.log); its wall seconds, or exit with the
    log's tail. Memory is sampled every 10 s, not every 50 ms: at 50 ms the sampler's walks of /proc
    took about 40 % of a core and slowed the run it was timing."""
    m = run_measured(step, cmd, env=env, log=work / f"{step}.log", interval=10.0)
    if not m.ok:
        fail(step, m)
    return round(m.wall_s, 1)


def test_row(results_csv: Path, fraction: float, fold: int | str = 0, strategy: str = "Scratch") -> dict:
    """The test row of one cell of an experiment's results.csv (KeyError when it has none)."""
    with open(results_csv) as f:
        for row in csv.DictReader(f):
            if (row["strategy"] == strategy and math.isclose(float(row["fraction"]), fraction)
                    and str(row["fold"]) == str(fold) and row["split"] == "test"):
                return row
    raise KeyError(f"{results_csv}: no test row for {strategy} at fraction {fraction:g}, fold {fold}")


# ----------------------------------------------------------------------------------- statistics / output
def median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v: float | None, digits: int = 1) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def fmt_ratio(a: float | None, b: float | None) -> str:
    """``a / b`` as ``0.58x``; ``n/a`` when either is missing."""
    r = ratio(a, b)
    return "n/a" if r is None else f"{r:.2f}x"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def machine_info() -> dict:
    """What the numbers were measured on (they mean little without it)."""
    info: dict = {"cpus": os.cpu_count(), "python": sys.version.split()[0], "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    try:
        info["loadavg_1_5_15"] = [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return info


def write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=_jsonable) + "\n")


def _jsonable(o):
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "__dataclass_fields__"):
        return asdict(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


# ----------------------------------------------------------------------------------- datasets
def make_lung_lobes(raw_root: Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    """The selfconfig raw dataset ``raw_root/LUNG_LOBES`` with ``n_train`` labeled and ``n_test`` test
    cases and no unlabeled ones; reused when it already has exactly those cases (generation takes
    about a second per case)."""
    out = raw_root / SELFCONFIG_DATASET_NAME
    meta = out / "dataset.json"
    if meta.is_file():
        d = json.loads(meta.read_text())
        wanted = (n_train, n_test, 0, seed)
        if (d.get("numTraining"), d.get("numTest"), d.get("numUnlabeled"), d.get("bench_seed")) == wanted \
                and len(list((out / "imagesTr").glob("*.nii.gz"))) == n_train \
                and len(list((out / "imagesTs").glob("*.nii.gz"))) == n_test:
            return out
    from selfconfig.examples.lung_lobes import generate

    print(f"generating {n_train} training + {n_test} test LUNG_LOBES cases in {out} ...", file=sys.stderr)
    generate(out, n_train=n_train, n_test=n_test, n_unlabeled=0, seed=seed)
    d = json.loads(meta.read_text())
    d["bench_seed"] = seed  # an extra key: selfconfig ignores it, and it tells us when to regenerate
    meta.write_text(json.dumps(d, indent=2) + "\n")
    return out


def make_nnunet_dataset(selfconfig_raw: Path, nnunet_raw_root: Path) -> Path:
    """``nnunet_raw_root/Dataset501_LungLobes``: the same training images and labels (hard links, or
    copies across file systems) and the dataset.json keys nnU-Net v2 reads."""
    src_meta = json.loads((selfconfig_raw / "dataset.json").read_text())
    out = nnunet_raw_root / NNUNET_DATASET_NAME
    if out.exists():
        shutil.rmtree(out)
    for sub in ("imagesTr", "labelsTr"):
        (out / sub).mkdir(parents=True)
        for f in sorted((selfconfig_raw / sub).glob("*.nii.gz")):
            try:
                os.link(f, out / sub / f.name)
            except OSError:
                shutil.copy2(f, out / sub / f.name)
    meta = {
        "channel_names": src_meta["channel_names"],
        "labels": src_meta["labels"],
        "numTraining": len(list((out / "labelsTr").glob("*.nii.gz"))),
        "file_ending": src_meta.get("file_ending", ".nii.gz"),
        "name": NNUNET_DATASET_NAME,
        "description": "copy of selfconfig's SYNTHETIC LUNG_LOBES training cases for side-by-side benchmarks",
    }
    (out / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out


def fresh_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path
