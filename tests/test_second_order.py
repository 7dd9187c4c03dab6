"""DARTS's second-order architecture gradient, as `BilevelSearch.arch_step` takes it mid-search,
against the exact unrolled gradient differentiated by autograd.

The exact gradient is ∇α L_val(w′(α), α) with w′ = w − ξ(μ·buffer + ∇w L_train(w, α) + λ·w): the
step the weight optimizer would take next, with its real momentum buffers, its current
(scheduled) learning rate ξ and its weight decay λ. `arch_step` approximates the Hessian-vector
product by finite differences, so the two agree to a tolerance far below what leaving out any
of the optimizer's terms would change, on a smooth supernet: ReLU and max pooling make the
α-gradient jump wherever a unit crosses zero or a pooling window changes its maximum, and
DARTS's step (ε = 0.01 / ‖∇w′ L_val‖, as the official code) crosses many such kinks on a tiny
network, which would test the finite difference, not the wiring. The test's supernet swaps
them for softplus and average pooling.
"""

import pytest
import torch
from torch import nn

from methods.darts import DARTS
from nasbench_repro.differentiable import ImageClassification
from nasbench_repro.protocol import apply_overrides, load_protocol

IMAGE_SHAPE = (3, 16, 16)
TOLERANCE = 1e-3  # relative; the finite difference's error is 4e-5 to 4e-4 here


@pytest.fixture
def float64():
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


def batch(generator, size=8):
    return (torch.randn(size, *IMAGE_SHAPE, generator=generator), torch.randint(0, 10, (size,), generator=generator))


def smooth(module: nn.Module) -> None:
    """Replace every ReLU by softplus and every max pooling by average pooling over the same window."""
    for name, child in module.named_children():
        if isinstance(child, nn.ReLU):
            setattr(module, name, nn.Softplus())
        elif isinstance(child, nn.MaxPool2d):
            setattr(
                module,
                name,
                nn.AvgPool2d(
                    child.kernel_size, child.stride, child.padding, ceil_mode=child.ceil_mode, count_include_pad=False
                ),
            )
        else:
            smooth(child)


def mid_search(seed: int):
    """A tiny second-order DARTS search after a few weight steps, its schedule two epochs in."""
    protocol = load_protocol("darts", "cifar10")
    apply_overrides(
        protocol,
        {"order": 2, "init_channels": 4, "layers": 3, "lr": 0.1, "weight_decay": 0.1, "momentum": 0.9},
        ["search"],
    )
    torch.manual_seed(seed)
    search = DARTS().build_search(protocol.phase("search"), ImageClassification(10, IMAGE_SHAPE))
    smooth(search.supernet)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(3):
        search.weight_step(batch(generator))
    search.scheduler.step()
    search.scheduler.step()
    return search, batch(generator), batch(generator)


def exact_unrolled_gradient(search, train, valid, with_momentum=True, with_weight_decay=True):
    """Autograd through one unrolled SGD step, using the optimizer's own state and settings."""
    weights = dict(search.supernet.named_parameters())
    group = search.w_optimizer.param_groups[0]
    lr, momentum = group["lr"], group["momentum"] if with_momentum else 0.0
    weight_decay = group["weight_decay"] if with_weight_decay else 0.0
    grads = torch.autograd.grad(search._arch_loss(weights, train, "train"), list(weights.values()), create_graph=True)
    unrolled = {}
    for (name, weight), grad in zip(weights.items(), grads, strict=True):
        buffer = search.w_optimizer.state[weight]["momentum_buffer"]
        unrolled[name] = weight - lr * (momentum * buffer + grad + weight_decay * weight)
    arch = list(search.arch.parameters())
    return torch.autograd.grad(search._arch_loss(unrolled, valid, "valid"), arch)


def relative_error(got, expected):
    flat_got, flat_expected = torch.cat([g.flatten() for g in got]), torch.cat([e.flatten() for e in expected])
    return float((flat_got - flat_expected).norm() / flat_expected.norm())


@pytest.mark.slow
def test_arch_step_takes_the_exact_unrolled_gradient(float64):
    search, train, valid = mid_search(seed=0)
    assert search.w_optimizer.param_groups[0]["lr"] < 0.1  # the schedule moved: ξ is not the protocol's lr
    exact = exact_unrolled_gradient(search, train, valid)
    without_momentum = exact_unrolled_gradient(search, train, valid, with_momentum=False)
    without_decay = exact_unrolled_gradient(search, train, valid, with_weight_decay=False)
    search.arch_step(train, valid)
    taken = [parameter.grad for parameter in search.arch.parameters()]
    assert relative_error(taken, exact) < TOLERANCE
    # what the tolerance guards against: leaving out any term of the optimizer's step moves it more
    assert relative_error(without_momentum, exact) > 100 * TOLERANCE
    assert relative_error(without_decay, exact) > 5 * TOLERANCE
