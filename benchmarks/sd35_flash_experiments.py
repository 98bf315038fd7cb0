"""The experiment log of the SD3.5-Flash recipe on SD3-nano (docs/results/sd35_flash_experiments.md + .json).

    .venv/bin/python benchmarks/sd35_flash_experiments.py [--only s1_600,s1_1200] [--seeds 1,2,3,4]

Each experiment is one stage (``configs/sd35_flash/nano_*.yaml`` plus overrides) trained on a named dataset and,
where it says so, started from another experiment's student. Every student is judged under the project's protocol
(evaluation seed sets 1-4, 16 prompts per category, 95% bootstrap intervals) and compared **paired** (same prompts,
same noises) with the reference experiment: a difference whose interval excludes 0 is an effect, one that straddles
0 is "no measurable effect". Trained students and their scores are kept under ``--work``, so an interrupted run
resumes and a new experiment costs only itself. The table lists every experiment whose student exists.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from sd35_flash_nano import CFG, FD, ROOT, sh

# name -> (number of prompts, teacher Euler steps of the stored samples and trajectories; None: real Shapes renders
# encoded with their captions, no trajectories: a stage-2 "real" set)
DATASETS = {"d384_20": (384, 20), "d1536_20": (1536, 20), "d384_50": (384, 50), "real384": (384, None),
            "d384_20_s3": (384, 20), "real2048": (2048, None), "d384x3_20": (384, 20)}
GRIDS = {"d384_20_s3": "[1.0,0.9,0.75,0.5,0.0]"}  # trajectories stored at the shift-3 student grid
SAMPLES_PER_PROMPT = {"d384x3_20": 3}  # teacher samples per prompt (other noises), sample k is prompt k // N's
# best-of-N datasets (benchmarks/best_of_n.py): name -> the N-per-prompt dataset each prompt's judged sample comes from
BEST_OF = {"d384_20_best3": "d384x3_20"}

# the demo's stage 2 (150 iterations, proxy_updates 3, warm-up 20): the base every `s2_*` experiment changes
S2 = ["train.max_steps=150", "proxy_updates=3", "warmup_noisier=20"]
# name -> what changes, its stage config, dataset, the experiment whose student it starts from, overrides
EXPERIMENTS = {
    "s1_150": ("stage 1, 150 iterations (the demo's)", "nano_pretrain.yaml", "d384_20", None,
               ["train.max_steps=150"]),
    "s1_600": ("stage 1, 600 iterations", "nano_pretrain.yaml", "d384_20", None, ["train.max_steps=600"]),
    "s1_1200": ("stage 1, 1200 iterations", "nano_pretrain.yaml", "d384_20", None, ["train.max_steps=1200"]),
    "s1_600_d1536": ("stage 1, 600 iterations, 1536 prompts", "nano_pretrain.yaml", "d1536_20", None,
                     ["train.max_steps=600"]),
    "s1_600_t50": ("stage 1, 600 iterations, teacher data at 50 steps", "nano_pretrain.yaml", "d384_50", None,
                   ["train.max_steps=600"]),
    "s1_600_ti": ("stage 1, 600 iterations, Eq. 4 weighted by t_i", "nano_pretrain.yaml", "d384_20", None,
                  ["train.max_steps=600", "tg_weighting=t_i"]),
    "s1_600_shift3": ("stage 1, 600 iterations, student grid shifted by 3: (1, .9, .75, .5)", "nano_pretrain.yaml",
                      "d384_20_s3", None, ["train.max_steps=600", "grid_shift=3"]),
    "s1_600_best3": ("stage 1, 600 iterations on best-of-3 teacher samples (the first of 3 noises per prompt "
                     "the judge passes)", "nano_pretrain.yaml", "d384_20_best3", None, ["train.max_steps=600"]),
    "s2_best3": ("`s2_base` on the best-of-3 data (prompts and discriminator's real set), from `s1_600_best3`",
                 "nano_dmd.yaml", "d384_20_best3", "s1_600_best3", S2),
    "s1_600_online": ("stage 1, 600 iterations on online trajectories: the teacher (20 steps, as the data's) solves "
                      "every batch from fresh noise, so no (prompt, noise) pair is seen twice", "nano_pretrain.yaml",
                      "d384_20", None, ["train.max_steps=600", "trajectories=online", "teacher_steps=20"]),
    "s2_online": ("`s2_base` from `s1_600_online`", "nano_dmd.yaml", "d384_20", "s1_600_online", S2),
    "s2_last": ("`s2_base` with a DMD term for the last step (last_step_dmd: renoise)", "nano_dmd.yaml", "d384_20",
                "s1_600", S2 + ["last_step_dmd=renoise"]),
    "s2_p1536": ("`s2_base` on 1536 prompts (DMD needs no teacher sample per prompt)", "nano_dmd.yaml",
                 "d1536_20", "s1_600", S2),
    "s2_ema": ("`s2_base` exporting an EMA of the student (decay 0.95, warm-up)", "nano_dmd.yaml", "d384_20", "s1_600",
               S2 + ["ema_decay=0.95", "ema_warmup=true"]),
    "s1_600_seed1": ("`s1_600` with seed 1 (run-to-run variation)", "nano_pretrain.yaml", "d384_20", None,
                     ["train.max_steps=600", "seed=1"]),
    "s1_600_seed2": ("`s1_600` with seed 2 (run-to-run variation)", "nano_pretrain.yaml", "d384_20", None,
                     ["train.max_steps=600", "seed=2"]),
    # run-to-run variation: `s2_base` again with other seeds of its random draws (noise, steps, heads)
    "s2_seed1": ("`s2_base` with seed 1 (run-to-run variation)", "nano_dmd.yaml", "d384_20", "s1_600",
                 S2 + ["seed=1"]),
    "s2_seed2": ("`s2_base` with seed 2 (run-to-run variation)", "nano_dmd.yaml", "d384_20", "s1_600",
                 S2 + ["seed=2"]),
    # the 2-step student: trajectory guidance on (1, .5, 0) from the 4-step stage-1 student, then stage 2 as shipped
    "s1_2step": ("2-step: stage 1 on (1, .5), 600 iterations, from `s1_600`", "nano_pretrain.yaml", "d384_20",
                 "s1_600", ["num_steps=2", "train.max_steps=600"]),
    # stage 2 (the demo's settings: 150 iterations, proxy_updates 3, warm-up 20) from the 600-iteration stage 1
    "s2_base": ("stage 2 (the demo's), from `s1_600`", "nano_dmd.yaml", "d384_20", "s1_600",
                S2),
    "s2_real": ("`s2_base` with real Shapes renders as the prompts and the discriminator's real set",
                "nano_dmd.yaml", "real384", "s1_600", S2),
    "s2_lr": ("`s2_base` with student lr 1e-4 (5x)", "nano_dmd.yaml", "d384_20", "s1_600",
              S2 + ["student_optim.lr=1e-4"]),
    "s2_hi": ("`s2_base` training the steps at t = 1 and 0.75 3x as often (step_weights [3, 3, 1, 1])",
              "nano_dmd.yaml", "d384_20", "s1_600",
              S2 + ["step_weights=[3,3,1,1]"]),
    "s2_shift3": ("`s2_base` on the shift-3 grid, from `s1_600_shift3`", "nano_dmd.yaml", "d384_20_s3",
                  "s1_600_shift3", S2 + ["grid_shift=3"]),
    "s2_300": ("`s2_base` for 300 iterations", "nano_dmd.yaml", "d384_20", "s1_600",
               ["train.max_steps=300", "proxy_updates=3", "warmup_noisier=20"]),
    "s2_pu5": ("`s2_base` with proxy_updates 5 (nano_dmd.yaml's)", "nano_dmd.yaml", "d384_20", "s1_600",
               ["train.max_steps=150", "proxy_updates=5", "warmup_noisier=20"]),
    "s2_cfg4": ("`s2_base` with the DMD real score at CFG 4 (the teacher's own scale is 2.5)", "nano_dmd.yaml",
                "d384_20", "s1_600", S2 + ["guidance_scale=4"]),
    "s2_adv0": ("`s2_base` without the adversarial term (adv_weight 0)", "nano_dmd.yaml", "d384_20", "s1_600",
                S2 + ["adv_weight=0"]),
    "s2_adv0_seed1": ("`s2_adv0` with seed 1 (run-to-run variation)", "nano_dmd.yaml", "d384_20", "s1_600",
                      S2 + ["adv_weight=0", "seed=1"]),
    "s2_adv0_seed2": ("`s2_adv0` with seed 2 (run-to-run variation)", "nano_dmd.yaml", "d384_20", "s1_600",
                      S2 + ["adv_weight=0", "seed=2"]),
    # the 2-step student (nano_2step.yaml: stage 2 on (1, .5) with the gram loss), from the 4-step stage-2 student
    # as the paper does, or from the 2-step stage-1 student
    "two_s2": ("2-step: nano_2step.yaml (gram loss), 150 iterations, from `s2_base`", "nano_2step.yaml", "d384_20",
               "s2_base", ["train.max_steps=150", "proxy_updates=3"]),
    "two_s1": ("2-step: nano_2step.yaml (gram loss), 150 iterations, from `s1_2step`", "nano_2step.yaml",
               "d384_20", "s1_2step", ["train.max_steps=150", "proxy_updates=3"]),
    "s2_pu1": ("`s2_base` with proxy_updates 1 (3x the generator updates)", "nano_dmd.yaml", "d384_20", "s1_600",
               ["train.max_steps=150", "proxy_updates=1", "warmup_noisier=20"]),
}
EXPERIMENTS.update({
    # capacity: the same recipe on a deeper student that starts as exactly the teacher (benchmarks/grow_student.py)
    "s1_600_grown": ("stage 1, 600 iterations, on an 11-block student (the teacher's 6 blocks with 5 identity "
                     "blocks inserted; 6.7M parameters, 1.8x)", "nano_pretrain.yaml", "d384_20", "grown_11",
                     ["train.max_steps=600"]),
    "s2_grown": ("`s2_base` on the 11-block student, from `s1_600_grown`", "nano_dmd.yaml", "d384_20",
                 "s1_600_grown", S2),
})
EXPERIMENTS.update({
    # hypothesis 3 at strength: a discriminator that learns (lr 10x) and a term that counts (weight 10x); on real
    # renders the adversarial term is the only one that can pull the student beyond its teacher (as in DMD2)
    "s2_gan": ("`s2_base` with adv_weight 1 (10x) and disc lr 1e-3 (10x)", "nano_dmd.yaml", "d384_20", "s1_600",
               S2 + ["adv_weight=1.0", "disc_optim.lr=1e-3"]),
    "s2_real_gan": ("`s2_gan` with real Shapes renders as the prompts and the discriminator's real set",
                    "nano_dmd.yaml", "real384", "s1_600", S2 + ["adv_weight=1.0", "disc_optim.lr=1e-3"]),
    # hypothesis 5: the fake score's accuracy where it is read (timestep sharing reads it at t = 0.75, 0.5, 0.25)
    "s2_proxy_lr": ("`s2_base` with proxy lr 3e-4 (3x): the fake score tracks the moving student closer",
                    "nano_dmd.yaml", "d384_20", "s1_600", S2 + ["proxy_optim.lr=3e-4"]),
    "s2_proxy_t": ("`s2_base` with the proxy trained on t ~ U(0.2, 0.8) only, around the shared grid times",
                   "nano_dmd.yaml", "d384_20", "s1_600", S2 + ["proxy_t_range=[0.2,0.8]"]),
})
EXPERIMENTS.update({
    # the other paper's student as stage 1: Flash Diffusion's LoRA student (configs/flash_diffusion/nano.yaml, 1,200
    # iterations on 2048 real pairs; docs/results/flash_diffusion_backbones_sd3_1200.md: 0.693), fused, then the demo's
    # stage 2 on the grid that student was trained on (the teacher's shift, 2)
    "fd_1200": ("Flash Diffusion LoRA student, configs/flash_diffusion/nano.yaml (1,200 iterations, 2048 real pairs)",
                "../flash_diffusion/nano.yaml", "real2048", None, ["train.max_steps=1200"]),
    "s2_fd": ("`s2_base` on the teacher's shift-2 grid, from `fd_1200` fused (merge-lora)", "nano_dmd.yaml",
              "d384_20", "fd_1200_fused", S2 + ["grid_shift=2"]),
    "s2_fd_seed1": ("`s2_fd` with seed 1 (run-to-run variation)", "nano_dmd.yaml", "d384_20", "fd_1200_fused",
                    S2 + ["grid_shift=2", "seed=1"]),
    "s2_fd_seed2": ("`s2_fd` with seed 2 (run-to-run variation)", "nano_dmd.yaml", "d384_20", "fd_1200_fused",
                    S2 + ["grid_shift=2", "seed=2"]),
    "two_fd": ("2-step: nano_2step.yaml (gram loss), 150 iterations, shift-2 grid, from `s2_fd`", "nano_2step.yaml",
               "d384_20", "s2_fd", ["train.max_steps=150", "proxy_updates=3", "grid_shift=2"]),
})
EXPERIMENTS.update({
    # the student moves as the re-noising sampler does (sampler: stochastic): backward simulation and the shared
    # landing point re-noise each x0 estimate with fresh noise, as DMD2's multi-step generator and the Flash
    # Diffusion student (0.693 stochastic vs 0.594 Euler) are run
    "s2_sto": ("`s2_base` with sampler: stochastic (x0 estimates re-noised with fresh noise between steps)",
               "nano_dmd.yaml", "d384_20", "s1_600", S2 + ["sampler=stochastic"]),
    "s2_sto_seed1": ("`s2_sto` with seed 1 (run-to-run variation)", "nano_dmd.yaml", "d384_20", "s1_600",
                     S2 + ["sampler=stochastic", "seed=1"]),
    "s2_sto_seed2": ("`s2_sto` with seed 2 (run-to-run variation)", "nano_dmd.yaml", "d384_20", "s1_600",
                     S2 + ["sampler=stochastic", "seed=2"]),
    "s2_fd_sto": ("`s2_fd` with sampler: stochastic, from `fd_1200` fused (a start that is good when run that way)",
                  "nano_dmd.yaml", "d384_20", "fd_1200_fused", S2 + ["grid_shift=2", "sampler=stochastic"]),
    "s2_fd_sto_seed1": ("`s2_fd_sto` with seed 1 (run-to-run variation)", "nano_dmd.yaml", "d384_20", "fd_1200_fused",
                        S2 + ["grid_shift=2", "sampler=stochastic", "seed=1"]),
    "s2_fd_sto_seed2": ("`s2_fd_sto` with seed 2 (run-to-run variation)", "nano_dmd.yaml", "d384_20", "fd_1200_fused",
                        S2 + ["grid_shift=2", "sampler=stochastic", "seed=2"]),
    "two_fd_sto": ("2-step: nano_2step.yaml (gram loss), 150 iterations, shift-2 grid, sampler: stochastic, from "
                   "`s2_fd_sto`", "nano_2step.yaml", "d384_20", "s2_fd_sto",
                   ["train.max_steps=150", "proxy_updates=3", "grid_shift=2", "sampler=stochastic"]),
    "two_sto": ("2-step: nano_2step.yaml (gram loss), 150 iterations, sampler: stochastic, from `s2_sto`",
                "nano_2step.yaml", "d384_20", "s2_sto", ["train.max_steps=150", "proxy_updates=3",
                                                         "sampler=stochastic"]),
})
# students that start from a folder made by a script, not from an experiment: name -> that script's arguments
STARTS = {"grown_11": ["benchmarks/grow_student.py", "--every", "1"]}
# students that start from an experiment's LoRA student folded into its base: name -> that experiment
FUSED = {"fd_1200_fused": "fd_1200"}
# the same recipe trained with other seeds of its random draws: the spread between single training runs, which
# a paired interval (evaluation prompts and noises only) does not contain
REPLICATES = {"s2_base": ["s2_seed1", "s2_seed2"], "s1_600": ["s1_600_seed1", "s1_600_seed2"],
              "s2_adv0": ["s2_adv0_seed1", "s2_adv0_seed2"], "s2_fd": ["s2_fd_seed1", "s2_fd_seed2"],
              "s2_sto": ["s2_sto_seed1", "s2_sto_seed2"], "s2_fd_sto": ["s2_fd_sto_seed1", "s2_fd_sto_seed2"]}
TEACHER = "teacher_50"  # the 50-step CFG teacher, judged once and kept like an experiment
# teachers judged like experiments: name -> (what it is, steps, CFG scale; None: the folder's own)
TEACHERS = {TEACHER: ("the 50-step CFG teacher", 50, None),
            "teacher_50_cfg4": ("the teacher at 50 steps with CFG 4 (the DMD real score of `s2_cfg4`)", 50, 4.0)}


def dataset(w: Path, name: str) -> Path:
    out = w / "data" / name
    if (out / "index.json").exists():
        return out
    if name in BEST_OF:
        source = dataset(w, BEST_OF[name])
        sh([sys.executable, ROOT / "benchmarks" / "best_of_n.py", "--data", source, "--out", out,
            "--per-prompt", SAMPLES_PER_PROMPT[BEST_OF[name]]])
        return out
    n, steps = DATASETS[name]
    if steps is None:
        images = w / "data" / f"renders_{n}"
        if not (images / "captions.jsonl").exists():
            sh(FD + ["shapes-prompts", "--images", images, "--n", n, "--seed", "0"])
        sh(FD + ["generate-data", "--config", CFG / "nano_data.yaml", "--images", images, "--out", out,
                 "trajectory_grid=null", "num_steps=null", "prompts=null"])
        return out
    prompts = w / "data" / f"prompts_{n}.jsonl"
    if not prompts.exists():
        sh(FD + ["shapes-prompts", "--out", prompts, "--n", n, "--seed", "0"])
    sh(FD + ["generate-data", "--config", CFG / "nano_data.yaml", "--prompts", prompts, "--out", out,
             "--steps", steps] + ([f"trajectory_grid={GRIDS[name]}"] if name in GRIDS else [])
       + ([f"samples_per_prompt={SAMPLES_PER_PROMPT[name]}"] if name in SAMPLES_PER_PROMPT else []))
    return out


def start(w: Path, parent: str) -> Path:
    """The folder a student starts from: another experiment's student, or one of ``STARTS`` (made once)."""
    if parent not in STARTS and parent not in FUSED:
        return train(w, parent)
    out = w / parent
    if parent in FUSED:
        lora = train(w, FUSED[parent])
        merged = out / "flashdistill.json"  # written last by merge-lora: older than the LoRA's means stale
        if not merged.is_file() or merged.stat().st_mtime < (lora / "flashdistill.json").stat().st_mtime:
            shutil.rmtree(out, ignore_errors=True)
            sh(FD + ["merge-lora", "--lora", lora, "--out", out])
    elif not (out / "transformer" / "config.json").is_file():
        sh([sys.executable, ROOT / STARTS[parent][0], "--out", out] + STARTS[parent][1:])
    return out


def train(w: Path, name: str) -> Path:
    _, config, data, parent, overrides = EXPERIMENTS[name]
    out, record = w / name / "student", w / name / "experiment.json"
    what = json.dumps({"config": config, "data": data, "parent": parent, "overrides": overrides})
    if (out / "flashdistill.json").exists():
        if not record.is_file() or record.read_text() == what:  # (students from before the record: kept)
            record.write_text(what)
            return out
        print(f"= {name} was trained as {record.read_text()}: retrained", flush=True)
        shutil.rmtree(w / name)
    init = [f"init_student={start(w, parent)}"] if parent else []
    sh(FD + ["distill", "--config", CFG / config, f"data={dataset(w, data)}", f"out={out}",
             f"train.run_dir={w / name / 'run'}", "train.overwrite=true", "train.log.progress_bar=false"]
       + init + overrides)
    record.write_text(what)
    return out


def judged(w: Path, name: str, seeds: list[int], n: int) -> dict:
    """The protocol's result of one experiment (cached in its folder, keyed by seeds and prompts per category)."""
    from flashdistill.eval.model_eval import evaluate_seeds
    from flashdistill.shapes.nano import teacher_path

    # a student is (re)trained first: one whose experiment changed is retrained, and its old scores go with it
    folder, steps, guidance = (teacher_path(), *TEACHERS[name][1:]) if name in TEACHERS else (train(w, name), None,
                                                                                                None)
    cache = w / name / f"eval_{'-'.join(map(str, seeds))}_{n}.json"
    if cache.exists():
        return json.loads(cache.read_text())
    print(f"= judging {name} on seed sets {seeds}", flush=True)
    res = evaluate_seeds(folder, seeds, n, steps=steps, guidance=guidance)
    res.pop("images")
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(res))
    return res


def run_to_run(rows: dict, earlier: dict) -> tuple[str, dict]:
    """Markdown + JSON of the spread between training runs of one recipe (``REPLICATES`` whose runs are judged here;
    a group not judged here is carried from ``earlier``, the committed JSON's ``run_to_run``)."""
    import numpy as np


    out = {}
    for base, others in REPLICATES.items():
        names = [x for x in [base] + others if x in rows]
        if len(names) < 2:
            if base in earlier:
                out[base] = {**earlier[base], "carried": True}
            continue
        scores = np.array([rows[x]["train"]["shapes_eval"] for x in names])
        heldout = np.array([rows[x]["heldout"]["shapes_eval"] for x in names])
        sd = float(scores.std(ddof=1))
        out[base] = {"runs": names, "scores": scores.tolist(), "mean": float(scores.mean()), "sd": sd,
                     "two_run_band": float(1.96 * np.sqrt(2) * sd),  # the 95% range of the difference of two runs
                     "heldout": heldout.tolist(), "heldout_mean": float(heldout.mean()),
                     "heldout_sd": float(heldout.std(ddof=1))}
    text = ""
    for base, g in out.items():
        text += (f"\n`{base}`'s recipe trained {len(g['runs'])} times with different seeds "
                 f"of its random draws ({', '.join(f'`{x}`' for x in g['runs'])}): ShapesEval "
                 f"{' / '.join(f'{v:.3f}' for v in g['scores'])}, mean {g['mean']:.3f}, SD {g['sd']:.3f}. Two "
                 f"single runs of the same recipe differ by up to ±{g['two_run_band']:.3f} (95%, 1.96·√2·SD), which "
                 "the paired intervals above do not contain (they hold the evaluation prompts and noises, one training "
                 "run per row): a Δ between single runs inside that band is not evidence of an effect."
                 + (f" Held-out: {' / '.join(f'{v:.3f}' for v in g['heldout'])}, mean {g['heldout_mean']:.3f}, "
                    f"SD {g['heldout_sd']:.3f}." if "heldout" in g else "")
                 + (" (Judged in an earlier run of this command.)" if g.get("carried") else "") + "\n")
    first = next(iter(out), None)
    for name, g in out.items():  # a replicated recipe against the first one: difference of means (pooled t)
        if name == first:
            continue
        b = out[first]
        k0, k1 = len(b["scores"]), len(g["scores"])

        half, d = _half_width(k0, k1, b["sd"], g["sd"]), g["mean"] - b["mean"]
        g["vs"] = {"recipe": first, "difference": [d, d - half, d + half]}
        text += (f"\n`{name}`'s recipe against `{first}`'s, difference of the means over their training runs: "
                 f"{d:+.3f} [{d - half:+.3f}, {d + half:+.3f}] (95%, pooled t over {k0 + k1 - 2} degrees of "
                 "freedom): " + ("an effect" if d - half > 0 or d + half < 0 else "no measurable effect"))
        if "heldout" in g and "heldout" in b:
            hh, hd = _half_width(k0, k1, b["heldout_sd"], g["heldout_sd"]), g["heldout_mean"] - b["heldout_mean"]
            g["vs"]["heldout_difference"] = [hd, hd - hh, hd + hh]
            text += (f"; held-out {hd:+.3f} [{hd - hh:+.3f}, {hd + hh:+.3f}]: "
                     + ("an effect" if hd - hh > 0 or hd + hh < 0 else "no measurable effect"))
        text += ".\n"
    return ("\n## Run-to-run variation\n" + text if text else ""), out


def _half_width(k0: int, k1: int, sd0: float, sd1: float) -> float:
    """The pooled-t 95% half-width of a difference of two means over k0 and k1 training runs."""
    import numpy as np

    from flashdistill.eval.protocol import t_quantile

    pooled = np.sqrt(((k0 - 1) * sd0**2 + (k1 - 1) * sd1**2) / (k0 + k1 - 2))
    return float(t_quantile(k0 + k1 - 2) * pooled * np.sqrt(1 / k0 + 1 / k1))


def table_line(name: str, entry: dict, reference: str) -> str:
    """One markdown row of the log from its JSON entry (judged here or carried from the committed log: marked †)."""
    from flashdistill.eval.protocol import format_fd, format_score

    cells = []
    for split in ("train", "heldout"):
        e = entry[split]
        d = e["delta"]
        cells += [format_score({"shapes_eval": e["score"], "ci95": e["ci95"]}),
                  "–" if name == reference else f"{d[0]:+.3f} [{d[1]:+.3f}, {d[2]:+.3f}]"]
    fd = entry.get("fd") or [None]
    cells.append(format_fd({} if fd[0] is None else {"fd": fd[0], "fd_ci95": fd[1:]}))
    runs = entry.get("delta_vs_runs")
    cells.append("–" if runs is None else f"{runs['delta'][0]:+.3f} (" + (
        "beyond" if runs["beyond_run_to_run"] else "within") + " run-to-run)")
    mark = " †" if entry.get("carried") else ""
    return f"| `{name}`{mark} | {entry['change']} | " + " | ".join(cells) + " |"


def replicate_mean(rows: dict, spread: dict):
    """``(name, cells, margin)``: the per-prompt mean of a replicated recipe's runs (a paired reference that
    averages the training randomness) and the 95% margin of one run against that mean, 1.96·SD·√(1 + 1/k);
    ``(name, None, None)`` without replicates. ``spread`` is :func:`run_to_run`'s JSON (the runs and their SD)."""
    import numpy as np

    base = next(iter(REPLICATES))
    group = spread.get(base)
    if group is None:
        return base, None, None
    runs = [rows[x]["train"]["cells"] for x in group["runs"]]
    mean = [[np.mean([np.asarray(r[s][c], dtype=np.float64) for r in runs], axis=0) for c in range(len(runs[0][s]))]
            for s in range(len(runs[0]))]
    return base, mean, 1.96 * group["sd"] * (1 + 1 / len(runs)) ** 0.5


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="runs/sd35_flash_experiments")
    ap.add_argument("--only", default=None, help="comma-separated experiments to train and judge (default: all)")
    ap.add_argument("--reference", default="s1_150", help="experiment every other one is compared with, paired")
    ap.add_argument("--seeds", default="1,2,3,4")
    ap.add_argument("--n-per-category", type=int, default=16)
    ap.add_argument("--results", default="docs/results")
    args = ap.parse_args()
    from flashdistill.eval.protocol import paired_difference, parse_seeds

    w, seeds, n = ROOT / args.work, parse_seeds(args.seeds), args.n_per_category
    names = args.only.split(",") if args.only else list(EXPERIMENTS)
    unknown = [x for x in names + [args.reference] if x not in EXPERIMENTS and x not in TEACHERS]
    if unknown:
        raise SystemExit(f"unknown experiment(s) {unknown}; known: {sorted(EXPERIMENTS) + sorted(TEACHERS)}")
    for name in names:
        judged(w, name, seeds, n)
    cache = f"eval_{'-'.join(map(str, seeds))}_{n}.json"
    done = ([x for x in TEACHERS if x != TEACHER and (w / x / cache).exists()]
            + [x for x in EXPERIMENTS if (w / x / "student" / "flashdistill.json").exists()])
    rows = {x: judged(w, x, seeds, n) for x in dict.fromkeys([TEACHER, args.reference] + done)}
    ref = rows[args.reference]
    out = ROOT / args.results
    log = out / "sd35_flash_experiments.json"
    earlier = json.loads(log.read_text()) if log.is_file() else {}
    if earlier.get("protocol", {}).get("seeds") != seeds or earlier["protocol"].get("n_per_category") != n or \
            earlier["protocol"].get("reference") != args.reference:
        earlier = {}  # rows judged under another protocol or against another reference are not carried
    spread, spread_json = run_to_run(rows, earlier.get("run_to_run", {}))
    base, mean_cells, margin = replicate_mean(rows, {k: v for k, v in spread_json.items() if not v.get("carried")})
    lines = [f"| experiment | change | ShapesEval [95% CI] | Δ vs `{args.reference}` (paired) | held-out "
             f"[95% CI] | Δ held-out (paired) | FD [95% CI] | Δ vs the mean of `{base}`'s runs (stage 2) |",
             "|---|---|---|---|---|---|---|---|"]
    table = {}
    for name, res in rows.items():
        entry = {"change": TEACHERS[name][0] if name in TEACHERS else EXPERIMENTS[name][0]}
        for split in ("train", "heldout"):
            r = res[split]
            entry[split] = {"score": r["shapes_eval"], "ci95": r["ci95"],
                            "delta": paired_difference(r["cells"], ref[split]["cells"])}
        entry["fd"] = [res["train"].get("fd"), *res["train"].get("fd_ci95", [None, None])]
        if mean_cells is not None and name in EXPERIMENTS and EXPERIMENTS[name][1] == "nano_dmd.yaml":
            d = paired_difference(res["train"]["cells"], mean_cells)
            entry["delta_vs_runs"] = {"delta": d, "beyond_run_to_run": abs(d[0]) > margin}
        table[name] = entry
    for name, entry in earlier.get("experiments", {}).items():  # judged before, its student not on this machine
        if name not in table and (name in EXPERIMENTS or name in TEACHERS):
            table[name] = {**entry, "carried": True}
    lines += [table_line(name, entry, args.reference) for name, entry in table.items()]
    carried = [x for x, e in table.items() if e.get("carried")]
    # the command that regenerates the whole table (every experiment, not only this call's --only)
    cmd = " ".join(["python benchmarks/sd35_flash_experiments.py"]
                   + [f"--{k.replace('_', '-')} {v}" for k, v in (("reference", args.reference), ("seeds", args.seeds),
                      ("n_per_category", n)) if str(v) != str(ap.get_default(k))])
    (out / "sd35_flash_experiments.md").write_text(
        f"# SD3.5-Flash on SD3-nano: experiment log\n\nRegenerate: `{cmd}` (each experiment's student and scores "
        f"are kept under `{args.work}`). Seed sets {seeds}, {n} prompts per category each; Δ is the paired "
        "difference (same prompts and noises) with its 95% bootstrap interval. Datasets: "
        + ", ".join(f"`{k}` = {p} " + (f"prompts, teacher at {s} steps" if s else "real Shapes renders")
                    + (f", {SAMPLES_PER_PROMPT[k]} samples per prompt" if k in SAMPLES_PER_PROMPT else "")
                    for k, (p, s) in DATASETS.items())
        + "".join(f", `{k}` = per prompt of `{v}`, its first sample the judge passes (`benchmarks/best_of_n.py`)"
                  for k, v in BEST_OF.items())
        + ".\n\n" + "\n".join(lines) + "\n"
        + (f"\n† Judged in an earlier run of this command, on the same seed sets, prompts and reference (its student "
           f"is not under `{args.work}` here, so it is carried from the committed log; its Δ is against that run's "
           f"`{args.reference}`): {', '.join(f'`{x}`' for x in carried)}.\n" if carried else "") + spread)
    (out / "sd35_flash_experiments.json").write_text(json.dumps(
        {"protocol": {"seeds": seeds, "n_per_category": n, "reference": args.reference, "command": cmd},
         "experiments": table, "run_to_run": spread_json}, indent=2) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
