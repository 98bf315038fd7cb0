"""The hand-off diagnostic: h = 1 is the student alone, h = 0 the teacher alone, exactly as the evaluation runs them."""

from __future__ import annotations

import pytest

from flashdistill.eval.handoff import handoff_scores
from flashdistill.eval.model_eval import evaluate_model
from flashdistill.pipelines.folders import load_pipeline
from flashdistill.pipelines.generate import load_setup
from flashdistill.shapes.nano import teacher_path


def test_ends_of_the_handoff_are_the_student_and_the_teacher_alone():
    folder = teacher_path()
    pipe = load_pipeline(folder)
    teacher = load_setup(folder, steps=8, pipe=pipe)
    student = load_setup(folder, steps=2, pipe=pipe)  # the teacher at 2 steps stands in for a student
    got = handoff_scores(teacher, student, n_per_category=2, seeds=(1,), teacher_steps=8)
    alone = {s: evaluate_model(folder, 2, steps=s, seed=1, splits=("train",), pipe=pipe)["train"]["overall"]
             for s in (2, 8)}
    assert got["overall"][1.0] == pytest.approx(alone[2]) and got["overall"][0.0] == pytest.approx(alone[8])
    assert set(got["overall"]) == {float(t) for t in student.timesteps}
    with pytest.raises(ValueError, match="not on the student's grid"):
        handoff_scores(teacher, student, handoffs=[0.3], n_per_category=1, seeds=(1,))
