"""Score one loaded model setting with the generic metrics, in memory (no run folder): what ``flashdistill merge``
uses to choose a ratio by CLIP score or FID on selection seed sets and report it on others."""

from __future__ import annotations

__all__ = ["MetricJudge"]

HIGHER_IS_BETTER = {"clip": True, "fid": False}


class MetricJudge:
    """``judge(folder, pipe, seeds) -> {"score", "ci95", "metric"}`` for ``metric`` in ``clip`` / ``fid``. The FID
    reference features are computed once and kept across candidates."""

    def __init__(self, metric: str, prompts: str, limit: int = 64, clip_model: str | None = None,
                 reference: str | None = None, fid_inception: str | None = None, fid_features: str | None = None,
                 batch_size: int = 16, device: str = "cpu"):
        from ...config import ConfigError
        from .clip_score import CLIPScore
        from .fid import FID
        from .prompts import read_eval_prompts

        if metric not in HIGHER_IS_BETTER:
            raise ConfigError(f"--metric {metric}: choose shapes_eval, clip or fid")
        if not prompts:
            raise ConfigError(f"--metric {metric} needs --prompts <file>")
        self.metric, self.batch_size = metric, batch_size
        self.prompts = [p.text for p in read_eval_prompts(prompts, limit)]
        if metric == "clip":
            if not clip_model:
                raise ConfigError("--metric clip needs --clip-model <local CLIP folder>")
            self.judge = CLIPScore(clip_model, device)
        else:
            if not reference:
                raise ConfigError("--metric fid needs --reference <folder of reference images>")
            self.judge = FID(reference, fid_inception, fid_features, device)

    @property
    def higher_is_better(self) -> bool:
        return HIGHER_IS_BETTER[self.metric]

    def __call__(self, folder, pipe, seeds) -> dict:
        from ...pipelines.generate import generate_images, load_setup

        setup = load_setup(folder, pipe=pipe)
        self.judge.reset()
        for seed in seeds:
            images, _ = generate_images(setup, self.prompts, seed=seed, batch_size=self.batch_size)
            self.judge.add(images, self.prompts)
        r = self.judge.result()
        if self.metric == "clip":
            return {"metric": "clip_score", "score": r["clip_score"], "ci95": r["clip_score_ci95"]}
        return {"metric": "fid", "score": r["fid"], "ci95": None}
