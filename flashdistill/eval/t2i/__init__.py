"""Judging any text-to-image model the way the papers do: FID against a reference image folder, CLIP score,
GenEval-ready output; ``flashdistill eval --prompts FILE`` (:mod:`flashdistill.eval.t2i.run`)."""
