"""K same-shape MLPs evaluated as one batched computation (PyTorch's model-ensembling recipe, by hand).

Each member is an ordinary `build_mlp` network, built under its own seed, so its initial weights are
those a run trained alone starts from, and it is logged afterwards as that run's model. As in PyTorch's
recipe (`torch.func.stack_module_state`), the members' Linear weights and biases are trained as stacked
parameters, [K, out, in] per layer, one set per optimizer group (members with the same optimizer
options, contiguous: a parameter group needs tensors of its own); each layer is one batched matmul
(`baddbmm`) instead of K small ones, and the optimizer steps a few stacked tensors instead of K times as
many small ones. Norm layers stay in each member's network (their statistics are each member's own).
`export_members` writes the trained weights back into the members' networks.

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
    """`members[k]` trained as member k; `dropouts[k]` and `input_noise[k]` are its regularization rates;
    `groups[k]` its optimizer group (equal groups contiguous; default: one group)."""

    def __init__(self, members: Sequence[nn.Sequential], dropouts: Sequence[float], input_noise: Sequence[float],
                 generators: Sequence[torch.Generator], seeds: Sequence[int],
                 groups: Sequence[int] | None = None) -> None:
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
        # Each member's layers' names in its network (state-dict prefixes; a member's dropout layers, which
        # others may not have, are skipped).
        self._names = [[name for name, layer in m.named_children() if not isinstance(layer, nn.Dropout)]
                       for m in members]
        self.group_bounds = group_runs(list(groups) if groups is not None else [0] * len(members))
        self._linear = [i for i, layer in enumerate(self._layer_lists[0]) if isinstance(layer, nn.Linear)]
        if any(self._layer_lists[0][i].bias is None for i in self._linear):
            raise ValueError("population members' Linear layers must have biases")
        # stacked[(group, layer, "weight" | "bias")]: the group's members' tensors, [n, out, in] / [n, out].
        self.stacked = nn.ParameterDict({
            _key(g, i, name): nn.Parameter(torch.stack([getattr(self._layer_lists[m][i], name).detach()
                                                        for m in range(start, end)]).clone())
            for g, (start, end) in enumerate(self.group_bounds) for i in self._linear for name in ("weight", "bias")})
        # The members' own Linear weights take no part in training (the stacked ones do) until
        # `export_members` writes the trained weights back into them.
        for layers in self._layer_lists:
            for i in self._linear:
                layers[i].requires_grad_(False)

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
                h = torch.baddbmm(self._all(index, "bias").unsqueeze(1), h, self._all(index, "weight").transpose(1, 2))
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

    # -- the stacked parameters, by member ---------------------------------------------------------
    def group_parameters(self, group: int) -> list[nn.Parameter]:
        """What optimizer group `group` trains: its stacked Linear parameters and its members' norm layers'."""
        start, end = self.group_bounds[group]
        own = [self.stacked[_key(group, i, name)] for i in self._linear for name in ("weight", "bias")]
        return own + [p for m in range(start, end) for p in self.norm_parameters(m)]

    def norm_parameters(self, m: int) -> list[nn.Parameter]:
        return [p for i, layer in enumerate(self._layer_lists[m]) if i not in self._linear for p in layer.parameters()]

    def member_state(self, m: int) -> dict[str, torch.Tensor]:
        """Member m's weights as its own network's state dict (copies)."""
        slices = {f"{self._names[m][i]}.{name}": self._slice(m, i, name) for i in self._linear
                  for name in ("weight", "bias")}
        return {key: slices.get(key, value).detach().clone() for key, value in self.members[m].state_dict().items()}

    @torch.no_grad()
    def load_member_state(self, m: int, state: dict[str, torch.Tensor], linear_only: bool = False) -> None:
        """Member m back at `state` (from `member_state`): its stacked slices, and unless `linear_only`
        its network (norm layers and their statistics)."""
        if not linear_only:
            self.members[m].load_state_dict(state)
        for i in self._linear:
            for name in ("weight", "bias"):
                self._slice(m, i, name).copy_(state[f"{self._names[m][i]}.{name}"])

    @torch.no_grad()
    def export_members(self) -> None:
        """The trained Linear weights written into each member's own network (what is logged)."""
        for m, layers in enumerate(self._layer_lists):
            for i in self._linear:
                for name in ("weight", "bias"):
                    getattr(layers[i], name).copy_(self._slice(m, i, name))
                layers[i].requires_grad_(True)

    @torch.no_grad()
    def zero_member_grads(self, m: int) -> None:
        """Member m's slices of the stacked gradients set to 0 (a stopped member's may hold NaN)."""
        for i in self._linear:
            for name in ("weight", "bias"):
                grad = self._slice_of(m, i, name).grad
                if grad is not None:
                    grad[m - self._start(m)].zero_()

    def weight_penalties(self, l1: Sequence[float], l2: Sequence[float]) -> torch.Tensor | None:
        """Each member's `l1 * Σ|w| + l2 * Σ w²` over its Linear weights (as `regularization.weight_penalty`
        for a network alone), [K]; None when every rate is 0."""
        if not any(l1) and not any(l2):
            return None
        weights = [self._all(i, "weight") for i in self._linear]
        penalty = weights[0].new_zeros(len(self.members))
        if any(l1):
            penalty = penalty + weights[0].new_tensor(l1) * sum(w.abs().sum((1, 2)) for w in weights)
        if any(l2):
            penalty = penalty + weights[0].new_tensor(l2) * sum(w.pow(2).sum((1, 2)) for w in weights)
        return penalty

    @torch.no_grad()
    def apply_max_norm(self, m: int, max_norm: float) -> None:
        """`regularization.apply_max_norm` on member m's Linear weights."""
        for i in self._linear:
            self._slice(m, i, "weight").renorm_(p=2, dim=0, maxnorm=max_norm)

    def _all(self, index: int, name: str) -> torch.Tensor:
        parts = [self.stacked[_key(g, index, name)] for g in range(len(self.group_bounds))]
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def _slice(self, m: int, index: int, name: str) -> torch.Tensor:
        return self._slice_of(m, index, name)[m - self._start(m)]

    def _slice_of(self, m: int, index: int, name: str) -> nn.Parameter:
        """The stacked parameter that holds member m's slice."""
        return self.stacked[_key(self._group(m), index, name)]

    def _start(self, m: int) -> int:
        return self.group_bounds[self._group(m)][0]

    def _group(self, m: int) -> int:
        for g, (start, end) in enumerate(self.group_bounds):
            if start <= m < end:
                return g
        raise IndexError(m)

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


def _key(group: int, layer: int, name: str) -> str:
    return f"g{group}_{layer}_{name}"


def group_runs(groups: list[int]) -> list[tuple[int, int]]:
    """[start, end) of each run of equal group ids; each id must form one run."""
    bounds: list[tuple[int, int]] = []
    for m, group in enumerate(groups):
        if m and group == groups[m - 1]:
            bounds[-1] = (bounds[-1][0], m + 1)
        else:
            bounds.append((m, m + 1))
    if len(bounds) != len(set(groups)):
        raise ValueError("members of one optimizer group must be contiguous")
    return bounds


def generator_like_global() -> torch.Generator:
    """A CPU generator in the state the global one is in now."""
    generator = torch.Generator()
    generator.set_state(torch.get_rng_state())
    return generator

