"""FD on the Shapes world: Frechet distance, precision/recall and diversity in a feature space learned on real
Shapes images.

``FeatureNet`` is a small CNN (4 stride-2 conv layers with GroupNorm, mean+max pooling, ~0.28M parameters)
trained by ``train_feature_net`` on rendered train-split scenes to predict, from a 32x32 image, (a) which of
the 24 (colour, shape) pairs are present (multi-label), (b) how many objects there are (1-4) and (c) which
image quadrants hold an object centre. Its penultimate layer (128-d, after ReLU) is the feature space: it
encodes exactly the attributes the world is made of, and it reacts to blur, noise and colour shifts because
it never saw them. Images of other sizes are area-resampled to 32x32 first. The shipped weights are
``flashdistill/assets/fdnet.safetensors`` with their metadata (including held-out accuracy) in ``fdnet.json``;
``python -m flashdistill.eval.fd`` rebuilds them.

``frechet_distance`` uses float64 and eigen-decompositions (no scipy): ``|mu1 - mu2|^2 + tr S1 + tr S2 -
2 tr sqrt(sqrt(S1) S2 sqrt(S1))``. ``precision_recall`` follows Kynkaennimi et al. (2019): k-NN balls around
each real (fake) feature define the real (fake) manifold.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..shapes import COLORS, SHAPES, draw, eval_prompts, layout, render, sample_spec
from .shapes_eval import as_uint8_images

__all__ = ["FDJudge", "FeatureNet", "diversity", "frechet_distance", "load_feature_net", "precision_recall",
           "reference_images", "train_feature_net"]

ASSET = Path(__file__).resolve().parent.parent / "assets" / "fdnet.safetensors"
REGENERATE = "python -m flashdistill.eval.fd --out flashdistill/assets/fdnet.safetensors"
PAIRS = [(c, s) for c in COLORS for s in SHAPES]
FEAT_SIZE = 32


class FeatureNet(nn.Module):
    """``(B, 3, 32, 32)`` in [-1, 1] -> 128-d features (``features``) -> attribute logits (``forward``)."""

    def __init__(self, width: int = 32, dim: int = 128, strides: tuple[int, ...] = (2, 2, 2, 2),
                 pool: str = "meanmax"):
        super().__init__()
        chans = [3, width, 2 * width, 4 * width, 4 * width]
        layers: list[nn.Module] = []
        for i, stride in enumerate(strides):
            layers += [nn.Conv2d(chans[i], chans[i + 1], 3, stride=stride, padding=1),
                       nn.GroupNorm(8, chans[i + 1]), nn.ReLU()]
        self.trunk = nn.Sequential(*layers)
        self.pool = pool  # "meanmax": mean- and max-pooled trunk features; "mean": mean only
        self.fc = nn.Linear((2 if pool == "meanmax" else 1) * chans[-1], dim)
        self.pairs = nn.Linear(dim, len(PAIRS))
        self.count = nn.Linear(dim, 4)
        self.quadrants = nn.Linear(dim, 4)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = self.trunk(x)
        pooled = torch.cat([h.mean((2, 3)), h.amax((2, 3))], 1) if self.pool == "meanmax" else h.mean((2, 3))
        return F.relu(self.fc(pooled))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        f = self.features(x)
        return self.pairs(f), self.count(f), self.quadrants(f)


def _to_input(images) -> torch.Tensor:
    x = torch.from_numpy(as_uint8_images(images)).permute(0, 3, 1, 2).float() / 127.5 - 1
    if x.shape[-1] != FEAT_SIZE or x.shape[-2] != FEAT_SIZE:
        x = F.interpolate(x, size=(FEAT_SIZE, FEAT_SIZE), mode="area")
    return x


def _labelled_batch(n: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Rendered train-split images and their targets: pairs (n, 24), count index (n,), quadrants (n, 4)."""
    imgs, pairs, counts, quads = [], np.zeros((n, len(PAIRS)), np.float32), np.zeros(n, np.int64), []
    for i in range(n):
        scene = layout(sample_spec(rng, "train"), rng)
        imgs.append(draw(scene, rng, FEAT_SIZE))
        for o in scene.objects:
            pairs[i, PAIRS.index((o.color, o.shape))] = 1
        counts[i] = len(scene.objects) - 1
        q = np.zeros(4, np.float32)
        for o in scene.objects:
            q[int(o.cy >= 0.5) * 2 + int(o.cx >= 0.5)] = 1
        quads.append(q)
    return np.stack(imgs), pairs, counts, np.stack(quads)


def _accuracy(net: FeatureNet, data) -> dict[str, float]:
    imgs, pairs, counts, quads = data
    with torch.no_grad():
        lp, lc, lq = net(_to_input(imgs))
    pred_pairs = (lp > 0).numpy()
    return {"pairs_label_acc": float((pred_pairs == (pairs > 0)).mean()),
            "pairs_exact_acc": float((pred_pairs == (pairs > 0)).all(1).mean()),
            "count_acc": float((lc.argmax(1).numpy() == counts).mean()),
            "quadrant_acc": float(((lq > 0).numpy() == (quads > 0)).mean())}


def train_feature_net(out_path: str | Path = ASSET, steps: int = 1500, seed: int = 0, n_train: int = 16000,
                      batch_size: int = 64, lr: float = 3e-3) -> dict:
    """Train ``FeatureNet`` on rendered Shapes, write weights + ``.json`` metadata; returns the metadata."""
    from safetensors.torch import save_file

    t0 = time.time()
    torch.manual_seed(seed)
    train = _labelled_batch(n_train, np.random.default_rng([seed, 1]))
    held = _labelled_batch(2000, np.random.default_rng([seed, 2]))
    x_all = _to_input(train[0])
    pairs, counts, quads = (torch.from_numpy(a) for a in train[1:])
    net = FeatureNet()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(seed)
    for step in range(steps):
        idx = torch.randint(0, n_train, (batch_size,), generator=gen, device="cpu")
        lp, lc, lq = net(x_all[idx])
        loss = (F.binary_cross_entropy_with_logits(lp, pairs[idx]) * 4 + F.cross_entropy(lc, counts[idx])
                + F.binary_cross_entropy_with_logits(lq, quads[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 250 == 0 or step == steps - 1:
            print(f"step {step:5d}  loss {loss.item():.4f}  ({time.time() - t0:.0f}s)", flush=True)
    net.eval()
    arch = {"width": 32, "dim": 128, "strides": [2, 2, 2, 2], "pool": "meanmax"}
    meta = {"arch": arch, "steps": steps, "seed": seed, "n_train": n_train,
            "batch_size": batch_size, "params": sum(p.numel() for p in net.parameters()),
            "heldout_real": _accuracy(net, held), "train_seconds": round(time.time() - t0, 1),
            "trained_to_predict": "24 (colour, shape) presence labels, object count 1-4, quadrant occupancy",
            "regenerate": REGENERATE}
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out_path))
    out_path.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def load_feature_net(path: str | Path = ASSET) -> FeatureNet:
    """The shipped feature network (eval mode). Raises ``FileNotFoundError`` naming the regenerate command."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"FD feature network not found at {path}; rebuild it with `{REGENERATE}`")
    meta_path = path.with_suffix(".json")
    arch = json.loads(meta_path.read_text())["arch"] if meta_path.exists() else {}
    arch = {"strides": (2, 2, 2, 1), "pool": "mean", **arch}  # first shipped version had no such keys
    net = FeatureNet(**{k: tuple(v) if isinstance(v, list) else v for k, v in arch.items()})
    net.load_state_dict(load_file(str(path)))
    return net.eval()


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to ``(N, D)`` and ``(M, D)`` features, in float64."""
    a, b = np.asarray(feats_a, np.float64), np.asarray(feats_b, np.float64)
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(s1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = root1 @ s2 @ root1
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt)


def _kth_radius(x: torch.Tensor, k: int) -> torch.Tensor:
    d = torch.cdist(x, x)
    return d.kthvalue(k + 1, dim=1).values  # the 0 to itself is the first


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Improved precision (fakes inside the real k-NN manifold) and recall (reals inside the fake one)."""
    r, f = torch.as_tensor(np.asarray(real, np.float64)), torch.as_tensor(np.asarray(fake, np.float64))
    rr, rf = _kth_radius(r, k), _kth_radius(f, k)
    d = torch.cdist(f, r)  # (fake, real)
    precision = (d <= rr[None]).any(1).double().mean()
    recall = (d.T <= rf[None]).any(1).double().mean()
    return float(precision), float(recall)


def diversity(groups: Sequence[np.ndarray]) -> float:
    """Mean pairwise feature distance within each group (e.g. samples of one prompt), averaged over groups
    with at least two members; 0 means every prompt always gives the same image."""
    vals = []
    for g in groups:
        g = torch.as_tensor(np.asarray(g, np.float64))
        if len(g) >= 2:
            d = torch.cdist(g, g)
            vals.append(float(d.sum() / (len(g) * (len(g) - 1))))
    return float(np.mean(vals)) if vals else float("nan")


def reference_images(n: int, seed: int = 0, size: int = FEAT_SIZE) -> np.ndarray:
    """``n`` real images ``(n, size, size, 3)`` rendered from the train split's balanced eval prompts."""
    prompts = eval_prompts(math.ceil(n / 6), seed=seed, split="train")
    order = np.random.default_rng([seed, 31]).permutation(len(prompts))[:n]
    rng = np.random.default_rng([seed, 104729])
    return np.stack([render(prompts[i][1], rng, size) for i in order])


class FDJudge:
    """FD, precision and recall of images against real references, in ``FeatureNet`` space."""

    def __init__(self, net: FeatureNet | None = None, batch_size: int = 500):
        self.net = net if net is not None else load_feature_net()
        self.batch_size = batch_size
        self._ref: tuple[str, np.ndarray] | None = None  # features of the last reference set, by content hash

    def reference_features(self, ref_images) -> np.ndarray:
        """Features of a reference set, cached for repeated calls with the same images."""
        ref = as_uint8_images(ref_images)
        key = hashlib.blake2b(ref.tobytes(), digest_size=16).hexdigest() + str(ref.shape)
        if self._ref is None or self._ref[0] != key:
            self._ref = (key, self.features(ref))
        return self._ref[1]

    @torch.no_grad()
    def features(self, images) -> np.ndarray:
        x = _to_input(images)
        out = [self.net.features(x[i : i + self.batch_size]) for i in range(0, len(x), self.batch_size)]
        return torch.cat(out).double().numpy()

    def score(self, images, ref_images, prompt_ids: Sequence | None = None, k: int = 3) -> dict:
        """``{"fd", "precision", "recall"}`` (+ ``"diversity"`` when ``prompt_ids`` group the images)."""
        fake, real = self.features(images), self.reference_features(ref_images)
        precision, recall = precision_recall(real, fake, k)
        out = {"fd": frechet_distance(real, fake), "precision": precision, "recall": recall}
        if prompt_ids is not None:
            ids = np.asarray(prompt_ids)
            out["diversity"] = diversity([fake[ids == p] for p in np.unique(ids)])
        return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="train the FD feature network on rendered Shapes images")
    parser.add_argument("--out", default=str(ASSET))
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(json.dumps(train_feature_net(args.out, args.steps, args.seed), indent=2))
