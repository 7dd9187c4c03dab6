"""The CPU memory meter: counts what autograd saves, frees it when autograd does, changes no gradient."""

import torch

from nasbench_repro.meters import SavedTensorMeter


def graph(x, weight, arch):
    """A weight-only stem (off the path to `arch`) feeding an arch-weighted head, like a supernet."""
    stem = torch.relu(x @ weight).sigmoid()  # sigmoid saves its output, the case that can tie a cycle
    return torch.tanh(stem * arch).sum()


def test_gradients_are_unchanged_and_saved_bytes_are_counted():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(32, 16, generator=generator)
    weight = torch.randn(16, 16, generator=generator, requires_grad=True)
    arch = torch.randn(16, generator=generator, requires_grad=True)
    meter = SavedTensorMeter()
    with meter.track():
        measured = torch.autograd.grad(graph(x, weight, arch), [weight, arch])
    expected = torch.autograd.grad(graph(x, weight, arch), [weight, arch])
    assert all(torch.equal(one, other) for one, other in zip(measured, expected, strict=True))
    assert meter.peak >= 3 * 32 * 16 * 4  # at least relu's and sigmoid's outputs and the product, in float32
    assert meter.current == 0


def test_a_gradient_for_part_of_the_inputs_releases_the_whole_graph():
    """autograd.grad w.r.t. α alone never runs the stem's backward; its saved tensors must still go
    with the graph (the DARTS first-order architecture step), or every step would leak them."""
    x, weight = torch.randn(32, 16), torch.randn(16, 16, requires_grad=True)
    arch = torch.randn(16, requires_grad=True)
    meter = SavedTensorMeter()
    with meter.track():
        for _ in range(3):
            torch.autograd.grad(graph(x, weight, arch), [arch])
    assert (meter.current, len(meter._storages)) == (0, 0)
