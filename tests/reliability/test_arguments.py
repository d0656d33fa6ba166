"""Every command refuses a bad argument up front: one line, exit code 2, nothing written or
deleted (the world's raw, preprocessed and results folders are compared file by file)."""

from __future__ import annotations

import pytest

from .conftest import check_refused

TRAIN = ["-d", "REL", "-c", "3d", "--epochs", "1", "--iters-per-epoch", "1", "--num-workers", "0"]

CASES = [
    # (id, command, argv, keywords)
    ("train-lr-nan", "train", [*TRAIN, "--lr", "nan"], ["--lr", "finite"]),
    ("train-lr-inf", "train", [*TRAIN, "--lr", "inf"], ["--lr", "finite"]),
    ("train-lr-negative", "train", [*TRAIN, "--lr", "-0.1"], ["--lr", "greater than 0"]),
    ("train-batch-size-negative", "train", [*TRAIN, "--batch-size", "-3"], ["--batch-size", "at least 1"]),
    ("train-epochs-0", "train", [*TRAIN[:4], "--epochs", "0"], ["--epochs", "at least 1"]),
    ("train-iters-0", "train", [*TRAIN, "--iters-per-epoch", "0"], ["--iters-per-epoch", "at least 1"]),
    ("train-val-iters-0", "train", [*TRAIN, "--val-iters", "0"], ["--val-iters", "at least 1"]),
    ("train-epochs-not-int", "train", [*TRAIN, "--epochs", "abc"], ["--epochs", "invalid int"]),
    ("train-fold-abc", "train", [*TRAIN, "-f", "abc"], ["fold abc"]),
    ("train-fold-7", "train", [*TRAIN, "-f", "7"], ["fold 7"]),
    ("train-fold-negative", "train", [*TRAIN, "-f", "-1"], ["fold -1"]),
    ("train-fraction-0", "train", [*TRAIN, "-frac", "0"], ["-frac", "(0, 1]"]),
    ("train-fraction-1.5", "train", [*TRAIN, "-frac", "1.5"], ["1.5", "(0, 1]"]),
    ("train-fraction-nan", "train", [*TRAIN, "-frac", "nan"], ["nan", "(0, 1]"]),
    ("train-seed-negative", "train", [*TRAIN, "--seed", "-1"], ["--seed", "at least 0"]),
    ("train-workers-negative", "train", [*TRAIN, "--num-workers", "-1"], ["--num-workers", "at least 0"]),
    ("train-checkpoint-every-0", "train", [*TRAIN, "--checkpoint-every", "0"], ["--checkpoint-every"]),
    ("train-checkpoint-minutes-0", "train", [*TRAIN, "--checkpoint-minutes", "0"], ["--checkpoint-minutes"]),
    ("train-pretrain-lr-nan", "train", [*TRAIN, "--pretrain-lr", "nan"], ["--pretrain-lr"]),
    ("train-device", "train", [*TRAIN, "--device", "gpu7"], ["--device", "gpu7"]),
    ("train-dataset-escapes", "train", ["-d", "../raw/REL"], ["plain dataset name", "../raw/REL"]),
    ("train-dataset-absolute", "train", ["-d", "/etc"], ["plain dataset name"]),
    ("train-tag-escapes", "train", [*TRAIN, "--tag", "../../x"], ["--tag", "plain run tag"]),
    ("train-config-escapes", "train", ["-d", "REL", "-c", "../3d"], ["plain configuration"]),
    ("train-plans-escapes", "train", ["-d", "REL", "-p", "../../etc/passwd"], ["plain plans name"]),
    ("train-unknown-trainer", "train", [*TRAIN, "-tr", "NoSuchTrainer"], ["unknown trainer", "NoSuchTrainer"]),
    ("train-continue-and-overwrite", "train", [*TRAIN, "--continue", "--overwrite"], ["contradict"]),
    ("train-finished-run", "train", TRAIN, ["already holds", "--continue", "--overwrite"]),
    ("train-pretrained-weights-missing", "train", [*TRAIN, "--pretrained-weights", "nope.pth"], ["nope.pth",
                                                                                                "does not exist"]),
    ("train-unknown-flag", "train", [*TRAIN, "--learning-rate", "1"], ["unrecognized", "--learning-rate"]),
    ("pretrain-epochs-0", "pretrain", ["-d", "REL", "-tr", "SurrogateFlip", "--epochs", "0"], ["--epochs", "at least 1"]),
    ("pretrain-lr-nan", "pretrain", ["-d", "REL", "-tr", "SurrogateFlip", "--lr", "nan"], ["--lr", "finite"]),
    ("pretrain-not-surrogate", "pretrain", ["-d", "REL", "-tr", "Scratch"], ["no pre-training stage"]),
    ("pretrain-iters-0", "pretrain", ["-d", "REL", "-tr", "SurrogateFlip", "--iters-per-epoch", "0"],
     ["--iters-per-epoch"]),
    ("experiment-fraction-1.5", "experiment", ["-d", "REL", "-frac", "0.5", "1.5"], ["1.5", "(0, 1]"]),
    ("experiment-fraction-twice", "experiment", ["-d", "REL", "-frac", "0.5", "0.5"], ["twice"]),
    ("experiment-fold-abc", "experiment", ["-d", "REL", "-f", "abc"], ["fold abc"]),
    ("experiment-fold-twice", "experiment", ["-d", "REL", "-f", "0", "0"], ["twice"]),
    ("experiment-unknown-trainer", "experiment", ["-d", "REL", "-tr", "Scratch", "Nope"], ["unknown trainer"]),
    ("experiment-epochs-0", "experiment", ["-d", "REL", "--epochs", "0"], ["--epochs", "at least 1"]),
    ("experiment-budget", "experiment", ["-d", "REL", "--budget", "huge"], ["invalid choice"]),
    ("plan-np-0", "plan_and_preprocess", ["-d", "REL", "-np", "0"], ["-np", "at least 1"]),
    ("plan-gpu-memory-nan", "plan_and_preprocess", ["-d", "REL", "--gpu-memory-gb", "nan"], ["--gpu-memory-gb"]),
    ("plan-cpu-seconds-0", "plan_and_preprocess", ["-d", "REL", "--cpu-seconds", "0"], ["--cpu-seconds"]),
    ("plan-cpu-gflops-negative", "plan_and_preprocess", ["-d", "REL", "--cpu-gflops", "-5"], ["--cpu-gflops"]),
    ("plan-target-spacing-0", "plan_and_preprocess",
     ["-d", "REL", "--overwrite-target-spacing", "2", "0", "1", "--plans-name", "coarse"],
     ["--overwrite-target-spacing", "greater than 0"]),
    ("plan-target-spacing-without-plans-name", "plan_and_preprocess", ["-d", "REL", "--overwrite-target-spacing",
                                                                       "2", "2", "2"], ["--plans-name"]),
    ("plan-target-spacing-2-values-for-3d", "plan_and_preprocess",
     ["-d", "REL", "--overwrite-target-spacing", "2", "2", "--plans-name", "coarse"], ["give 3 positive values"]),
    ("plan-dataset-escapes", "plan_and_preprocess", ["-d", "../raw/REL"], ["plain dataset name"]),
    ("plan-plans-name-escapes", "plan_and_preprocess", ["-d", "REL", "--plans-name", "a/b"], ["plain plans name"]),
    ("predict-step-size-0", "predict", ["-i", "{scans}", "-o", "out", "--step-size", "0"], ["--step-size"]),
    ("predict-step-size-1.5", "predict", ["-i", "{scans}", "-o", "out", "--step-size", "1.5"], ["--step-size"]),
    ("predict-fold-9", "predict", ["-i", "{scans}", "-o", "out", "-f", "9"], ["fold 9"]),
    ("predict-trainer-path", "predict", ["-i", "{scans}", "-o", "out", "-tr", "../x"], ["plain trainer name"]),
    ("predict-input-missing", "predict", ["-i", "missing_scans", "-o", "out"], ["missing_scans", "does not exist"]),
    ("predict-output-is-input", "predict", ["-i", "{scans}", "-o", "{scans}"], ["holds the input"]),
    ("predict-output-is-file", "predict", ["-i", "{scans}", "-o", "{scan_file}"], ["existing file"]),
    ("predict-root-is-file", "predict", ["-i", "{scans}", "-o", "out", "--results", "{scan_file}"],
     ["--results", "is a file"]),
    ("evaluate-missing", "evaluate", ["-pred", "nowhere", "-ref", "{scans}", "-d", "REL"], ["nowhere", "does not exist"]),
    ("evaluate-output-file", "evaluate", ["-pred", "{scans}", "-ref", "{scans}", "-d", "REL", "-o", "{scan_file}"],
     ["existing file"]),
    ("evaluate-labels-not-json", "evaluate", ["-pred", "{scans}", "-ref", "{scans}", "-l", "{scan_file}"],
     ["-l", "not a JSON object"]),
    ("convert-msd-missing", "convert_msd", ["-i", "Task99_Nowhere"], ["Task99_Nowhere", "does not exist"]),
    ("convert-msd-id-0", "convert_msd", ["-i", "{scans}", "-overwrite_id", "0"], ["--overwrite-id", "at least 1"]),
    ("convert-msd-np-0", "convert_msd", ["-i", "{scans}", "-np", "0"], ["-np", "at least 1"]),
    ("make-example-cases-0", "make_example", ["LUNG_LOBES", "--cases", "0"], ["--cases", "at least 1"]),
]


@pytest.mark.parametrize("command,argv,keywords", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_argument_is_one_line_and_writes_nothing(env, capsys, command, argv, keywords):
    scan_file = next(env.scans.iterdir())
    argv = [a.format(scans=env.scans, scan_file=scan_file) for a in argv]
    check_refused(command, argv, capsys, *keywords, watch=[env.base])
