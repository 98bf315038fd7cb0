"""Student folders carry a Hugging Face model card whose code runs, a sample image, the teacher's licence field;
exports get their own card; ``flashdistill eval`` fills the card's evaluation section."""

from __future__ import annotations

import json
import os
import re

import pytest

from flashdistill.pipelines.model_card import (
    CARD_FILE,
    EVAL_BEGIN,
    EVAL_END,
    SAMPLE_FILE,
    teacher_licence,
    update_eval_section,
    write_model_card,
)


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    from flashdistill.models.tiny import tiny_sd3_pipeline
    from flashdistill.recipes.common import save_student

    pipe = tiny_sd3_pipeline(seed=0)
    pipe.set_progress_bar_config(disable=True)
    out = tmp_path_factory.mktemp("card") / "nano-student"
    save_student(pipe, pipe.transformer, out, [1.0, 0.5, 0.0], {"recipe": "sd35_flash", "stage": "dmd",
                                                               "teacher": "tiny", "max_sequence_length": 8,
                                                               "resolution": 16})
    return out


def _front_matter(text: str) -> dict:
    match = re.match(r"---\n(.*?)\n---\n", text, re.S)
    assert match, "no YAML front matter"
    import yaml

    return yaml.safe_load(match.group(1))


def _code(text: str) -> str:
    return re.search(r"```python\n(.*?)```", text, re.S).group(1)


def test_student_card_front_matter_sample_and_settings(student):
    text = (student / CARD_FILE).read_text()
    front = _front_matter(text)
    assert front["library_name"] == "diffusers" and front["pipeline_tag"] == "text-to-image"
    assert front["license"] == "apache-2.0" and front["base_model"] == "tiny"
    assert "sd35-flash" in front["tags"] and "few-step" in front["tags"]
    assert "a 2-step student" in text and "SD3.5-Flash (arXiv 2509.21318)" in text and "stage `dmd`" in text
    assert "| sigmas | [1.0, 0.5] |" in text and "| guidance scale | 1.0 |" in text and "| resolution | 16 |" in text
    from PIL import Image

    sample = Image.open(student / SAMPLE_FILE)
    assert sample.size == (4 * 16, 16)  # the four sample prompts at the student's resolution
    assert f"![samples]({SAMPLE_FILE})" in text and EVAL_BEGIN in text and EVAL_END in text


def test_the_cards_code_runs_in_stock_diffusers(student):
    code = _code((student / CARD_FILE).read_text())
    assert "StableDiffusion3Pipeline.from_pretrained" in code and "flashdistill" not in code
    cwd = os.getcwd()
    os.chdir(student.parent)  # the card names the folder as a relative path
    try:
        scope: dict = {}
        exec(code, scope)  # noqa: S102 - the card's own lines
    finally:
        os.chdir(cwd)
    assert scope["image"].size == (16, 16)


def test_eval_section_is_replaced_in_place(student, tmp_path):
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(student, folder)
    assert update_eval_section(folder, "| a | b |\n|---|---|\n| 1 | 2 |")
    assert update_eval_section(folder, "| a | b |\n|---|---|\n| 3 | 4 |")
    text = (folder / CARD_FILE).read_text()
    assert text.count(EVAL_BEGIN) == 1 and "| 3 | 4 |" in text and "| 1 | 2 |" not in text
    assert text.index(EVAL_END) < text.index("The licence field")
    (folder / CARD_FILE).write_text("# someone else's card\n")
    assert not update_eval_section(folder, "x") and (folder / CARD_FILE).read_text() == "# someone else's card\n"


def test_export_writes_its_own_card(student, tmp_path):
    from flashdistill.deploy.export import export_folder

    out = tmp_path / "nano-student-no-t5"
    export_folder(student, out, no_t5=True)
    text = (out / CARD_FILE).read_text()
    assert not (out / SAMPLE_FILE).exists()  # the source's sample is not this variant's
    code = _code(text)
    assert "text_encoder_3=None, tokenizer_3=None" in code and '"nano-student-no-t5"' in code and ".partial" not in text
    assert "| T5 text encoder | dropped (zeros in its slice) |" in text


def test_lora_card_loads_the_base_and_sets_the_scheduler(tmp_path):
    folder = tmp_path / "lora"
    folder.mkdir()
    (folder / "flashdistill.json").write_text(json.dumps({
        "kind": "lora", "base": "/models/sd35m", "recipe": "flash_diffusion", "sigmas": [1.0, 0.75, 0.5, 0.25],
        "guidance_scale": 1.0, "max_sequence_length": 256, "scheduler": {"shift": 1.0, "stochastic_sampling": True},
        "parameters": {"trainable": 1000, "total": 2000}}))
    text = write_model_card(folder).read_text()
    code = _code(text)
    assert 'from_pretrained("/models/sd35m", dtype=torch.bfloat16)' in code and 'load_lora_weights("lora")' in code
    assert "stochastic_sampling=True" in code and "Flash Diffusion (arXiv 2406.02347)" in text
    assert "| trainable parameters | 1,000 of 2,000 |" in text and _front_matter(text)["license"] == "other"


def test_teacher_licence_reads_the_teachers_card(tmp_path):
    (tmp_path / CARD_FILE).write_text("---\nlicense: other\nlicense_name: stabilityai-ai-community\n---\n# SD3.5\n")
    assert teacher_licence(tmp_path) == "other"
    (tmp_path / CARD_FILE).write_text("---\nlicense: 'openrail++'\n---\n")
    assert teacher_licence(tmp_path) == "openrail++"
    assert teacher_licence("sd3-nano") == "apache-2.0" and teacher_licence(tmp_path / "missing") == "other"
