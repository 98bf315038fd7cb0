"""Teacher data of the tiny SD3 pipeline for the recipe tests: 8 prompts, 4-step trajectories, 16-pixel images."""

from __future__ import annotations

from pathlib import Path

PROMPTS = ["a red circle", "two blue squares", "a green triangle", "a cyan cross"] * 2


def make_tiny_data(root: Path, num_steps: int = 8, prompts=PROMPTS) -> Path:
    """Write ``root/prompts.txt`` and the dataset ``root/data`` (the tiny teacher, CFG 3); returns ``root``."""
    from flashdistill.data.generate import GenerateConfig, generate
    from flashdistill.models.tiny import tiny_sd3_pipeline

    (root / "prompts.txt").write_text("\n".join(prompts) + "\n")
    pipe = tiny_sd3_pipeline(seed=0)
    pipe.set_progress_bar_config(disable=True)
    generate(GenerateConfig(out=str(root / "data"), prompts=str(root / "prompts.txt"), model="tiny",
                            num_steps=num_steps, guidance_scale=3.0, trajectory_grid=[1.0, 0.75, 0.5, 0.25, 0.0],
                            resolution=16, max_sequence_length=8, shard_size=4, batch_size=4),
             pipe=pipe, progress=False)
    return root
