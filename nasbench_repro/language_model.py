"""Training a recurrent cell's language model from scratch: the evaluation phase on PTB and WikiText-2.

The recipe is DARTS's (quark0/darts @f276dd3 rnn/train.py, itself AWD-LSTM's, Merity et al. 2018):

    each epoch, from a zero state, over BPTT windows of random length (data/text.py):
        loss = cross-entropy + activation and temporal-activation regularization
        SGD step at lr · window / bptt, gradients clipped, weight decay on every weight
    then validation perplexity (with the averaged weights once ASGD runs), and
        if still on SGD, after more than `asgd_nonmono` epochs, and worse than the best of
        all but the last `asgd_nonmono` epochs (`asgd_trigger`; GDAS: of all earlier epochs):
            switch to averaged SGD (ASGD, t0 = 0, λ = 0) at the initial learning rate
    finally, the weights of the best validation epoch are tested (at batch size 1 in DARTS).

The state carries over from one window to the next within an epoch, detached. Two things
differ from the official script: a diverging epoch fails the run (the harness's rule)
where DARTS silently rolls back to its best checkpoint, and perplexity averages the loss over
the tokens predicted, where DARTS divides the summed loss by the row count, one more than the
windows cover (a 0.01% difference at PTB's sizes).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import nn

from nasbench_repro.context import Context, PhaseResult
from nasbench_repro.cost import count_parameters_millions
from nasbench_repro.data.text import TextCorpus, VariableLengthBatches
from nasbench_repro.protocol import PhaseProtocol
from nasbench_repro.spaces.rnn.model import Dropouts, LanguageModel, LanguageModelOutput, evaluation_model

MAX_LOG_PERPLEXITY = 709.0  # math.exp overflows beyond it
# What a validation loss is compared with to end SGD: the best before the last `nonmono` SGD epochs
# (AWD-LSTM and DARTS rnn/train.py), or the best of all earlier SGD epochs (GDAS exps-rnn/train_rnn_utils.py).
ASGD_TRIGGERS = ("best_before_last_nonmono", "best_so_far")


def perplexity(loss: float) -> float:
    """exp(mean per-token loss); infinite for a loss too large to exponentiate."""
    return math.exp(loss) if loss <= MAX_LOG_PERPLEXITY else math.inf


def language_model_loss(
    output: LanguageModelOutput, targets: torch.Tensor, protocol
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss to descend, cross-entropy): the cross-entropy of the next token plus AWD-LSTM's
    activation regularization (α · mean h², on the dropped states) and temporal activation
    regularization (β · mean (h_t − h_{t−1})², on the states). Half-precision outputs are summed in
    float32; float64 stays float64."""
    logits = _at_least_float32(output.logits)
    cross_entropy = nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]), targets.reshape(-1))
    loss = cross_entropy
    if protocol.activation_regularization > 0:
        loss = loss + protocol.activation_regularization * _at_least_float32(output.dropped_states).pow(2).mean()
    if protocol.temporal_activation_regularization > 0:
        steps = _at_least_float32(output.states)
        loss = loss + protocol.temporal_activation_regularization * (steps[1:] - steps[:-1]).pow(2).mean()
    return loss, cross_entropy


def _at_least_float32(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.promote_types(x.dtype, torch.float32))


@torch.no_grad()
def evaluate_language_model(
    forward: Callable[[torch.Tensor, torch.Tensor], LanguageModelOutput],
    batches: Iterable,
    initial_hidden: torch.Tensor,
    autocast: Callable = contextlib.nullcontext,
) -> dict[str, float]:
    """Mean per-token loss and perplexity of `forward` over evaluation windows (model already in
    eval mode), the state carried from window to window; one host sync at the end."""
    hidden, tokens = initial_hidden, 0
    total = torch.zeros((), dtype=torch.float64, device=initial_hidden.device)  # a sum over up to millions of tokens
    for inputs, targets, _, _ in batches:
        with autocast():
            output = forward(inputs, hidden)
        logits = output.logits.float()
        total += nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum")
        tokens += targets.numel()
        hidden = output.hidden
    loss = float(total) / max(tokens, 1)
    return {"loss": loss, "ppl": perplexity(loss), "tokens": tokens}


class SgdThenAsgd:
    """AWD-LSTM's optimizer as DARTS runs it: plain SGD until the validation loss stops
    improving (non-monotonically triggered), then ASGD for the rest of training.

    After each SGD epoch, `after_validation(loss)` switches when more than `nonmono` SGD epochs
    came before and the loss is worse than the best of them but the last `nonmono`
    (`trigger="best_before_last_nonmono"`) or of them all (`"best_so_far"`).
    ASGD with t0 = 0 and λ = 0 takes plain SGD steps while keeping the running average of the
    weights since the switch; `averaged_weights()` swaps that average in for evaluation.
    `step(scale)` steps at the learning rate times `scale` (DARTS scales it by window / bptt).
    """

    def __init__(
        self,
        parameters: Iterable[nn.Parameter],
        lr: float,
        weight_decay: float,
        nonmono: int,
        trigger: str = ASGD_TRIGGERS[0],
    ):
        if trigger not in ASGD_TRIGGERS:
            raise ValueError(f"unknown ASGD trigger {trigger!r}; use one of {', '.join(ASGD_TRIGGERS)}")
        self.parameters = list(parameters)
        self.lr, self.weight_decay, self.nonmono, self.trigger = lr, weight_decay, nonmono, trigger
        self.history: list[float] = []  # validation losses of the SGD epochs
        self.optimizer: torch.optim.Optimizer = self._sgd()

    def _sgd(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters, lr=self.lr, weight_decay=self.weight_decay)

    def _asgd(self) -> torch.optim.Optimizer:
        # capturable keeps ASGD's step counts on the GPU; otherwise it reads them on the host every step
        return torch.optim.ASGD(
            self.parameters,
            lr=self.lr,
            t0=0,
            lambd=0.0,
            weight_decay=self.weight_decay,
            capturable=self.parameters[0].is_cuda,
        )

    @property
    def averaging(self) -> bool:
        return isinstance(self.optimizer, torch.optim.ASGD)

    def step(self, lr_scale: float = 1.0) -> None:
        scaled_step(self.optimizer, self.lr, lr_scale)

    def after_validation(self, loss: float) -> bool:
        """Note an epoch's validation loss; True when it makes SGD give way to ASGD."""
        if self.averaging:
            return False
        compared = self.history[: -self.nonmono] if self.trigger == "best_before_last_nonmono" else self.history
        switch = len(self.history) > self.nonmono and loss > min(compared)
        self.history.append(loss)
        if switch:
            self.optimizer = self._asgd()
        return switch

    @contextlib.contextmanager
    def averaged_weights(self) -> Iterator[None]:
        """Evaluate with ASGD's averaged weights (a no-op under SGD), restoring the trained ones afterwards."""
        averaged = [
            (p, self.optimizer.state[p]["ax"])
            for p in self.parameters
            if self.averaging and "ax" in self.optimizer.state.get(p, {})
        ]
        trained = [p.detach().clone() for p, _ in averaged]
        with torch.no_grad():
            for parameter, average in averaged:
                parameter.copy_(average)
        try:
            yield
        finally:
            with torch.no_grad():
                for (parameter, _), weights in zip(averaged, trained, strict=True):
                    parameter.copy_(weights)

    def state_dict(self) -> dict[str, Any]:
        return {"averaging": self.averaging, "history": list(self.history), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = list(state["history"])
        self.optimizer = self._asgd() if state["averaging"] else self._sgd()
        self.optimizer.load_state_dict(state["optimizer"])


def scaled_step(optimizer: torch.optim.Optimizer, lr: float, scale: float) -> None:
    """One step of `optimizer` at `lr` · `scale` (DARTS scales it by window / bptt); its rate stays `lr`."""
    group = optimizer.param_groups[0]
    group["lr"] = lr * scale
    optimizer.step()
    group["lr"] = lr


def train_windows(
    model: LanguageModel,
    batches: VariableLengthBatches,
    protocol,
    step: Callable[[float], None],
    autocast: Callable = contextlib.nullcontext,
    progress: Callable[[Iterable], Iterable] = iter,
    before_window: Callable[[], None] | None = None,
) -> dict[str, float]:
    """One pass over the training windows from a zero state: per window the loss (with AR and TAR),
    gradients clipped to `grad_clip`, then `step(window / bptt)`; `before_window` runs before each
    forward pass (weight sharing swaps the cell's genotype there). The mean cross-entropy stays on
    the device until the pass ends."""
    model.train()
    hidden = model.initial_hidden(batches.batch_size)
    total, tokens = torch.zeros((), dtype=torch.float64, device=hidden.device), 0
    for inputs, targets, _, drawn_length in progress(batches):
        if before_window is not None:
            before_window()
        with autocast():
            output = model(inputs, hidden.detach())
        loss, cross_entropy = language_model_loss(output, targets, protocol)
        model.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), protocol.grad_clip)
        step(drawn_length / protocol.bptt)
        total += cross_entropy.detach() * targets.numel()
        tokens += targets.numel()
        hidden = output.hidden
    return {"loss": float(total) / max(tokens, 1), "tokens": tokens}


def protocol_streams(data: TextCorpus, protocol: PhaseProtocol) -> tuple[VariableLengthBatches, Any]:
    """The training split in windows of bptt (jittered as the protocol says) and the validation
    split at `valid_batch_size` columns, as a text protocol declares them."""
    train = data.training_batches(
        "train", protocol.train_examples, protocol.batch_size, protocol.bptt, protocol.bptt_std, protocol.bptt_max_delta
    )
    return train, data.evaluation_batches("valid", protocol.valid_examples, protocol.valid_batch_size, protocol.bptt)


class LanguageModelTraining:
    """One language model trained by a protocol's recipe an epoch at a time, on the training split
    and validated on the validation split: the evaluation phase runs it under the runner's
    checkpointed epochs, a black-box candidate (blackbox.py) in a worker process.

    `validate` keeps the weights of the best validation epoch (the model DARTS tests) and lets the
    optimizer decide whether SGD gives way to ASGD."""

    def __init__(
        self,
        model: LanguageModel,
        protocol,
        data,
        autocast: Callable = contextlib.nullcontext,
        progress: Callable[[Iterable], Iterable] = iter,
    ):
        self.model, self.protocol, self.autocast, self.progress = model, protocol, autocast, progress
        self.optimizer = SgdThenAsgd(
            model.parameters(), protocol.lr, protocol.weight_decay, protocol.asgd_nonmono, protocol.asgd_trigger
        )
        self.train_batches, self.valid_batches = protocol_streams(data, protocol)
        self.best: dict[str, Any] = {"valid_loss": math.inf, "epoch": None, "weights": {}}

    def state(self) -> dict[str, Any]:
        """What a checkpoint holds between epochs."""
        return {"model": self.model, "optimizer": self.optimizer, "best": self.best}

    def train_epoch(self) -> dict[str, float]:
        """One pass over the training windows."""
        return train_windows(
            self.model, self.train_batches, self.protocol, self.optimizer.step, self.autocast, self.progress
        )

    def validate(self, epoch: int) -> dict[str, float]:
        """Validation loss and perplexity (with ASGD's averaged weights once it runs); keep the best epoch's weights."""
        model = self.model
        with self.optimizer.averaged_weights():
            model.eval()
            valid = evaluate_language_model(
                model, self.valid_batches, model.initial_hidden(self.valid_batches.batch_size), self.autocast
            )
            if valid["loss"] < self.best["valid_loss"]:
                self.best.update(
                    valid_loss=valid["loss"],
                    epoch=epoch,
                    weights={name: value.detach().clone() for name, value in model.state_dict().items()},
                )
        self.optimizer.after_validation(valid["loss"])
        return valid


def train_language_model(genotype: Any, ctx: Context) -> PhaseResult:
    """Train `genotype`'s language model with the evaluation protocol; test the best validation epoch."""
    protocol, data = ctx.protocol, ctx.data
    dropouts = Dropouts.from_protocol(protocol)
    model = evaluation_model(genotype, data.vocabulary_size, protocol.hidden_size, dropouts).to(ctx.device)
    params_millions = count_parameters_millions(model)
    training = LanguageModelTraining(model, protocol, data, ctx.autocast, ctx.progress)
    test_batches = data.evaluation_batches("test", protocol.test_examples, protocol.test_batch_size, protocol.bptt)

    for epoch in ctx.epochs(protocol.epochs, training.state()):
        train = training.train_epoch()
        ctx.check_finite(train["loss"], "training loss")
        averaging = training.optimizer.averaging
        valid = training.validate(epoch)
        ctx.check_finite(valid["loss"], "validation loss")
        ctx.log(
            averaging=averaging,
            train_loss=train["loss"],
            train_ppl=perplexity(train["loss"]),
            train_tokens=train["tokens"],
            valid_loss=valid["loss"],
            valid_ppl=valid["ppl"],
        )

    best = training.best
    model.load_state_dict(best["weights"])
    model.eval()
    test = evaluate_language_model(model, test_batches, model.initial_hidden(test_batches.batch_size), ctx.autocast)
    return PhaseResult(
        {
            "test_ppl": test["ppl"],
            "valid_ppl": perplexity(best["valid_loss"]),
            "test_loss": test["loss"],
            "params_millions": params_millions,
            "selected_epoch": best["epoch"],
            "asgd_from_epoch": next((row["epoch"] for row in ctx.curves if row["averaging"]), None),
            "valid_examples": training.valid_batches.tokens,
            "test_examples": test["tokens"],
        }
    )
