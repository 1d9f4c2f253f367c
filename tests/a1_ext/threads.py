"""Run an op on a chosen number of torch threads, restoring the setting afterwards."""
from typing import Callable, TypeVar

import torch

T = TypeVar("T")


def on_threads(count: int, fn: Callable[[], T]) -> T:
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(count)
        return fn()
    finally:
        torch.set_num_threads(previous)
