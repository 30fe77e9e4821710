"""K same-shape MLPs evaluated as one batched computation (PyTorch's model-ensembling recipe, by hand).

Each member is an ordinary `build_mlp` network, built under its own seed, so its initial weights are
those a run trained alone starts from, and it is logged afterwards as that run's model. The forward
pass stacks the members' weights layer by layer (`torch.stack` keeps the gradient path to each
member's own parameters) and runs one batched matmul (`baddbmm`) per layer instead of K small ones.

Randomness a run draws while training (input noise, dropout masks) comes from one generator per member,
started from the state the global generator of a run trained alone has after building its network, and
drawn with the same kernels in the same order; on CPU the masks are then those the member would have
drawn alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def _layers(member: nn.Sequential) -> list[nn.Module]:
    """A member's layers without dropout (whose rate differs per member; it is applied here instead)."""
    return [layer for layer in member if not isinstance(layer, nn.Dropout)]


class PopulationNet(nn.Module):
    """`members[k]` trained as member k; `dropouts[k]` and `input_noise[k]` are its regularization rates."""

    def __init__(self, members: Sequence[nn.Sequential], dropouts: Sequence[float], input_noise: Sequence[float],
                 generators: Sequence[torch.Generator], seeds: Sequence[int]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.dropouts = [float(p) for p in dropouts]
        self.input_noise = [float(s) for s in input_noise]
        self.generators = list(generators)
        # Off the CPU a member's draws cannot follow a run alone (CUDA's dropout is a fused kernel of
        # its own); there each member gets a device generator seeded with its seed.
        self._seeds = [int(seed) for seed in seeds]
        self._device_generators: dict[tuple[str, int], torch.Generator] = {}
        shapes = {tuple(type(layer).__name__ for layer in _layers(m)) for m in members}
        if len(shapes) != 1:
            raise ValueError("population members must share one architecture")
        self._layer_lists = [_layers(m) for m in members]

    def __len__(self) -> int:
        return len(self.members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`x`: [K, B, D] (each member its own batch) or [N, D] (one batch for all); returns [K, B, out]."""
        k = len(self.members)
        h = x if x.dim() == 3 else x.unsqueeze(0).expand(k, *x.shape)
        if self.training and any(std > 0 for std in self.input_noise):
            h = torch.stack([self._noise(m, h[m]) for m in range(k)])  # the input: no gradient through it
        depth = len(self._layer_lists[0])
        for index in range(depth):
            layer = self._layer_lists[0][index]
            if isinstance(layer, nn.Linear):
                weight = torch.stack([layers[index].weight for layers in self._layer_lists])
                bias = torch.stack([layers[index].bias for layers in self._layer_lists])
                h = torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2))
            elif isinstance(layer, nn.BatchNorm1d | nn.LayerNorm):
                # Per member: batch statistics (and running ones) belong to each member alone.
                h = torch.stack([layers[index](h[m]) for m, layers in enumerate(self._layer_lists)])
            else:  # an activation: elementwise and without parameters, the same for every member
                h = layer(h)
                if self.training and index < depth - 1 and any(p > 0 for p in self.dropouts):
                    # One product with every member's mask: slicing `h` per member would cost each
                    # member's slice a full-size gradient buffer in the backward pass.
                    h = h * torch.stack([self._dropout_mask(m, h) for m in range(k)])
        return h

    def _generator(self, m: int, device: torch.device) -> torch.Generator:
        if device.type == "cpu":
            return self.generators[m]
        key = (device.type, m)
        if key not in self._device_generators:
            self._device_generators[key] = torch.Generator(device=device).manual_seed(self._seeds[m])
        return self._device_generators[key]

    def _noise(self, m: int, x: torch.Tensor) -> torch.Tensor:
        std = self.input_noise[m]
        if std <= 0:
            return x
        # `x + std * torch.randn_like(x)` of a run alone, from the member's generator.
        return x + std * torch.randn(x.shape, generator=self._generator(m, x.device), device=x.device, dtype=x.dtype)

    def _dropout_mask(self, m: int, h: torch.Tensor) -> torch.Tensor:
        """Member m's mask for its slice of `h` [K, B, D]: ones without dropout (`x * 1` is `x`, and so is
        its gradient), else what `F.dropout` multiplies by on CPU, a Bernoulli(1 - p) mask scaled by
        1 / (1 - p), drawn from the member's generator."""
        p = self.dropouts[m]
        if p <= 0:
            return torch.ones(h.shape[1:], dtype=h.dtype, device=h.device)
        mask = torch.empty(h.shape[1:], dtype=h.dtype, device=h.device)
        return mask.bernoulli_(1 - p, generator=self._generator(m, h.device)).div_(1 - p)


def generator_like_global() -> torch.Generator:
    """A CPU generator in the state the global one is in now."""
    generator = torch.Generator()
    generator.set_state(torch.get_rng_state())
    return generator

