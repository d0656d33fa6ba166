"""Run folders: the path a run is written to, read back into what made it."""

from __future__ import annotations

from pathlib import Path

from selfconfig.paths import Roots, parse_run_dir, run_dir, train_command_line


def test_a_run_folder_reads_back_into_its_run(tmp_path):
    roots = Roots(tmp_path / "raw", tmp_path / "pre", tmp_path / "res")
    for args in [("Scratch", "selfconfigPlans", "3d_lowres", 0.25, 0, ""),
                 ("SurrogateFlip", "myPlans", "3d_cascade_fullres", 1.0, "all", "quick")]:
        trainer, plans, config, fraction, fold, tag = args
        loc = parse_run_dir(run_dir(roots, "D", trainer, plans, config, fraction, fold, tag))
        assert (loc.trainer, loc.plans, loc.configuration, loc.fraction, loc.fold, loc.tag) == \
            (trainer, plans, config, fraction, str(fold), tag)
    assert parse_run_dir(tmp_path / "not" / "a" / "run") is None
    assert parse_run_dir(Path("A__b__3d/frac_x/fold_0")) is None


def test_the_train_command_names_only_what_differs_from_the_defaults():
    assert train_command_line("D", "3d", "Scratch", 0.25, "0") == "selfconfig_train -d D -c 3d -tr Scratch -frac 0.25 -f 0"
    assert train_command_line("D", "3d", "Scratch", 1.0, "1", "myPlans", "quick") == \
        "selfconfig_train -d D -c 3d -tr Scratch -frac 1 -f 1 -p myPlans --tag quick"
