from __future__ import annotations

import math

import torch
import torch.nn as nn

from selfconfig.networks import build_segmentation_network, init_weights_he, init_weights_xavier

from .conftest import plain_plan


def test_xavier_initialisation():
    torch.manual_seed(0)
    net = build_segmentation_network(plain_plan(3, norm="batch"))
    for m in net.modules():  # make every tensor non-default first
        for p in m.parameters(recurse=False):
            nn.init.constant_(p, 3.0)
    init_weights_xavier(net)
    convs = [m for m in net.modules() if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d))]
    assert convs
    for m in convs:
        w = m.weight
        receptive = w[0, 0].numel()
        fan_in, fan_out = w.shape[1] * receptive, w.shape[0] * receptive
        if isinstance(m, nn.ConvTranspose3d):
            fan_in, fan_out = fan_out, fan_in
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        assert w.abs().max() <= bound and w.abs().max() > 0.5 * bound
        assert torch.all(m.bias == 0)
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm3d)]
    assert norms and all(torch.all(m.weight == 1) and torch.all(m.bias == 0) for m in norms)


def test_he_initialisation_zeroes_biases():
    net = init_weights_he(build_segmentation_network(plain_plan(2)))
    assert all(torch.all(m.bias == 0) for m in net.modules() if isinstance(m, nn.Conv2d))
    std = net.encoder.stages[1][0].conv.weight.std().item()
    fan_in = 4 * 9
    assert 0.5 < std / math.sqrt(2.0 / (1 + 0.01**2) / fan_in) < 1.5
