"""The training loop proper: one epoch, one validation pass, nothing else.

Reads top to bottom like nanoGPT's train.py. The runner around it owns the
thread, the run folder, checkpoints, previews and events.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Callable

import torch

from ..model import SoundShape, SoundVAE, sound_vae_loss
from ..model.losses import attribute_loss
from .config import TrainingConfig
from .data import Batch, SoundBank, augment_batch
from .schedule import LRPlan, kl_ramp_epochs, kl_weight_at


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


# A step whose loss or gradient is not finite is skipped, not applied (as AMP's GradScaler does):
# one bad batch must not poison the weights. An epoch that skips more than this share fails.
MAX_SKIPPED_SHARE = 0.5


@dataclass(frozen=True)
class EpochResult:
    loss: float  # recon + kl_weight_max * kl: comparable across the whole run
    recon: float
    kl: float
    compute_s: float  # time inside forward/backward/optimizer step
    total_s: float
    skipped_steps: int = 0  # steps whose loss or gradient was not finite (not applied)


class Trainer:
    def __init__(self, config: TrainingConfig, shape: SoundShape, train_bank: SoundBank,
                 val_bank: SoundBank | None, std: float, device: torch.device):
        self.config = config
        self.device = device
        self.train_bank = train_bank
        self.val_bank = val_bank
        self.std = std
        torch.manual_seed(config.seed)
        self.model = SoundVAE(shape).to(device)  # every layer exists before the optimizer is built
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.learning_rate,
                                           weight_decay=config.weight_decay)
        self.plan = LRPlan.new(config.learning_rate, config.epochs)
        self.kl_ramp = kl_ramp_epochs(config.epochs, config.kl_warmup_fraction)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.val_batches = (val_bank.batches(val_bank.fixed_examples(), max(config.batch_size, 32))
                            if val_bank is not None else None)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.train_bank.segments_per_epoch / self.config.batch_size)

    def loss(self, batch: Batch, kl_weight: float, free_bits: float, prior_weight: float):
        cfg = self.config
        out = self.model(batch.windows, batch.offsets, batch.head_steps, batch.heads, batch.head_index,
                         with_prior_decode=prior_weight > 0)
        prior_target = batch.windows[out.prior_starts] if out.prior_recon is not None else None
        loss = sound_vae_loss(out.recon, batch.windows, out.global_stats, out.local_stats, kl_weight, free_bits,
                              out.prior_recon, prior_weight, prior_target, cfg.spectral_weight, self.std)
        dims = len(self.model.shape.attribute_dims)
        if dims and self.model.training and batch.attributes is not None:
            # Only the windows that start their sound: the others' global latent comes from a head
            # encoded without gradients.
            ordered = attribute_loss(out.global_stats[0][:, :dims], batch.attributes[:, :dims],
                                     cfg.attribute_sharpness, keep=batch.offsets == 0)
            loss = loss._replace(total=loss.total + cfg.attribute_weight * ordered)
        return loss

    def train_epoch(self, epoch_index: int, on_step: Callable[[int], None] | None = None,
                    should_stop: Callable[[], bool] | None = None) -> EpochResult | None:
        """Train one epoch; None if `should_stop` became true at a step boundary."""
        cfg = self.config
        lr = self.plan.lr_at(epoch_index)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        kl_weight = kl_weight_at(epoch_index, self.kl_ramp, cfg.kl_weight_max)
        self.model.train()
        started = time.perf_counter()
        compute = 0.0
        sums = torch.zeros(3, device=self.device)
        counted = skipped = 0
        examples = self.train_bank.random_examples(self.generator)
        batches = self.train_bank.batches(examples, cfg.batch_size, self.generator)
        for step, batch_examples in enumerate(batches, start=1):
            if should_stop is not None and should_stop():
                return None
            batch = self.train_bank.collate(batch_examples)
            if cfg.augment:
                batch = augment_batch(batch, cfg.augment_gain_db, cfg.augment_band_shift,
                                      self.train_bank.silence, self.std, self.generator)
            t0 = time.perf_counter()
            loss = self.loss(batch, kl_weight, cfg.free_bits, cfg.prior_weight)
            self.optimizer.zero_grad(set_to_none=True)
            loss.total.backward()
            applied = self._step(loss.total)
            compute += time.perf_counter() - t0
            if applied:
                n = len(batch_examples)
                counted += n
                sums += torch.stack([loss.recon.detach(), loss.kl.detach(), loss.total.detach()]) * n
            else:
                skipped += 1
            if on_step is not None:
                on_step(step)
        steps = len(batches)
        if skipped > MAX_SKIPPED_SHARE * steps or counted == 0:
            raise TrainingDiverged(
                f"The loss or its gradient became NaN or infinite on {skipped} of {steps} steps of epoch "
                f"{epoch_index + 1} on {self.device.type.upper()}; lower the learning rate and resume, or start "
                "again" + (" on the CPU (--device cpu)." if self.device.type != "cpu" else ".")
            )
        if skipped:
            logging.getLogger(__name__).warning("Epoch %d skipped %d of %d steps whose loss or gradient was not finite.",
                                                epoch_index + 1, skipped, steps)
        recon_mean, kl_mean, total_mean = (sums / counted).tolist()
        _check_finite(total_mean, epoch_index)
        return EpochResult(recon_mean + cfg.kl_weight_max * kl_mean, recon_mean, kl_mean,
                           compute, time.perf_counter() - started, skipped)

    def _step(self, total: torch.Tensor) -> bool:
        """Clip and apply the gradients of `total`, unless it or their norm is not finite (then
        nothing changes). One host sync a step, which is what it costs to know."""
        clip = self.config.grad_clip if self.config.grad_clip > 0 else math.inf
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        if not bool(torch.isfinite(total.detach() + norm)):
            self.optimizer.zero_grad(set_to_none=True)
            return False
        self.optimizer.step()
        return True

    @torch.no_grad()
    def validate(self) -> EpochResult | None:
        if self.val_bank is None:
            return None
        started = time.perf_counter()
        self.model.eval()
        sums = torch.zeros(2, device=self.device)
        count = 0
        for examples in self.val_batches:
            # (no global-only decode: validation reports reconstruction and KL alone)
            loss = self.loss(self.val_bank.collate(examples), 0.0, 0.0, prior_weight=0.0)
            sums += torch.stack([loss.recon, loss.kl]) * len(examples)
            count += len(examples)
        recon_mean, kl_mean = (sums / count).tolist()
        _check_finite(recon_mean + kl_mean, None)
        elapsed = time.perf_counter() - started
        return EpochResult(recon_mean + self.config.kl_weight_max * kl_mean, recon_mean, kl_mean, elapsed, elapsed)

    def current_lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "lr_plan": self.plan.to_dict(),
            "kl_ramp_epochs": self.kl_ramp,
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
        }

    def load_state_dict(self, state: dict, total_epochs: int, epochs_done: int) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.plan = LRPlan(**state["lr_plan"]).extended_to(total_epochs, epochs_done)
        self.kl_ramp = int(state.get("kl_ramp_epochs", self.kl_ramp))
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])


def _check_finite(value: float, epoch_index: int | None) -> None:
    if not math.isfinite(value):
        where = f"during epoch {epoch_index + 1}" if epoch_index is not None else "on the validation files"
        raise TrainingDiverged(
            f"The loss became {value} {where}; lower the learning rate and resume, or start again."
        )
