"""`key=value` arguments of `eval` and `predict`: an empty or unknown key is one sentence."""

import pytest

from experiments.errors import UserError
from experiments.predict import parse_args


def test_predict_arguments_and_their_mistakes() -> None:
    assert parse_args(["run_id=abc", "input=new.csv"]) == {"run_id": "abc", "input": "new.csv"}
    cases = {
        ("run_id=", "input=new.csv"): "run_id= is empty; give it a value (run_id=RUN_ID) or leave it out.",
        ("run_id=abc", "input= "): "input= is empty; give it a value (input=FILE) or leave it out.",
        ("run_id=abc", "inptu=new.csv"): "experiments predict takes key=value arguments with keys run_id, input,",
        ("run_id=abc",): "experiments predict needs input=…",
    }
    for argv, sentence in cases.items():
        with pytest.raises(UserError, match="^" + sentence.replace("(", r"\(").replace(")", r"\)")):
            parse_args(list(argv))
