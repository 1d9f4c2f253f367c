"""Offline math benchmarks (MATH500, AIME 2024/2025, AMC 2023, GSM8K, OlympiadBench) and prompts."""
from a1.data.datasets import (
    CALIBRATION_FRACTION,
    DATASETS,
    SPLITS,
    Problem,
    dataset_path,
    is_calibration,
    load_dataset,
    load_jsonl,
    select_split,
)
from a1.data.prompts import FAMILIES, family_of, format_prompt

__all__ = [
    "CALIBRATION_FRACTION",
    "DATASETS",
    "FAMILIES",
    "SPLITS",
    "Problem",
    "dataset_path",
    "family_of",
    "format_prompt",
    "is_calibration",
    "load_dataset",
    "load_jsonl",
    "select_split",
]
