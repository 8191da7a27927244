"""The local VLM judge end to end on a tiny Qwen2-VL built from a config (tests/makers.write_tiny_vlm):
the chat template with five images and the prompt, the processor, `generate`, the answer parsed."""

import numpy as np
import pytest
from makers import write_tiny_vlm
from PIL import Image

from evaluation.scoring.pairwise import Candidate, Question, judge_pair, prompt_text, win_rates


def solid(value: int) -> Image.Image:
    return Image.fromarray(np.full((40, 40, 3), value, dtype=np.uint8))


def ask(judge):
    x, y = Candidate("ours", "h1", solid(200)), Candidate("theirs", "h2", solid(100))
    return [r | {"dataset": "d"} for r in judge_pair(judge, "t0", solid(10), solid(50), solid(90), x, y, seed=0)]


def test_a_vlm_that_always_says_1_answers_by_position_and_is_caught_as_inconsistent(tmp_path):
    from evaluation.scoring.judge_backends import LocalVLMJudge

    judge = LocalVLMJudge(str(write_tiny_vlm(tmp_path / "says-1", "Answer: 1")), device="cpu", max_new_tokens=1)
    question = Question(solid(10), solid(50), solid(90), solid(200), solid(100), prompt_text(False))
    text = judge.vlm.processor.apply_chat_template([{"role": "user", "content": [{"type": "image"}] * 5 + [
        {"type": "text", "text": question.prompt}]}], add_generation_prompt=True, tokenize=False)
    assert text.count("<|vision_start|>") == 5 and question.prompt in text
    assert judge.answer(question) == "Answer: 1"
    rows = ask(judge)
    assert [r["raw"] for r in rows] == ["Answer: 1", "Answer: 1"] and rows[0]["choice"] != rows[1]["choice"]
    assert all(r["consistent"] is False for r in rows)
    rate, _ = win_rates(rows)
    assert rate["inconsistent"] == 1 and rate["win_rate"] is None and rate["judge"].startswith("vlm:")


def test_a_vlm_answer_without_a_choice_is_a_recorded_failure(tmp_path):
    from evaluation.scoring.judge_backends import LocalVLMJudge

    judge = LocalVLMJudge(str(write_tiny_vlm(tmp_path / "says-maybe", "maybe")), device="cpu", max_new_tokens=3)
    rows = ask(judge)
    assert [r["raw"] for r in rows] == ["maybe maybe maybe"] * 2
    assert all(r["choice"] is None and "no choice" in r["error"] for r in rows)


def test_a_missing_vlm_names_itself_and_the_command_that_fetches_it(monkeypatch, tmp_path):
    from evaluation.scoring.judge_backends import LocalVLMJudge
    from models.loaders import ModelMissingError

    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-cache"))
    with pytest.raises(ModelMissingError, match=r"Qwen/Qwen2.5-VL-7B-Instruct.*hf download"):
        LocalVLMJudge(device="cpu")
