"""Pooling and kernel topology from spacing and patch size (the nnU-Net heuristic, own code).

An axis is pooled (stride 2) while its feature map stays >= 2 * ``min_feature_map_size`` and its
current spacing is within a factor of 2 of the finest spacing among the axes still poolable, so
an anisotropic axis is pooled only once the in-plane axes have caught up. Kernels are 1 along an
axis until its spacing is within a factor of 2 of the finest, then 3.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class Topology:
    strides: list[list[int]]  # per stage; stage 0 all ones
    kernel_sizes: list[list[int]]  # per stage
    patch_size: list[int]  # rounded up to be divisible by the total stride
    divisible_by: list[int]

    @property
    def n_stages(self) -> int:
        return len(self.strides)


def plan_topology(spacing: list[float], patch_size: list[int], min_feature_map_size: int = 4,
                  max_stages: int = 7) -> Topology:
    dim = len(spacing)
    cur_spacing = [float(s) for s in spacing]
    cur_size = [float(s) for s in patch_size]
    kernel = [3 if s / min(cur_spacing) < 2 else 1 for s in cur_spacing]
    strides = [[1] * dim]
    kernels = [list(kernel)]
    n_pool = [0] * dim
    while len(strides) < max_stages:
        poolable = [i for i in range(dim) if cur_size[i] >= 2 * min_feature_map_size]
        if not poolable:
            break
        finest = min(cur_spacing[i] for i in poolable)
        poolable = [i for i in poolable if cur_spacing[i] / finest < 2]
        if len(poolable) == 1 and cur_size[poolable[0]] < 3 * min_feature_map_size:
            break
        if not poolable:
            break
        stride = [1] * dim
        for i in poolable:
            stride[i] = 2
            n_pool[i] += 1
            cur_spacing[i] *= 2
            cur_size[i] = math.ceil(cur_size[i] / 2)
        # kernels turn to 3 once an axis' spacing is within a factor 2 of the finest
        kernel = [3 if (k == 3 or cur_spacing[d] / min(cur_spacing) < 2) else 1 for d, k in enumerate(kernel)]
        strides.append(stride)
        kernels.append(list(kernel))
    divisible = [2 ** n for n in n_pool]
    padded = [int(math.ceil(p / d) * d) for p, d in zip(patch_size, divisible)]
    return Topology(strides=strides, kernel_sizes=kernels, patch_size=padded, divisible_by=divisible)
