"""Weight memory of a pipeline's components from their configs alone (built on the meta device: no weights are
read or downloaded), and SD3.5 Medium's on paper next to the peak memory SD3.5-Flash reports (Tab. 2).

SD3.5 Medium's component configs are written here from its published architecture (MM-DiT-X: 24 blocks of width
1536 with dual attention in blocks 0–12, CLIP-L, OpenCLIP bigG, T5-XXL encoder, a 16-channel VAE), so the
estimate runs offline; ``flashdistill bench --model <folder>`` counts the folder's own configs instead.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["component_params", "folder_params", "sd35_medium_params", "memory_estimates", "PAPER_PEAK_GIB"]

# SD3.5-Flash Tab. 2, SD3.5 Medium at 1024 px on a GPU: peak GiB of the 16-bit pipeline, without T5, and 8-bit.
PAPER_PEAK_GIB = {"16-bit": 17.58, "16-bit, no T5": 8.71, "8-bit, no T5": 6.61}

SD35_MEDIUM = {
    "transformer": ("diffusers", "SD3Transformer2DModel", {
        "sample_size": 128, "patch_size": 2, "in_channels": 16, "out_channels": 16, "num_layers": 24,
        "attention_head_dim": 64, "num_attention_heads": 24, "joint_attention_dim": 4096,
        "caption_projection_dim": 1536, "pooled_projection_dim": 2048, "pos_embed_max_size": 384,
        "dual_attention_layers": list(range(13)), "qk_norm": "rms_norm"}),
    "text_encoder": ("transformers", "CLIPTextModelWithProjection", {
        "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
        "projection_dim": 768, "vocab_size": 49408, "max_position_embeddings": 77, "hidden_act": "quick_gelu"}),
    "text_encoder_2": ("transformers", "CLIPTextModelWithProjection", {
        "hidden_size": 1280, "intermediate_size": 5120, "num_hidden_layers": 32, "num_attention_heads": 20,
        "projection_dim": 1280, "vocab_size": 49408, "max_position_embeddings": 77, "hidden_act": "gelu"}),
    "text_encoder_3": ("transformers", "T5EncoderModel", {
        "d_model": 4096, "d_ff": 10240, "d_kv": 64, "num_heads": 64, "num_layers": 24, "vocab_size": 32128,
        "feed_forward_proj": "gated-gelu", "is_gated_act": True}),
    "vae": ("diffusers", "AutoencoderKL", {
        "in_channels": 3, "out_channels": 3, "latent_channels": 16, "block_out_channels": [128, 256, 512, 512],
        "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
        "layers_per_block": 2, "use_quant_conv": False, "use_post_quant_conv": False}),
}


def component_params(library: str, class_name: str, config: dict) -> int:
    """Parameters of one component built from ``config`` on the meta device."""
    from accelerate import init_empty_weights

    if library == "diffusers":
        import diffusers

        cls = getattr(diffusers, class_name)
        with init_empty_weights():
            model = cls.from_config(config)
    else:
        import transformers

        cls = getattr(transformers, class_name)
        config_cls = cls.config_class
        conf = config_cls(**{k: v for k, v in config.items() if not k.startswith("_")})
        with init_empty_weights():
            model = cls(conf)
        model.tie_weights()  # built on meta the ties are not made; untied, T5's shared embedding counts twice
    return sum(p.numel() for p in model.parameters())


def sd35_medium_params() -> dict[str, int]:
    return {name: component_params(*spec) for name, spec in SD35_MEDIUM.items()}


def folder_params(folder: str | Path) -> dict[str, int]:
    """Parameters of each weighted component named in a pipeline folder's ``model_index.json``."""
    folder = Path(folder)
    index = json.loads((folder / "model_index.json").read_text())
    out = {}
    for name, entry in index.items():
        if name.startswith("_") or not isinstance(entry, list) or entry[0] not in ("diffusers", "transformers"):
            continue
        config_path = folder / name / "config.json"
        if not config_path.exists():  # schedulers and tokenizers have no weights
            continue
        config = json.loads(config_path.read_text())
        config.pop("quantization_config", None)
        if entry[0] == "transformers":
            config = {k: v for k, v in config.items() if k not in ("architectures", "transformers_version")}
        out[name] = component_params(entry[0], entry[1], config)
    return out


def memory_estimates(params: dict[str, int]) -> dict[str, dict]:
    """Weight GiB of the 16-bit pipeline, the 16-bit pipeline without T5 and the 8-bit-transformer one without T5
    (text encoders and VAE stay 16-bit, as in the paper's deployment)."""
    gib = 2**30
    t5 = params.get("text_encoder_3", 0)
    total = sum(params.values())
    transformer = params.get("transformer", 0)
    weights = {"16-bit": 2 * total, "16-bit, no T5": 2 * (total - t5),
               "8-bit, no T5": 2 * (total - t5 - transformer) + transformer}
    return {k: {"weights_gib": v / gib, "paper_peak_gib": PAPER_PEAK_GIB[k]} for k, v in weights.items()}
