"""A tiny but complete training job on the trainer, used by the kill/resume, guard and multi-process tests.

Run as a script (``python mlp_job.py key=value ...`` or under ``accelerate launch``) or call :func:`train`.
It touches every stateful piece: a data stream, two trained models with their own optimisers (a regressor and
a small "critic" updated on a separate phase counter), an EMA, the global torch RNG (input noise), a named
generator (random masks) and gradient accumulation.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from flashdistill.config import load_config
from flashdistill.training import OptimConfig, Run, TrainConfig


@dataclass
class MLPJobConfig:
    train: TrainConfig = field(default_factory=TrainConfig)  # trainer settings
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(lr=3e-3, warmup_steps=3)
    )  # regressor AdamW
    critic_optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-3))  # critic AdamW
    batch_size: int = 16  # global batch
    num_samples: int = 96  # dataset size (epochs roll over every 6 steps at batch 16)
    input_noise: float = 0.1  # std of noise added to inputs from the global torch RNG
    mask_prob: float = 0.1  # fraction of inputs zeroed with the named generator
    critic_every: int = 2  # critic update every N steps (a phase counter)
    ema_decay: float | None = 0.9  # EMA of the regressor (null: none, e.g. under FSDP)
    sleep: float = 0.0  # seconds per step, so a test can kill the job mid-run
    nan_at: list[int] = field(default_factory=list)  # steps whose regressor loss is made NaN (guard test)
    samples: bool = False  # register a sample-grid callback that draws from the global RNG


class Regression(torch.utils.data.Dataset):
    def __init__(self, n: int):
        g = torch.Generator().manual_seed(123)
        self.x = torch.randn(n, 8, generator=g)
        w = torch.randn(8, 1, generator=g)
        self.y = torch.sin(self.x @ w) + 0.5 * self.x[:, :1]

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"x": self.x[i], "y": self.y[i], "index": i}


def build(cfg: MLPJobConfig):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 1))
    critic = nn.Sequential(nn.Linear(9, 16), nn.Tanh(), nn.Linear(16, 1))
    return net, critic


def train(cfg: MLPJobConfig) -> Run:
    net, critic = build(cfg)
    run = Run(cfg.train, config=cfg)
    reg = run.add_model("regressor", net, cfg.optim)
    crit = run.add_model("critic", critic, cfg.critic_optim)
    if cfg.ema_decay is not None:
        run.add_ema("regressor_ema", of="regressor", decay=cfg.ema_decay)
    data = run.data_stream("train", Regression(cfg.num_samples), batch_size=cfg.batch_size)
    masks = run.generator("masks")
    if cfg.samples:
        run.on_samples(lambda step: torch.rand(4, 3, 8, 8))  # consumes randomness: must not change training

    for step in run.steps():
        batch = next(data)
        x = batch["x"].to(run.device)
        x = x + cfg.input_noise * torch.randn_like(x)
        keep = (torch.rand(x.shape, generator=masks, device=run.device) >= cfg.mask_prob).to(x.dtype)
        batch = {"x": x * keep, "y": batch["y"].to(run.device)}

        def loss_terms(mb, step=step):
            pred = reg.model(mb["x"])
            mse = (pred - mb["y"]).pow(2).mean()
            if step in cfg.nan_at:
                mse = mse * float("nan")
            return {"mse": mse}

        run.update_accumulated("regressor", loss_terms, batch)
        if step % cfg.critic_every == 0:
            run.state.counters["critic_updates"] = run.state.counters.get("critic_updates", 0) + 1
            with torch.no_grad():
                pred = reg.module(batch["x"])
            score = crit.model(torch.cat([batch["x"], pred], dim=1))
            run.update("critic", {"critic": (score - (pred - batch["y"]).abs()).pow(2).mean()})
        run.log(critic_updates=run.state.counters.get("critic_updates", 0))
        if cfg.sleep:
            time.sleep(cfg.sleep)

    if run.is_main:
        weights = {f"regressor.{k}": v for k, v in reg.module.state_dict().items()}
        weights.update({f"critic.{k}": v for k, v in crit.module.state_dict().items()})
        for name, ema in run.emas.items():
            weights.update({f"{name}.{k}": v for k, v in ema.shadow.items()})
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in weights.items()},
            str(Path(cfg.train.run_dir) / "final.safetensors"),
        )
        (Path(cfg.train.run_dir) / "done.json").write_text(
            json.dumps(
                {
                    "step": run.state.step,
                    "num_processes": run.world_size,
                    "resumed_from": str(run.resumed_from),
                }
            )
        )
    return run


if __name__ == "__main__":
    torch.set_num_threads(1)
    train(load_config(MLPJobConfig, None, sys.argv[1:]))
