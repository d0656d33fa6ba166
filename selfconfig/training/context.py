"""Everything a run needs to know about where it is: dataset, plans, configuration, fold,
fraction, folders and the cases it may use."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from selfconfig.data.sampler import CaseRef
from selfconfig.device import pick_device  # noqa: F401  (re-exported)
from selfconfig.data.splits import fold_cases, fraction_subset, load_or_create_splits
from selfconfig.errors import DatasetNotFoundError
from selfconfig.paths import Roots, pretrain_dir, resolve_dataset_name, run_dir
from selfconfig.planning import DEFAULT_PLANS_NAME, config_data_dir, load_plans
from selfconfig.plans import ConfigurationPlan, Plans
from selfconfig.preprocessing import storage

log = logging.getLogger(__name__)


@dataclass
class DatasetContext:
    """A preprocessed dataset with one plans file and one configuration."""

    roots: Roots
    dataset: str
    plans: Plans
    configuration: str
    tag: str = ""  # run tag: keeps runs with other settings (e.g. an experiment budget) apart

    @property
    def config(self) -> ConfigurationPlan:
        return self.plans.configuration(self.configuration)

    @property
    def preprocessed_dir(self) -> Path:
        return self.roots.preprocessed / self.dataset

    @property
    def data_dir(self) -> Path:
        return config_data_dir(self.preprocessed_dir, self.plans.plans_name, self.config.data_name)

    @property
    def task(self) -> str:
        return self.plans.task

    def split_folder(self, split: str) -> Path:
        return storage.split_dir(self.data_dir, split)

    def case_refs(self, split: str, ids: list[str] | None = None) -> list[CaseRef]:
        folder = self.split_folder(split)
        available = storage.list_cases(folder)
        if ids is not None:
            missing = sorted(set(ids) - set(available))
            if missing:
                raise DatasetNotFoundError(
                    f"{len(missing)} case(s) of the split (e.g. {missing[0]}) are not preprocessed in {folder}; "
                    f"rerun selfconfig_plan_and_preprocess -c {self.configuration}")
            available = [c for c in available if c in set(ids)]
        refs = []
        for cid in available:
            label = None
            if self.task == "classification" and split != "unlabeled":
                label = storage.load_properties(folder, cid).get("label")
            refs.append(CaseRef(str(folder), cid, label))
        return refs

    def training_labels(self) -> dict[str, int] | None:
        if self.task != "classification":
            return None
        return {r.case_id: int(r.label) for r in self.case_refs("train")}

    def training_groups(self) -> dict[str, str] | None:
        """Cases that must share a fold: the labels table's ``group_column`` (dataset.json), else
        its ``scan_id`` column when there is one."""
        if self.task != "classification":
            return None
        folder = self.split_folder("train")
        metas = {cid: storage.load_properties(folder, cid).get("meta") or {} for cid in storage.list_cases(folder)}
        column = self.dataset_json().get("group_column", "scan_id")
        if not metas or not all(column in m and m[column] is not None for m in metas.values()):
            return None
        return {cid: str(m[column]) for cid, m in metas.items()}

    def dataset_json(self) -> dict:
        import json

        path = self.preprocessed_dir / "dataset.json"
        if not path.is_file():
            return {}
        return json.loads(path.read_text())

    def splits(self) -> list[dict]:
        train_ids = storage.list_cases(self.split_folder("train"))
        if not train_ids:
            raise DatasetNotFoundError(
                f"no preprocessed training cases in {self.split_folder('train')}; run "
                f"selfconfig_plan_and_preprocess -d {self.dataset} -c {self.configuration}")
        if (self.preprocessed_dir / "splits.json").is_file():
            return load_or_create_splits(self.preprocessed_dir, train_ids)
        return load_or_create_splits(self.preprocessed_dir, train_ids, self.training_labels(), self.training_groups())

    def run_dir(self, trainer_name: str, fraction: float, fold: int | str) -> Path:
        """The folder of one run: ``results/NAME/<Trainer>__<plans>__<config>[__tag]/frac_<f>/fold_<k>``."""
        return run_dir(self.roots, self.dataset, trainer_name, self.plans.plans_name, self.configuration, fraction,
                       fold, self.tag)

    def pretrain_dir(self, strategy: str) -> Path:
        return pretrain_dir(self.roots, self.dataset, strategy, self.plans.plans_name, self.configuration, self.tag)


def open_dataset(dataset: str | int | None, configuration: str | None = None, plans_name: str = DEFAULT_PLANS_NAME,
                 roots: Roots | None = None, tag: str = "") -> DatasetContext:
    roots = roots or Roots.resolve()
    name = resolve_dataset_name(dataset, roots, need="preprocessed")
    plans = load_plans(roots.preprocessed / name, plans_name)
    configuration = configuration or plans.recommended_configuration
    plans.configuration(configuration)  # raises a clear error when unknown
    return DatasetContext(roots, name, plans, configuration, tag)


@dataclass
class RunContext:
    """One run: a dataset context plus trainer, fold and fraction."""

    data: DatasetContext
    trainer_name: str
    fold: int | str
    fraction: float
    device: torch.device
    train_ids: list[str] = field(default_factory=list)
    val_ids: list[str] = field(default_factory=list)
    progress: bool = True  # progress bars (also of a pre-training the run starts)

    @property
    def run_dir(self) -> Path:
        return self.data.run_dir(self.trainer_name, self.fraction, self.fold)

    @classmethod
    def create(cls, data: DatasetContext, trainer_name: str, fold: int | str, fraction: float,
               device: torch.device, progress: bool = True) -> "RunContext":
        splits = data.splits()
        train_all, val = fold_cases(splits, fold)
        train = fraction_subset(train_all, fraction, data.training_labels(), fold=fold)
        log.info("fold %s, fraction %g: %d of %d training case(s), %d validation case(s)",
                 fold, fraction, len(train), len(train_all), len(val))
        return cls(data, trainer_name, fold, float(fraction), device, train, val, progress)
